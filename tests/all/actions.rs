//! Each action and each disposition, end to end through a real rule (`rule-headers`, which
//! returns the actions its config lists) and the host's edit engine.

use sluice_chain::StepStatus;
use sluice_chain::{Disposition, OutputMessage, ProcessResult};
use sluice_tests::{chains, fixture, output_of, process};

/// Runs `plain-lf.eml` for bob@example.com through one `rule-headers` step returning
/// `actions` (a TOML array), with `extra` TOML for the step.
fn run_actions(actions: &str, extra: &str) -> ProcessResult {
    let chains = chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-headers}}"
{extra}
config = {{ actions = {actions} }}
"#
    ));
    process(&chains, "plain-lf.eml", &["bob@example.com"])
}

fn output(result: &ProcessResult) -> String {
    String::from_utf8(output_of(result, 0, &fixture("plain-lf.eml"))).unwrap()
}

fn header_block(msg: &str) -> &str {
    msg.split("\n\n").next().unwrap()
}

fn deliver(rcpt: &str, folder: &str) -> Disposition {
    Disposition::Deliver {
        recipient: rcpt.into(),
        folder: folder.into(),
    }
}

#[test]
fn add_header_goes_on_top_and_the_rest_is_untouched() {
    let r = run_actions(r#"[ { add_header = ["X-Sluice-Test", "one two"] } ]"#, "");
    assert_eq!(
        r.groups[0].steps[0].outcome,
        StepStatus::Ok,
        "{:?}",
        r.groups[0].steps[0].error
    );
    let out = output(&r);
    assert!(out.starts_with("X-Sluice-Test: one two\n"), "{out}");
    let original = String::from_utf8(fixture("plain-lf.eml")).unwrap();
    assert!(
        out.ends_with(&original),
        "the original follows byte for byte"
    );
    // Both parsers agree on the new header.
    let parsed = mailparse::parse_mail(out.as_bytes()).unwrap();
    assert_eq!(
        mailparse::MailHeaderMap::get_first_value(&parsed.headers[..], "X-Sluice-Test").as_deref(),
        Some("one two")
    );
}

#[test]
fn non_ascii_header_values_are_encoded() {
    let r = run_actions(
        r#"[ { add_header = ["X-Note", "Grüße from Zürich"] } ]"#,
        "",
    );
    let out = output(&r);
    let block = header_block(&out);
    assert!(block.is_ascii(), "header block must be ASCII: {block}");
    // Decoded back by an independent parser and by ours.
    let parsed = mailparse::parse_mail(out.as_bytes()).unwrap();
    assert_eq!(
        mailparse::MailHeaderMap::get_first_value(&parsed.headers[..], "X-Note").as_deref(),
        Some("Grüße from Zürich")
    );
    let ours = sluice_mail::Message::parse(out.into_bytes()).unwrap();
    assert_eq!(ours.header("X-Note"), vec!["Grüße from Zürich".to_string()]);
}

#[test]
fn set_header_replaces_and_remove_header_removes() {
    let r = run_actions(
        r#"[ { set_header = ["Subject", "Replaced"] }, { remove_header = "X-Spam-Score" } ]"#,
        "",
    );
    let out = output(&r);
    let block = header_block(&out);
    assert_eq!(block.matches("Subject:").count(), 1);
    assert!(block.contains("Subject: Replaced"));
    assert!(!block.contains("X-Spam-Score"));
    assert!(block.contains("Received: from mx.outside.example"));
}

#[test]
fn prefix_subject_is_idempotent() {
    let r = run_actions(
        r#"[ { prefix_subject = "[EXT]" }, { prefix_subject = "[EXT]" } ]"#,
        "",
    );
    let out = output(&r);
    assert!(out.contains("Subject: [EXT] Quick question\n"), "{out}");
    assert_eq!(out.matches("[EXT]").count(), 1);
}

#[test]
fn banner_in_plain_text() {
    let r = run_actions(
        r#"[ { banner = { text = "CAUTION: external sender", position = "top" } } ]"#,
        "",
    );
    let out = output(&r);
    let body = out.split_once("\n\n").unwrap().1;
    assert!(body.starts_with("CAUTION: external sender"), "{body}");
    assert!(body.contains("can you wire the money today?"));
}

#[test]
fn file_into_sets_the_folder() {
    let r = run_actions(r#"[ { file_into = "Junk" } ]"#, "");
    assert_eq!(
        r.groups[0].dispositions,
        vec![deliver("bob@example.com", "Junk")]
    );
    assert!(matches!(r.groups[0].output, Some(OutputMessage::Original)));
}

#[test]
fn set_recipients_redirects_and_non_local_recipients_are_relayed() {
    let r = run_actions(
        r#"[ { set_recipients = ["bob.personal@gmail.example", "team@example.com"] } ]"#,
        "",
    );
    assert_eq!(
        r.groups[0].dispositions,
        vec![
            Disposition::Relay {
                recipient: "bob.personal@gmail.example".into(),
                from: None,
                subject_prefix: None,
            },
            deliver("team@example.com", "INBOX"),
        ]
    );
}

#[test]
fn add_recipients_forwards_a_copy() {
    let r = run_actions(
        r#"[ { add_recipients = ["archive@partner.example"] } ]"#,
        "",
    );
    assert_eq!(
        r.groups[0].dispositions,
        vec![
            deliver("bob@example.com", "INBOX"),
            Disposition::Relay {
                recipient: "archive@partner.example".into(),
                from: None,
                subject_prefix: None,
            },
        ]
    );
}

#[test]
fn bounce_refuses_for_the_group() {
    let r = run_actions(
        r#"[ { bounce = { code = 550, status = "5.1.1", text = "mailbox unavailable" } } ]"#,
        "",
    );
    assert_eq!(
        r.groups[0].dispositions,
        vec![Disposition::Bounce {
            recipient: "bob@example.com".into(),
            code: 550,
            status: "5.1.1".into(),
            text: "mailbox unavailable".into()
        }]
    );
    assert!(r.groups[0].output.is_none(), "nothing to deliver");
}

#[test]
fn drop_discards() {
    let r = run_actions(r#"[ "drop" ]"#, "");
    assert_eq!(
        r.groups[0].dispositions,
        vec![Disposition::Drop {
            recipient: "bob@example.com".into()
        }]
    );
}

#[test]
fn stop_ends_the_chain() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_header = ["X-First", "1"] }, "stop" ] }
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_header = ["X-Second", "2"] } ] }
"#,
    );
    let r = process(&chains, "plain-lf.eml", &["bob@example.com"]);
    assert_eq!(r.groups[0].steps.len(), 1);
    let out = output(&r);
    assert!(out.contains("X-First: 1") && !out.contains("X-Second"));
}

