//! `[store] kind = "s3"` against a real moto server: the key layout, SSE, the trace in the
//! object metadata, idempotent rewrites, and names that must never share a mailbox.

use sluice_aws::{Encryption, S3Url, S3};
use sluice_deliver::{S3Mailboxes, TraceMeta};
use sluice_tests::Moto;

const BUCKET: &str = "acme-mail";

const ORIGINAL: &str = "From: Alice <alice@outside.example>\r\n\
    To: team@example.com\r\n\
    Subject: Quarterly numbers\r\n\
    Message-ID: <q1@outside.example>\r\n\
    \r\n\
    The numbers are in.\r\n";

struct Env {
    _moto: Moto,
    s3: S3,
}

async fn env() -> Env {
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    s3.create_bucket(BUCKET).await.unwrap();
    Env { _moto: moto, s3 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_store_writes_the_key_with_sse_and_trace_metadata() {
    let env = env().await;
    let boxes = S3Mailboxes {
        s3: env.s3.clone(),
        bucket: BUCKET.into(),
        prefix: "mailboxes".into(),
        encryption: Encryption::S3,
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
async fn mailboxes_of_look_alike_addresses_are_distinct_objects() {
    let env = env().await;
    let boxes = S3Mailboxes {
        s3: env.s3.clone(),
        bucket: BUCKET.into(),
        prefix: "mailboxes".into(),
        encryption: Encryption::S3,
    };
    let trace = TraceMeta::default();
    let long = |c: char| format!("{}{c}@example.com", "x".repeat(200));
    let recipients = [
        "a/b@example.com".to_string(),
        "a_b@example.com".to_string(),
        "a\\b@example.com".to_string(),
        "a%2Fb@example.com".to_string(),
        long('1'),
        long('2'),
    ];
    let mut keys = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        let key = boxes
            .store(r, "INBOX", "m1", format!("copy {i}").into_bytes(), &trace)
            .await
            .unwrap();
        keys.push(key);
    }
    for (i, key) in keys.iter().enumerate() {
        let url = S3Url {
            bucket: BUCKET.into(),
            key: key.clone(),
        };
        assert_eq!(
            env.s3.get(&url).await.unwrap().bytes,
            format!("copy {i}").as_bytes(),
            "{key}"
        );
    }
    assert_eq!(keys[1], "mailboxes/example.com/a_b/INBOX/m1.eml");
    assert_eq!(keys[0], "mailboxes/example.com/a%2Fb/INBOX/m1.eml");

    let err = boxes
        .store(
            &format!("{}@example.com", "y".repeat(256)),
            "INBOX",
            "m1",
            b"x".to_vec(),
            &trace,
        )
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        matches!(err, sluice_deliver::MailboxError::Unstorable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("local part"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_store_encrypts_with_kms_when_configured() {
    let env = env().await;
    let key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for (prefix, key_id) in [("named", Some(key_arn.to_string())), ("managed", None)] {
        let boxes = S3Mailboxes {
            s3: env.s3.clone(),
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            encryption: Encryption::Kms {
                key_id: key_id.clone(),
            },
        };
        let key = boxes
            .store(
                "team@example.com",
                "INBOX",
                "ses-kms",
                ORIGINAL.as_bytes().to_vec(),
                &TraceMeta::default(),
            )
            .await
            .unwrap();
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
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{prefix}"
        );
        if let Some(arn) = &key_id {
            assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
        }
    }
}
