//! One rule, three languages: `plugins/subject-tag` in Rust, JavaScript (componentize-js) and
//! Python (componentize-py), run over every corpus message with the same config, must return
//! identical actions and produce identical output bytes. And the granted capabilities from
//! JavaScript and Python: the probe rules of `tests/foreign-rules/` call `lookup.get` and
//! `http.send` in the host.

use sluice_chain::StepStatus;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_chain::{Disposition, GroupOutcome, OnError, ProcessResult, RuleChains};
use sluice_engine::{Action, HttpResult, LookupResult, RuleRuntime, Verdict};
use sluice_tests::classifier::Classifier;
use sluice_tests::{
    corpus_dir, engine, envelope, fixtures, foreign_rules as foreign_builds, message, output_of,
    probe_rules, process, rule,
};

fn chains_for(plugin: &std::path::Path) -> RuleChains {
    sluice_tests::chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = {plugin:?}
on_error = "tempfail"
timeout_ms = 10000
memory_mb = 256
config = {{ tag = "[EXT]", internal_domains = ["example.com", "Sender.example"], keywords = ["invoice", "Password", "meeting", "unsubscribe"], keyword_folder = "Review" }}
"#,
        plugin = plugin.display().to_string()
    ))
}

/// The messages: the shared corpus (when it is there) and this repo's fixtures, which include
/// one with the rule's keywords.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut dirs = vec![fixtures()];
    match corpus_dir() {
        Some(corpus) => dirs.push(corpus.join("eml")),
        None => println!("corpus not found (set SLUICE_CORPUS): comparing on tests/fixtures only"),
    }
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
        })
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn run(chains: &RuleChains, raw: &[u8], i: usize) -> ProcessResult {
    let mut env = envelope(&["bob@example.com"]);
    // Vary the verdicts so the banner branch runs on some messages and not on others.
    if i % 2 == 1 {
        env.verdicts.spf = Verdict::Fail;
        env.verdicts.dkim = Verdict::Fail;
    } else {
        env.verdicts.spf = Verdict::Pass;
        env.verdicts.dmarc = Verdict::Gray;
    }
    chains.process(engine(), message(raw), &env)
}

#[test]
fn subject_tag_is_the_same_rule_in_rust_javascript_and_python() {
    let mut langs: Vec<(String, RuleChains)> =
        vec![("rust".to_string(), chains_for(&rule("subject-tag")))];
    for (name, path) in foreign_builds() {
        langs.push((name.clone(), chains_for(path)));
    }
    assert_eq!(
        langs.len(),
        3,
        "expected three builds: {:?}",
        foreign_builds()
    );
    // The host tells the runtimes apart (their default limits differ).
    let runtimes: Vec<RuleRuntime> = langs
        .iter()
        .map(|(_, c)| c.chains()[0].steps[0].plugin.runtime())
        .collect();
    assert_eq!(
        runtimes,
        [
            RuleRuntime::Native,
            RuleRuntime::JavaScript,
            RuleRuntime::Python
        ]
    );
    let messages = messages();
    assert!(!messages.is_empty());
    let (mut tagged, mut filed, mut bannered) = (0, 0, 0);
    for (i, (name, raw)) in messages.iter().enumerate() {
        let mut reference: Option<(String, Vec<u8>)> = None;
        for (lang, chains) in &langs {
            let result = run(chains, raw, i);
            let step = &result.groups[0].steps[0];
            assert_eq!(
                step.outcome,
                StepStatus::Ok,
                "{lang} on {name}: {:?} {:?}",
                step.error,
                step.logs
            );
            let actions = serde_json::to_string(&step.actions).unwrap();
            let output = output_of(&result, 0, raw);
            match &reference {
                None => {
                    tagged += usize::from(!step.actions.is_empty());
                    filed += usize::from(actions.contains("FileInto"));
                    bannered += usize::from(actions.contains("AddBanner"));
                    reference = Some((actions, output));
                }
                Some((want_actions, want_output)) => {
                    assert_eq!(
                        &actions, want_actions,
                        "{lang} disagrees with rust on {name}"
                    );
                    assert!(
                        &output == want_output,
                        "{lang} output bytes differ from rust's on {name}"
                    );
                }
            }
        }
    }
    // The comparison is only worth something if every branch of the rule ran.
    assert!(
        tagged > 0 && filed > 0 && bannered > 0,
        "{tagged} {filed} {bannered}"
    );
    println!(
        "{} messages: {tagged} tagged, {filed} filed by keyword, {bannered} bannered; rust, javascript and python agree",
        messages.len()
    );
}

// ---------------------------------------------------------------------------------------
// The granted capabilities from JavaScript and Python: `tests/foreign-rules/probe-js` and
// `probe-python` call `lookup.get` and `http.send` for real, against a file directory and the
// loopback classifier.

