//! The SMTP store against a real SMTP server (aiosmtpd) on loopback: the original envelope,
//! per-recipient RCPT results, the folder header, the bytes as Sluice handed them.

use std::time::Duration;

use sluice_deliver::{Credentials, ServerConfig, SmtpStoreConfig, TlsMode};
use sluice_deliver::{
    MailboxCopy, MailboxError, MailboxStore, SmtpStore, StoreRequest, TraceMeta, FOLDER_HEADER,
};
use sluice_mailservers::{Secure, SmtpSink};

fn copy(recipient: &str, folder: &str) -> MailboxCopy {
    MailboxCopy {
        recipient: recipient.into(),
        folder: folder.into(),
    }
}

const MESSAGE: &[u8] = b"From: Sender <sender@outside.example>\r\nTo: team@example.com\r\nSubject: to the MTA\r\n\r\nHello.\r\n.dot\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_the_original_envelope_to_the_mta() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let store = SmtpStore::new(&SmtpStoreConfig {
        server: ServerConfig {
            hello_name: Some("sluice.test".into()),
            timeout: Duration::from_secs(10),
            max_connections: 1,
            ..ServerConfig::loopback(sink.port)
        },
        markers: None,
    })
    .unwrap();
    let copies = [
        copy("alice@example.com", "INBOX"),
        copy("bob@example.com", "INBOX"),
        copy("carol@example.com", "Junk"),
        copy("reject-me@example.com", "INBOX"),
        copy("defer-me@example.com", "INBOX"),
    ];
    let outcomes = store
        .store(StoreRequest {
            message_id: "m-1",
            mail_from: "sender@outside.example",
            bytes: MESSAGE,
            copies: &copies,
            trace: &TraceMeta::default(),
        })
        .await;
    let result = |r: &str| {
        &outcomes
            .iter()
            .find(|o| o.copy.recipient == r)
            .unwrap()
            .result
    };
    for ok in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        assert!(result(ok).is_ok(), "{ok}: {:?}", result(ok));
    }
    assert!(
        matches!(result("reject-me@example.com"), Err(e @ MailboxError::Rejected { .. }) if e.is_permanent())
    );
    assert!(
        matches!(result("defer-me@example.com"), Err(e @ MailboxError::Deferred { .. }) if !e.is_permanent())
    );

    let received = sink.received();
    assert_eq!(
        received.len(),
        2,
        "one transaction per folder: {received:?}"
    );
    let inbox = received.iter().find(|r| r.recipients.len() == 2).unwrap();
    assert_eq!(inbox.mail_from, "sender@outside.example");
    assert_eq!(inbox.recipients, ["alice@example.com", "bob@example.com"]);
    assert_eq!(
        inbox.data, MESSAGE,
        "the bytes Sluice handed over, unchanged"
    );
    let junk = received
        .iter()
        .find(|r| r.recipients == ["carol@example.com"])
        .unwrap();
    let expected = [format!("{FOLDER_HEADER}: Junk\r\n").as_bytes(), MESSAGE].concat();
    assert_eq!(junk.data, expected);
}

fn secure_store(
    sink: &SmtpSink,
    ca: Option<std::path::PathBuf>,
    secret: &std::path::Path,
) -> SmtpStore {
    store_with_tls(sink, TlsMode::StartTls, ca, secret)
}

fn store_with_tls(
    sink: &SmtpSink,
    tls: TlsMode,
    ca: Option<std::path::PathBuf>,
    secret: &std::path::Path,
) -> SmtpStore {
    // Plain text to a TLS port waits for a greeting that never comes: wait less.
    let timeout = Duration::from_secs(if tls == TlsMode::None { 2 } else { 10 });
    SmtpStore::new(&SmtpStoreConfig {
        server: ServerConfig {
            tls,
            tls_ca_file: ca,
            timeout,
            credentials: Some(Credentials::File(secret.to_path_buf())),
            ..ServerConfig::loopback(sink.port)
        },
        markers: None,
    })
    .unwrap()
}

