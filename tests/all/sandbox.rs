//! Sandbox properties: fresh instances per message, WASI rules' output captured, host
//! imports work.

use sluice_chain::StepStatus;
use sluice_tests::{chains, engine, envelope, fixture, message};

#[test]
fn wasi_rule_stdout_and_stderr_go_to_the_step_log() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-stdio}"
"#,
    );
    let step = &chains.chains()[0].steps[0];
    assert!(step.plugin.uses_wasi(), "stdio is built for wasm32-wasip2");
    let result = chains.process(
        engine(),
        message(&fixture("plain-lf.eml")),
        &envelope(&["bob@example.com"]),
    );
    let s = &result.groups[0].steps[0];
    assert_eq!(s.outcome, StepStatus::Ok, "{:?}", s.error);
    let find = |source: &str, text: &str| {
        s.logs
            .iter()
            .any(|l| l.source == source && l.text.contains(text))
    };
    assert!(find("stdout", "stdio rule stdout line"), "{:?}", s.logs);
    assert!(find("stderr", "stdio rule stderr line"), "{:?}", s.logs);
}

#[test]
fn rules_built_for_wasm32_unknown_import_no_wasi() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:banner}"
config = { text = "External" }
[[domain.step]]
plugin = "{rule:junk}"
"#,
    );
    for step in &chains.chains()[0].steps {
        assert!(!step.plugin.uses_wasi(), "{} imports WASI", step.name);
    }
}

#[test]
fn nothing_survives_into_the_next_message() {
    // `rule-counter` keeps a static counter and reports it; a fresh instance per message
    // means it always reports 1.
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-counter}"
"#,
    );
    for _ in 0..3 {
        let result = chains.process(
            engine(),
            message(&fixture("plain-lf.eml")),
            &envelope(&["bob@example.com"]),
        );
        let actions = &result.groups[0].steps[0].actions;
        assert_eq!(
            actions,
            &vec![sluice_engine::Action::AddHeader(sluice_engine::Header {
                name: "X-Count".into(),
                value: "1".into()
            })]
        );
    }
}

/// The `X-Count` the counter rule reported for each message, running `n` messages to each
/// of `recipients` in turn.
fn counts(chains: &sluice_chain::RuleChains, recipients: &[&str], n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        for rcpt in recipients {
            let result = chains.process(
                engine(),
                message(&fixture("plain-lf.eml")),
                &envelope(&[rcpt]),
            );
            let step = &result.groups[0].steps[0];
            match step.actions.as_slice() {
                [sluice_engine::Action::AddHeader(h)] if h.name == "X-Count" => {
                    seen.push(h.value.clone())
                }
                other => panic!("{rcpt}: {other:?} ({:?})", step.error),
            }
        }
    }
    seen
}

#[test]
fn a_warm_instance_carries_its_memory_into_the_next_message() {
    let warm = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-counter}"
instances = "warm"
"#,
    );
    assert_eq!(counts(&warm, &["bob@example.com"], 4), ["1", "2", "3", "4"]);
    let pool = warm.chains()[0].steps[0].warm.as_ref().unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.created, stats.reused, stats.idle),
        (1, 3, 1),
        "{stats:?}"
    );

    // Replaced after max_messages.
    let bounded = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-counter}"
instances = "warm"
warm = { max_messages = 2 }
"#,
    );
    assert_eq!(
        counts(&bounded, &["bob@example.com"], 5),
        ["1", "2", "1", "2", "1"]
    );
}

#[test]
fn warm_instances_are_never_shared_between_domains_or_configs() {
    let config = r#"
[[domain]]
name = "a.example"
[[domain.step]]
plugin = "{rule:rule-counter}"
instances = "warm"
[[domain]]
name = "b.example"
[[domain.step]]
plugin = "{rule:rule-counter}"
instances = "warm"
"#;
    let first = chains(config);
    assert_eq!(
        counts(&first, &["x@a.example", "x@b.example"], 2),
        ["1", "1", "2", "2"]
    );
    // The same config loaded again (a reload) starts from fresh instances.
    let reloaded = chains(config);
    assert_eq!(counts(&reloaded, &["x@a.example"], 1), ["1"]);
    assert_eq!(counts(&first, &["x@a.example"], 1), ["3"]);
}

