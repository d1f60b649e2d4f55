//! Deliveries against a real moto server: S3 mailboxes, SES relay with markers and the loop
//! guard, DSN bounces.

use sluice_aws::{S3Url, Ses, S3};
use sluice_engine::{Verdict, Verdicts};
use sluice_inbound::deliver::{
    BounceJob, BounceReport, Bouncer, Markers, RelayJob, S3Mailboxes, SesRelay, TraceMeta,
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
        Markers {
            s3: self.s3.clone(),
            bucket: BUCKET.into(),
            prefix: "markers".into(),
        }
    }

    fn relay(&self) -> SesRelay {
        SesRelay {
            ses: self.ses.clone(),
            from: "forwarder@example.com".into(),
            allow_domains: vec!["partner.example".into()],
            max_hops: 3,
        }
    }

    fn bouncer(&self) -> Bouncer {
        Bouncer {
            ses: self.ses.clone(),
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
async fn mailbox_store_writes_the_key_with_sse_and_trace_metadata() {
    let env = env().await;
    let boxes = S3Mailboxes {
        s3: env.s3.clone(),
        bucket: BUCKET.into(),
        prefix: "mailboxes".into(),
    };
    let trace = TraceMeta {
        steps: vec![("banner".into(), "ok".into()), ("junk".into(), "ok".into())],
    };
    let key = boxes
        .store(
            "Team@Example.com",
            "Junk",
            "ses-abc",
            ORIGINAL.as_bytes().to_vec(),
            &trace,
        )
        .await
        .unwrap();
    assert_eq!(key, "mailboxes/example.com/team/Junk/ses-abc.eml");
    let url = S3Url {
        bucket: BUCKET.into(),
        key: key.clone(),
    };
    assert_eq!(env.s3.get(&url).await.unwrap().bytes, ORIGINAL.as_bytes());

    let head = env
        .s3
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    let meta = head.metadata().expect("metadata");
    assert_eq!(meta["sluice-steps"], "banner:ok,junk:ok");
    assert_eq!(meta["sluice-message-id"], "ses-abc");
    assert_eq!(meta["sluice-recipient"], "Team@Example.com");

    // A redelivery writes the same key again.
    let again = boxes
        .store(
            "team@example.com",
            "Junk",
            "ses-abc",
            ORIGINAL.as_bytes().to_vec(),
            &trace,
        )
        .await
        .unwrap();
    assert_eq!(again, key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sends_once_to_allowed_domains_only() {
    let env = env().await;
    let (relay, markers) = (env.relay(), env.markers());
    let job = RelayJob {
        recipients: vec!["bob@partner.example".into(), "mallory@evil.example".into()],
        from: None,
        subject_prefix: Some("[FWD]".into()),
    };
    let report = relay
        .relay("ses-1", "example.com", &job, &original(), &markers)
        .await
        .unwrap();
    assert_eq!(report.sent, ["bob@partner.example"]);
    assert!(report.already_sent.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, "mallory@evil.example");
    assert!(report.refused[0].1.contains("no open relay"));

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

    // The SQS redelivery: the marker says it was sent.
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
    assert!(report.refused[0].1.contains("loop"), "{:?}", report.refused);
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
            reason: "no backscatter: neither SPF nor DKIM passed".into()
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
    assert_eq!(
        report,
        BounceReport::Sent {
            to: "alice@outside.example".into()
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_report_missing_and_recorded() {
    let env = env().await;
    let markers = env.markers();
    let key = markers.marker_key("ses-5", "relay", &["a@partner.example".into()]);
    assert!(!markers.is_done(&key).await.unwrap());
    markers
        .record(&key, serde_json::json!({"ok": true}))
        .await
        .unwrap();
    assert!(markers.is_done(&key).await.unwrap());
}