/// The alias the probes look up, and the value the file directory answers for it.
const PROBE_KEY: &str = "info@example.com";
const PROBE_VALUE: &str = r#"{"status":"active","to":["alice@example.com"]}"#;

/// One config, one domain per case, so that each probe is compiled once per test (loading a
/// chain compiles its components, and a Python component takes a while):
///
/// - `granted.example`: the table and the classifier's `/v1/` granted;
/// - `missing.example`: the same, asking for a key the table lacks;
/// - `no-http.example`: the table granted, no `http` line, `on_error = "bounce"`;
/// - `no-lookup.example`: no `lookups` line, the classifier granted;
/// - `down.example`: `http://127.0.0.1:1/v1/` granted and called (nothing listens there),
///   `on_error = "bounce"`.
fn probe_chains(plugin: &Path, aliases: &Path, service: &Classifier) -> RuleChains {
    let allow = |prefix: &str| format!(r#"http = {{ allow = ["{prefix}"] }}"#);
    let granted = allow(&service.url("/v1/"));
    let down = allow("http://127.0.0.1:1/v1/");
    let score = service.url("/v1/score");
    let cases = [
        (
            "granted.example",
            true,
            granted.as_str(),
            PROBE_KEY,
            score.as_str(),
            "continue",
        ),
        (
            "missing.example",
            true,
            granted.as_str(),
            "nobody@example.com",
            score.as_str(),
            "continue",
        ),
        (
            "no-http.example",
            true,
            "",
            PROBE_KEY,
            score.as_str(),
            "bounce",
        ),
        (
            "no-lookup.example",
            false,
            granted.as_str(),
            PROBE_KEY,
            score.as_str(),
            "continue",
        ),
        (
            "down.example",
            true,
            down.as_str(),
            PROBE_KEY,
            "http://127.0.0.1:1/v1/score",
            "bounce",
        ),
    ];
    let mut toml = format!(
        "[directory.aliases]\nkind = \"file\"\npath = {:?}\n",
        aliases.display().to_string()
    );
    for (domain, lookups, http, key, url, on_error) in cases {
        let lookups = if lookups {
            r#"lookups = ["aliases"]"#
        } else {
            ""
        };
        toml.push_str(&format!(
            r#"
[[domain]]
name = "{domain}"
[[domain.step]]
plugin = {plugin:?}
name = "probe"
on_error = "{on_error}"
timeout_ms = 10000
memory_mb = 256
{lookups}
{http}
config = {{ table = "aliases", key = "{key}", url = "{url}" }}
"#,
            plugin = plugin.display().to_string(),
        ));
    }
    sluice_tests::chains(&toml)
}

fn header<'a>(actions: &'a [Action], name: &str) -> Option<&'a str> {
    actions.iter().find_map(|a| match a {
        Action::AddHeader(h) if h.name == name => Some(h.value.as_str()),
        _ => None,
    })
}

/// Runs `plain-lf.eml` (Subject "Quick question") for `bob@<domain>`.
fn probe(chains: &RuleChains, domain: &str) -> ProcessResult {
    let result = process(chains, "plain-lf.eml", &[&format!("bob@{domain}")]);
    assert_eq!(result.groups.len(), 1, "{result:#?}");
    assert_eq!(result.groups[0].domain, domain);
    result
}

/// The built probe rule of `lang` (`tests/foreign-rules/probe-LANG`).
fn probe_rule(lang: &str) -> &'static Path {
    probe_rules()
        .iter()
        .find(|(name, _)| name == &format!("probe-{lang}"))
        .map(|(_, path)| path.as_path())
        .unwrap_or_else(|| panic!("no probe-{lang} in {:?}", probe_rules()))
}

