//! The reference rules `banner` and `junk`, as a user configures them.

use sluice_chain::{Disposition, OutputMessage, ProcessResult, RuleChains};
use sluice_engine::Verdict;
use sluice_tests::{chains, engine, envelope, fixture, message, output_of, try_chains};

const BANNER: &str = "CAUTION: This email came from outside the organisation.";

fn banner_chain() -> RuleChains {
    chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:banner}}"
config = {{ text = "{BANNER}", internal_domains = ["example.com"] }}
"#
    ))
}

fn output(result: &ProcessResult, raw: &[u8]) -> Vec<u8> {
    output_of(result, 0, raw)
}

#[test]
fn banner_goes_into_both_alternatives_and_leaves_the_attachment_alone() {
    let raw = fixture("alternative-attachment.eml");
    let r = banner_chain().process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    let out = output(&r, &raw);
    let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(text.starts_with(BANNER), "{text}");
    assert!(
        text.contains("The café menu is attached."),
        "charset decoded: {text}"
    );
    assert!(html.contains(BANNER), "{html}");
    let body_at = html.find("<body").unwrap();
    assert!(html.find(BANNER).unwrap() > body_at, "banner inside <body>");
    let original = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let pdf = |m: &mail_parser::Message| m.attachment(0).unwrap().contents().to_vec();
    assert_eq!(pdf(&parsed), pdf(&original));
    // The second parser agrees.
    let second = mailparse::parse_mail(&out).unwrap();
    assert_eq!(second.subparts.len(), 2);
}

#[test]
fn banner_is_not_added_twice() {
    let raw = fixture("alternative-attachment.eml");
    let chains = banner_chain();
    let first = chains.process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    let once = output(&first, &raw);
    let second = chains.process(engine(), message(&once), &envelope(&["bob@example.com"]));
    // The rule asks again; the host sees the banner in both parts and changes nothing.
    assert_eq!(second.groups[0].steps[0].actions.len(), 1);
    assert!(
        matches!(second.groups[0].output, Some(OutputMessage::Original)),
        "the second pass delivers the bannered message unchanged"
    );
    assert_eq!(output(&second, &once), once);
}

#[test]
fn authenticated_internal_senders_get_no_banner() {
    let raw = fixture("internal.eml");
    let mut env = envelope(&["carol@example.com"]);
    env.verdicts.dmarc = Verdict::Pass;
    let r = banner_chain().process(engine(), message(&raw), &env);
    assert!(r.groups[0].steps[0].actions.is_empty());
    assert!(matches!(r.groups[0].output, Some(OutputMessage::Original)));
}

#[test]
fn a_spoofed_internal_from_gets_the_banner() {
    // The same `From: carol@example.com`, but DMARC did not pass (spoofed from outside, or
    // SPF passing for some other domain): the claim alone must not suppress the warning.
    let raw = fixture("internal.eml");
    for dmarc in [Verdict::Fail, Verdict::Gray, Verdict::Unknown] {
        let mut env = envelope(&["bob@example.com"]);
        env.verdicts.dmarc = dmarc;
        env.verdicts.spf = Verdict::Pass;
        let r = banner_chain().process(engine(), message(&raw), &env);
        let out = String::from_utf8(output(&r, &raw)).unwrap();
        assert!(out.contains(BANNER), "dmarc {dmarc:?}: {out}");
    }
    // trust_from = true restores the old, spoofable behaviour for those who ask for it.
    let trusting = chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:banner}}"
config = {{ text = "{BANNER}", internal_domains = ["example.com"], trust_from = true }}
"#
    ));
    let r = trusting.process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    assert!(r.groups[0].steps[0].actions.is_empty());
}

