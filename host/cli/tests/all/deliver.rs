//! `sluice deliver` (a message on stdin, as Postfix's `pipe` transport hands it over) and
//! `sluice run --deliver`, into a real Dovecot over LMTP, read back over IMAP; refusals
//! answered by exit code and status line with no DSN of Sluice's own (an SMTP sink stands
//! ready as the relay and must receive nothing).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sluice_mailservers::{Dovecot, SmtpSink};
use sluice_tests::rule;

const ALICE: &str = "alice@example.com";

/// A message with the given `Authentication-Results` lines on top (each a whole header).
fn message(subject: &str, auth_results: &[&str]) -> Vec<u8> {
    let mut raw = String::new();
    for line in auth_results {
        raw.push_str(&format!("Authentication-Results: {line}\r\n"));
    }
    raw.push_str(&format!(
        "From: Sender <someone@sender.example>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\nHello {subject}.\r\n"
    ));
    raw.into_bytes()
}

/// The LMTP store with delivered-recipient records in `dir`, the junk rule, and an SMTP relay
/// to `relay_port` (for DSNs, which must not be sent when the door answers the refusal).
fn write_config(dir: &Path, lmtp: &str, relay_port: u16, markers: bool) -> std::path::PathBuf {
    let markers = if markers {
        format!("markers = \"{}\"", dir.join("records").display())
    } else {
        String::new()
    };
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
kind = "lmtp"
address = "{lmtp}"
timeout_ms = 5000

[relay]
kind = "smtp"
host = "127.0.0.1"
port = {relay_port}
tls = "none"
from = "forwarder@example.com"
allow_domains = ["sender.example"]
{markers}

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{junk}"
config = {{ virus = "bounce" }}
"#,
            junk = rule("junk").display()
        ),
    )
    .unwrap();
    path
}

fn deliver(config: &Path, cache: &Path, args: &[&str], raw: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("deliver")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("SLUICE_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(raw).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn holding(stored: &[Vec<u8>], subject: &str) -> usize {
    let needle = format!("Subject: {subject}\r\n");
    stored.iter().filter(|m| text(m).contains(&needle)).count()
}

#[test]
fn deliver_files_into_dovecot_by_the_trusted_header_and_answers_refusals_itself() {
    let _turn = crate::turn(module_path!());
    let Some(dovecot) = Dovecot::start(&[ALICE]) else {
        return;
    };
    let Some(sink) = SmtpSink::start() else {
        eprintln!("aiosmtpd is not installed: skipping (./test.sh setup installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = write_config(dir.path(), &dovecot.lmtp_address(), sink.port, true);
    let from_pipe = ["--mail-from=someone@sender.example", "--rcpt", ALICE];
    let trusted = ["--verdicts-from-header", "mx.example.com"];
    let args = |extra: &[&'static str]| [&from_pipe[..], &trusted[..], extra].concat();

    // DMARC failed with p=quarantine, said by our own MTA: filed into Junk. A forged header
    // further down claiming a pass changes nothing.
    let quarantined = message(
        "quarantined",
        &[
            "mx.example.com; spf=fail smtp.mailfrom=sender.example; dmarc=fail (p=quarantine dis=none) header.from=sender.example",
            "evil.example; dmarc=pass",
        ],
    );
    let out = deliver(&config, &cache, &args(&[]), &quarantined);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("delivered: "),
        "{}",
        text(&out.stdout)
    );
    // The MTA hands the same message over again (its first try timed out): one copy.
    let again = deliver(&config, &cache, &args(&[]), &quarantined);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(holding(&dovecot.fetch(ALICE, "Junk"), "quarantined"), 1);
    assert_eq!(holding(&dovecot.fetch(ALICE, "INBOX"), "quarantined"), 0);

    // The same failure claimed only by a header with another authserv-id: ignored, INBOX.
    let forged = message("forged", &["evil.example; dmarc=fail (p=quarantine)"]);
    let out = deliver(&config, &cache, &args(&[]), &forged);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(holding(&dovecot.fetch(ALICE, "INBOX"), "forged"), 1);
    assert_eq!(holding(&dovecot.fetch(ALICE, "Junk"), "forged"), 0);

    // DMARC failed with p=reject: the rule bounces every recipient, so the answer is the
    // refusal (exit 69, status first on stderr) and nothing is stored or sent as a DSN.
    let rejected = message("rejected", &["mx.example.com; dmarc=fail (p=reject)"]);
    let out = deliver(&config, &cache, &args(&[]), &rejected);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.starts_with("5.7.1 "), "{stderr}");
    assert!(stderr.contains("DMARC"), "{stderr}");
    for folder in ["INBOX", "Junk"] {
        assert_eq!(holding(&dovecot.fetch(ALICE, folder), "rejected"), 0);
    }
    assert!(
        sink.received().is_empty(),
        "a DSN went out: {:?}",
        sink.received()
    );

    // A recipient Sluice will not write to: refused at the door, as at every door.
    let out = deliver(
        &config,
        &cache,
        &["--mail-from=", "--rcpt", "alice@exa mple.com"],
        &forged,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(67), "{stderr}");
    assert!(stderr.starts_with("5.1.3 "), "{stderr}");
}

#[test]
fn deliver_keeps_the_message_at_the_mta_while_the_config_cannot_deliver() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    // An LMTP store with no record of delivered recipients (and the relay none either): a
    // retry could deliver twice, so it will not start; the MTA keeps the message (75).
    let config = write_config(dir.path(), "127.0.0.1:1", 1, false);
    let out = deliver(
        &config,
        &dir.path().join("cache"),
        &["--mail-from=a@sender.example", "--rcpt", ALICE],
        &message("kept", &[]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.starts_with("4.3.5 sluice cannot start"), "{stderr}");
    assert!(stderr.contains("markers"), "{stderr}");
    // `sluice check` says the same, and fails.
    let check = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config"])
        .arg(&config)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(
        text(&check.stderr).contains("needs `markers"),
        "{}",
        text(&check.stderr)
    );
}

#[test]
fn run_deliver_puts_a_test_message_into_dovecot_and_prints_the_trace() {
    let _turn = crate::turn(module_path!());
    let Some(dovecot) = Dovecot::start(&[ALICE]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dovecot.lmtp_address(), 1, true);
    let msg = dir.path().join("test.eml");
    std::fs::write(&msg, message("trial", &[])).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&config)
            .args(extra)
            .arg(&msg)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    // Without --deliver an LMTP store is not a preview target: the error says what to do.
    let preview = run(&[]);
    assert!(!preview.status.success());
    assert!(
        text(&preview.stderr).contains("--deliver"),
        "{}",
        text(&preview.stderr)
    );

    let out = run(&["--deliver", "--verdict", "spam=fail"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("junk"),
        "the trace names the step: {stdout}"
    );
    assert!(
        stdout.contains(ALICE),
        "the trace names the recipient: {stdout}"
    );
    assert_eq!(holding(&dovecot.fetch(ALICE, "Junk"), "trial"), 1);
}
