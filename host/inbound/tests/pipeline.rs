//! `Pipeline::handle` end to end against a real moto server: what is bounced and what is
//! not (backscatter), the loop guard on the message as received, and two pipelines (two
//! daemons on one queue) handling the same notification.

use std::path::Path;
use std::time::Duration;

use sluice_aws::{AwsError, Ses, S3};
use sluice_engine::{Verdict, Verdicts};
use sluice_inbound::deliver::{BounceReport, RefusalKind, Suppression};
use sluice_inbound::{
    Arrival, HandleError, HandleFailure, Handled, MessageContent, Pipeline, PipelineOptions,
    RefuseBy, RelayStatus,
};
use sluice_mail::LOOP_HEADER;
use sluice_tests::{rule, Moto};

const SENDER: &str = "alice@sender.example";

fn config(dir: &Path) -> String {
    let headers = rule("rule-headers");
    let text = format!(
        r#"
[store]
kind = "s3"
bucket = "mail"
prefix = "mailboxes"

[relay]
kind = "ses"
from = "forwarder@example.com"
allow_domains = ["partner.example"]

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{headers}"
config = {{ actions = [ {{ add_recipients = ["eve@evil.example"] }} ] }}

[[domain]]
name = "bounce.example"
[[domain.step]]
plugin = "{headers}"
config = {{ actions = [ {{ bounce = {{ code = 550, status = "5.1.1", text = "no such user" }} }} ] }}

[[domain]]
name = "fwd.example"
[[domain.step]]
name = "strip"
plugin = "{headers}"
config = {{ actions = [ {{ remove_header = "{LOOP_HEADER}" }} ] }}
# A separate step: if sluice-mail refuses the removal (a protected header), only that step's
# answer is ignored and the relay below still happens.
[[domain.step]]
name = "redirect"
plugin = "{headers}"
config = {{ actions = [ {{ set_recipients = ["bob@partner.example"] }} ] }}
"#,
        headers = headers.display()
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn verdicts(spf: Verdict, spam: Verdict, virus: Verdict) -> Verdicts {
    Verdicts {
        spf,
        dkim: Verdict::Gray,
        dmarc: Verdict::Pass,
        spam,
        virus,
        dmarc_policy: None,
    }
}

fn notice(id: &str, to: &str, verdicts: Verdicts, extra_headers: &str) -> Arrival {
    let raw = format!(
        "{extra_headers}From: Alice <{SENDER}>\r\nTo: {to}\r\nSubject: Numbers {id}\r\n\
         Message-ID: <{id}@sender.example>\r\n\r\nNumbers attached soon.\r\n"
    );
    Arrival {
        message_id: id.into(),
        mail_from: SENDER.into(),
        recipients: vec![to.into()],
        verdicts,
        received_at: 0,
        content: MessageContent::Inline(raw.into_bytes()),
        refuse_by: RefuseBy::Dsn,
        trusted_authserv_id: None,
        flow: sluice_engine::Flow::default(),
        skip_step: None,
    }
}

struct World {
    moto: Moto,
    dir: tempfile::TempDir,
    config: String,
}

async fn world() -> World {
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    s3.create_bucket("mail").await.unwrap();
    Ses::for_endpoint(&moto.endpoint, "us-east-1")
        .create_email_identity("example.com")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    World { moto, dir, config }
}

impl World {
    /// A pipeline with its own clients: one daemon.
    async fn pipeline(&self) -> Pipeline {
        Pipeline::start_with_clients(
            PipelineOptions {
                config: self.config.clone(),
                reload_interval: Duration::from_secs(3600),
                cache_dir: Some(self.dir.path().join("cache")),
                metrics: false,
                precompiled_dirs: Vec::new(),
            },
            S3::for_endpoint(&self.moto.endpoint, "us-east-1"),
            Ses::for_endpoint(&self.moto.endpoint, "us-east-1"),
        )
        .await
        .unwrap_or_else(|e| panic!("pipeline: {e}"))
    }

    fn sent(&self) -> Vec<serde_json::Value> {
        self.moto.sent_raw_messages()
    }

    /// Every object under `_undeliverable/` in the mail bucket, with its bytes.
    async fn kept_copies(&self) -> Vec<(String, Vec<u8>)> {
        let s3 = S3::for_endpoint(&self.moto.endpoint, "us-east-1");
        let listed = s3
            .client()
            .list_objects_v2()
            .bucket("mail")
            .send()
            .await
            .unwrap();
        let mut kept = Vec::new();
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            if key.contains("/_undeliverable/") {
                let url = sluice_aws::S3Url {
                    bucket: "mail".into(),
                    key: key.to_string(),
                };
                kept.push((key.to_string(), s3.get(&url).await.unwrap().bytes));
            }
        }
        kept
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refusals_spam_and_viruses_are_not_bounced_but_counted() {
    let world = world().await;
    let pipeline = world.pipeline().await;
    let pass = verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass);

    // A relay to a domain outside allow_domains: logged and counted, no DSN even though the
    // sender passed SPF.
    let h = pipeline
        .handle(notice("m-policy", "bob@example.com", pass.clone(), ""))
        .await
        .unwrap();
    assert_eq!(h.stored.len(), 1, "{h:?}");
    assert_eq!(
        h.relayed
            .iter()
            .map(|r| (r.recipient.as_str(), r.status.clone()))
            .collect::<Vec<_>>(),
        [(
            "eve@evil.example",
            RelayStatus::Refused(RefusalKind::NotAllowed)
        )]
    );
    assert_eq!(
        h.bounces_suppressed().get(&Suppression::Policy),
        Some(&1),
        "{h:?}"
    );
    assert!(
        h.summary.contains("bounce_suppressed=1(policy=1)"),
        "{}",
        h.summary
    );
    assert!(world.sent().is_empty(), "backscatter: {:#?}", world.sent());
    // Refused by the config, the copy reaches nobody: it is kept in the store's bucket
    // (beside the send claims), counted in the summary, never silently dropped.
    assert_eq!(h.kept.len(), 1, "{h:?}");
    assert_eq!(h.kept[0].refused[0].0, "eve@evil.example");
    assert!(h.summary.contains("undeliverable=1"), "{}", h.summary);
    let kept = world.kept_copies().await;
    assert_eq!(kept.len(), 2, "an .eml and its .json: {kept:?}");
    let (eml_key, eml) = kept.iter().find(|(k, _)| k.ends_with(".eml")).unwrap();
    assert!(
        eml_key.contains("/_undeliverable/m-policy/kept-"),
        "{eml_key}"
    );
    assert!(
        h.kept[0].at.ends_with(eml_key.as_str()),
        "{} vs {eml_key}",
        h.kept[0].at
    );
    assert!(
        String::from_utf8_lossy(eml).contains("Subject:"),
        "the message itself is kept"
    );
    let (_, record) = kept.iter().find(|(k, _)| k.ends_with(".json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(record).unwrap();
    assert_eq!(record["refused"][0]["recipient"], "eve@evil.example");
    assert!(
        record["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("allow_domains"),
        "{record}"
    );

    // SPF passes but SES says spam, or virus: no DSN.
    for (id, v, reason) in [
        (
            "m-spam",
            verdicts(Verdict::Pass, Verdict::Fail, Verdict::Pass),
            Suppression::Spam,
        ),
        (
            "m-virus",
            verdicts(Verdict::Pass, Verdict::Pass, Verdict::Fail),
            Suppression::Virus,
        ),
        (
            "m-forged",
            verdicts(Verdict::Fail, Verdict::Pass, Verdict::Pass),
            Suppression::Unauthenticated,
        ),
    ] {
        let h = pipeline
            .handle(notice(id, "x@bounce.example", v, ""))
            .await
            .unwrap();
        assert!(h.all_refused);
        assert_eq!(h.bounces.len(), 1, "{h:?}");
        assert_eq!(h.bounces[0].report, BounceReport::Suppressed { reason });
        assert_eq!(h.bounces[0].recipients, ["x@bounce.example"]);
        assert!(
            h.summary
                .contains(&format!("bounce_suppressed=1({}=1)", reason.as_str())),
            "{}",
            h.summary
        );
    }
    assert!(world.sent().is_empty(), "backscatter: {:#?}", world.sent());

    // An authenticated, clean sender gets the DSN.
    let h = pipeline
        .handle(notice("m-real", "x@bounce.example", pass, ""))
        .await
        .unwrap();
    assert!(
        matches!(&h.bounces[0].report, BounceReport::Sent { to, .. } if to == SENDER),
        "{h:?}"
    );
    assert!(h.bounces_suppressed().is_empty());
    assert_eq!(world.sent().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_guard_counts_hops_on_the_message_as_received() {
    let world = world().await;
    let pipeline = world.pipeline().await;
    let pass = verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass);
    // Three hops (the default max_hops); the chain strips the headers before relaying.
    let hops = format!(
        "{LOOP_HEADER}: a.example\r\n{LOOP_HEADER}: b.example\r\n{LOOP_HEADER}: c.example\r\n"
    );
    let h = pipeline
        .handle(notice("m-loop", "list@fwd.example", pass.clone(), &hops))
        .await
        .unwrap();
    assert_eq!(
        h.relayed
            .iter()
            .map(|r| r.status.clone())
            .collect::<Vec<_>>(),
        [RelayStatus::Refused(RefusalKind::Loop)],
        "{h:?}"
    );
    assert_eq!(h.bounces_suppressed().get(&Suppression::Policy), Some(&1));
    assert!(
        world.sent().is_empty(),
        "relayed a loop: {:#?}",
        world.sent()
    );

    // Two hops: relayed, once.
    let hops = format!("{LOOP_HEADER}: a.example\r\n{LOOP_HEADER}: b.example\r\n");
    let h = pipeline
        .handle(notice("m-two", "list@fwd.example", pass, &hops))
        .await
        .unwrap();
    assert_eq!(h.relayed[0].status, RelayStatus::Sent, "{h:?}");
    assert_eq!(world.sent().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pipelines_on_one_notification_relay_it_once() {
    let world = world().await;
    let (a, b) = (world.pipeline().await, world.pipeline().await);
    let pass = verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass);
    let rounds = 6;
    for i in 0..rounds {
        let n = notice(&format!("m-race-{i}"), "list@fwd.example", pass.clone(), "");
        let (ra, rb) = tokio::join!(a.handle(n.clone()), b.handle(n.clone()));
        let sent_now = |r: &Result<Handled, HandleError>| {
            r.as_ref()
                .is_ok_and(|h| h.relayed.iter().any(|r| r.status == RelayStatus::Sent))
        };
        assert_eq!(
            [&ra, &rb].iter().filter(|r| sent_now(r)).count(),
            1,
            "round {i}: {ra:?} / {rb:?}"
        );
        // The loser (if it failed while the winner held the claim) finds it sent on retry.
        for (p, r) in [(&a, &ra), (&b, &rb)] {
            if let Err(e) = r {
                assert!(!e.is_permanent(), "{e}");
                let h = p.handle(n.clone()).await.unwrap();
                assert_eq!(h.relayed[0].status, RelayStatus::AlreadySent, "{h:?}");
                assert!(h.unconfirmed().is_empty());
            }
        }
    }
    assert_eq!(world.sent().len(), rounds, "{:#?}", world.sent());
}

/// A message whose S3 object is gone cannot be read by any retry: a permanent error (the
/// event goes to the DLQ at once). A bucket that cannot be read (here: absent) may come
/// back: transient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_message_object_is_permanent_an_unreadable_bucket_is_not() {
    let world = world().await;
    let pipeline = world.pipeline().await;
    let from_s3 = |bucket: &str, key: &str| Arrival {
        content: MessageContent::S3 {
            bucket: bucket.into(),
            key: key.into(),
        },
        ..notice(
            "m-gone",
            "alice@example.com",
            verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass),
            "",
        )
    };
    let e = pipeline
        .handle(from_s3("mail", "incoming/m-gone"))
        .await
        .unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(
        matches!(e.failure, HandleFailure::Fetch(AwsError::S3NotFound { .. })),
        "{e}"
    );
    let e = pipeline
        .handle(from_s3("no-such-bucket", "incoming/m-gone"))
        .await
        .unwrap_err();
    assert!(!e.is_permanent(), "{e}");
    assert!(matches!(e.failure, HandleFailure::Fetch(_)), "{e}");
}

/// Recipients are checked at the pipeline, so every door (SES JSON included) refuses what
/// `sluice run --rcpt` refuses: NUL, CR/LF, spaces, no single `@`. Permanent (for the DLQ),
/// and nothing is fetched or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_sluice_will_not_write_to_are_refused_at_every_door() {
    let world = world().await;
    let pipeline = world.pipeline().await;
    for bad in [
        "al\r\nice@example.com",
        "al\0ice@example.com",
        "a b@example.com",
        "alice",
    ] {
        let mut arrival = notice(
            "m-bad-rcpt",
            "bob@example.com",
            verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass),
            "",
        );
        arrival.recipients.push(bad.to_string());
        let e = pipeline.handle(arrival).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(
            matches!(&e.failure, HandleFailure::BadAddress { role: "recipient", address, .. } if address == bad),
            "{e}"
        );
    }
    let mut bad_sender = notice(
        "m-bad-sender",
        "bob@example.com",
        verdicts(Verdict::Pass, Verdict::Pass, Verdict::Pass),
        "",
    );
    bad_sender.mail_from = "x@y.example\r\nBcc: z@w.example".into();
    let e = pipeline.handle(bad_sender).await.unwrap_err();
    assert!(
        matches!(e.failure, HandleFailure::BadAddress { role: "sender", .. }),
        "{e}"
    );
}
