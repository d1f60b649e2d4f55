//! `sluice mailbox list|get|sync`: what the S3 (moto) and dir stores hold, read back, and an
//! S3 mailbox mirrored into the Maildir the test Dovecot serves, read over IMAP.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use sluice_aws::{Encryption, S3};
use sluice_deliver::{DirStore, S3Mailboxes, TraceMeta};
use sluice_mailservers::Dovecot;
use sluice_tests::Moto;

const ALICE: &str = "alice@example.com";

fn mailbox(config: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("mailbox")
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("sluice mailbox runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mail(n: u32) -> Vec<u8> {
    format!(
        "From: Sender <someone@sender.example>\r\nTo: {ALICE}\r\nSubject: note {n}\r\n\
         Message-ID: <note-{n}@sender.example>\r\n\r\nBody {n}.\r\n"
    )
    .into_bytes()
}

#[test]
fn sync_mirrors_an_s3_mailbox_into_the_maildir_dovecot_serves() {
    let Some(dovecot) = Dovecot::start(&[ALICE]) else {
        return;
    };
    let moto = Moto::start();
    let rt = rt();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    rt.block_on(s3.create_bucket("mail")).unwrap();
    let store = S3Mailboxes {
        s3,
        bucket: "mail".into(),
        prefix: "mailboxes".into(),
        encryption: Encryption::S3,
    };
    let put = |n: u32, folder: &str| {
        rt.block_on(store.store(
            ALICE,
            folder,
            &format!("ses-{n}"),
            mail(n),
            &TraceMeta::default(),
        ))
        .unwrap();
    };
    put(1, "INBOX");
    put(2, "INBOX");
    put(3, "Junk");
    put(4, "Entwürfe");
    // A send claim beside the mailboxes is not mail.
    rt.block_on(store.s3.put(
        &sluice_aws::S3Url::parse("s3://mail/mailboxes/_sent/ses-1/x").unwrap(),
        b"{}".to_vec(),
        "application/json",
    ))
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"s3\"\nbucket = \"mail\"\nprefix = \"mailboxes\"\n",
    )
    .unwrap();
    let env = moto.env();

    let listed = mailbox(&config, &env, &["list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let lines = stdout(&listed);
    assert!(
        lines.contains("alice@example.com\tINBOX\t2 messages"),
        "{lines}"
    );
    assert!(
        lines.contains("alice@example.com\tJunk\t1 messages"),
        "{lines}"
    );
    assert!(!lines.contains("_sent"), "{lines}");

    let maildir = dovecot.root_dir().join("mail/example.com/alice/Maildir");
    let maildir_arg = maildir.to_str().unwrap();
    let synced = mailbox(&config, &env, &["sync", ALICE, "--maildir", maildir_arg]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert!(
        stdout(&synced).contains("4 new, 0 already there"),
        "{}",
        stdout(&synced)
    );

    // Read back over IMAP: the bytes S3 holds, in the folders they were filed into.
    assert_eq!(dovecot.fetch(ALICE, "INBOX"), vec![mail(1), mail(2)]);
    assert_eq!(dovecot.fetch(ALICE, "Junk"), vec![mail(3)]);
    // IMAP names a non-ASCII folder in modified UTF-7, as the mirror named its directory.
    assert_eq!(dovecot.fetch(ALICE, "Entw&APw-rfe"), vec![mail(4)]);

    // A client read one (the server moved it to cur/ with a flag); a second sync adds only
    // the new message and leaves the client's file alone.
    let new = maildir.join("new");
    let first = std::fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seen = maildir.join("cur").join(format!(
        "{}:2,S",
        first.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::rename(&first, &seen).unwrap();
    put(5, "INBOX");
    let again = mailbox(&config, &env, &["sync", ALICE, "--maildir", maildir_arg]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("1 new, 4 already there"),
        "{}",
        stdout(&again)
    );
    assert!(seen.exists());
    assert_eq!(dovecot.fetch(ALICE, "INBOX").len(), 3);
}

#[test]
fn list_and_get_read_a_dir_store_and_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path().join("mail"));
    store.store(ALICE, "INBOX", "m-1", &mail(1)).unwrap();
    store.store(ALICE, "Junk", "m-2", &mail(2)).unwrap();
    store.store(ALICE, "INBOX", "m-2", &mail(2)).unwrap();
    store
        .store("bob@example.com", "INBOX", "m-1", &mail(1))
        .unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[store]\nkind = \"dir\"\npath = \"mail\"\n").unwrap();

    let listed = mailbox(
        &config,
        &[],
        &["list", "Alice@Example.com", "--folder", "INBOX"],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let lines: Vec<String> = stdout(&listed).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.starts_with("INBOX\tm-")),
        "{lines:?}"
    );

    let got = mailbox(&config, &[], &["get", ALICE, "m-1"]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(got.stdout, mail(1));

    let ambiguous = mailbox(&config, &[], &["get", ALICE, "m-2"]);
    assert!(!ambiguous.status.success());
    assert!(
        stderr(&ambiguous).contains("--folder"),
        "{}",
        stderr(&ambiguous)
    );
    let junk = mailbox(&config, &[], &["get", ALICE, "m-2", "--folder", "Junk"]);
    assert_eq!(junk.stdout, mail(2));

    let missing = mailbox(&config, &[], &["get", ALICE, "m-9"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no message \"m-9\""),
        "{}",
        stderr(&missing)
    );

    std::fs::write(
        &config,
        "[store]\nkind = \"lmtp\"\naddress = \"127.0.0.1:24\"\nmarkers = \"m\"\n",
    )
    .unwrap();
    let lmtp = mailbox(&config, &[], &["list"]);
    assert!(!lmtp.status.success());
    assert!(
        stderr(&lmtp).contains("reads s3 and dir stores"),
        "{}",
        stderr(&lmtp)
    );
}