async fn send_one(store: &SmtpStore) -> Result<String, MailboxError> {
    let copies = [copy("alice@example.com", "INBOX")];
    let mut outcomes = store
        .store(StoreRequest {
            message_id: "m-tls",
            mail_from: "sender@outside.example",
            bytes: MESSAGE,
            copies: &copies,
            trace: &TraceMeta::default(),
        })
        .await;
    outcomes.remove(0).result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_checks_the_certificate_and_auth_reads_the_secret_file() {
    let Some(sink) = SmtpSink::start_secure(Secure {
        user: "relay-user".into(),
        password: "s3cret:with colon".into(),
        implicit: false,
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp.secret");
    std::fs::write(&secret, "relay-user:s3cret:with colon\n").unwrap();

    // Checked against the server's own CA: delivered over TLS, authenticated.
    let at = send_one(&secure_store(&sink, Some(sink.ca_file()), &secret)).await;
    assert!(at.is_ok(), "{at:?}");
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].tls && received[0].authenticated,
        "{:?}",
        received[0]
    );
    assert_eq!(received[0].data, MESSAGE);

    // A wrong password: a setup error, not a bounce.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "relay-user:wrong\n").unwrap();
    match send_one(&secure_store(&sink, Some(sink.ca_file()), &wrong)).await {
        Err(e @ MailboxError::Setup { .. }) => assert!(!e.is_permanent(), "{e}"),
        other => panic!("wrong password: {other:?}"),
    }
    // The certificate against the system roots (its CA is not one of them): refused, and transient
    // (a certificate problem is for the operator to fix, not a reason to bounce).
    match send_one(&secure_store(&sink, None, &secret)).await {
        Err(e @ MailboxError::Connection { .. }) => {
            assert!(e.to_string().contains("TLS handshake failed"), "{e}");
            assert!(!e.is_permanent());
        }
        other => panic!("an unknown certificate must not be accepted: {other:?}"),
    }

    assert_eq!(sink.received().len(), 1, "nothing else arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_checks_the_certificate_before_anything_is_said() {
    let Some(sink) = SmtpSink::start_secure(Secure {
        user: "relay-user".into(),
        password: "pw".into(),
        implicit: true,
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp.secret");
    std::fs::write(&secret, "relay-user:pw\n").unwrap();

    let at = send_one(&store_with_tls(
        &sink,
        TlsMode::Implicit,
        Some(sink.ca_file()),
        &secret,
    ))
    .await;
    assert!(at.is_ok(), "{at:?}");
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].authenticated, "{:?}", received[0]);
    assert_eq!(received[0].data, MESSAGE);

    // Not the server's CA: the handshake fails and nothing is sent.
    match send_one(&store_with_tls(&sink, TlsMode::Implicit, None, &secret)).await {
        Err(e @ MailboxError::Connection { .. }) => assert!(!e.is_permanent(), "{e}"),
        other => panic!("an unknown certificate must not be accepted: {other:?}"),
    }
    // Plain text to a TLS port gets no SMTP greeting: a transient error, not a bounce.
    match send_one(&store_with_tls(&sink, TlsMode::None, None, &secret)).await {
        Err(e) => assert!(!e.is_permanent(), "{e}"),
        Ok(at) => panic!("plain text to an implicit-TLS port delivered: {at}"),
    }
    assert_eq!(sink.received().len(), 1, "nothing else arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_wants_tls_first_is_a_setup_error_not_a_bounce() {
    let Some(sink) = SmtpSink::start_secure(Secure {
        user: "u".into(),
        password: "p".into(),
        implicit: false,
    }) else {
        return;
    };
    let store = SmtpStore::new(&SmtpStoreConfig {
        server: ServerConfig {
            timeout: Duration::from_secs(10),
            ..ServerConfig::loopback(sink.port)
        },
        markers: None,
    })
    .unwrap();
    match send_one(&store).await {
        Err(e @ MailboxError::Setup { .. }) => assert!(e.to_string().contains("530"), "{e}"),
        other => panic!("{other:?}"),
    }
}
