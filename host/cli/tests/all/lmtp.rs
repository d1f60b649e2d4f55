//! SES -> SQS -> `sluice daemon` -> LMTP -> Dovecot, end to end against real servers: moto
//! for S3/SQS/SES, Dovecot on loopback for the mailboxes, read back over IMAP.
//!
//! 20 messages (from the corpus when it is there) for three recipients each: alice (a
//! mailbox), nobody (Dovecot refuses with 550 5.1.1: a DSN) and carol (Dovecot tempfails
//! her for a while: delivered once it recovers, with no second copy for alice). One message
//! in four is spam and filed into Junk by the `junk` rule. Dovecot is stopped and started
//! again mid-run: nothing may be lost.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use sluice_mailservers::Dovecot;
use sluice_tests::{rule, Moto};

const ALICE: &str = "alice@example.com";
const CAROL: &str = "carol@example.com";
const NOBODY: &str = "nobody@example.com";

/// The message as LMTP carries (and Dovecot stores) it: CRLF line ends.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// 20 messages: the corpus's first ones, else the repository's fixtures (each made unique).
fn messages() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    if let Some(dir) = sluice_corpus::corpus_dir("LMTP end to end with corpus messages") {
        files = sluice_corpus::corpus_files(&dir, "eml", "eml");
    }
    if files.is_empty() {
        files = sluice_corpus::corpus_files(&sluice_tests::fixtures(), "", "eml");
    }
    assert!(!files.is_empty(), "no messages to send");
    (0..20)
        .map(|i| {
            let raw = std::fs::read(&files[i % files.len()]).unwrap();
            // A unique first header keeps repeated fixtures apart in the mailboxes.
            [format!("X-Test-Seq: {i}\r\n").into_bytes(), raw].concat()
        })
        .collect()
}

fn count_matching(stored: &[Vec<u8>], expected: &[u8]) -> usize {
    let want = crlf(expected);
    stored.iter().filter(|m| m.ends_with(&want)).count()
}

#[test]
fn daemon_delivers_into_dovecot_over_lmtp_and_loses_nothing() {
    let _turn = crate::turn(module_path!());
    let Some(mut dovecot) = Dovecot::start(&[ALICE, CAROL]) else {
        return;
    };
    dovecot.tempfail(CAROL, true);
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[inbound]
bucket = "inbound"
prefix = "incoming/"

[store]
kind = "lmtp"
address = "{lmtp}"
timeout_ms = 5000
markers = "s3://mail/_delivered"

[relay]
kind = "ses"
from = "forwarder@example.com"
markers = "s3://mail/_sent"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{junk}"
"#,
            lmtp = dovecot.lmtp_address(),
            junk = rule("junk").display()
        ),
    )
    .unwrap();

    let messages = messages();
    let is_spam = |i: usize| i.is_multiple_of(4);
    for (i, raw) in messages.iter().enumerate() {
        let id = format!("lmtp-{i:02}");
        world.put_raw(&rt, &id, raw.clone());
        let spam = if is_spam(i) { "FAIL" } else { "PASS" };
        world.enqueue(
            &rt,
            &notification_with(&id, &[ALICE, NOBODY, CAROL], "PASS", spam, "inbound"),
        );
    }

    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", config.to_str().unwrap()])
        .args(["--queue", &world.queue, "--wait", "1", "--visibility", "3"])
        .envs(moto.env())
        .env("SLUICE_CACHE_DIR", cache.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log_lines = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    // Dovecot goes away for a while mid-run, and carol's mailbox recovers later still.
    let started = Instant::now();
    let mut restarted = false;
    let mut carol_fixed = false;
    let total =
        |d: &Dovecot, user: &str| d.fetch(user, "INBOX").len() + d.fetch(user, "Junk").len();
    loop {
        let elapsed = started.elapsed();
        if !restarted && elapsed > Duration::from_secs(3) {
            dovecot.stop();
            std::thread::sleep(Duration::from_secs(2));
            dovecot.start_again();
            restarted = true;
        }
        if !carol_fixed && elapsed > Duration::from_secs(7) {
            dovecot.tempfail(CAROL, false);
            carol_fixed = true;
        }
        if carol_fixed
            && total(&dovecot, ALICE) >= 20
            && total(&dovecot, CAROL) >= 20
            && world.left_in_queue(&rt) == 0
        {
            break;
        }
        assert!(
            elapsed < Duration::from_secs(150),
            "not delivered within 150 s: alice {}, carol {}, queue {}; dovecot log:\n{}",
            total(&dovecot, ALICE),
            total(&dovecot, CAROL),
            world.left_in_queue(&rt),
            dovecot.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Give a stray duplicate the chance to show up before counting.
    std::thread::sleep(Duration::from_secs(4));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let log = log_lines.join().unwrap().join("\n");
    assert!(status.success(), "daemon:\n{log}");
    sluice_tests::assert_no_full_address("sluice daemon", &log);

    for user in [ALICE, CAROL] {
        let inbox = dovecot.fetch(user, "INBOX");
        let junk = dovecot.fetch(user, "Junk");
        assert_eq!(inbox.len(), 15, "{user} INBOX\nlog:\n{log}");
        assert_eq!(junk.len(), 5, "{user} Junk");
        for (i, raw) in messages.iter().enumerate() {
            let (here, there) = if is_spam(i) {
                (&junk, &inbox)
            } else {
                (&inbox, &junk)
            };
            assert_eq!(
                count_matching(here, raw),
                1,
                "{user}: message {i} once, byte for byte, in {}",
                if is_spam(i) { "Junk" } else { "INBOX" }
            );
            assert_eq!(
                count_matching(there, raw),
                0,
                "{user}: message {i} in the wrong folder"
            );
        }
    }
    // The tempfail was seen and retried.
    assert!(
        log.contains("will be retried") || log.contains("left in the queue"),
        "{log}"
    );

    // nobody@ was refused by Dovecot for good: one DSN per message to the sender, except for
    // spam (no backscatter).
    let sent = moto.sent_raw_messages();
    let dsns: Vec<&serde_json::Value> = sent
        .iter()
        .filter(|m| {
            m["destinations"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == SENDER))
        })
        .collect();
    assert_eq!(dsns.len(), 15, "one DSN per non-spam message: {sent:#?}");
    for d in &dsns {
        let raw = d["raw_data"].as_str().unwrap();
        assert!(raw.contains(NOBODY) && raw.contains("5.1.1"), "{raw}");
    }
    assert_eq!(sent.len(), 15, "nothing else was sent");
    assert_eq!(world.left_in_queue(&rt), 0);
}
