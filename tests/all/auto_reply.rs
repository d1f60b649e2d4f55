//! Automatic replies end to end (WIT 0.2.1 `reply`, the `auto-reply` reference rule): messages
//! through the chain and the dispatcher, delivered into a directory store, with replies
//! through a real SMTP smarthost (aiosmtpd on loopback). One reply with the RFC 3834 fields and
//! a null envelope sender; none again within the interval; none for list, bulk or bounce mail
//! (said in the trace); the original delivered every time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_chain::{ConfigFile, Envelope, ProcessResult, RuleChains};
use sluice_deliver::{Outbound, ServerConfig, SmtpSender};
use sluice_inbound::deliver::ReplyStatus;
use sluice_inbound::{Dispatcher, Handled};
use sluice_mail::Message;
use sluice_mailservers::SmtpSink;
use sluice_tests::{engine, expand, unknown_verdicts};

const CONFIG: &str = r#"
[relay]
kind = "ses"
from = "forwarder@example.com"
# Not used: the local dispatcher keeps its claims (and the reply memory) in its own directory.
markers = "unused-claims"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:auto-reply}"
reply = { once_per_days = 7 }
config = { recipients = { "bob@example.com" = { text = "I am away until 8 January.\nCarol covers for me." } } }
"#;

fn original(from: &str, id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: bob@example.com\r\nSubject: Lunch on Friday?\r\n\
         Message-ID: <{id}@outside.example>\r\nReferences: <earlier@outside.example>\r\n\
         {extra}Content-Type: text/plain; charset=utf-8\r\n\r\nAre you in?\r\n"
    )
    .into_bytes()
}

struct Setup {
    config: ConfigFile,
    chains: RuleChains,
    dispatcher: Dispatcher,
    sink: SmtpSink,
    out: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    let sink = SmtpSink::start()?;
    let config =
        ConfigFile::parse("auto-reply.toml", PathBuf::from("."), expand(CONFIG)).expect("config");
    let chains = RuleChains::load(engine(), &config).expect("chains");
    let out = tempfile::tempdir().unwrap();
    let smarthost: Outbound = Arc::new(
        SmtpSender::new(&ServerConfig {
            hello_name: Some("mx.example.com".into()),
            timeout: Duration::from_secs(10),
            ..ServerConfig::loopback(sink.port)
        })
        .unwrap(),
    );
    // One dispatcher for every message: its claims directory is the replies' memory.
    let dispatcher =
        Dispatcher::local(&config, out.path(), &out.path().join("claims")).with_outbound(smarthost);
    Some(Setup {
        config,
        chains,
        dispatcher,
        sink,
        out,
    })
}

impl Setup {
    fn handle(&self, id: &str, mail_from: &str, raw: Vec<u8>) -> (ProcessResult, Handled) {
        let message = Arc::new(Message::parse(raw).expect("parses"));
        let envelope = Envelope {
            message_id: id.into(),
            mail_from: mail_from.into(),
            recipients: vec!["bob@example.com".into()],
            verdicts: unknown_verdicts(),
            received_at: 1_704_067_200_000,
            flow: sluice_engine::Flow::default(),
            skip_step: None,
        };
        let result = self.chains.process(engine(), message.clone(), &envelope);
        let handled = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                self.dispatcher
                    .deliver(&self.config, &envelope, &message, &result),
            )
            .expect("delivered");
        (result, handled)
    }
}

/// The mailbox copies stored under `out` (claims and the memory are JSON, not `.eml`).
fn bobs_copies(out: &Path) -> usize {
    let mut n = 0;
    let mut todo = vec![out.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                n += 1;
            }
        }
    }
    n
}

fn only_reply(handled: &Handled) -> &ReplyStatus {
    assert_eq!(handled.replies.len(), 1, "{:?}", handled.replies);
    &handled.replies[0].status
}

