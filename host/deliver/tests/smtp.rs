//! The SMTP store against a real SMTP server (aiosmtpd) on loopback: the original envelope,
//! per-recipient RCPT results, the folder header, the bytes as Sluice handed them.

use std::time::Duration;

use sluice_chain::{ServerAddress, ServerConfig, SmtpStoreConfig, TlsMode};
use sluice_deliver::{
    DeliveryError, MailboxCopy, MailboxStore, SmtpStore, StoreRequest, TraceMeta, FOLDER_HEADER,
};
use sluice_mailservers::SmtpSink;

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
            address: ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: sink.port,
            },
            tls: TlsMode::None,
            tls_verify: true,
            hello_name: Some("sluice.test".into()),
            timeout: Duration::from_secs(10),
            max_connections: 1,
            credentials: None,
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
        matches!(result("reject-me@example.com"), Err(e @ DeliveryError::Rejected { .. }) if e.is_permanent())
    );
    assert!(
        matches!(result("defer-me@example.com"), Err(e @ DeliveryError::Deferred { .. }) if !e.is_permanent())
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
