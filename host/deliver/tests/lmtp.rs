//! The LMTP store against a real Dovecot on loopback: folders, per-recipient replies after
//! DATA (2xx done, 4xx deferred, 5xx refused), the bytes as Sluice handed them, connection
//! reuse, and a server that goes away.

use std::time::Duration;

use sluice_deliver::{
    LmtpStore, MailboxCopy, MailboxError, MailboxStore, StoreOutcome, StoreRequest, TraceMeta,
};
use sluice_deliver::{LmtpStoreConfig, LmtpUser, ServerConfig, TlsMode};
use sluice_mailservers::Dovecot;

fn store_for(dovecot: &Dovecot) -> LmtpStore {
    LmtpStore::new(&LmtpStoreConfig {
        server: ServerConfig {
            hello_name: Some("sluice.test".into()),
            timeout: Duration::from_secs(10),
            max_connections: 2,
            ..ServerConfig::loopback(dovecot.lmtp_port)
        },
        user: LmtpUser::Address,
        folder_delimiter: "+".into(),
        markers: None,
    })
    .unwrap()
}

/// Stores `bytes` for `copies` as message `id` from `mail_from`.
async fn store_copies(
    store: &LmtpStore,
    id: &str,
    mail_from: &str,
    bytes: &[u8],
    copies: &[MailboxCopy],
) -> Vec<StoreOutcome> {
    store
        .store(StoreRequest {
            message_id: id,
            mail_from,
            bytes,
            copies,
            trace: &TraceMeta::default(),
        })
        .await
}

fn copy(recipient: &str, folder: &str) -> MailboxCopy {
    MailboxCopy {
        recipient: recipient.into(),
        folder: folder.into(),
    }
}

/// The message with CRLF line ends, as SMTP/LMTP carries it.
fn crlf(message: &[u8]) -> Vec<u8> {
    let stuffed = sluice_deliver::dot_stuffed(message);
    // Undo the stuffing and drop the final ".\r\n": what the server stores.
    let body = &stuffed[..stuffed.len() - 3];
    let mut out = Vec::new();
    let mut start = true;
    for (i, b) in body.iter().enumerate() {
        if start && *b == b'.' && body.get(i + 1) == Some(&b'.') {
            start = false;
            continue;
        }
        out.push(*b);
        start = *b == b'\n';
    }
    out
}

/// What Dovecot stored is what Sluice sent, after the trace fields LMTP delivery prepends
/// (Return-Path, Delivered-To, Received).
fn assert_stored(stored: &[u8], sent: &[u8]) {
    let sent = crlf(sent);
    assert!(
        stored.ends_with(&sent),
        "stored copy does not end with the sent message:\n{}",
        String::from_utf8_lossy(stored)
    );
    let prefix = String::from_utf8_lossy(&stored[..stored.len() - sent.len()]).to_string();
    for line in prefix.split("\r\n").filter(|l| !l.is_empty()) {
        let is_added = ["Return-Path:", "Delivered-To:", "Received:"]
            .iter()
            .any(|h| line.starts_with(h))
            || line.starts_with([' ', '\t']);
        assert!(is_added, "unexpected line before the message: {line:?}");
    }
}