#[test]
fn one_reply_per_sender_and_interval_never_to_lists_bulk_or_bounces() {
    let Some(s) = setup() else {
        eprintln!("aiosmtpd not installed: skipped");
        return;
    };
    let alice = "alice@outside.example";

    // The first message: answered, and delivered.
    let (result, handled) = s.handle("m-1", alice, original(alice, "m1", ""));
    assert!(result.groups[0].replies[0].suppressed.is_none());
    assert!(
        matches!(only_reply(&handled), ReplyStatus::Sent { .. }),
        "{handled:?}"
    );
    assert_eq!(handled.stored.len(), 1, "bob's copy is stored");
    let received = s.sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let reply = &received[0];
    assert_eq!(
        reply.mail_from, "<>",
        "null envelope sender (RFC 3834 §3.3)"
    );
    assert_eq!(reply.recipients, [alice]);
    let text = String::from_utf8_lossy(&reply.data);
    let parsed = mail_parser::MessageParser::default()
        .parse(&reply.data)
        .unwrap();
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    assert_eq!(parsed.in_reply_to().as_text(), Some("m1@outside.example"));
    let refs: Vec<&str> = parsed
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|r| r.as_ref())
        .collect();
    assert_eq!(refs, ["earlier@outside.example", "m1@outside.example"]);
    assert_eq!(parsed.subject(), Some("Auto: Lunch on Friday?"));
    assert_eq!(
        parsed
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address()),
        Some("bob@example.com")
    );
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("Carol covers for me."),
        "{text}"
    );
    assert!(
        !text.contains("Are you in?"),
        "nothing of the original goes back"
    );
    assert!(handled.summary.contains("replied=1"), "{}", handled.summary);

    // The same message again (an SQS retry): not answered twice.
    let (_, again) = s.handle("m-1", alice, original(alice, "m1", ""));
    assert_eq!(only_reply(&again), &ReplyStatus::AlreadySent);

    // A second message from alice within the interval: delivered, not answered.
    let (_, second) = s.handle("m-2", alice, original(alice, "m2", ""));
    match only_reply(&second) {
        ReplyStatus::Suppressed { kind, reason } => {
            assert_eq!(*kind, "answered-recently");
            assert!(reason.contains("7 day"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sink.received().len(), 1, "no second reply");

    // Never answered, whatever the rule asked: the trace says why.
    let carol = "carol@outside.example";
    for (id, mail_from, extra, kind) in [
        (
            "m-3",
            carol,
            "List-Id: <team.lists.outside.example>\r\n",
            "list-mail",
        ),
        ("m-4", carol, "Precedence: bulk\r\n", "bulk"),
        ("m-5", "", "", "null-sender"),
        (
            "m-6",
            carol,
            "Auto-Submitted: auto-replied\r\n",
            "auto-submitted",
        ),
        (
            "m-7",
            "MAILER-DAEMON@mx.outside.example",
            "",
            "daemon-sender",
        ),
    ] {
        let (result, handled) = s.handle(id, mail_from, original(carol, id, extra));
        let planned = &result.groups[0].replies;
        assert_eq!(planned.len(), 1, "{id}: the rule asked");
        assert_eq!(
            planned[0].suppressed.as_ref().map(|s| s.kind),
            Some(kind),
            "{id}"
        );
        let trace = serde_json::to_value(&result).unwrap();
        assert_eq!(
            trace["groups"][0]["replies"][0]["suppressed"]["kind"], kind,
            "{id}: in the trace `sluice run --json` prints"
        );
        assert!(
            matches!(only_reply(&handled), ReplyStatus::Suppressed { kind: k, .. } if *k == kind),
            "{id}: {:?}",
            handled.replies
        );
        assert_eq!(
            handled.stored.len(),
            1,
            "{id}: the message is still delivered"
        );
    }
    // Sluice's own sending address ([relay] from: its forwards) is never answered either.
    let own = "forwarder@example.com";
    let (_, handled) = s.handle("m-8", own, original(own, "m8", ""));
    assert!(
        matches!(
            only_reply(&handled),
            ReplyStatus::Suppressed {
                kind: "own-address",
                ..
            }
        ),
        "{:?}",
        handled.replies
    );
    assert_eq!(s.sink.received().len(), 1, "still the one reply");
    assert_eq!(
        bobs_copies(s.out.path()),
        8,
        "every message was delivered once"
    );
}

#[test]
fn a_step_without_the_grant_gets_a_rule_error_naming_the_fix() {
    let chains = sluice_tests::chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:auto-reply}"
config = { recipients = { "bob@example.com" = { text = "Away" } } }
"#,
    );
    let env = sluice_tests::envelope(&["bob@example.com"]);
    let raw = original("alice@outside.example", "g1", "");
    let result = chains.process(engine(), sluice_tests::message(&raw), &env);
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, sluice_chain::StepStatus::RuleError);
    let error = step.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("reply is not granted") && error.contains("reply = { once_per_days"),
        "{error}"
    );
    assert!(result.groups[0].replies.is_empty());
}

