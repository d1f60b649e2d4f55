//! The documentation: the book in docs/ builds with mdBook, every link between the
//! repository's markdown files resolves, and the config keys the docs name in their ```toml
//! blocks are exactly the keys the parser accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_chain::ConfigFile;
use sluice_tests::workspace_root;

// --- the book ---------------------------------------------------------------------------------

#[test]
fn docs_book_builds() {
    let root = workspace_root();
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = Command::new(mdbook())
        .arg("build")
        .arg(root.join("docs"))
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| panic!("mdbook: {e} (./test.sh setup installs it)"));
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "mdbook build docs failed:\n{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    println!("mdbook build docs: {:?}", started.elapsed());
    // Every chapter SUMMARY.md lists (and does not comment out) is a page of the book.
    let summary = std::fs::read_to_string(root.join("docs/SUMMARY.md")).unwrap();
    let chapters = links(&summary, false);
    assert!(chapters.len() >= 15, "{chapters:?}");
    for (_, chapter) in chapters {
        let page = chapter.replace(".md", ".html");
        assert!(out.path().join(&page).is_file(), "{page} not built");
    }
    let config = std::fs::read_to_string(out.path().join("configuration.html")).unwrap();
    assert!(
        config.contains("cache_max_mb"),
        "configuration.html lacks the [engine] keys"
    );
}

/// `mdbook` on PATH, else where `cargo install` put it.
fn mdbook() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mdbook").is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from("mdbook");
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin/mdbook")
}

#[test]
fn every_docs_page_is_in_the_summary() {
    let docs = workspace_root().join("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    // Commented-out entries count: they are pages waiting to be enabled.
    let listed: BTreeSet<String> = links(&summary, true)
        .into_iter()
        .map(|(_, target)| target)
        .collect();
    for entry in std::fs::read_dir(&docs).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(
                listed.contains(&name),
                "docs/{name} is not in docs/SUMMARY.md, so not in the book"
            );
        }
    }
}

// --- links ------------------------------------------------------------------------------------

