//! The `alias` and `forward` rules (plugins/alias, plugins/forward), built to wasm from source
//! and run in the real host: what happens to each recipient.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_chain::{Disposition, ProcessResult, RuleChains};
use sluice_engine::Verdict;
use sluice_tests::{engine, envelope, message};

/// The built rules (alias and forward among them), from the shared test build.
fn mail_rules() -> &'static BTreeMap<String, PathBuf> {
    sluice_tests::rules()
}

/// Replaces `{alias}` and `{forward}` with the built components' paths.
fn expand(toml_text: &str) -> String {
    let mut out = toml_text.to_string();
    for (name, path) in mail_rules() {
        let path = path.display().to_string().replace('\\', "\\\\");
        out = out.replace(&format!("{{{name}}}"), &path);
    }
    out
}

fn try_chains(toml_text: &str) -> Result<RuleChains, sluice_chain::ConfigError> {
    let config =
        sluice_chain::ConfigFile::parse("test.toml", PathBuf::from("."), expand(toml_text))?;
    RuleChains::load(engine(), &config)
}

fn chains(toml_text: &str) -> RuleChains {
    try_chains(toml_text).unwrap_or_else(|e| panic!("config: {e}"))
}

const HELLO: &[u8] = b"From: Dave <dave@partner.example>\r\n\
To: info@example.com\r\n\
Subject: Hello\r\n\
Date: Wed, 03 Jan 2024 09:00:00 +0000\r\n\
Message-ID: <mail-rules@partner.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello there.\r\n";

fn run(chains: &RuleChains, recipients: &[&str]) -> ProcessResult {
    run_with(chains, recipients, Verdict::Unknown)
}

fn run_with(chains: &RuleChains, recipients: &[&str], spam: Verdict) -> ProcessResult {
    let mut env = envelope(recipients);
    env.verdicts.spam = spam;
    let result = chains.process(engine(), message(HELLO), &env);
    for g in &result.groups {
        for s in &g.steps {
            assert!(s.error.is_none(), "step {} failed: {:?}", s.step, s.error);
        }
    }
    result
}

fn dispositions(result: &ProcessResult) -> Vec<Disposition> {
    result
        .groups
        .iter()
        .flat_map(|g| g.dispositions.clone())
        .collect()
}

fn deliver(recipient: &str) -> Disposition {
    Disposition::Deliver {
        recipient: recipient.into(),
        folder: "INBOX".into(),
    }
}

fn relay(recipient: &str, from: Option<&str>, prefix: Option<&str>) -> Disposition {
    Disposition::Relay {
        recipient: recipient.into(),
        from: from.map(Into::into),
        subject_prefix: prefix.map(Into::into),
    }
}

fn bounce(recipient: &str, text: &str) -> Disposition {
    Disposition::Bounce {
        recipient: recipient.into(),
        code: 550,
        status: "5.1.1".into(),
        text: text.into(),
    }
}

fn drop(recipient: &str) -> Disposition {
    Disposition::Drop {
        recipient: recipient.into(),
    }
}

const ALIAS_STEP: &str = r#"
[[domain.step]]
plugin = "{alias}"
[domain.step.config]
mailboxes = ["alice", "bob", "carol"]
[domain.step.config.aliases]
info = ["alice", "bob@gmail.example"]
sales = "team"
team = ["alice", "carol"]
old = { to = ["carol"], status = "paused" }
noise = { status = "ignored" }
"#;

fn alias_chain() -> RuleChains {
    chains(&format!("[[domain]]\nname = \"example.com\"\n{ALIAS_STEP}"))
}

#[test]
fn alias_resolves_each_recipient_on_its_own() {
    let r = run(
        &alias_chain(),
        &[
            "info@example.com",
            "old@example.com",
            "noise@example.com",
            "nobody@example.com",
            "alice+news@example.com",
        ],
    );
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("alice@example.com"),
            relay("bob@gmail.example", None, None),
            bounce("old@example.com", "mailbox unavailable"),
            bounce("nobody@example.com", "no such user"),
            drop("noise@example.com"),
        ]
    );
    // The step logged one line per decision.
    let logs: Vec<&str> = r.groups[0].steps[0]
        .logs
        .iter()
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(logs.len(), 5, "{logs:?}");
    assert!(logs
        .iter()
        .any(|l| l.contains("old@example.com") && l.contains("paused")));
}

#[test]
fn alias_chains_and_tags_resolve_to_mailboxes() {
    let r = run(&alias_chain(), &["Sales@example.com", "Bob+x@Example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("alice@example.com"),
            deliver("carol@example.com"),
            deliver("bob@example.com"),
        ]
    );
}

#[test]
fn unknown_drop_and_catch_all() {
    let drop_unknown = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
config = { mailboxes = ["alice"], unknown = "drop", plus = "" }
"#,
    );
    let r = run(
        &drop_unknown,
        &[
            "alice@example.com",
            "alice+x@example.com",
            "who@example.com",
        ],
    );
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("alice@example.com"),
            drop("alice+x@example.com"),
            drop("who@example.com"),
        ]
    );

    let catch_all = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
