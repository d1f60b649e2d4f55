//! What the daemon tests share: an SES world in moto (buckets, queue, identity), SES
//! notifications as SNS -> SQS delivers them, and the daemon run as a process.
#![allow(dead_code)]

pub mod sent;

use std::path::Path;
use std::process::{Command, Output};

use sluice_aws::{S3Url, Ses, Sqs, S3};
use sluice_tests::Moto;

pub const SENDER: &str = "alice@sender.example";

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An SES receipt notification for a message the S3 action stored, wrapped in the SNS
/// envelope an SNS -> SQS subscription delivers.
pub fn notification(id: &str, rcpts: &[&str], spf: &str, bucket: &str) -> String {
    notification_with(id, rcpts, spf, "PASS", bucket)
}

/// [`notification`] with the spam verdict given too.
pub fn notification_with(id: &str, rcpts: &[&str], spf: &str, spam: &str, bucket: &str) -> String {
    let ses = serde_json::json!({
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-20T10:15:04.312Z",
            "source": SENDER,
            "messageId": id,
            "destination": rcpts,
        },
        "receipt": {
            "timestamp": "2026-11-20T10:15:04.312Z",
            "recipients": rcpts,
            "spamVerdict": {"status": spam},
            "virusVerdict": {"status": "PASS"},
            "spfVerdict": {"status": spf},
            "dkimVerdict": {"status": "GRAY"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {
                "type": "S3",
                "topicArn": "arn:aws:sns:us-east-1:123456789012:ses-inbound",
                "bucketName": bucket,
                "objectKeyPrefix": "incoming/",
                "objectKey": format!("incoming/{id}"),
            },
        },
    });
    serde_json::json!({
        "Type": "Notification",
        "MessageId": format!("sns-{id}"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-inbound",
        "Subject": "Amazon SES Email Receipt Notification",
        "Message": ses.to_string(),
    })
    .to_string()
}

pub fn message(id: &str, to: &str) -> Vec<u8> {
    format!(
        "Return-Path: <{SENDER}>\r\nFrom: Alice Example <{SENDER}>\r\nTo: {to}\r\n\
         Subject: Quarterly numbers {id}\r\nMessage-ID: <{id}@sender.example>\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=s1; b=abc\r\n\
         Date: Fri, 20 Nov 2026 11:15:03 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\nNumbers attached soon.\r\n"
    )
    .into_bytes()
}

pub struct World {
    pub s3: S3,
    pub sqs: Sqs,
    pub queue: String,
}

impl World {
    /// Buckets `inbound` and `mail`, the queue `ses-inbound`, and the SES identity.
    pub fn new(rt: &tokio::runtime::Runtime, moto: &Moto, ses_moto: &Moto) -> World {
        let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
        let sqs = Sqs::for_endpoint(&moto.endpoint, "us-east-1");
        let queue = rt.block_on(async {
            s3.create_bucket("inbound").await.unwrap();
            s3.create_bucket("mail").await.unwrap();
            sqs.client()
                .create_queue()
                .queue_name("ses-inbound")
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        });
        verify_identity(rt, ses_moto);
        World { s3, sqs, queue }
    }

    pub fn put_message(&self, rt: &tokio::runtime::Runtime, id: &str, to: &str) {
        self.put_raw(rt, id, message(id, to));
    }

    /// Stores `raw` where the receipt rule's S3 action would have put message `id`.
    pub fn put_raw(&self, rt: &tokio::runtime::Runtime, id: &str, raw: Vec<u8>) {
        let url = S3Url::parse(&format!("s3://inbound/incoming/{id}")).unwrap();
        rt.block_on(self.s3.put(&url, raw, "message/rfc822"))
            .unwrap();
    }

    pub fn enqueue(&self, rt: &tokio::runtime::Runtime, body: &str) {
        rt.block_on(
            self.sqs
                .client()
                .send_message()
                .queue_url(&self.queue)
                .message_body(body)
                .send(),
        )
        .unwrap();
    }

    pub fn get(&self, rt: &tokio::runtime::Runtime, url: &str) -> Option<Vec<u8>> {
        rt.block_on(self.s3.get(&S3Url::parse(url).unwrap()))
            .ok()
            .map(|o| o.bytes)
    }

    /// Messages still in the queue (visible or in flight).
    pub fn left_in_queue(&self, rt: &tokio::runtime::Runtime) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = rt
            .block_on(
                self.sqs
                    .client()
                    .get_queue_attributes()
                    .queue_url(&self.queue)
                    .attribute_names(A::ApproximateNumberOfMessages)
                    .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .unwrap();
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            attrs
                .get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

pub fn verify_identity(rt: &tokio::runtime::Runtime, ses_moto: &Moto) {
    let ses = Ses::for_endpoint(&ses_moto.endpoint, "us-east-1");
    rt.block_on(ses.create_email_identity("example.com"))
        .unwrap();
}

/// Runs `sluice daemon` to the end; its log (stderr) has been checked for whole addresses.
pub fn daemon(
    env: &[(&'static str, String)],
    config: &Path,
    queue: &str,
    extra: &[&str],
) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "daemon",
            "--config",
            config.to_str().unwrap(),
            "--queue",
            queue,
            "--wait",
            "1",
        ])
        .args(extra)
        .envs(env.iter().cloned())
        .env("SLUICE_CACHE_DIR", cache.path())
        .output()
        .expect("sluice daemon runs");
    sluice_tests::assert_no_full_address("sluice daemon", &stderr(&out));
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Forwarded (relayed) destinations of the kill and fault tests' config.
pub const BOB_EXTERNAL: &str = "bob@gmail.example";
pub const CAROL_HOME: &str = "carol.home@gmail.example";

/// A plain message from [`SENDER`] to `rcpts`, its subject `"{subject} {id}"`.
pub fn plain_message(subject: &str, id: &str, rcpts: &[&str]) -> Vec<u8> {
    format!(
        "Return-Path: <{SENDER}>\r\nFrom: Alice Example <{SENDER}>\r\nTo: {}\r\n\
         Subject: {subject} {id}\r\nMessage-ID: <{id}@sender.example>\r\n\
         Date: Fri, 20 Nov 2026 11:15:03 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\nBody of {id}.\r\n",
        rcpts.join(", ")
    )
    .into_bytes()
}

/// The kill and fault tests' config, written to `dir/sluice.toml`: S3 in, S3 mailboxes,
/// SES relay with claims in `s3://markers/sent`; alias (alice, bob, carol; `info` to alice
/// and [`BOB_EXTERNAL`]), then `junk` when asked, then a forward of carol's mail to
/// [`CAROL_HOME`].
pub fn alias_and_forward_config(dir: &Path, junk: bool) -> std::path::PathBuf {
    let junk = if junk {
        format!(
            "\n[[domain.step]]\nplugin = \"{}\"\n",
            sluice_tests::rule("junk").display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
[inbound]
bucket = "inbound"
prefix = "incoming/"

[store]
kind = "s3"
bucket = "mail"
prefix = "mailboxes"

[relay]
kind = "ses"
from = "forwarder@example.com"
allow_domains = ["gmail.example"]
markers = "s3://markers/sent"

[[domain]]
name = "example.com"

[[domain.step]]
plugin = "{alias}"
[domain.step.config]
mailboxes = ["alice", "bob", "carol"]
[domain.step.config.aliases]
info = ["alice", "{BOB_EXTERNAL}"]
{junk}
[[domain.step]]
plugin = "{forward}"
config = {{ to = ["{CAROL_HOME}"], recipients = ["carol"] }}
"#,
        alias = sluice_tests::rule("alias").display(),
        forward = sluice_tests::rule("forward").display(),
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}
