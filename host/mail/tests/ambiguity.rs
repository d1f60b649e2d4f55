//! Input two readers can read differently, checked from the outside with two readers that are
//! not mail-parser: the strict splitter (`sluice_mail::strict`, RFC 2046 by the letter) and,
//! when a Python is found, Python's `email` (`tests/support/email_reading.py`).
//!
//! The rule under test: a bare CR in a header block is read as a line break before the parse
//! (every reader then sees the same parts), anything else ambiguous is declined
//! (`EditError::Ambiguous`, the original delivered). So for every input, a banner edit either
//! is declined, or gives an output in which
//! - the strict reading finds nothing ambiguous,
//! - the strict part tree is the input's (as read), every part that is not displayed text is
//!   byte-identical, and every displayed text part shows the banner;
//! - Python sees no non-text part changed, keeps the displayed body, and shows the banner.
//!
//! Over the fixtures in `tests/fixtures/ambiguous/` (one per kind of ambiguity), the shared
//! corpus (`${SLUICE_CORPUS:-../shared/corpus}/eml`, relative to the workspace root) and
//! mutants of it (a bare CR for a header line break, a delimiter pulled into the line before,
//! a close delimiter given twice, a delimiter line with a suffix).

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_mail::strict::{self, StrictTree};
use sluice_mail::{apply_edits, Banner, BannerFallback, Edit, EditError, Message, Position};

const BANNER: &str = "CAUTION: external sender";

fn edits() -> Vec<Edit> {
    vec![
        Edit::AddBanner(Banner {
            text: BANNER.into(),
            html: Some(format!("<p>{BANNER}</p>")),
            position: Position::Top,
        }),
        Edit::AddHeader {
            name: "X-Sluice".into(),
            value: "checked".into(),
        },
    ]
}

/// What happened to one input.
#[derive(Debug)]
enum Outcome {
    Applied(Vec<u8>),
    Declined(String),
    /// Refused for another reason (broken base64 in a text part, ...): delivered unchanged.
    Refused(String),
}

fn run(raw: &[u8]) -> (Message, Outcome) {
    let msg = Message::parse(raw.to_vec()).expect("parses");
    let outcome = match apply_edits(&msg, &edits(), BannerFallback::Wrap) {
        Ok(out) => Outcome::Applied(out),
        Err(EditError::Ambiguous(why)) => Outcome::Declined(why),
        Err(e) => Outcome::Refused(e.to_string()),
    };
    (msg, outcome)
}

fn is_wrap(out: &StrictTree, out_bytes: &[u8], input: &[u8]) -> bool {
    let types: Vec<&str> = out.parts.iter().map(|p| p.content_type.as_str()).collect();
    types == ["multipart/mixed", "text/plain", "message/rfc822"]
        && out_bytes[out.parts[2].body.clone()].starts_with(input)
}

/// The invariant, by the strict reading; `Err` says what broke.
fn strict_check(msg: &Message, out: &[u8]) -> Result<(), String> {
    let read = msg.read_bytes();
    // Sluice's reading differs from the bytes received only in line breaks.
    let no_breaks = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect()
    };
    if no_breaks(read) != no_breaks(msg.raw()) {
        return Err(
            "the bytes read differ from the bytes received in more than line breaks".into(),
        );
    }
    let (before, after) = (strict::split(read), strict::split(out));
    let new_ambiguity = after
        .ambiguities
        .iter()
        .find(|a| !before.ambiguities.contains(a) && !a.is_bare_cr());
    if let Some(a) = new_ambiguity.or_else(|| after.ambiguities.iter().find(|a| !a.is_bare_cr())) {
        return Err(format!("the output is ambiguous: {a}"));
    }
    if is_wrap(&after, out, read) {
        return if before.leaves().any(|(_, p)| p.is_displayed_text()) {
            Err("wrapped a message that has displayed text".into())
        } else {
            Ok(())
        };
    }
    if before.parts.len() != after.parts.len() {
        return Err(format!(
            "{} parts instead of {}",
            after.parts.len(),
            before.parts.len()
        ));
    }
    for (id, (b, a)) in before.parts.iter().zip(&after.parts).enumerate() {
        if b.content_type != a.content_type || b.children != a.children {
            return Err(format!(
                "part {id} is {} {:?} instead of {} {:?}",
                a.content_type, a.children, b.content_type, b.children
            ));
        }
        if b.children.is_some() {
            continue;
        }
        if b.is_displayed_text() {
            if !a.is_displayed_text() {
                return Err(format!("text part {id} is no longer displayed"));
            }
        } else if read[b.body.clone()] != out[a.body.clone()] {
            return Err(format!(
                "part {id} ({}) is not displayed text but changed",
                b.content_type
            ));
        }
    }
    let shown = Message::parse(out.to_vec()).map_err(|e| e.to_string())?;
    let text = shown.text_body(0).unwrap_or_default() + &shown.html_body(0).unwrap_or_default();
    if before.leaves().any(|(_, p)| p.is_displayed_text()) && !text.contains(BANNER) {
        return Err("the displayed text has no banner".into());
    }
    Ok(())
}