fn the_probe_calls_lookup_and_http(lang: &str, runtime: RuleRuntime) {
    let plugin = probe_rule(lang);
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases.toml");
    std::fs::write(
        &aliases,
        format!(
            "[settings]\ndomains = [\"example.com\"]\n[aliases]\n\"{PROBE_KEY}\" = {{ to = [\"alice@example.com\"] }}\n"
        ),
    )
    .unwrap();
    let service = Classifier::start();
    let started = Instant::now();
    let chains = probe_chains(plugin, &aliases, &service);
    println!(
        "{lang}: chains loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(chains.chains()[0].steps[0].plugin.runtime(), runtime);
    let sent = r#"{"subject":"Quick question"}"#.to_string();
    let answer = r#"{"verdict":"spam"}"#;

    // Granted both: the value and the service's answer come back to the rule.
    let result = probe(&chains, "granted.example");
    let group = &result.groups[0];
    let step = &group.steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{lang}: {step:#?}");
    assert_eq!(
        header(&step.actions, "X-Probe-Lookup"),
        Some(PROBE_VALUE),
        "{lang}"
    );
    assert_eq!(
        header(&step.actions, "X-Probe-Status"),
        Some("200"),
        "{lang}"
    );
    assert_eq!(
        header(&step.actions, "X-Probe-Body"),
        Some(answer),
        "{lang}"
    );
    assert_eq!(step.lookups.len(), 1, "{lang}: {step:#?}");
    let lookup = &step.lookups[0];
    assert_eq!(
        (lookup.table.as_str(), lookup.key.as_str(), &lookup.result),
        ("aliases", PROBE_KEY, &LookupResult::Found),
        "{lang}"
    );
    assert_eq!(step.http.len(), 1, "{lang}: {step:#?}");
    let call = &step.http[0];
    assert_eq!(
        (call.method.as_str(), call.url.as_str(), &call.result),
        (
            "POST",
            service.url("/v1/score").as_str(),
            &HttpResult::Answered {
                status: 200,
                bytes: answer.len()
            }
        ),
        "{lang}"
    );
    assert_eq!(
        service.seen(),
        [("POST".to_string(), "/v1/score".to_string(), sent.clone())],
        "{lang}: the classifier got the rule's request as sent"
    );
    assert_eq!(group.outcome, GroupOutcome::Done, "{lang}");

    // A key the table lacks: no value (not an error), and the call still goes out.
    let result = probe(&chains, "missing.example");
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{lang}: {step:#?}");
    assert_eq!(
        header(&step.actions, "X-Probe-Lookup"),
        Some("none"),
        "{lang}"
    );
    assert_eq!(step.lookups[0].result, LookupResult::Missing, "{lang}");
    assert_eq!(
        header(&step.actions, "X-Probe-Status"),
        Some("200"),
        "{lang}"
    );
    assert_eq!(service.seen().len(), 2, "{lang}");

    // No `http` line: the call fails inside the rule, which rethrows it: a permanent rule
    // error, so `bounce` bounces. Nothing reaches the service.
    let result = probe(&chains, "no-http.example");
    let group = &result.groups[0];
    let step = &group.steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError, "{lang}: {step:#?}");
    let error = step.error.as_deref().unwrap_or_default();
    assert!(error.contains("not granted"), "{lang}: {error}");
    assert_eq!(step.lookups[0].result, LookupResult::Found, "{lang}");
    assert_eq!(step.http.len(), 1, "{lang}: {step:#?}");
    assert_eq!(step.http[0].result, HttpResult::Denied, "{lang}");
    assert_eq!(step.policy, Some(OnError::Bounce), "{lang}: permanent");
    assert_eq!(group.outcome, GroupOutcome::Done, "{lang}");
    assert!(
        matches!(
            &group.dispositions[..],
            [Disposition::Bounce { recipient, code: 554, status, .. }]
                if recipient == "bob@no-http.example" && status == "5.3.0"
        ),
        "{lang}: {:#?}",
        group.dispositions
    );
    assert_eq!(service.seen().len(), 2, "{lang}: nothing more was sent");

    // No `lookups` line: the lookup fails inside the rule, which rethrows it before calling
    // the service.
    let result = probe(&chains, "no-lookup.example");
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError, "{lang}: {step:#?}");
    let error = step.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("not granted") && error.contains(r#"lookups = ["aliases"]"#),
        "{lang}: {error}"
    );
    assert_eq!(step.lookups[0].result, LookupResult::Denied, "{lang}");
    assert!(step.http.is_empty(), "{lang}: {step:#?}");
    assert_eq!(step.policy, Some(OnError::Continue), "{lang}");
    assert_eq!(service.seen().len(), 2, "{lang}: nothing more was sent");

    // Nothing listens at the granted address: a temporary error, which the SDK hands back
    // as temporary, so under `bounce` the message is retried, not bounced.
    let result = probe(&chains, "down.example");
    let group = &result.groups[0];
    let step = &group.steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError, "{lang}: {step:#?}");
    assert_eq!(step.http.len(), 1, "{lang}: {step:#?}");
    assert!(
        matches!(
            step.http[0].result,
            HttpResult::Failed {
                temporary: true,
                ..
            }
        ),
        "{lang}: {:?}",
        step.http[0]
    );
    assert_eq!(
        step.policy,
        Some(OnError::Tempfail),
        "{lang}: the rule error lost `temporary`: {step:#?}"
    );
    assert!(
        matches!(group.outcome, GroupOutcome::Tempfail { .. }),
        "{lang}: {group:#?}"
    );
    assert!(group.dispositions.is_empty(), "{lang}: {group:#?}");
}

#[test]
fn a_javascript_rule_calls_lookup_and_http() {
    the_probe_calls_lookup_and_http("js", RuleRuntime::JavaScript);
}