const MESSAGE: &[u8] = b"From: Sender <sender@outside.example>\r\nTo: alice@example.com\r\nSubject: per-recipient replies\r\nMessage-ID: <lmtp-1@outside.example>\r\n\r\nHello.\r\n.leading dot line\r\nBye.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_replies_folders_and_bytes() {
    let Some(dovecot) =
        Dovecot::start(&["alice@example.com", "bob@example.com", "carol@example.com"])
    else {
        return;
    };
    dovecot.tempfail("carol@example.com", true);
    let store = store_for(&dovecot);
    assert!(!store.overwrites());
    let copies = [
        copy("alice@example.com", "INBOX"),
        copy("alice@example.com", "Junk"),
        copy("bob@example.com", "Archive 2026"),
        copy("nobody@example.com", "INBOX"),
        copy("carol@example.com", "INBOX"),
    ];
    let outcomes = store_copies(&store, "m-1", "sender@outside.example", MESSAGE, &copies).await;
    assert_eq!(outcomes.len(), copies.len());
    let result = |r: &str, f: &str| {
        outcomes
            .iter()
            .find(|o| o.copy == copy(r, f))
            .map(|o| &o.result)
            .unwrap()
    };
    for (r, f) in [
        ("alice@example.com", "INBOX"),
        ("alice@example.com", "Junk"),
        ("bob@example.com", "Archive 2026"),
    ] {
        let at = result(r, f)
            .as_ref()
            .unwrap_or_else(|e| panic!("{r} {f}: {e}"));
        assert!(
            at.starts_with(&format!("lmtp 127.0.0.1:{}", dovecot.lmtp_port)),
            "{at}"
        );
    }
    match result("nobody@example.com", "INBOX") {
        Err(e @ MailboxError::Rejected { reply, .. }) => {
            assert_eq!(reply.code, 550);
            assert_eq!(reply.status.as_deref(), Some("5.1.1"));
            assert!(e.is_permanent());
            assert_eq!(e.bounce_status(), (550, "5.1.1".to_string()));
        }
        other => panic!("unknown user: {other:?}"),
    }
    match result("carol@example.com", "INBOX") {
        Err(e @ MailboxError::Deferred { reply, .. }) => {
            assert_eq!(reply.code / 100, 4, "{reply}");
            assert!(!e.is_permanent());
        }
        other => panic!("tempfailed user: {other:?}"),
    }

    // Read back over IMAP: each copy once, in its folder, the bytes Sluice sent.
    let inbox = dovecot.fetch("alice@example.com", "INBOX");
    let junk = dovecot.fetch("alice@example.com", "Junk");
    let archive = dovecot.fetch("bob@example.com", "Archive 2026");
    assert_eq!((inbox.len(), junk.len(), archive.len()), (1, 1, 1));
    for m in [&inbox[0], &junk[0], &archive[0]] {
        assert_stored(m, MESSAGE);
    }
    assert!(dovecot.fetch("bob@example.com", "INBOX").is_empty());

    // carol's server recovers: the retry (of only her copy) arrives.
    dovecot.tempfail("carol@example.com", false);
    let retry = [copy("carol@example.com", "INBOX")];
    let outcomes = store_copies(&store, "m-1", "sender@outside.example", MESSAGE, &retry).await;
    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result);
    let carol = dovecot.fetch("carol@example.com", "INBOX");
    assert_eq!(carol.len(), 1);
    assert_stored(&carol[0], MESSAGE);
    assert_eq!(
        dovecot.fetch("alice@example.com", "INBOX").len(),
        1,
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_and_a_stopped_server_is_transient() {
    let Some(mut dovecot) = Dovecot::start(&["alice@example.com"]) else {
        return;
    };
    let store = store_for(&dovecot);
    let copies = [copy("alice@example.com", "INBOX")];
    let bare_lf = b"From: a@outside.example\nSubject: bare LF\n\nline one\nline two\n".to_vec();
    for (i, bytes) in [MESSAGE.to_vec(), bare_lf.clone(), MESSAGE.to_vec()]
        .iter()
        .enumerate()
    {
        let outcomes = store
            .store(StoreRequest {
                message_id: &format!("m-{i}"),
                mail_from: "",
                bytes,
                copies: &copies,
                trace: &TraceMeta::default(),
            })
            .await;
        assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result);
    }
    // Dovecot names each delivery `<pid><session>` or `<pid><session:Tn>`: one session
    // for all three is one connection.
    let log = dovecot.log();
    let sessions: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("saved mail to"))
        .filter_map(|l| l.split("><").nth(1))
        .map(|s| s.split([':', '>']).next().unwrap_or(s))
        .collect();
    assert_eq!(
        sessions.len(),
        1,
        "three messages over one connection:\n{log}"
    );
    let inbox = dovecot.fetch("alice@example.com", "INBOX");
    assert_eq!(inbox.len(), 3);
    assert_stored(&inbox[1], &bare_lf);
    // A null sender is kept as such.
    assert!(
        String::from_utf8_lossy(&inbox[0]).starts_with("Return-Path: <>"),
        "{}",
        String::from_utf8_lossy(&inbox[0])
    );

    dovecot.stop();
    let outcomes = store_copies(&store, "m-down", "s@outside.example", MESSAGE, &copies).await;
    match &outcomes[0].result {
        Err(e @ MailboxError::Connection { .. }) => assert!(!e.is_permanent(), "{e}"),
        other => panic!("server down: {other:?}"),
    }
    dovecot.start_again();
    let outcomes = store_copies(&store, "m-down", "s@outside.example", MESSAGE, &copies).await;
    assert!(
        outcomes[0].result.is_ok(),
        "after restart: {:?}",
        outcomes[0].result
    );
    assert_eq!(dovecot.fetch("alice@example.com", "INBOX").len(), 4);
}