#[test]
fn audit_mode_records_but_does_not_apply() {
    let r = run_actions(
        r#"[ { add_header = ["X-Audit", "1"] }, "drop" ]"#,
        "mode = \"audit\"",
    );
    let g = &r.groups[0];
    assert_eq!(g.steps[0].actions.len(), 2, "actions are in the trace");
    assert_eq!(g.dispositions, vec![deliver("bob@example.com", "INBOX")]);
    assert!(!output(&r).contains("X-Audit"));
}

#[test]
fn rule_error_applies_the_policy() {
    let r = run_actions(
        r#"[ { fail = { message = "lookup failed", temporary = true } } ]"#,
        "on_error = \"bounce\"",
    );
    // A temporary rule error under `bounce` becomes a tempfail: no bounce for a transient problem.
    assert!(r.tempfailed());
    assert_eq!(r.groups[0].steps[0].outcome, StepStatus::RuleError);
    assert!(r.groups[0].steps[0]
        .error
        .as_deref()
        .unwrap()
        .contains("lookup failed"));
}

#[test]
fn recipients_are_grouped_by_domain() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_header = ["X-Domain", "example.com"] } ] }
[[domain]]
name = "*"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { file_into = "Other" } ] }
"#,
    );
    let r = process(
        &chains,
        "plain-lf.eml",
        &["bob@example.com", "x@other.example", "carol@EXAMPLE.com"],
    );
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].domain, "example.com");
    assert_eq!(
        r.groups[0].recipients,
        vec!["bob@example.com", "carol@EXAMPLE.com"]
    );
    assert_eq!(r.groups[1].domain, "*");
    assert_eq!(
        r.groups[1].dispositions,
        vec![deliver("x@other.example", "Other")]
    );
    // Each group gets its own edits.
    match &r.groups[1].output {
        Some(OutputMessage::Original) => {}
        other => panic!("the * group has no edits: {other:?}"),
    }
}

#[test]
fn rules_see_the_recipients_of_earlier_steps() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_recipients = ["extra@example.com"] } ] }
[[domain.step]]
plugin = "{rule:rule-reader}"
"#,
    );
    let r = process(&chains, "plain-lf.eml", &["bob@example.com"]);
    let seen = r.groups[0].steps[1]
        .actions
        .iter()
        .find_map(|a| match a {
            sluice_engine::Action::AddHeader(h) if h.name == "X-Seen-Recipients" => {
                Some(h.value.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        seen.contains("bob@example.com") && seen.contains("extra@example.com"),
        "{seen}"
    );
}

/// `replace-part` (WIT 0.2.1) through the chain: enforced, the PDF of
/// `alternative-attachment.eml` becomes the note; in audit mode it is in the trace only.
#[test]
fn replace_part_strips_when_enforced_and_only_records_in_audit() {
    for (mode, applied) in [("enforce", true), ("audit", false)] {
        let chains = chains(&format!(
            r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-replace-part}}"
mode = "{mode}"
config = {{ ids = [4], note = "menu.pdf was removed." }}
"#
        ));
        let r = process(&chains, "alternative-attachment.eml", &["bob@example.com"]);
        let g = &r.groups[0];
        assert_eq!(g.steps[0].outcome, StepStatus::Ok, "{:?}", g.steps[0].error);
        assert_eq!(g.steps[0].replacements.len(), 1, "{mode}: in the trace");
        let out = output_of(&r, 0, &fixture("alternative-attachment.eml"));
        let out = String::from_utf8_lossy(&out);
        assert_eq!(out.contains("menu.pdf was removed."), applied, "{mode}");
        assert_eq!(out.contains("filename=\"menu.pdf\""), !applied, "{mode}");
        assert_eq!(g.dispositions, vec![deliver("bob@example.com", "INBOX")]);
    }
}