#[test]
fn markdown_links_resolve() {
    let root = workspace_root();
    let files = markdown_files(&root);
    assert!(files.len() > 20, "{files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in links(&text, false) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let at = format!("{}:{line}: ({target})", rel(&root, file));
            if !resolved.exists() {
                broken.push(format!("{at}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if resolved.extension().is_some_and(|e| e == "md") {
                    let target_text = std::fs::read_to_string(&resolved).unwrap();
                    if !heading_slugs(&target_text).contains(anchor) {
                        broken.push(format!("{at}: no heading #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_broken_links() {
    let text =
        "# A title\n\n## Two words, here\n\nSee [x](#two-words-here) and `[not](a-link.md)`.\n\
                ```\n[in code](nope.md)\n```\n[y](other.md#a-title)\n";
    let found = links(text, false);
    assert_eq!(
        found,
        vec![
            (5, "#two-words-here".to_string()),
            (9, "other.md#a-title".to_string())
        ]
    );
    let slugs = heading_slugs(text);
    assert!(
        slugs.contains("a-title") && slugs.contains("two-words-here"),
        "{slugs:?}"
    );
    assert_eq!(slug("`sluice alias`"), "sluice-alias");
    assert_eq!(
        slug("Rules that call a service: `http`"),
        "rules-that-call-a-service-http"
    );
}

/// The repository's markdown files, without build output and installed packages.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    const SKIP: [&str; 6] = [
        "target",
        "node_modules",
        ".git",
        ".aws-sam",
        "corpus",
        ".venv",
    ];
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() && !SKIP.iter().any(|s| name.starts_with(s)) {
                dirs.push(path);
            } else if kind.is_file() && name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn rel(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// (line, target) of every inline link `[text](target)` outside code blocks and code spans;
/// with `comments`, also inside `<!-- -->` (SUMMARY.md's waiting entries).
fn links(text: &str, comments: bool) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fence = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || (!comments && line.trim_start().starts_with("<!--")) {
            continue;
        }
        let mut rest = strip_code_spans(line);
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                found.push((n + 1, target.to_string()));
            }
            rest = after[end..].to_string();
        }
    }
    found
}

fn strip_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect()
}

/// The anchors of a markdown file's headings, as GitHub and mdBook make them (a repeated
/// heading gets `-1`, `-2`).
fn heading_slugs(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut slugs = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
            continue;
        }
        let title = line.trim_start_matches('#');
        if fence || title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let base = slug(title.trim());
        let count = seen.entry(base.clone()).or_insert(0);
        slugs.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    slugs
}

fn slug(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

// --- config keys ------------------------------------------------------------------------------

/// A key no section takes: the parser's refusal of it names the keys the section does take.
const PROBE: &str = "zz_probe";

/// Each section of the config file, as the smallest text the parser reads up to it, with
/// `PROBE` put in it. The key path is how the docs' keys are named: the table header
/// (`[[domain.step]]` -> `domain.step`), then inline-table keys (`domain.step.breaker`).
/// A section with kinds has one entry per kind; their keys are merged.
const SECTIONS: &[(&str, &str)] = &[
    ("", "zz_probe = 1\n"),
    ("store", "[store]\nkind = \"dir\"\npath = \"m\"\nzz_probe = 1\n"),
    ("store", "[store]\nkind = \"s3\"\nbucket = \"b\"\nzz_probe = 1\n"),
    (
        "store",
        "[store]\nkind = \"lmtp\"\naddress = \"127.0.0.1:24\"\nzz_probe = 1\n",
    ),
    (
        "store",
        "[store]\nkind = \"smtp\"\nhost = \"mx.example.com\"\nzz_probe = 1\n",
    ),
    ("relay", "[relay]\nkind = \"ses\"\nzz_probe = 1\n"),
    (
        "relay",
        "[relay]\nkind = \"smtp\"\nhost = \"mx.example.com\"\nzz_probe = 1\n",
    ),
    ("inbound", "[inbound]\nbucket = \"b\"\nzz_probe = 1\n"),
    ("archive", "[archive]\nkind = \"dir\"\nzz_probe = 1\n"),
    (
        "archive.retention",
        "[archive]\nkind = \"s3\"\nretention = { zz_probe = 1 }\n",
    ),
    ("quarantine", "[quarantine]\nkind = \"dir\"\nzz_probe = 1\n"),
    ("milter", "[milter]\nzz_probe = 1\n"),
    (
        "milter.scanner",
        "[[milter.scanner]]\nname = \"s\"\nverdict = \"spam\"\nheader = \"X\"\nfail = []\nzz_probe = 1\n",
    ),
    ("arc", "[arc]\ndomain = \"example.com\"\nzz_probe = 1\n"),
    ("engine", "[engine]\nzz_probe = 1\n"),
    (
        "directory.*",
        "[directory.aliases]\nkind = \"file\"\nzz_probe = 1\n",
    ),
    ("domain", "[[domain]]\nname = \"example.com\"\nzz_probe = 1\n"),
    (
        "domain.step",
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"p.wasm\"\nzz_probe = 1\n",
    ),
    (
        "domain.step.breaker",
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"p.wasm\"\nbreaker = { zz_probe = 1 }\n",
    ),
    (
        "domain.step.warm",
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"p.wasm\"\nwarm = { zz_probe = 1 }\n",
    ),
    (
        "domain.step.http",
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"p.wasm\"\nhttp = { allow = [], zz_probe = 1 }\n",
    ),
    (
        "domain.step.reply",
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"p.wasm\"\nreply = { once_per_days = 1, zz_probe = 1 }\n",
    ),
    ("outbound", "[[outbound]]\nname = \"example.com\"\nzz_probe = 1\n"),
    (
        "outbound.step",
        "[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"p.wasm\"\nzz_probe = 1\n",
    ),
    (
        "outbound.step.breaker",
        "[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"p.wasm\"\nbreaker = { zz_probe = 1 }\n",
    ),
    (
        "outbound.step.warm",
        "[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"p.wasm\"\nwarm = { zz_probe = 1 }\n",
    ),
    (
        "outbound.step.http",
        "[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"p.wasm\"\nhttp = { allow = [], zz_probe = 1 }\n",
    ),
    (
        "outbound.step.reply",
        "[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"p.wasm\"\nreply = { once_per_days = 1, zz_probe = 1 }\n",
    ),
];

/// Keys whose value is the rule's own, checked by the rule (`validate-config`), not the host.
const OPEN: &[&str] = &["domain.step.config", "outbound.step.config"];

/// Every key the parser takes, as a path: what it names when it refuses `PROBE` in each
/// section, and the keys some sections take out before their kind reads the rest (the relay's
/// and the servers' keys), where the parser does not refuse them.
fn accepted_keys() -> BTreeSet<String> {
    let taken_out: Vec<&str> = sluice_deliver::config::RELAY_KEYS
        .iter()
        .chain(&sluice_deliver::SERVER_KEYS)
        .chain(&sluice_deliver::AUTH_KEYS)
        .chain(&["kind"])
        .copied()
        .collect();
    let mut keys = BTreeSet::new();
    for (section, text) in SECTIONS {
        let mut names = refused_probe(text);
        names.extend(
            taken_out
                .iter()
                .filter(|k| takes(text, k))
                .map(|k| k.to_string()),
        );
        for name in names {
            keys.insert(if section.is_empty() {
                name
            } else {
                format!("{section}.{name}")
            });
        }
    }
    keys
}

/// Whether the section of `probe` takes `key`: the parser does not refuse it as unknown
/// (a wrong value, or a key the snippet already has, is another error).
fn takes(probe: &str, key: &str) -> bool {
    let text = probe.replace(&format!("{PROBE} = 1"), &format!("{key} = \"x\""));
    match ConfigFile::parse("probe.toml", PathBuf::from("."), text) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains(&format!("unknown field `{key}`")),
    }
}

/// The keys the parser names when it refuses `PROBE` in `text`.
fn refused_probe(text: &str) -> Vec<String> {
    let error = match ConfigFile::parse("probe.toml", PathBuf::from("."), text.to_string()) {
        Ok(_) => panic!("the parser took an unknown key:\n{text}"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&format!("unknown field `{PROBE}`")),
        "the parser refused this for another reason than the unknown key: {error}\n{text}"
    );
    if error.contains("there are no fields") {
        return Vec::new();
    }
    let list = error
        .split_once("expected one of ")
        .or_else(|| error.split_once("expected "))
        .unwrap_or_else(|| panic!("no list of keys in: {error}"))
        .1;
    list.split(',')
        .filter_map(|k| {
            let k = k.trim();
            let k = k.strip_prefix('`')?;
            Some(k[..k.find('`')?].to_string())
        })
        .collect()
}

/// The keys the ```toml blocks of `text` name, commented-out ones included
/// (`# key_env = "..."`, `# kind = "s3"; bucket = "..."`), as paths (`domain.step.breaker.failures`).
/// A block with no table header is a fragment of a `[[domain.step]]` (docs/rules.md's examples).
fn documented_keys(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_block = false;
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if !in_block {
            if trimmed == "```toml" {
                in_block = true;
                section = "domain.step".into();
            }
            continue;
        }
        if trimmed.starts_with("```") {
            in_block = false;
            continue;
        }
        let (code, comment) = split_comment(trimmed);
        let code = code.trim();
        if let Some(header) = code.strip_prefix('[') {
            let name = header.trim_matches(|c| c == '[' || c == ']').trim();
            section = match name.split_once('.') {
                Some(("directory", _)) => "directory.*".into(),
                _ => name.to_string(),
            };
            found.push((n + 1, section.trim_end_matches(".*").to_string()));
            continue;
        }
        let mut assignments = vec![code.to_string()];
        // A commented-out line that starts with an assignment documents its keys.
        let comment = comment.trim_start_matches('#').trim();
        if assignment_key(comment).is_some() {
            let (commented, _) = split_comment(comment);
            assignments.extend(commented.split("; ").map(str::to_string));
        }
        for assignment in assignments {
            if let Some(key) = assignment_key(&assignment) {
                let path = format!("{section}.{key}");
                let value = assignment.split_once('=').unwrap().1.trim();
                if value.starts_with('{') && !OPEN.contains(&path.as_str()) {
                    for inner in value.trim_matches(|c| c == '{' || c == '}').split(',') {
                        if let Some(inner) = assignment_key(inner.trim()) {
                            found.push((n + 1, format!("{path}.{inner}")));
                        }
                    }
                }
                found.push((n + 1, path));
            }
        }
    }
    found
}

