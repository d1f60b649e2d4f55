//! The relay and the bouncer through a smarthost (a real SMTP server, aiosmtpd on loopback),
//! with the send claims in moto's S3: the same allow list, loop guard and rewrite as through
//! SES, one claim per recipient, a 5xx refusal reported for a DSN, nothing sent twice.

use std::sync::Arc;
use std::time::Duration;

use sluice_aws::S3;
use sluice_deliver::{Outbound, ServerConfig, SmtpSender};
use sluice_engine::{Verdict, Verdicts};
use sluice_inbound::deliver::{
    BounceJob, BounceReport, Bouncer, Markers, RefusalKind, Relay, RelayJob,
};
use sluice_mail::{Message, LOOP_HEADER};
use sluice_mailservers::SmtpSink;
use sluice_tests::Moto;

const ORIGINAL: &str = "Return-Path: <alice@outside.example>\r\n\
    DKIM-Signature: v=1; a=rsa-sha256; d=outside.example; s=s1; b=abc\r\n\
    From: Alice <alice@outside.example>\r\n\
    To: team@example.com\r\n\
    Subject: Quarterly numbers\r\n\
    Message-ID: <q1@outside.example>\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    The numbers are in.\r\n";

fn smarthost(sink: &SmtpSink) -> Outbound {
    Arc::new(
        SmtpSender::new(&ServerConfig {
            hello_name: Some("relay.example.com".into()),
            timeout: Duration::from_secs(10),
            ..ServerConfig::loopback(sink.port)
        })
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_and_bounces_through_a_smarthost_once() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    s3.create_bucket("acme-mail").await.unwrap();
    let markers = Markers::new(s3, "acme-mail".into(), "sent".into(), "consumer-a".into());
    let relay = Relay {
        via: smarthost(&sink),
        from: "forwarder@example.com".into(),
        allow_domains: vec!["partner.example".into()],
        max_hops: 3,
        arc: None,
    };
    let msg = Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
    let job = RelayJob {
        recipients: vec![
            "bob@partner.example".into(),
            "carol@partner.example".into(),
            "reject-dan@partner.example".into(),
            "eve@elsewhere.example".into(),
        ],
        ..Default::default()
    };
    let report = relay
        .relay("m-1", "example.com", &job, &msg, &markers)
        .await
        .unwrap();
    assert_eq!(
        report.sent,
        ["bob@partner.example", "carol@partner.example"]
    );
    let kinds: Vec<(String, RefusalKind)> = report
        .refused
        .iter()
        .map(|r| (r.recipient.clone(), r.kind))
        .collect();
    assert!(
        kinds.contains(&("reject-dan@partner.example".into(), RefusalKind::Rejected)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("eve@elsewhere.example".into(), RefusalKind::NotAllowed)),
        "{kinds:?}"
    );
    let dan = report
        .refused
        .iter()
        .find(|r| r.kind == RefusalKind::Rejected)
        .unwrap();
    assert!(
        dan.reason.contains("550") && dan.reason.contains("5.1.1"),
        "{}",
        dan.reason
    );

    let received = sink.received();
    assert_eq!(
        received.len(),
        2,
        "one transaction per recipient: {received:?}"
    );
    for r in &received {
        // Re-originated: the envelope and From are the forwarder's (SPF passes for its
        // domain at the next hop), the original sender is the Reply-To, a hop is counted.
        assert_eq!(r.mail_from, "forwarder@example.com");
        let text = String::from_utf8_lossy(&r.data);
        assert!(
            text.contains("via example.com") && text.contains("<forwarder@example.com>"),
            "{text}"
        );
        assert!(
            text.contains("Reply-To: Alice <alice@outside.example>"),
            "{text}"
        );
        assert!(
            text.contains(LOOP_HEADER) && !text.contains("DKIM-Signature"),
            "{text}"
        );
        assert!(text.ends_with("The numbers are in.\r\n"), "{text}");
    }

    // A retry (SQS redelivery) sends nothing again; the refused recipient is tried again
    // (its claim was released: the smarthost surely did not take it) and refused again.
    let again = relay
        .relay("m-1", "example.com", &job, &msg, &markers)
        .await
        .unwrap();
    assert_eq!(
        again.already_sent,
        ["bob@partner.example", "carol@partner.example"]
    );
    assert!(again.sent.is_empty());
    assert_eq!(sink.received().len(), 2);

    // The DSN for dan goes out through the smarthost with a null envelope sender, once.
    let bouncer = Bouncer {
        via: smarthost(&sink),
        from: "mailer-daemon@example.com".into(),
        reporting_mta: "mx.example.com".into(),
    };
    let verdicts = Verdicts {
        spf: Verdict::Pass,
        dkim: Verdict::Pass,
        dmarc: Verdict::Unknown,
        spam: Verdict::Pass,
        virus: Verdict::Pass,
        dmarc_policy: None,
    };
    let jobs = [BounceJob {
        recipient: "reject-dan@partner.example".into(),
        code: 550,
        status: "5.1.1".into(),
        text: dan.reason.clone(),
    }];
    for attempt in 0..2 {
        let report = bouncer
            .bounce(
                "m-1",
                &msg,
                "alice@outside.example",
                &verdicts,
                &jobs,
                &markers,
            )
            .await
            .unwrap();
        if attempt == 0 {
            assert!(matches!(report, BounceReport::Sent { .. }), "{report:?}");
        } else {
            assert_eq!(report, BounceReport::AlreadySent);
        }
    }
    let received = sink.received();
    let dsns: Vec<_> = received
        .iter()
        .filter(|r| r.recipients == ["alice@outside.example"])
        .collect();
    assert_eq!(dsns.len(), 1, "{received:?}");
    assert_eq!(dsns[0].mail_from, "<>", "a DSN has a null envelope sender");
    let text = String::from_utf8_lossy(&dsns[0].data);
    assert!(
        text.contains("multipart/report") && text.contains("reject-dan@partner.example"),
        "{text}"
    );
}

/// Automatic replies through the smarthost with their memory in moto's S3 (what the Lambda
/// and a daemon on a queue use): one reply, none again for the same message or within the
/// interval, one again once the interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_remembered_in_s3_answer_a_sender_once_per_interval() {
    use sluice_inbound::deliver::{memory_key, Replier, ReplyStatus};
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    s3.create_bucket("acme-mail").await.unwrap();
    let markers = Markers::new(
        s3.clone(),
        "acme-mail".into(),
        "sent".into(),
        "consumer-a".into(),
    );
    let replier = Replier {
        via: smarthost(&sink),
    };
    let msg = Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
    let planned = sluice_chain::PlannedReply {
        step: "auto-reply".into(),
        from: "team@example.com".into(),
        to: "alice@outside.example".into(),
        request: sluice_engine::ReplyRequest {
            recipient: "team@example.com".into(),
            text: "We answer within a working day.".into(),
            subject: Some("We got your message".into()),
            once_per_days: 7,
        },
        suppressed: None,
    };
    let reply = |id: &'static str| replier.reply(id, &msg, &planned, &markers);

    assert!(matches!(
        reply("m-1").await.unwrap(),
        ReplyStatus::Sent { .. }
    ));
    assert_eq!(reply("m-1").await.unwrap(), ReplyStatus::AlreadySent);
    match reply("m-2").await.unwrap() {
        ReplyStatus::Suppressed { kind, .. } => assert_eq!(kind, "answered-recently"),
        other => panic!("{other:?}"),
    }
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].mail_from, "<>");
    assert_eq!(received[0].recipients, ["alice@outside.example"]);
    let text = String::from_utf8_lossy(&received[0].data);
    assert!(
        text.contains("Subject: We got your message")
            && text.contains("In-Reply-To: <q1@outside.example>"),
        "{text}"
    );

    // The memory is one object in the bucket; eight days later the sender is answered again.
    let url = sluice_aws::S3Url {
        bucket: "acme-mail".into(),
        key: memory_key(&markers, "team@example.com", "alice@outside.example"),
    };
    let record: serde_json::Value =
        serde_json::from_slice(&s3.get(&url).await.unwrap().bytes).unwrap();
    assert_eq!(record["message_id"], "m-1");
    let mut old = record.clone();
    old["sent_at_ms"] = serde_json::json!(record["sent_at_ms"].as_u64().unwrap() - 8 * 86_400_000);
    s3.put(&url, old.to_string().into_bytes(), "application/json")
        .await
        .unwrap();
    assert!(matches!(
        reply("m-3").await.unwrap(),
        ReplyStatus::Sent { .. }
    ));
    assert_eq!(sink.received().len(), 2);
}