/// LMTP over TLS (STARTTLS) to a Dovecot with a certificate from a private CA, as with the SMTP
/// store: checked against `tls_ca_file`, refused against the system roots, and the copy
/// Dovecot stores says it came over TLS (its `Received:` field: "using TLS…", "with LMTPS").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = sluice_mailservers::private_ca(certs.path());
    let tls = format!(
        "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\n",
        certs.path().display()
    );
    let Some(dovecot) = Dovecot::start_with(&["alice@example.com"], &tls) else {
        return;
    };
    let store_with = |ca_file: Option<std::path::PathBuf>| {
        LmtpStore::new(&LmtpStoreConfig {
            server: ServerConfig {
                tls: TlsMode::StartTls,
                tls_ca_file: ca_file,
                hello_name: Some("sluice.test".into()),
                timeout: Duration::from_secs(10),
                ..ServerConfig::loopback(dovecot.lmtp_port)
            },
            user: LmtpUser::Address,
            folder_delimiter: "+".into(),
            markers: None,
        })
        .unwrap()
    };
    let copies = [
        copy("alice@example.com", "INBOX"),
        copy("alice@example.com", "Junk"),
    ];

    // The system roots do not know the private CA: nothing is delivered.
    let untrusted = store_with(None);
    let outcomes = store_copies(
        &untrusted,
        "tls-0",
        "sender@outside.example",
        MESSAGE,
        &copies,
    )
    .await;
    for outcome in &outcomes {
        let error = outcome.result.as_ref().expect_err("an unknown CA");
        assert!(!error.is_permanent(), "{error}");
        assert!(
            format!("{error:?} {error}")
                .to_lowercase()
                .contains("certificate"),
            "{error:?}"
        );
    }
    assert!(dovecot.fetch("alice@example.com", "INBOX").is_empty());

    let store = store_with(Some(ca));
    let outcomes = store_copies(&store, "tls-1", "sender@outside.example", MESSAGE, &copies).await;
    for outcome in &outcomes {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }
    let inbox = dovecot.fetch("alice@example.com", "INBOX");
    let junk = dovecot.fetch("alice@example.com", "Junk");
    assert_eq!((inbox.len(), junk.len()), (1, 1));
    for stored in [&inbox[0], &junk[0]] {
        assert_stored(stored, MESSAGE);
        let text = String::from_utf8_lossy(stored);
        assert!(
            text.contains("(using TLS") && text.contains("with LMTPS"),
            "not received over TLS:\n{text}"
        );
    }
}

/// LMTP with TLS from the first byte (`tls = "implicit"`), to a Dovecot listener with
/// `ssl = yes`: the certificate is checked before anything is said (a store that trusts only
/// the system roots delivers nothing), and with the private CA the copy arrives over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = sluice_mailservers::private_ca(certs.path());
    let port = sluice_mailservers::free_port();
    let tls = format!(
        "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\n\
         service lmtp {{\n  inet_listener lmtps {{\n    address = 127.0.0.1\n    port = {port}\n    ssl = yes\n  }}\n}}\n",
        certs.path().display()
    );
    let Some(dovecot) = Dovecot::start_with(&["alice@example.com"], &tls) else {
        return;
    };
    let store_with = |ca_file: Option<std::path::PathBuf>| {
        LmtpStore::new(&LmtpStoreConfig {
            server: ServerConfig {
                tls: TlsMode::Implicit,
                tls_ca_file: ca_file,
                hello_name: Some("sluice.test".into()),
                timeout: Duration::from_secs(10),
                ..ServerConfig::loopback(port)
            },
            user: LmtpUser::Address,
            folder_delimiter: "+".into(),
            markers: None,
        })
        .unwrap()
    };
    let copies = [copy("alice@example.com", "INBOX")];
    let untrusted = store_with(None);
    let outcomes = store_copies(&untrusted, "itls-0", "s@outside.example", MESSAGE, &copies).await;
    let error = outcomes[0].result.as_ref().expect_err("an unknown CA");
    assert!(!error.is_permanent(), "{error}");
    assert!(
        format!("{error:?} {error}")
            .to_lowercase()
            .contains("certificate"),
        "{error:?}"
    );
    assert!(dovecot.fetch("alice@example.com", "INBOX").is_empty());

    let store = store_with(Some(ca));
    let outcomes = store_copies(&store, "itls-1", "s@outside.example", MESSAGE, &copies).await;
    assert!(
        outcomes[0].result.is_ok(),
        "{:?}\n{}",
        outcomes[0].result,
        dovecot.log()
    );
    let inbox = dovecot.fetch("alice@example.com", "INBOX");
    assert_eq!(inbox.len(), 1);
    assert_stored(&inbox[0], MESSAGE);
    let text = String::from_utf8_lossy(&inbox[0]);
    assert!(
        text.contains("(using TLS") && text.contains("with LMTPS"),
        "not received over TLS:\n{text}"
    );
}
