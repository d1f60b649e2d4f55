//! `sluice deliver` (a message on stdin, as Postfix's `pipe` transport hands it over) and
//! `sluice run --deliver`, into a real Dovecot over LMTP, read back over IMAP; refusals
//! answered by exit code and status line with no DSN of Sluice's own (an SMTP sink stands
//! ready as the relay and must receive nothing); and inside a running Postfix as its `pipe`
//! transport (`deploy/postfix-pipe/`), where those exit codes become delivered, bounced and
//! deferred.

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

/// `chown -R nobody` (the account the test's `pipe` services run as).
fn give_to_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown nobody {}", path.display());
}

/// The messages the `dir` store holds under `dir` (any depth).
fn stored_under(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(stored_under(&path));
        } else {
            found.push(text(&std::fs::read(&path).unwrap()));
        }
    }
    found
}

#[test]
fn postfix_pipe_transport_delivers_bounces_with_the_rules_text_and_defers_on_tempfail() {
    let _turn = crate::turn(module_path!());
    let Some(sink) = SmtpSink::start() else {
        eprintln!("aiosmtpd is not installed: skipping (./test.sh setup installs it)");
        return;
    };
    // Postfix runs the command as an unprivileged user (it refuses root), so everything
    // `nobody` needs is copied into a directory it can traverse: the binary (the build dir
    // may sit under a home nobody cannot enter), the rules and the configs; the cache, the
    // store and the markers are nobody's own.
    let work = tempfile::Builder::new()
        .prefix("sluice-pipe")
        .tempdir_in("/tmp")
        .unwrap();
    let root = work.path();
    assert!(Command::new("chmod")
        .arg("755")
        .arg(root)
        .status()
        .unwrap()
        .success());
    let bin = root.join("sluice");
    let config = root.join("sluice.toml");
    let down = root.join("down.toml");
    // The deploy snippets, pointed at this test's files; a second service for down.example.
    let deploy = sluice_tests::workspace_root().join("deploy/postfix-pipe");
    let service = std::fs::read_to_string(deploy.join("master.cf"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("user=sluice", "user=nobody")
        .replace("/usr/local/bin/sluice", &bin.display().to_string())
        .replace(
            "/var/cache/sluice",
            &root.join("cache").display().to_string(),
        );
    let master_cf = format!(
        "{}\n{}\n",
        service.replace("/etc/sluice/sluice.toml", &config.display().to_string()),
        service
            .replace("/etc/sluice/sluice.toml", &down.display().to_string())
            .replace("sluice unix", "sluicedown unix"),
    );
    let main_cf = std::fs::read_to_string(deploy.join("main.cf"))
        .unwrap()
        .replace(
            "example.com=sluice: }",
            "example.com=sluice:, down.example=sluicedown: }",
        );
    assert!(main_cf.contains("down.example=sluicedown:"), "{main_cf}");
    let Some(postfix) = sluice_mailservers::Postfix::start_with(
        &format!(
            "relay_domains = example.com down.example\nrelayhost = [127.0.0.1]:{}\n\
             sluicedown_destination_recipient_limit = 1\n\
             queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n\
             {main_cf}",
            sink.port
        ),
        &master_cf,
    ) else {
        return;
    };
    // Postfix started (as root): the files its `pipe` services use.
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &bin).unwrap();
    std::fs::create_dir(root.join("rules")).unwrap();
    let copied = |name: &str| {
        let to = root.join("rules").join(format!("{name}.wasm"));
        std::fs::copy(rule(name), &to).unwrap();
        to.display().to_string()
    };
    let (alias, junk, tag) = (copied("alias"), copied("junk"), copied("subject-tag"));
    for sub in ["cache", "mail", "records"] {
        std::fs::create_dir(root.join(sub)).unwrap();
        give_to_nobody(&root.join(sub));
    }
    // example.com: alice's mailbox in the dir store, others bounced, DMARC reject bounced,
    // subjects tagged.
    std::fs::write(
        &config,
        format!(
            r#"
[store]
kind = "dir"
path = "mail"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
config = {{ mailboxes = ["alice"], unknown = "bounce" }}
[[domain.step]]
plugin = "{junk}"
config = {{}}
[[domain.step]]
plugin = "{tag}"
config = {{ tag = "[EXT]", internal_domains = ["example.com"] }}
"#
        ),
    )
    .unwrap();
    // down.example: an LMTP store nobody listens on, so every try is "later" (75).
    std::fs::write(
        &down,
        format!(
            r#"
[store]
kind = "lmtp"
address = "127.0.0.1:1"
timeout_ms = 2000
markers = "records"

[[domain]]
name = "down.example"
[[domain.step]]
plugin = "{tag}"
config = {{ tag = "[EXT]" }}
"#
        ),
    )
    .unwrap();

    let from = "someone@sender.example";
    let send = |rcpt: &str, msg: &[u8]| {
        let replies = crate::milter::smtp_send(postfix.port, from, &[rcpt], msg);
        // Queued: whatever Sluice answers comes later, from Postfix's queue.
        assert!(
            replies.last().unwrap().starts_with("250 "),
            "{replies:?}\n{}",
            postfix.log()
        );
    };
    let log_line = |rcpt: &str, status: &str| {
        postfix
            .log()
            .lines()
            .find(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains(status))
            .map(str::to_string)
    };

    // (1) Delivered by the pipe into the dir store, with the rule's edit.
    send(ALICE, &message("piped", &[]));
    let line = crate::milter::wait_for("alice's delivery", || log_line(ALICE, "status="));
    assert!(
        line.contains("relay=sluice") && line.contains("status=sent"),
        "{line}\n{}",
        postfix.log()
    );
    let stored = stored_under(&root.join("mail/example.com/alice"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].contains("Subject: [EXT] piped"), "{}", stored[0]);
    assert!(stored[0].contains("Hello piped."), "{}", stored[0]);
    // It came through Postfix (its Received line, Return-Path from flags=R).
    assert!(
        stored[0].contains("by mx.example.com (Postfix)"),
        "{}",
        stored[0]
    );

    // (2) A rule's bounce: the client heard 250, Postfix bounces with the rule's status and
    // text (its log and the DSN to the sender), and nothing is stored.
    send("nobody@example.com", &message("unknown-user", &[]));
    send(
        ALICE,
        &message("rejected", &["mx.example.com; dmarc=fail (p=reject)"]),
    );
    let unknown = crate::milter::wait_for("the unknown user's bounce", || {
        log_line("nobody@example.com", "status=")
    });
    assert!(unknown.contains("status=bounced"), "{unknown}");
    assert!(unknown.contains("dsn=5.1.1"), "{unknown}");
    assert!(unknown.contains("no such user"), "{unknown}");
    let rejected = crate::milter::wait_for("the DMARC bounce", || {
        postfix
            .log()
            .lines()
            .rfind(|l| l.contains(&format!("to=<{ALICE}>")) && l.contains("status=bounced"))
            .map(str::to_string)
    });
    assert!(rejected.contains("dsn=5.7.1"), "{rejected}");
    assert!(rejected.contains("DMARC"), "{rejected}");
    let dsns = crate::milter::wait_for("two DSNs at the sink", || {
        let got = sink.received();
        (got.len() == 2).then_some(got)
    });
    for dsn in &dsns {
        assert_eq!(dsn.recipients, [from], "{dsn:?}");
        assert_eq!(dsn.mail_from, "<>", "a DSN has the null sender: {dsn:?}");
    }
    let all = dsns.iter().map(|d| text(&d.data)).collect::<String>();
    assert!(all.contains("no such user"), "{all}");
    assert!(all.contains("DMARC"), "{all}");
    let stored = stored_under(&root.join("mail"));
    assert_eq!(stored.len(), 1, "only the first message: {stored:?}");

    // (3) A tempfail (the store is down): deferred, still in Postfix's queue, no bounce.
    send("bob@down.example", &message("later", &[]));
    let deferred =
        crate::milter::wait_for("the deferral", || log_line("bob@down.example", "status="));
    assert!(deferred.contains("relay=sluicedown"), "{deferred}");
    assert!(deferred.contains("status=deferred"), "{deferred}");
    assert!(deferred.contains("dsn=4."), "{deferred}");
    // Sluice's reason is what Postfix keeps with the message.
    assert!(
        deferred.contains("lmtp 127.0.0.1:1: cannot connect"),
        "{deferred}"
    );
    let queue = postfix.queue();
    assert!(queue.contains("bob@down.example"), "{queue}");
    assert!(queue.contains(from), "{queue}");
    assert_eq!(sink.received().len(), 2, "no bounce for a deferral");
}