/// `$SLUICE_PYTHON`, else the workspace's `.venv/bin/python`, else `python3`, if it runs.
fn python() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("SLUICE_PYTHON").map(PathBuf::from),
        Some(workspace.join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .arg("-c")
            .arg("import email.policy")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Python's verdicts on (input, output) pairs: the names of the pairs with problems, and why.
fn python_problems(pairs: &[(String, Vec<u8>, Vec<u8>)]) -> Option<Vec<String>> {
    let Some(python) = python() else {
        println!("no python found (set SLUICE_PYTHON): the check with Python's email skipped");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("sluice-ambiguity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = Vec::new();
    for (n, (_, input, output)) in pairs.iter().enumerate() {
        let (a, b) = (dir.join(format!("{n}.in")), dir.join(format!("{n}.out")));
        std::fs::write(&a, input).unwrap();
        std::fs::write(&b, output).unwrap();
        args.extend([a, b]);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/email_reading.py");
    let out = Command::new(python)
        .arg(script)
        .arg(BANNER)
        .args(&args)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), pairs.len());
    Some(
        verdicts
            .iter()
            .zip(pairs)
            .filter(|(v, _)| v["problems"].as_array().is_some_and(|p| !p.is_empty()))
            .map(|(v, (name, _, _))| format!("{name}: {}", v["problems"]))
            .collect(),
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ambiguous")
            .join(name),
    )
    .unwrap()
}

#[test]
fn each_kind_of_ambiguity_is_normalised_or_declined() {
    // (fixture, None = edited after normalising, Some(reason) = declined with that reason)
    let cases = [
        ("bare-cr-part-header.eml", None),
        ("bare-cr-top-header.eml", None),
        ("utf8-label-latin1.eml", None),
        ("mid-line-close.eml", Some("in the middle of a line")),
        ("duplicated-close.eml", Some("after its close delimiter")),
        ("delimiter-suffix.eml", Some("goes on with other text")),
    ];
    let mut pairs = Vec::new();
    for (name, declined) in cases {
        let raw = fixture(name);
        let (msg, outcome) = run(&raw);
        match (outcome, declined) {
            (Outcome::Applied(out), None) => {
                if let Err(why) = strict_check(&msg, &out) {
                    panic!("{name}: {why}\n{}", String::from_utf8_lossy(&out));
                }
                pairs.push((name.to_owned(), raw, out));
            }
            (Outcome::Declined(why), Some(reason)) => {
                assert!(why.contains(reason), "{name}: {why}");
                let err = apply_edits(&msg, &edits(), BannerFallback::Wrap).unwrap_err();
                assert!(
                    err.to_string()
                        .starts_with("edits declined: the message can be read two ways ("),
                    "{name}: {err}"
                );
            }
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
    // The bare CRs were read as line breaks: the PDF is a PDF and the top-level multipart a
    // multipart, for Sluice as for everyone else.
    let pdf = Message::parse(fixture("bare-cr-part-header.eml")).unwrap();
    assert_eq!(pdf.normalised_bare_crs(), 1);
    assert_eq!(pdf.attachments()[0].content_type, "application/pdf");
    let photos = Message::parse(fixture("bare-cr-top-header.eml")).unwrap();
    assert_eq!(photos.subject().as_deref(), Some("photos"));
    assert_eq!(photos.attachments()[0].content_type, "image/png");
    assert_eq!(photos.raw(), fixture("bare-cr-top-header.eml"));
    if let Some(problems) = python_problems(&pairs) {
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

/// Line ranges of `raw`: (start, end of text, end with the line break).
fn lines(raw: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let lf = raw[pos..].iter().position(|&b| b == b'\n');
        let next = lf.map_or(raw.len(), |i| pos + i + 1);
        let mut end = lf.map_or(raw.len(), |i| pos + i);
        if end > pos && raw[end - 1] == b'\r' {
            end -= 1;
        }
        out.push((pos, end, next));
        pos = next;
    }
    out
}

/// The mutants of one message: each a (kind, bytes) pair, at most a few of each kind.
fn mutants(raw: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let tree = strict::split(raw);
    let lines = lines(raw);
    let splice = |at: std::ops::Range<usize>, with: &[u8]| {
        let mut m = raw[..at.start].to_vec();
        m.extend_from_slice(with);
        m.extend_from_slice(&raw[at.end..]);
        m
    };
    let mut out = Vec::new();
    // A bare CR for the line break after a header line (not the last one of the block), in up
    // to three header blocks.
    for part in tree.parts.iter().take(3) {
        let in_block: Vec<_> = lines
            .iter()
            .filter(|l| l.0 >= part.header.start && l.2 <= part.header.end)
            .collect();
        for l in in_block
            .iter()
            .take(in_block.len().saturating_sub(1))
            .take(2)
        {
            out.push(("bare CR", splice(l.1..l.2, b"\r")));
        }
    }
    // Delimiter lines: the lines right after a line break that start with `--` and lie in a
    // multipart's body.
    let multiparts: Vec<_> = tree.parts.iter().filter(|p| p.children.is_some()).collect();
    let delimiters: Vec<_> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            raw[l.0..l.1].starts_with(b"--") && multiparts.iter().any(|m| m.body.contains(&l.0))
        })
        .take(3)
        .collect();
    for &(i, l) in &delimiters {
        if i > 0 {
            // Pulled into the line before.
            out.push(("delimiter mid-line", splice(lines[i - 1].1..l.0, b"")));
        }
        // Given twice.
        out.push(("delimiter twice", splice(l.0..l.0, &raw[l.0..l.2])));
        // With a suffix.
        out.push(("delimiter suffix", splice(l.1..l.1, b"x")));
    }
    out
}

#[test]
fn corpus_and_its_mutants_keep_every_part_for_every_reader() {
    let Some(corpus) = sluice_corpus::corpus_dir("the ambiguity checks over the corpus") else {
        return;
    };
    let mut inputs = Vec::new();
    for path in sluice_corpus::corpus_files(&corpus, "eml", "eml") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&path).unwrap();
        for (n, (kind, m)) in mutants(&raw).into_iter().enumerate() {
            inputs.push((format!("{name} mutant {n} ({kind})"), m));
        }
        inputs.push((name, raw));
    }
    let (mut applied, mut normalised, mut refused) = (0, 0, 0);
    let mut declined: std::collections::BTreeMap<String, usize> = Default::default();
    let mut pairs = Vec::new();
    let mut failures = Vec::new();
    for (name, raw) in inputs.iter().filter(|(_, r)| !r.is_empty()) {
        let Ok(msg) = Message::parse(raw.clone()) else {
            continue;
        };
        let (_, outcome) = run(raw);
        match outcome {
            Outcome::Applied(out) => {
                applied += 1;
                normalised += usize::from(msg.normalised_bare_crs() > 0);
                if let Err(why) = strict_check(&msg, &out) {
                    failures.push(format!("{name}: {why}"));
                }
                pairs.push((name.clone(), raw.clone(), out));
            }
            Outcome::Declined(why) => {
                if !name.contains("mutant") {
                    println!("  declined: {name}: {why}");
                }
                // The input's kind and the reason's, without part numbers and offsets.
                let input = name
                    .split_once(" (")
                    .map_or("real", |(_, k)| k.trim_end_matches(')'));
                let mut reason = String::new();
                for c in why.split(';').next().unwrap_or_default().chars() {
                    match c {
                        '0'..='9' if reason.ends_with('N') => {}
                        '0'..='9' => reason.push('N'),
                        c => reason.push(c),
                    }
                }
                let reason = reason
                    .replace("parts [N, N, N, N]", "parts [..]")
                    .replace("parts [N, N, N]", "parts [..]")
                    .replace("parts [N, N]", "parts [..]")
                    .replace(", byte N", "");
                *declined
                    .entry(format!("{input:>18}: {reason}"))
                    .or_default() += 1;
            }
            Outcome::Refused(why) => {
                println!("  refused: {name}: {why}");
                refused += 1;
            }
        }
    }
    let real = inputs.iter().filter(|(n, _)| !n.contains("mutant")).count();
    println!(
        "ambiguity: {real} corpus messages + {} mutants: {applied} edited ({normalised} after reading bare CRs as line breaks), {} declined, {refused} refused otherwise",
        inputs.len() - real,
        declined.values().sum::<usize>()
    );
    for (kind, n) in &declined {
        println!("  declined {n:4}: {kind}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    if let Some(problems) = python_problems(&pairs) {
        println!(
            "python email: {} edited outputs checked, {} with a problem",
            pairs.len(),
            problems.len()
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