#[test]
fn message_without_text_is_wrapped() {
    let raw = fixture("image-only.eml");
    let r = banner_chain().process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    let out = output(&r, &raw);
    let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
    assert!(parsed.body_text(0).unwrap().contains(BANNER));
    let inner = parsed
        .attachment(0)
        .and_then(|a| a.message())
        .expect("original attached as message/rfc822");
    assert_eq!(
        inner.raw_message(),
        &raw[..],
        "the original is attached byte for byte"
    );
}

#[test]
fn banner_fallback_ignore_leaves_it_alone() {
    let chains = chains(&format!(
        r#"
[[domain]]
name = "example.com"
banner_fallback = "ignore"
[[domain.step]]
plugin = "{{rule:banner}}"
config = {{ text = "{BANNER}" }}
"#
    ));
    let raw = fixture("image-only.eml");
    let r = chains.process(engine(), message(&raw), &envelope(&["bob@example.com"]));
    assert_eq!(output(&r, &raw), raw);
}

#[test]
fn banner_config_typo_fails_at_load() {
    let err = try_chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:banner}"
config = { txt = "typo" }
"#,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("test.toml:5:"), "{msg}");
    assert!(msg.contains("txt"), "{msg}");
}

fn junk_chain(config: &str) -> RuleChains {
    chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:junk}}"
config = {config}
[[domain.step]]
plugin = "{{rule:rule-headers}}"
config = {{ actions = [ {{ add_header = ["X-Reached", "yes"] }} ] }}
"#
    ))
}

fn junk_run(
    config: &str,
    fixture_name: &str,
    set: impl Fn(&mut sluice_engine::Verdicts),
) -> ProcessResult {
    let mut env = envelope(&["bob@example.com"]);
    set(&mut env.verdicts);
    junk_chain(config).process(engine(), message(&fixture(fixture_name)), &env)
}

fn junk_folder(r: &ProcessResult) -> Vec<Disposition> {
    r.groups[0].dispositions.clone()
}

#[test]
fn spam_goes_to_junk() {
    let r = junk_run("{}", "plain-lf.eml", |v| v.spam = Verdict::Fail);
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "Junk".into()
        }]
    );
    let r = junk_run("{}", "plain-lf.eml", |v| v.spam = Verdict::Pass);
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into()
        }]
    );
}

#[test]
fn virus_is_dropped_or_bounced() {
    let r = junk_run("{}", "plain-lf.eml", |v| v.virus = Verdict::Fail);
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Drop {
            recipient: "bob@example.com".into()
        }]
    );
    assert_eq!(r.groups[0].steps.len(), 1, "drop stops the chain");
    let r = junk_run("{ virus = \"bounce\" }", "plain-lf.eml", |v| {
        v.virus = Verdict::Fail
    });
    assert!(
        matches!(&junk_folder(&r)[..], [Disposition::Bounce { code: 550, status, .. }] if status == "5.7.1")
    );
}

#[test]
fn dmarc_policy_decides() {
    let r = junk_run("{}", "plain-lf.eml", |v| {
        v.dmarc = Verdict::Fail;
        v.dmarc_policy = Some("reject".into());
    });
    assert!(
        matches!(&junk_folder(&r)[..], [Disposition::Bounce { code: 550, status, text, .. }]
        if status == "5.7.1" && text.contains("DMARC"))
    );
    let r = junk_run("{}", "plain-lf.eml", |v| {
        v.dmarc = Verdict::Fail;
        v.dmarc_policy = Some("quarantine".into());
    });
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "Junk".into()
        }]
    );
    let r = junk_run("{}", "plain-lf.eml", |v| {
        v.dmarc = Verdict::Fail;
        v.dmarc_policy = Some("none".into());
    });
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into()
        }]
    );
}

#[test]
fn score_header_threshold() {
    let config = "{ score_header = \"X-Spam-Score\", score_threshold = 5.0 }";
    let r = junk_run(config, "spam-score.eml", |_| {});
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "Junk".into()
        }]
    );
    let r = junk_run(config, "plain-lf.eml", |_| {});
    assert_eq!(
        junk_folder(&r),
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into()
        }]
    );
}