config = { mailboxes = ["alice"], aliases = { "*" = ["alice", "archive@backup.example"] } }
"#,
    );
    let r = run(&catch_all, &["who@example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("alice@example.com"),
            relay("archive@backup.example", None, None),
        ]
    );
}

#[test]
fn everyone_refused_means_no_set_recipients() {
    let r = run(&alias_chain(), &["old@example.com", "nobody@example.com"]);
    assert!(r.groups[0].steps[0].actions.is_empty());
    assert_eq!(
        dispositions(&r),
        vec![
            bounce("old@example.com", "mailbox unavailable"),
            bounce("nobody@example.com", "no such user"),
        ]
    );
    assert!(r.groups[0].output.is_none(), "nothing to deliver");
}

const FORWARD_COPY: &str = r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{forward}"
config = { to = ["bob.personal@gmail.example"], from = "forwarder@example.com", subject_prefix = "[example] " }
"#;

#[test]
fn forward_copy_keeps_local_delivery() {
    let r = run(&chains(FORWARD_COPY), &["bob@example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("bob@example.com"),
            relay(
                "bob.personal@gmail.example",
                Some("forwarder@example.com"),
                Some("[example] ")
            ),
        ]
    );
}

#[test]
fn forward_skips_spam() {
    let r = run_with(&chains(FORWARD_COPY), &["bob@example.com"], Verdict::Fail);
    assert_eq!(dispositions(&r), vec![deliver("bob@example.com")]);
}

#[test]
fn forward_redirect_relays_only() {
    let c = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{forward}"
config = { to = ["bob.personal@gmail.example"], mode = "redirect" }
"#,
    );
    let r = run(&c, &["bob@example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![relay("bob.personal@gmail.example", None, None)]
    );
}

#[test]
fn forward_redirect_for_some_recipients_keeps_the_others() {
    let c = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{forward}"
config = { to = ["bob.personal@gmail.example"], mode = "redirect", recipients = ["bob"] }
"#,
    );
    let r = run(&c, &["alice@example.com", "bob@example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("alice@example.com"),
            relay("bob.personal@gmail.example", None, None),
            drop("bob@example.com"),
        ]
    );
}

#[test]
fn alias_then_forward_in_one_domain() {
    // The alias step normalises `bob+x@` to `bob@`, so the forward's filter sees bob.
    let c = chains(&format!(
        r#"
[[domain]]
name = "example.com"
{ALIAS_STEP}
[[domain.step]]
plugin = "{{forward}}"
config = {{ to = ["bob.personal@gmail.example"], subject_prefix = "[fwd] ", recipients = ["bob@example.com"] }}
"#
    ));
    let r = run(
        &c,
        &[
            "bob+x@example.com",
            "sales@example.com",
            "nobody@example.com",
        ],
    );
    assert_eq!(
        r.groups[0]
            .steps
            .iter()
            .map(|s| &*s.step)
            .collect::<Vec<_>>(),
        ["alias", "forward"]
    );
    assert_eq!(
        dispositions(&r),
        vec![
            deliver("bob@example.com"),
            deliver("alice@example.com"),
            deliver("carol@example.com"),
            relay("bob.personal@gmail.example", None, Some("[fwd] ")),
            bounce("nobody@example.com", "no such user"),
        ]
    );

    // Mail only for sales@ resolves to alice and carol: nothing for the forward to do.
    let r = run(&c, &["sales@example.com"]);
    assert_eq!(
        dispositions(&r),
        vec![deliver("alice@example.com"), deliver("carol@example.com")]
    );
}

#[test]
fn config_mistakes_fail_when_the_chain_loads() {
    for (config, field) in [
        // A typo inside an alias table.
        (
            r#"config = { mailboxes = ["alice"], aliases = { info = { too = ["alice"] } } }"#,
            "too",
        ),
        (
            r#"config = { mailboxes = ["alice"], aliases = { old = { to = "alice", status = "pausd" } } }"#,
            "pausd",
        ),
        (
            r#"config = { mailboxes = ["alice"], aliases = { info = [] } }"#,
            "\"info\" is active but has no destinations",
        ),
        (
            r#"config = { mailboxes = ["alice"], aliases = { a = "b", b = "a" } }"#,
            "alias cycle",
        ),
        (
            r#"config = { mailboxes = ["alice"], aliases = { info = "alcie" } }"#,
            "\"alcie\" is neither a mailbox nor an alias",
        ),
    ] {
        let err = try_chains(&format!(
            "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{alias}}\"\n{config}\n"
        ))
        .err()
        .unwrap_or_else(|| panic!("accepted: {config}"));
        let msg = err.to_string();
        assert!(msg.contains("test.toml:4:"), "{msg}");
        assert!(msg.contains("step 1 (alias)"), "{msg}");
        assert!(msg.contains(field), "{msg}");
    }

    let err = try_chains(
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{forward}\"\nconfig = { to = [] }\n",
    )
    .expect_err("an empty `to` is refused");
    let msg = err.to_string();
    assert!(msg.contains("step 1 (forward)"), "{msg}");
    assert!(msg.contains("`to`"), "{msg}");
}