#[test]
fn a_python_rule_calls_lookup_and_http() {
    the_probe_calls_lookup_and_http("python", RuleRuntime::Python);
}

/// `replace-part` and `msg.parts()` from JavaScript and Python (WIT 0.2.1): the probe strips
/// the executable of `plugins/attachments/fixtures/strip-exe.eml`; the output, read by an
/// independent parser (mailparse), has the note where the program was, the text part and
/// every header as before, and none of the program's bytes.
fn the_probe_strips_a_part(lang: &str) {
    let plugin = probe_rule(lang);
    let chains = sluice_tests::chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = {plugin:?}
timeout_ms = 10000
memory_mb = 256
config = {{ strip = true }}
"#,
        plugin = plugin.display().to_string()
    ));
    let raw = std::fs::read(
        sluice_tests::workspace_root().join("plugins/attachments/fixtures/strip-exe.eml"),
    )
    .unwrap();
    let result = chains.process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    let group = &result.groups[0];
    let step = &group.steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{lang}: {step:#?}");
    assert_eq!(
        header(&step.actions, "X-Probe-Parts"),
        Some("1:- 2:executable/pe"),
        "{lang}"
    );
    let out = output_of(&result, 0, &raw);
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("TVqQAAMAAAAEAAAA"),
        "{lang}: the program is still there:\n{text}"
    );
    let parsed = mailparse::parse_mail(&out).expect("the output parses");
    assert_eq!(parsed.subparts.len(), 2, "{lang}: {text}");
    assert_eq!(
        parsed.subparts[0].get_body().unwrap().trim(),
        "The invoice is attached.",
        "{lang}"
    );
    let note = &parsed.subparts[1];
    assert_eq!(note.ctype.mimetype, "text/plain", "{lang}: {text}");
    assert_eq!(
        note.get_body().unwrap().trim(),
        "invoice.exe was removed by the probe.",
        "{lang}"
    );
    // Below the rule's own header, everything above the replaced part is byte for byte what
    // came in.
    let cut = raw
        .windows(b"--mix-s1\nContent-Type: application".len())
        .position(|w| w == b"--mix-s1\nContent-Type: application")
        .expect("the fixture's second part");
    let added = b"X-Probe-Parts: 1:- 2:executable/pe\r\n";
    let rest = out.strip_prefix(&added[..]).or_else(|| {
        out.strip_prefix(&added[..added.len() - 2])
            .and_then(|r| r.strip_prefix(b"\n"))
    });
    assert!(
        rest.is_some_and(|r| r.starts_with(&raw[..cut])),
        "{lang}: {text}"
    );
}

#[test]
fn a_javascript_rule_strips_a_part() {
    the_probe_strips_a_part("js");
}

#[test]
fn a_python_rule_strips_a_part() {
    the_probe_strips_a_part("python");
}

/// `reply.send` from JavaScript and Python (WIT 0.2.1): the probe asks for an automatic answer
/// from the first recipient; the host plans it with the step's grant as the interval. Without
/// the grant the rule gets the host's error and the step fails.
fn the_probe_asks_for_a_reply(lang: &str) {
    let plugin = probe_rule(lang);
    let chains = |grant: &str| {
        sluice_tests::chains(&format!(
            r#"
[relay]
kind = "ses"
from = "forwarder@example.com"
markers = "unused-claims"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = {plugin:?}
timeout_ms = 10000
memory_mb = 256
{grant}
config = {{ reply = "Away until Monday." }}
"#,
            plugin = plugin.display().to_string()
        ))
    };
    let raw = sluice_tests::fixture("plain-lf.eml");
    let result = chains("reply = { once_per_days = 3 }").process(
        engine(),
        message(&raw),
        &envelope(&["bob@example.com"]),
    );
    let group = &result.groups[0];
    assert_eq!(group.steps[0].outcome, StepStatus::Ok, "{lang}: {group:#?}");
    assert_eq!(group.replies.len(), 1, "{lang}: {group:#?}");
    let planned = &group.replies[0];
    assert_eq!(planned.from, "bob@example.com", "{lang}");
    assert_eq!(planned.request.text, "Away until Monday.", "{lang}");
    assert_eq!(
        planned.request.once_per_days, 3,
        "{lang}: the grant's interval"
    );

    let result = chains("").process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    let step = &result.groups[0].steps[0];
    assert!(result.groups[0].replies.is_empty(), "{lang}");
    assert!(
        step.error
            .as_deref()
            .is_some_and(|e| e.contains("reply is not granted")),
        "{lang}: {step:#?}"
    );
}

#[test]
fn a_javascript_rule_asks_for_a_reply() {
    the_probe_asks_for_a_reply("js");
}

#[test]
fn a_python_rule_asks_for_a_reply() {
    the_probe_asks_for_a_reply("python");
}