#[test]
fn a_warm_instance_that_traps_or_overruns_is_thrown_away() {
    for rule in ["rule-trap", "rule-spin"] {
        let chains = chains(&format!(
            r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:{rule}}}"
instances = "warm"
timeout_ms = 20
"#
        ));
        for _ in 0..3 {
            let result = chains.process(
                engine(),
                message(&fixture("plain-lf.eml")),
                &envelope(&["bob@example.com"]),
            );
            let step = &result.groups[0].steps[0];
            assert_ne!(step.outcome, StepStatus::Ok, "{rule}");
        }
        let stats = chains.chains()[0].steps[0].warm.as_ref().unwrap().stats();
        assert_eq!(
            (stats.created, stats.reused, stats.discarded, stats.idle),
            (3, 0, 3, 0),
            "{rule}: {stats:?}"
        );
    }
}

#[test]
fn reader_sees_the_message_through_the_accessors() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-reader}"
config = { note = "hi" }
"#,
    );
    let raw = fixture("alternative-attachment.eml");
    let mut env = envelope(&["bob@example.com", "carol@example.com"]);
    env.verdicts.spf = sluice_engine::Verdict::Pass;
    let result = chains.process(engine(), message(&raw), &env);
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{:?}", step.error);
    let seen = |name: &str| -> String {
        step.actions
            .iter()
            .find_map(|a| match a {
                sluice_engine::Action::AddHeader(h) if h.name.eq_ignore_ascii_case(name) => {
                    Some(h.value.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {name} in {:?}", step.actions))
    };
    assert_eq!(seen("X-Seen-Subject"), "Lunch menu");
    assert_eq!(seen("X-Seen-From"), "alice@outside.example");
    assert_eq!(seen("X-Seen-Size"), raw.len().to_string());
    assert_eq!(seen("X-Seen-Raw-Len"), raw.len().to_string());
    assert!(seen("X-Seen-Attachments").contains("menu.pdf"));
    assert!(seen("X-Seen-Attachments").contains("application/pdf"));
    assert!(seen("X-Seen-Recipients").contains("carol@example.com"));
    assert_eq!(seen("X-Seen-Domain"), "example.com");
    assert_eq!(seen("X-Seen-Spf").to_ascii_lowercase(), "pass");
    assert!(seen("X-Seen-Config").contains("\"note\""));
    // header-names (0.1.1): distinct, in order of first appearance.
    let names = seen("X-Seen-Distinct-Header-Names");
    assert!(
        names.starts_with("Received,DKIM-Signature,From,To,Subject"),
        "{names}"
    );
    assert_eq!(names.matches("Content-Type").count(), 1, "{names}");
}

#[test]
fn a_rule_built_against_0_1_0_still_loads_and_runs() {
    // Built from wit/released/sluice-rules-0.1.0.wit; today's host serves a later 0.1.x.
    let path = sluice_tests::rule("rule-legacy");
    let bytes = std::fs::read(&path).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("sluice:rules/types@0.1.0"),
        "the rule imports the 0.1.0 interfaces"
    );
    let current =
        std::fs::read_to_string(sluice_tests::workspace_root().join("wit/rules.wit")).unwrap();
    assert!(
        !current.contains("package sluice:rules@0.1.0;"),
        "the interface has grown since 0.1.0"
    );
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-legacy}"
"#,
    );
    let result = chains.process(
        engine(),
        message(&fixture("plain-lf.eml")),
        &envelope(&["bob@example.com"]),
    );
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{:?}", step.error);
    assert_eq!(
        step.actions,
        vec![sluice_engine::Action::AddHeader(sluice_engine::Header {
            name: "X-Legacy-Rule".into(),
            value: "0.1.0 saw Quick question".into()
        })]
    );
}
