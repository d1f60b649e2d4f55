//! Deliveries against a real moto server: SES relay with send claims and the
//! loop guard, DSN bounces and their suppression.

use std::sync::Arc;
use std::time::Duration;

use sluice_aws::{Created, S3Url, Ses, S3};
use sluice_deliver::relay::ses::SesTransport;
use sluice_deliver::{Outbound, SendGuarantee};
use sluice_engine::{Verdict, Verdicts};
use sluice_inbound::deliver::{
    BounceJob, BounceReport, Bouncer, Claim, Markers, RefusalKind, Relay, RelayJob, SendError,
    Suppression,
};
use sluice_mail::{Message, LOOP_HEADER};
use sluice_tests::Moto;

const BUCKET: &str = "acme-mail";

const ORIGINAL: &str = "Return-Path: <alice@outside.example>\r\n\
    DKIM-Signature: v=1; a=rsa-sha256; d=outside.example; s=s1; b=abc\r\n\
    From: Alice <alice@outside.example>\r\n\
    To: team@example.com\r\n\
    Subject: Quarterly numbers\r\n\
    Message-ID: <q1@outside.example>\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    The numbers are in.\r\n";

struct Env {
    moto: Moto,
    s3: S3,
    ses: Ses,
}

async fn env() -> Env {
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    let ses = Ses::for_endpoint(&moto.endpoint, "us-east-1");
    s3.create_bucket(BUCKET).await.unwrap();
    ses.create_email_identity("example.com").await.unwrap();
    Env { moto, s3, ses }
}

impl Env {
    fn markers(&self) -> Markers {
        self.markers_of("consumer-a")
    }

    /// The claims as seen by another consumer (another daemon on the same queue).
    fn markers_of(&self, owner: &str) -> Markers {
        Markers::new(
            self.s3.clone(),
            BUCKET.into(),
            "markers".into(),
            owner.into(),
        )
    }

    fn relay(&self) -> Relay {
        Relay {
            via: Arc::new(SesTransport(self.ses.clone())) as Outbound,
            from: "forwarder@example.com".into(),
            allow_domains: vec!["partner.example".into()],
            max_hops: 3,
            arc: None,
        }
    }

    fn bouncer(&self) -> Bouncer {
        Bouncer {
            via: Arc::new(SesTransport(self.ses.clone())) as Outbound,
            from: "mailer-daemon@example.com".into(),
            reporting_mta: "mx.example.com".into(),
        }
    }

    /// What moto's SES "sent": (source, envelope destinations, raw data). moto appends the
    /// raw message's To/Cc/Bcc addresses to the destinations (real SES sends only to the
    /// Destination given), so those are dropped here again.
    fn sent(&self) -> Vec<(String, Vec<String>, String)> {
        let data = sluice_tests::http_get(&self.moto.endpoint, "/moto-api/data.json");
        let json: serde_json::Value = serde_json::from_str(&data).expect("data.json is JSON");
        let Some(list) = json["ses"]["RawMessage"].as_array() else {
            return Vec::new();
        };
        list.iter()
            .map(|m| {
                (
                    m["source"].as_str().unwrap_or_default().to_string(),
                    m["destinations"]
                        .as_array()
                        .map(|d| {
                            d.iter()
                                .map(|a| a.as_str().unwrap_or_default().to_string())
                                .collect::<Vec<String>>()
                        })
                        .unwrap_or_default(),
                    m["raw_data"].as_str().unwrap_or_default().to_string(),
                )
            })
            .map(|(source, mut destinations, raw)| {
                let header_rcpts = header_recipients(&raw);
                let envelope = destinations.len() - header_rcpts.len();
                assert_eq!(
                    &destinations[envelope..],
                    header_rcpts.as_slice(),
                    "moto's order"
                );
                destinations.truncate(envelope);
                (source, destinations, raw)
            })
            .collect()
    }
}

/// The To/Cc/Bcc addresses of a raw message, in header order (as moto adds them).
fn header_recipients(raw: &str) -> Vec<String> {
    let msg = Message::parse(raw.as_bytes().to_vec()).unwrap();
    let mut out = Vec::new();
    for name in ["To", "Cc", "Bcc"] {
        for value in msg.header(name) {
            out.extend(
                value
                    .split(',')
                    .map(|a| {
                        a.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string()
                    })
                    .filter(|a| !a.is_empty()),
            );
        }
    }
    out
}

fn original() -> Message {
    Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap()
}