/// `key` of `key = value` (a value as TOML writes one, so that prose in a comment such as
/// `key = prefix + id` is not read as a key).
fn assignment_key(text: &str) -> Option<&str> {
    let (key, value) = text.split_once(" = ")?;
    let key = key.trim();
    let value = value.trim_start();
    let is_value = value.starts_with(['"', '[', '{', '-', '\''])
        || value.starts_with(|c: char| c.is_ascii_digit())
        || value.starts_with("true")
        || value.starts_with("false");
    (is_value
        && !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(key)
}

/// A line's code and its `#` comment (a `#` inside a string is not one).
fn split_comment(line: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return (&line[..i], &line[i..]),
            _ => {}
        }
    }
    (line, "")
}

/// The docs the key test reads: the book and the README. Their ```toml blocks are Sluice
/// configs (or `[[domain.step]]` fragments); a block of another TOML file says which in its
/// info string (```` ```toml aliases.toml ````) and is not read.
fn docs_text() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    files.extend(
        markdown_files(&root.join("docs"))
            .into_iter()
            .filter(|f| !f.ends_with("SUMMARY.md")),
    );
    files
        .iter()
        .map(|f| (rel(&root, f), std::fs::read_to_string(f).unwrap()))
        .collect()
}

#[test]
fn docs_name_every_config_key() {
    let accepted = accepted_keys();
    // Every table the parser takes is probed too: a key whose value is a table (or a list of
    // tables) that refuses `PROBE` is a section of its own.
    for key in &accepted {
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        let Some((_, text)) = SECTIONS.iter().find(|(s, _)| *s == section) else {
            continue;
        };
        for value in [format!("{{ {PROBE} = 1 }}"), format!("[{{ {PROBE} = 1 }}]")] {
            let nested = text.replace(&format!("{PROBE} = 1"), &format!("{name} = {value}"));
            if let Err(e) = ConfigFile::parse("probe.toml", PathBuf::from("."), nested) {
                let probed = SECTIONS.iter().any(|(s, _)| s == key);
                assert!(
                    probed || !e.to_string().contains(&format!("unknown field `{PROBE}`")),
                    "`{key}` is a table the key test does not probe: add it to SECTIONS"
                );
            }
        }
    }
    // Every kind of store and relay is probed.
    let kinds = sluice_deliver::config::STORE_KINDS
        .iter()
        .map(|k| ("store", k.name))
        .chain(
            sluice_deliver::config::RELAY_KINDS
                .iter()
                .map(|k| ("relay", k.name)),
        );
    for (section, kind) in kinds {
        assert!(
            SECTIONS
                .iter()
                .any(|(s, text)| *s == section && text.contains(&format!("kind = \"{kind}\""))),
            "[{section}] kind = \"{kind}\" is not probed: add it to SECTIONS"
        );
    }
    let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, text) in docs_text() {
        for (line, key) in documented_keys(&text) {
            documented
                .entry(key)
                .or_default()
                .push(format!("{file}:{line}"));
        }
    }
    assert!(documented.len() > 60, "{documented:?}");
    // The outbound chain's keys are the inbound chain's, documented once.
    let is_documented = |key: &str| {
        documented.contains_key(key)
            || key
                .strip_prefix("outbound.step.")
                .is_some_and(|k| documented.contains_key(&format!("domain.step.{k}")))
            || !key.contains('.')
    };
    let undocumented: Vec<&String> = accepted.iter().filter(|k| !is_documented(k)).collect();
    // Each documented key is also fed to the parser in its section, so a key the probe
    // lists miss is not reported as unknown.
    let fed = |path: &str| {
        let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
        SECTIONS
            .iter()
            .filter(|(s, _)| *s == section)
            .any(|(_, text)| takes(text, key))
    };
    let unknown: Vec<String> = documented
        .iter()
        .filter(|(k, _)| {
            !accepted.contains(*k)
                && !OPEN.iter().any(|o| k.starts_with(&format!("{o}.")))
                && !fed(k)
        })
        .map(|(k, at)| format!("{k} ({})", at.join(", ")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys the parser accepts that no ```toml block in README.md or docs/ names (add them, \
         commented out if need be, to docs/configuration.md):\n{undocumented:#?}"
    );
    assert!(
        unknown.is_empty(),
        "keys the docs name that the parser refuses:\n{unknown:#?}"
    );
}

#[test]
fn the_key_test_reads_keys_as_written() {
    let doc = "```toml\n[store]\nkind = \"dir\"   # or s3\n# kind = \"s3\"; bucket = \"b\"   # note\n\
               [directory.aliases]\ntable = \"t\"\n[[domain.step]]\nbreaker = { failures = 5, window_ms = 1 }\n\
               config = { text = \"x # y\" }\n```\n```toml\nconfig = { a = 1 }\n```\nnot = \"toml\"\n";
    let keys: Vec<String> = documented_keys(doc).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        keys,
        [
            "store",
            "store.kind",
            "store.kind",
            "store.bucket",
            "directory",
            "directory.*.table",
            "domain.step",
            "domain.step.breaker.failures",
            "domain.step.breaker.window_ms",
            "domain.step.breaker",
            "domain.step.config",
            "domain.step.config",
        ]
    );
    // The probe reads the parser's own list.
    let (_, step) = SECTIONS.iter().find(|(s, _)| *s == "domain.step").unwrap();
    let step = refused_probe(step);
    assert!(step.contains(&"timeout_ms".to_string()), "{step:?}");
}

#[test]
fn the_readme_config_example_parses() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.md has a ```toml example");
    let config = ConfigFile::parse("README.md", PathBuf::from("."), block.to_string())
        .unwrap_or_else(|e| panic!("README.md's config example: {e}"));
    assert_eq!(config.domains.len(), 1);
    assert_eq!(config.domains[0].get_ref().step.len(), 1);
}