#[test]
fn the_grant_is_checked_when_the_config_loads() {
    let step = |relay: &str, reply: &str| {
        format!(
            "{relay}[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{rule:auto-reply}}\"\nreply = {reply}\nconfig = {{ recipients = {{ \"bob@example.com\" = {{ text = \"Away\" }} }} }}\n"
        )
    };
    let relay = "[relay]\nkind = \"ses\"\nfrom = \"f@example.com\"\nmarkers = \"claims\"\n";
    let no_relay = sluice_tests::try_chains(&step("", "{ once_per_days = 7 }")).unwrap_err();
    assert!(no_relay.message.contains("[relay]"), "{no_relay}");
    let zero = sluice_tests::try_chains(&step(relay, "{ once_per_days = 0 }")).unwrap_err();
    assert!(zero.message.contains("1..=366"), "{zero}");
    let unknown = sluice_tests::try_chains(&step(relay, "{ days = 7 }")).unwrap_err();
    assert!(unknown.message.contains("days"), "{unknown}");
    assert!(sluice_tests::try_chains(&step(relay, "{ once_per_days = 7 }")).is_ok());
}

#[test]
fn a_warm_instance_asks_for_every_message_and_an_audit_step_for_none() {
    let config = |extra: &str| {
        format!(
            "[relay]\nkind = \"ses\"\nfrom = \"f@example.com\"\nmarkers = \"claims\"\n\
             [[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{rule:auto-reply}}\"\n\
             reply = {{ once_per_days = 7 }}\n{extra}\
             config = {{ recipients = {{ \"*@example.com\" = {{ text = \"Away\" }} }} }}\n"
        )
    };
    let warm = sluice_tests::chains(&config("instances = \"warm\"\n"));
    for rcpt in ["bob@example.com", "carol@example.com"] {
        let env = sluice_tests::envelope(&[rcpt]);
        let raw = original("alice@outside.example", "w1", "");
        let result = warm.process(engine(), sluice_tests::message(&raw), &env);
        let replies = &result.groups[0].replies;
        assert_eq!(replies.len(), 1, "{rcpt}: {:?}", result.groups[0].steps);
        assert_eq!(
            replies[0].from, rcpt,
            "the group of this message, not the last one"
        );
        assert_eq!(replies[0].request.once_per_days, 7);
    }
    let audit = sluice_tests::chains(&config("mode = \"audit\"\n"));
    let env = sluice_tests::envelope(&["bob@example.com"]);
    let raw = original("alice@outside.example", "a1", "");
    let result = audit.process(engine(), sluice_tests::message(&raw), &env);
    assert_eq!(
        result.groups[0].steps[0].requests.len(),
        1,
        "asked, in the trace"
    );
    assert!(
        result.groups[0].replies.is_empty(),
        "an audit step sends nothing"
    );
}