fn verdicts(spf: Verdict, dkim: Verdict) -> Verdicts {
    Verdicts {
        spf,
        dkim,
        dmarc: Verdict::Unknown,
        spam: Verdict::Pass,
        virus: Verdict::Pass,
        dmarc_policy: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sends_once_to_allowed_domains_only() {
    let env = env().await;
    let (relay, markers) = (env.relay(), env.markers());
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into(), "mallory@evil.example".into()],
        subject_prefix: Some("[FWD]".into()),
        ..Default::default()
    };
    let report = relay
        .relay("ses-1", "example.com", &job, &original(), &markers)
        .await
        .unwrap();
    assert_eq!(report.sent, ["bob@partner.example"]);
    assert!(report.already_sent.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].recipient, "mallory@evil.example");
    assert_eq!(report.refused[0].kind, RefusalKind::NotAllowed);
    assert!(report.refused[0].reason.contains("no open relay"));

    let sent = env.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (source, destinations, raw) = &sent[0];
    assert_eq!(source, "forwarder@example.com");
    assert_eq!(destinations, &["bob@partner.example"]);
    let copy = Message::parse(raw.as_bytes().to_vec()).unwrap();
    assert_eq!(
        copy.from_address().as_deref(),
        Some("forwarder@example.com")
    );
    assert_eq!(copy.from_name().as_deref(), Some("Alice via example.com"));
    assert_eq!(copy.header("Reply-To"), ["Alice <alice@outside.example>"]);
    assert!(copy.header("DKIM-Signature").is_empty());
    assert!(copy.header("Return-Path").is_empty());
    assert_eq!(copy.subject().as_deref(), Some("[FWD] Quarterly numbers"));
    assert_eq!(copy.header(LOOP_HEADER), ["example.com"]);
    assert!(raw.ends_with("\r\n\r\nThe numbers are in.\r\n"));

    // The SQS redelivery: the claim says it was sent.
    let report = relay
        .relay("ses-1", "example.com", &job, &original(), &markers)
        .await
        .unwrap();
    assert!(report.sent.is_empty());
    assert_eq!(report.already_sent, ["bob@partner.example"]);
    assert_eq!(env.sent().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_chunks_by_fifty_and_cuts_loops() {
    let env = env().await;
    let (relay, markers) = (env.relay(), env.markers());
    let recipients: Vec<String> = (0..120)
        .map(|i| format!("user{i:03}@partner.example"))
        .collect();
    let job = RelayJob {
        recipients: recipients.clone(),
        ..Default::default()
    };
    // Without To/Cc so moto's 50-recipient check counts only the envelope.
    let no_to = Message::parse(
        ORIGINAL
            .replace("To: team@example.com\r\n", "")
            .into_bytes(),
    )
    .unwrap();
    let report = relay
        .relay("ses-2", "example.com", &job, &no_to, &markers)
        .await
        .unwrap();
    assert_eq!(report.sent.len(), 120);
    let sent = env.sent();
    let sizes: Vec<usize> = sent.iter().map(|s| s.1.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let mut all: Vec<String> = sent.iter().flat_map(|s| s.1.clone()).collect();
    all.sort();
    assert_eq!(all, recipients);

    // A message that already went through max_hops relays.
    let looped = format!("{LOOP_HEADER}: a.example\r\n{LOOP_HEADER}: b.example\r\n{LOOP_HEADER}: example.com\r\n{ORIGINAL}");
    let looped = Message::parse(looped.into_bytes()).unwrap();
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into()],
        ..Default::default()
    };
    let report = relay
        .relay("ses-3", "example.com", &job, &looped, &markers)
        .await
        .unwrap();
    assert!(report.sent.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert_eq!(
        report.refused[0].kind,
        RefusalKind::Loop,
        "{:?}",
        report.refused
    );
    assert_eq!(env.sent().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_only_authenticated_senders_once() {
    let env = env().await;
    let (bouncer, markers) = (env.bouncer(), env.markers());
    let refused = [BounceJob {
        recipient: "nobody@example.com".into(),
        code: 550,
        status: "5.1.1".into(),
        text: "mailbox unavailable".into(),
    }];

    let report = bouncer
        .bounce(
            "ses-4",
            &original(),
            "alice@outside.example",
            &verdicts(Verdict::Fail, Verdict::Fail),
            &refused,
            &markers,
        )
        .await
        .unwrap();
    assert_eq!(
        report,
        BounceReport::Suppressed {
            reason: Suppression::Unauthenticated
        }
    );
    for sender in [
        "",
        "<>",
        "MAILER-DAEMON@outside.example",
        "postmaster@x.example",
    ] {
        let report = bouncer
            .bounce(
                "ses-4",
                &original(),
                sender,
                &verdicts(Verdict::Pass, Verdict::Pass),
                &refused,
                &markers,
            )
            .await
            .unwrap();
        assert!(
            matches!(report, BounceReport::Suppressed { .. }),
            "{sender}: {report:?}"
        );
    }
    assert!(env.sent().is_empty());

    let pass = verdicts(Verdict::Pass, Verdict::Fail);
    let report = bouncer
        .bounce(
            "ses-4",
            &original(),
            "alice@outside.example",
            &pass,
            &refused,
            &markers,
        )
        .await
        .unwrap();
    assert!(
        matches!(&report, BounceReport::Sent { to, .. } if to == "alice@outside.example"),
        "{report:?}"
    );
    let sent = env.sent();
    assert_eq!(sent.len(), 1);
    let (source, destinations, raw) = &sent[0];
    assert_eq!(source, "mailer-daemon@example.com");
    assert_eq!(destinations, &["alice@outside.example"]);
    let dsn = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    let ct = mail_parser::MimeHeaders::content_type(&dsn).unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert!(raw.contains("Final-Recipient: rfc822; nobody@example.com"));

    let again = bouncer
        .bounce(
            "ses-4",
            &original(),
            "alice@outside.example",
            &pass,
            &refused,
            &markers,
        )
        .await
        .unwrap();
    assert_eq!(again, BounceReport::AlreadySent);
    assert_eq!(env.sent().len(), 1);
}

fn bounce_job() -> [BounceJob; 1] {
    [BounceJob {
        recipient: "nobody@example.com".into(),
        code: 550,
        status: "5.1.1".into(),
        text: "mailbox unavailable".into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_are_suppressed_for_spam_and_viruses_even_when_spf_passes() {
    let env = env().await;
    let (bouncer, markers) = (env.bouncer(), env.markers());
    let cases = [
        (Verdict::Fail, Verdict::Pass, Suppression::Spam),
        (Verdict::Pass, Verdict::Fail, Suppression::Virus),
        (Verdict::Fail, Verdict::Fail, Suppression::Virus),
    ];
    for (spam, virus, expected) in cases {
        let mut v = verdicts(Verdict::Pass, Verdict::Pass);
        v.spam = spam;
        v.virus = virus;
        let report = bouncer
            .bounce(
                "ses-spam",
                &original(),
                "alice@outside.example",
                &v,
                &bounce_job(),
                &markers,
            )
            .await
            .unwrap();
        assert_eq!(report, BounceReport::Suppressed { reason: expected });
    }
    // Gray or unknown spam verdicts are not FAIL: the DSN goes out.
    let mut v = verdicts(Verdict::Fail, Verdict::Pass);
    v.spam = Verdict::Gray;
    v.virus = Verdict::Unknown;
    let report = bouncer
        .bounce(
            "ses-gray",
            &original(),
            "alice@outside.example",
            &v,
            &bounce_job(),
            &markers,
        )
        .await
        .unwrap();
    assert!(matches!(report, BounceReport::Sent { .. }), "{report:?}");
    assert_eq!(env.sent().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_honours_if_none_match() {
    // The claim protocol rests on this: a second conditional create of a key fails (412)
    // and leaves the first object as it was.
    let env = env().await;
    let url = S3Url {
        bucket: BUCKET.into(),
        key: "claims/k".into(),
    };
    let first = env
        .s3
        .put_if_absent(&url, b"one".to_vec(), "text/plain")
        .await
        .unwrap();
    assert!(matches!(first, Created::Yes { .. }), "{first:?}");
    let second = env
        .s3
        .put_if_absent(&url, b"two".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(second, Created::Exists);
    assert_eq!(env.s3.get(&url).await.unwrap().bytes, b"one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_claim_loses_until_the_first_is_confirmed() {
    let env = env().await;
    let (a, b) = (env.markers_of("consumer-a"), env.markers_of("consumer-b"));
    let key = a.marker_key("ses-5", "relay", &["x@partner.example".into()]);
    let detail = serde_json::json!({"kind": "relay"});
    assert_eq!(a.claim(&key, &detail).await.unwrap(), Claim::Won);
    let record = a.record(&key).await.unwrap().expect("the claim exists");
    assert_eq!(record["state"], "claimed");
    assert_eq!(record["owner"], "consumer-a");
    assert!(record["claimed_at_ms"].as_u64().unwrap() > 0);

    // Another consumer while A may be sending: transient, retried later.
    let err = b.claim(&key, &detail).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(matches!(err, SendError::ClaimHeld(_)), "{err:?}");
    assert!(
        err.to_string().contains("claimed by another consumer"),
        "{err}"
    );

    a.confirm(&key, &detail, "ses-out-1").await.unwrap();
    let record = a.record(&key).await.unwrap().unwrap();
    assert_eq!(record["state"], "sent");
    assert_eq!(record["ses_message_id"], "ses-out-1");
    assert_eq!(b.claim(&key, &detail).await.unwrap(), Claim::AlreadySent);
    assert_eq!(a.claim(&key, &detail).await.unwrap(), Claim::AlreadySent);

    // A record from before claims existed (no state) counts as sent.
    let old = a.marker_key("ses-old", "relay", &[]);
    env.s3
        .put(
            &S3Url {
                bucket: BUCKET.into(),
                key: old.clone(),
            },
            br#"{"ses_message_id":"x"}"#.to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(b.claim(&old, &detail).await.unwrap(), Claim::AlreadySent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_a_claimed_but_unconfirmed_send_is_not_sent_again() {
    let env = env().await;
    let at_most_once = |mut m: Markers| {
        m.sends = SendGuarantee::AtMostOnce;
        m
    };
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into()],
        ..Default::default()
    };
    // Consumer A claimed the chunk and was killed before SES answered (or before it could
    // confirm): the claim is all that is left.
    let dead = at_most_once(env.markers_of("consumer-a"));
    let key = dead.marker_key("ses-6", "relay", &job.recipients);
    assert_eq!(
        dead.claim(&key, &serde_json::json!({"kind": "relay"}))
            .await
            .unwrap(),
        Claim::Won
    );

    // Consumer B inside A's lease: A might still be sending, so B neither sends nor
    // finishes the message.
    let err = env
        .relay()
        .relay(
            "ses-6",
            "example.com",
            &job,
            &original(),
            &env.markers_of("b"),
        )
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(env.sent().is_empty());

    // After the lease: unconfirmed, reported, not sent (at most once).
    let mut late = at_most_once(env.markers_of("consumer-b"));
    late.lease = Duration::from_millis(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = env
        .relay()
        .relay("ses-6", "example.com", &job, &original(), &late)
        .await
        .unwrap();
    assert_eq!(report.unconfirmed, ["bob@partner.example"]);
    assert!(report.sent.is_empty() && report.already_sent.is_empty());
    assert!(env.sent().is_empty(), "a stale claim was sent again");

    // A's own leftover claim after a restart of the same pipeline is unconfirmed at once.
    let report = env
        .relay()
        .relay("ses-6", "example.com", &job, &original(), &dead)
        .await
        .unwrap();
    assert_eq!(report.unconfirmed, ["bob@partner.example"]);
    assert!(env.sent().is_empty());

    // The same for a bounce.
    let key = dead.marker_key("ses-7", "bounce", &["nobody@example.com".into()]);
    dead.claim(&key, &serde_json::json!({"kind": "bounce"}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = env
        .bouncer()
        .bounce(
            "ses-7",
            &original(),
            "alice@outside.example",
            &verdicts(Verdict::Pass, Verdict::Pass),
            &bounce_job(),
            &late,
        )
        .await
        .unwrap();
    assert_eq!(report, BounceReport::Unconfirmed);
    assert!(env.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_an_unconfirmed_send_is_sent_again_once() {
    let env = env().await;
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into()],
        ..Default::default()
    };
    // Consumer A claimed the chunk and was killed before it could confirm the send.
    let dead = env.markers_of("consumer-a");
    assert_eq!(dead.sends, SendGuarantee::AtLeastOnce, "the default");
    let key = dead.marker_key("ses-8", "relay", &job.recipients);
    assert_eq!(
        dead.claim(&key, &serde_json::json!({"kind": "relay"}))
            .await
            .unwrap(),
        Claim::Won
    );

    // Inside A's lease B waits (A may be sending right now).
    let err = env
        .relay()
        .relay(
            "ses-8",
            "example.com",
            &job,
            &original(),
            &env.markers_of("b"),
        )
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(env.sent().is_empty());

    // After the lease B sends it again: nothing lost, and counted as a resend.
    let mut late = env.markers_of("consumer-b");
    late.lease = Duration::from_millis(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = env
        .relay()
        .relay("ses-8", "example.com", &job, &original(), &late)
        .await
        .unwrap();
    assert_eq!(report.resent, ["bob@partner.example"]);
    assert_eq!(report.sent, ["bob@partner.example"]);
    assert!(report.unconfirmed.is_empty());
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, ["bob@partner.example"]);
    assert!(
        sent[0].2.contains("Message-ID: <q1@outside.example>"),
        "the resent copy keeps the Message-ID, so a receiver can tell the two apart: {}",
        sent[0].2
    );
    let record = late.record(&key).await.unwrap().unwrap();
    assert_eq!(record["state"], "sent", "{record}");
    assert_eq!(record["resends"], 1, "{record}");
    assert_eq!(record["resend_of"], "consumer-a", "{record}");

    // Confirmed now: a further retry sends nothing.
    let report = env
        .relay()
        .relay("ses-8", "example.com", &job, &original(), &late)
        .await
        .unwrap();
    assert_eq!(report.already_sent, ["bob@partner.example"]);
    assert_eq!(env.sent().len(), 1);

    // A bounce the same way.
    let key = dead.marker_key("ses-9", "bounce", &["nobody@example.com".into()]);
    dead.claim(&key, &serde_json::json!({"kind": "bounce"}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = env
        .bouncer()
        .bounce(
            "ses-9",
            &original(),
            "alice@outside.example",
            &verdicts(Verdict::Pass, Verdict::Pass),
            &bounce_job(),
            &late,
        )
        .await
        .unwrap();
    assert!(
        matches!(&report, BounceReport::Resent { to, .. } if to == "alice@outside.example"),
        "{report:?}"
    );
    assert_eq!(env.sent().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_ses_refused_releases_its_claim_and_is_sent_on_retry() {
    let env = env().await;
    let markers = env.markers();
    let mut relay = env.relay();
    relay.from = "forwarder@unverified.example".into();
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into()],
        ..Default::default()
    };
    let err = relay
        .relay("ses-8", "example.com", &job, &original(), &markers)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Send { failure, .. } if failure.is_permanent() && !failure.maybe_sent()),
        "{err:?}"
    );
    assert!(err.to_string().contains("SendEmail"), "{err}");
    let key = markers.marker_key("ses-8", "relay", &job.recipients);
    assert_eq!(
        markers.record(&key).await.unwrap(),
        None,
        "SES answered with an error, so nothing was sent and the claim is gone"
    );
    env.ses
        .create_email_identity("unverified.example")
        .await
        .unwrap();
    let report = relay
        .relay("ses-8", "example.com", &job, &original(), &markers)
        .await
        .unwrap();
    assert_eq!(report.sent, ["bob@partner.example"]);
    assert_eq!(env.sent().len(), 1);
    let record = markers.record(&key).await.unwrap().unwrap();
    assert_eq!(record["state"], "sent");
    assert!(!record["ses_message_id"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumers_relaying_the_same_message_send_it_once() {
    let env = env().await;
    // Two daemons: their own SES clients and claim owners, one bucket and one SES.
    let other = Relay {
        via: Arc::new(SesTransport(Ses::for_endpoint(
            &env.moto.endpoint,
            "us-east-1",
        ))),
        ..env.relay()
    };
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into(), "carol@partner.example".into()],
        ..Default::default()
    };
    let rounds = 12;
    for i in 0..rounds {
        let id = format!("ses-race-{i}");
        let ma = env.markers_of("daemon-a");
        let mb = Markers::new(
            S3::for_endpoint(&env.moto.endpoint, "us-east-1"),
            BUCKET.into(),
            "markers".into(),
            "daemon-b".into(),
        );
        let relay = env.relay();
        let msg = original();
        let (a, b) = tokio::join!(
            relay.relay(&id, "example.com", &job, &msg, &ma),
            other.relay(&id, "example.com", &job, &msg, &mb),
        );
        let sent_now = [&a, &b]
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.sent.len() == 2))
            .count();
        assert_eq!(sent_now, 1, "round {i}: {a:?} / {b:?}");
        for r in [&a, &b] {
            match r {
                Ok(r) => assert!(r.unconfirmed.is_empty(), "{r:?}"),
                Err(e) => assert!(!e.is_permanent(), "the loser retries later: {e}"),
            }
        }
    }
    let sent = env.sent();
    assert_eq!(sent.len(), rounds, "one send per message: {sent:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hops_are_counted_on_the_message_as_received() {
    let env = env().await;
    // A rule removed the loop headers: the edited message carries none, but the original
    // came through max_hops (3) relays.
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into()],
        hops_received: 3,
        ..Default::default()
    };
    let report = env
        .relay()
        .relay("ses-9", "example.com", &job, &original(), &env.markers())
        .await
        .unwrap();
    assert!(report.sent.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].kind, RefusalKind::Loop);
    assert!(report.refused[0].kind.is_policy());
    assert!(env.sent().is_empty());

    // One hop fewer is relayed, with one more hop header on the copy.
    let job = RelayJob {
        hops_received: 2,
        ..job
    };
    let report = env
        .relay()
        .relay("ses-10", "example.com", &job, &original(), &env.markers())
        .await
        .unwrap();
    assert_eq!(report.sent, ["bob@partner.example"]);
}
