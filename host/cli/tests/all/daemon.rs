//! `sluice daemon` end to end against a real emulator (moto server on loopback) with the real
//! aws-sdk-rust clients: raw messages in S3, SES notifications (in SNS envelopes, as an SNS ->
//! SQS subscription delivers them) in SQS, mailboxes read back from S3 and what SES "sent"
//! read back from moto.

use std::path::Path;
use std::process::Command;

use crate::common::sent::list_keys;
use crate::common::*;
use sluice_aws::S3Url;
use sluice_tests::{rule, Moto};

/// Where the daemon tests' messages come from and go: S3 in, S3 mailboxes, SES relay.
const PIPELINE: &str = r#"
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
"#;

fn write_config(dir: &Path, extra_steps: &str) -> std::path::PathBuf {
    let config = format!(
        r#"{PIPELINE}
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
[domain.step.config]
mailboxes = ["alice", "bob"]
[domain.step.config.aliases]
info = ["alice", "bob@gmail.example"]
old = {{ to = ["alice"], status = "paused" }}
leak = "someone@elsewhere.example"
{extra_steps}
"#,
        alias = rule("alias").display()
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn daemon_stores_relays_and_bounces_once_and_leaves_garbage_for_the_dlq() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");

    world.put_message(&rt, "m-info", "info@example.com");
    world.put_message(&rt, "m-old", "old@example.com");
    world.put_message(&rt, "m-leak", "leak@example.com");
    world.enqueue(
        &rt,
        &notification("m-info", &["info@example.com"], "PASS", "inbound"),
    );
    // SQS is at-least-once: the same notification again must not send a second copy.
    world.enqueue(
        &rt,
        &notification("m-info", &["info@example.com"], "PASS", "inbound"),
    );
    world.enqueue(
        &rt,
        &notification("m-old", &["old@example.com"], "PASS", "inbound"),
    );
    world.enqueue(
        &rt,
        &notification("m-leak", &["leak@example.com"], "FAIL", "inbound"),
    );
    world.enqueue(&rt, "{not json");

    let out = daemon(
        &moto.env(),
        &config,
        &world.queue,
        &[
            "--max-messages",
            "5",
            "--visibility",
            "30",
            "--log-format",
            "json",
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "daemon failed:\n{log}");
    // The JSON log: every line one object, each message's outcome a queryable event.
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done: Vec<&str> = events
        .iter()
        .filter(|e| e["message"] == "message done")
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    // Addresses show only their domain unless SLUICE_LOG_ADDRESSES=full asks for more.
    // (The alias rule's own log line names it too: masked in the process log as well.)
    assert!(!log.contains("someone@elsewhere.example"), "{log}");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("relay refused"))
            && e["recipient"] == "***@elsewhere.example"),
        "{log}"
    );
    let mut sorted = done.clone();
    sorted.sort();
    assert_eq!(sorted, ["m-info", "m-info", "m-leak", "m-old"], "{log}");
    assert!(
        events
            .iter()
            .filter(|e| e["message"] == "message done")
            .all(|e| e["total_us"].as_u64().is_some() && e["outcome"].is_string()),
        "{log}"
    );

    // The local destination of the alias got its copy, under the documented key, encrypted.
    let key = "s3://mail/mailboxes/example.com/alice/INBOX/m-info.eml";
    let stored = world
        .get(&rt, key)
        .unwrap_or_else(|| panic!("{key} missing; daemon log:\n{log}"));
    assert!(String::from_utf8_lossy(&stored).contains("Numbers attached soon."));

    let sent = moto.sent_raw_messages();
    let to = |addr: &str| sent_to(&sent, addr);
    // One forward to the external destination despite the duplicate notification,
    // re-originated from the verified identity.
    let forwards = to("bob@gmail.example");
    assert_eq!(forwards.len(), 1, "sent: {sent:#?}\nlog:\n{log}");
    let raw = forwards[0]["raw_data"].as_str().unwrap();
    assert!(raw.contains("via example.com"), "{raw}");
    assert!(raw.contains("forwarder@example.com"), "{raw}");
    assert!(!raw.contains("DKIM-Signature"), "{raw}");
    // The paused alias bounced to the sender (SPF passed): one DSN.
    let dsns = to(SENDER);
    assert_eq!(dsns.len(), 1, "sent: {sent:#?}\nlog:\n{log}");
    let dsn = dsns[0]["raw_data"].as_str().unwrap();
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("old@example.com"), "{dsn}");
    // Not an allowed relay domain, and SPF failed: nothing sent for m-leak at all.
    assert!(
        to("someone@elsewhere.example").is_empty(),
        "open relay: {sent:#?}"
    );
    assert_eq!(sent.len(), 2, "sent: {sent:#?}");

    // Everything handled was deleted; the garbage is still there, headed for the DLQ.
    assert_eq!(world.left_in_queue(&rt), 1, "log:\n{log}");
    assert!(log.contains("not an SES notification"), "{log}");
}

#[test]
fn a_failed_delivery_stays_queued_and_is_delivered_when_ses_is_back() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let mut ses_moto = Moto::start();
    let world = World::new(&rt, &moto, &ses_moto);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    world.put_message(&rt, "m-retry", "info@example.com");
    world.enqueue(
        &rt,
        &notification("m-retry", &["info@example.com"], "PASS", "inbound"),
    );

    // SES goes away before the daemon runs; it comes back (on the same address, with the
    // identity verified again) while the message waits out its visibility timeout.
    let port = ses_moto.port();
    ses_moto.stop();
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_SESV2", format!("http://127.0.0.1:{port}")));
    let revive = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(4));
        let back = Moto::start_on(port);
        verify_identity(&self::rt(), &back);
        back
    });
    let out = daemon(
        &env,
        &config,
        &world.queue,
        &["--max-messages", "2", "--visibility", "5"],
    );
    let back = revive.join().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("left in the queue"),
        "the first attempt should fail:\n{log}"
    );
    let sent = back.sent_raw_messages();
    assert_eq!(
        sent.len(),
        1,
        "sent after the retry: {sent:#?}\nlog:\n{log}"
    );
    assert!(world
        .get(
            &rt,
            "s3://mail/mailboxes/example.com/alice/INBOX/m-retry.eml"
        )
        .is_some());
    assert_eq!(world.left_in_queue(&rt), 0, "log:\n{log}");
}

/// What moto's SES sent to `addr` (among the envelope destinations).
fn sent_to(sent: &[serde_json::Value], addr: &str) -> Vec<serde_json::Value> {
    sent.iter()
        .filter(|m| {
            m["destinations"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == addr))
        })
        .cloned()
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Issue 4's promise: a config that lives in S3 is changed while the daemon runs, and the
/// next message goes through the new chain without a restart.
#[test]
fn a_running_daemon_picks_up_a_changed_config_from_s3() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    rt.block_on(world.s3.create_bucket("conf")).unwrap();
    let mut plugins = String::new();
    for name in ["alias", "banner"] {
        let bytes = std::fs::read(rule(name)).unwrap();
        plugins.push_str(&format!("{name}={}\n", sha256_hex(&bytes)));
        let url = S3Url::parse(&format!("s3://conf/rules/{name}.wasm")).unwrap();
        rt.block_on(world.s3.put(&url, bytes, "application/wasm"))
            .unwrap();
    }
    let hash = |name: &str| {
        plugins
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let config = |banner: bool| {
        let mut text = format!(
            "[store]\nkind = \"s3\"\nbucket = \"mail\"\nprefix = \"mailboxes\"\n\n\
             [[domain]]\nname = \"example.com\"\n\
             [[domain.step]]\nplugin = \"rules/alias.wasm\"\nsha256 = \"{}\"\n\
             config = {{ mailboxes = [\"alice\"] }}\n",
            hash("alias")
        );
        if banner {
            text.push_str(&format!(
                "[[domain.step]]\nplugin = \"rules/banner.wasm\"\nsha256 = \"{}\"\n\
                 config = {{ text = \"RELOADED BANNER\" }}\n",
                hash("banner")
            ));
        }
        text.into_bytes()
    };
    let conf_url = S3Url::parse("s3://conf/sluice.toml").unwrap();
    rt.block_on(world.s3.put(&conf_url, config(false), "text/plain"))
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "daemon",
            "--config",
            "s3://conf/sluice.toml",
            "--queue",
            &world.queue,
            "--wait",
            "1",
            "--reload-seconds",
            "1",
            "--max-messages",
            "2",
        ])
        .envs(moto.env())
        .env("SLUICE_CACHE_DIR", cache.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice daemon starts");

    world.put_message(&rt, "m-before", "alice@example.com");
    world.enqueue(
        &rt,
        &notification("m-before", &["alice@example.com"], "PASS", "inbound"),
    );
    let before = "s3://mail/mailboxes/example.com/alice/INBOX/m-before.eml";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while world.get(&rt, before).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first message was not delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    rt.block_on(world.s3.put(&conf_url, config(true), "text/plain"))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    world.put_message(&rt, "m-after", "alice@example.com");
    world.enqueue(
        &rt,
        &notification("m-after", &["alice@example.com"], "PASS", "inbound"),
    );

    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    sluice_tests::assert_no_full_address("sluice daemon", &log);
    assert!(log.contains("config reloaded"), "{log}");
    let first = String::from_utf8(world.get(&rt, before).unwrap()).unwrap();
    assert!(!first.contains("RELOADED BANNER"), "{first}");
    let second = world
        .get(
            &rt,
            "s3://mail/mailboxes/example.com/alice/INBOX/m-after.eml",
        )
        .unwrap_or_else(|| panic!("second message missing; log:\n{log}"));
    assert!(
        String::from_utf8_lossy(&second).contains("RELOADED BANNER"),
        "the new chain did not run:\n{log}"
    );
}

/// A daemon in a 20 s long poll on `world`'s queue, with its stderr as lines.
fn spawn_long_polling(
    moto: &Moto,
    world: &World,
    config: &Path,
    cache: &Path,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", config.to_str().unwrap()])
        .args(["--queue", &world.queue, "--wait", "20"])
        .envs(moto.env())
        .env("SLUICE_CACHE_DIR", cache)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM stops the daemon cleanly: no new receives, exit 0.
#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let cache = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = spawn_long_polling(&moto, &world, &config, cache.path());
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let consuming = line.contains("consuming");
        seen.push(line);
        if consuming {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("consuming")),
        "{seen:?}"
    );
    // It is now in a 20 s long poll; SIGTERM must end it well before that.
    let started = std::time::Instant::now();
    sigterm(&child);
    let exit = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(exit.success(), "{exit:?}: {rest:?}");
    sluice_tests::assert_no_full_address(
        "sluice daemon",
        &[seen, rest.clone()].concat().join("\n"),
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the long poll was not interrupted"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("daemon stopped") && l.contains("handled=0")),
        "{rest:?}"
    );
}

/// SIGTERM while the daemon is still starting (loading the config, compiling plugins) is a
/// clean stop too, not a kill: exit 0, nothing consumed.
#[test]
fn sigterm_during_start_up_exits_cleanly() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    // An empty cache: start-up compiles every plugin, which takes a while.
    let cache = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = spawn_long_polling(&moto, &world, &config, cache.path());
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("starting"), "{first}");
    sigterm(&child);
    let exit = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        exit.success(),
        "killed instead of stopped: {exit:?}: {rest:?}"
    );
    sluice_tests::assert_no_full_address("sluice daemon", &format!("{first}\n{}", rest.join("\n")));
    assert!(
        rest.iter().any(|l| l.contains("stopped during start-up"))
            || rest
                .iter()
                .any(|l| l.contains("daemon stopped") && l.contains("handled=0")),
        "{rest:?}"
    );
}

/// A config whose alias step reads the DynamoDB directory `table` (moto).
fn write_directory_config(dir: &Path, table: &str) -> std::path::PathBuf {
    let config = format!(
        r#"{PIPELINE}
[directory.aliases]
kind = "dynamodb"
table = "{table}"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
lookups = ["aliases"]
config = {{ mailboxes = ["alice"], directory = "aliases" }}
"#,
        alias = rule("alias").display()
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn directory_aliases_in_dynamodb_route_the_daemons_mail_and_count_their_uses() {
    let _turn = crate::turn(module_path!());
    use sluice_directory::{AliasRecord, AliasStore, DirectorySettings, DynamoStore, Status};
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let store = DynamoStore::for_endpoint(&moto.endpoint, "us-east-1", "aliases").unwrap();
    store.create_table().unwrap();
    store
        .put_settings(&DirectorySettings {
            domains: vec!["example.com".into()],
            destinations: vec!["@gmail.example".into()],
        })
        .unwrap();
    let record = |address: &str, status: Status, to: &[&str]| AliasRecord {
        status,
        ..AliasRecord::new(address, to.iter().map(|s| s.to_string()).collect(), 1)
    };
    store
        .put(&record(
            "shop-k3x9@example.com",
            Status::Active,
            &["alice@example.com", "bob@gmail.example"],
        ))
        .unwrap();
    store
        .put(&record("old-q7@example.com", Status::Paused, &[]))
        .unwrap();
    store
        .put(&record("list-z2@example.com", Status::Ignored, &[]))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_directory_config(dir.path(), "aliases");
    for (id, to) in [
        ("m-shop", "shop-k3x9+promo@example.com"),
        ("m-old", "old-q7@example.com"),
        ("m-list", "list-z2@example.com"),
    ] {
        world.put_message(&rt, id, to);
        world.enqueue(&rt, &notification(id, &[to], "PASS", "inbound"));
    }

    let out = daemon(&moto.env(), &config, &world.queue, &["--max-messages", "3"]);
    let log = stderr(&out);
    assert!(out.status.success(), "daemon failed:\n{log}");
    let key = "s3://mail/mailboxes/example.com/alice/INBOX/m-shop.eml";
    assert!(world.get(&rt, key).is_some(), "{key} missing:\n{log}");
    let sent = moto.sent_raw_messages();
    let to = |addr: &str| sent_to(&sent, addr).len();
    assert_eq!(to("bob@gmail.example"), 1, "sent: {sent:#?}\n{log}");
    // The paused alias bounced (one DSN to the sender); the ignored one vanished.
    assert_eq!(to(SENDER), 1, "sent: {sent:#?}\n{log}");
    assert_eq!(sent.len(), 2, "sent: {sent:#?}");
    assert_eq!(world.left_in_queue(&rt), 0, "{log}");
    // Each alias that got mail counts one use (written when the daemon stopped).
    for address in [
        "shop-k3x9@example.com",
        "old-q7@example.com",
        "list-z2@example.com",
    ] {
        let got = store.get(address).unwrap().unwrap();
        assert_eq!(got.uses, 1, "{address}: {got:?}\n{log}");
        assert!(got.last_used.is_some(), "{address}: {got:?}");
    }
}

#[test]
fn a_directory_that_cannot_answer_leaves_the_message_queued_instead_of_bouncing_it() {
    let _turn = crate::turn(module_path!());
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    // No such table: every lookup fails.
    let config = write_directory_config(dir.path(), "no-such-table");
    world.put_message(&rt, "m-shop", "shop-k3x9@example.com");
    world.enqueue(
        &rt,
        &notification("m-shop", &["shop-k3x9@example.com"], "PASS", "inbound"),
    );
    let out = daemon(
        &moto.env(),
        &config,
        &world.queue,
        &["--max-messages", "1", "--visibility", "1"],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "daemon failed:\n{log}");
    assert!(log.contains("left in the queue"), "{log}");
    assert!(log.contains("no-such-table"), "{log}");
    assert!(
        moto.sent_raw_messages().is_empty(),
        "a bounce went out:\n{log}"
    );
    assert!(
        world
            .get(
                &rt,
                "s3://mail/mailboxes/example.com/shop-k3x9/INBOX/m-shop.eml"
            )
            .is_none(),
        "delivered around the alias rule:\n{log}"
    );
    assert_eq!(world.left_in_queue(&rt), 1, "{log}");
}

/// Kills the daemon if the test ends before it does (an assertion failed).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 34: SIGTERM while messages are in flight. Half the messages go through a slow chain
/// (a step that spins into its 1 s deadline, then the alias); the signal comes once a few are
/// done. Each message must end fully done (its mailbox copy stored, its forward sent, deleted
/// from the queue) or untouched and still queued, never half-done; a second daemon then
/// drains the rest, and every message is stored once and forwarded once.
#[test]
fn sigterm_with_messages_in_flight_finishes_them_and_leaves_the_rest_queued() {
    let _turn = crate::turn(module_path!());
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    const MESSAGES: usize = 40;
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let slow_domain = format!(
        r#"
[[domain]]
name = "slow.example"
[[domain.step]]
plugin = "{spin}"
timeout_ms = 1000
on_error = "continue"
breaker = {{ failures = 0 }}
[[domain.step]]
plugin = "{alias}"
config = {{ mailboxes = ["carol"], aliases = {{ info = ["carol", "dave@gmail.example"] }} }}
"#,
        spin = rule("rule-spin").display(),
        alias = rule("alias").display()
    );
    let config = write_config(dir.path(), &slow_domain);
    // Even messages are slow (info@slow.example -> carol + dave@gmail.example), odd ones
    // fast (info@example.com -> alice + bob@gmail.example).
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("m-{i:02}")).collect();
    let slow = |id: &str| id[2..].parse::<usize>().unwrap() % 2 == 0;
    let mailbox = |id: &str| {
        if slow(id) {
            format!("mailboxes/slow.example/carol/INBOX/{id}.eml")
        } else {
            format!("mailboxes/example.com/alice/INBOX/{id}.eml")
        }
    };
    for id in &ids {
        let to = if slow(id) {
            "info@slow.example"
        } else {
            "info@example.com"
        };
        world.put_message(&rt, id, to);
        world.enqueue(&rt, &notification(id, &[to], "PASS", "inbound"));
    }
    // What a user would look at: the copies in the bucket and the forwards SES sent.
    let stored = || -> Vec<String> {
        list_keys(&rt, &world.s3, "mail")
            .into_iter()
            .filter(|k| !k.starts_with("mailboxes/_sent/"))
            .collect()
    };
    let forwards = |id: &str| {
        let subject = format!("Quarterly numbers {id}\r\n");
        moto.sent_raw_messages()
            .iter()
            .filter(|m| m["raw_data"].as_str().is_some_and(|r| r.contains(&subject)))
            .count()
    };

    let cache = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", config.to_str().unwrap()])
        .args([
            "--queue",
            &world.queue,
            "--wait",
            "20",
            "--concurrency",
            "6",
        ])
        .args(["--visibility", "10", "--log-format", "json"])
        .envs(moto.env())
        .env("SLUICE_CACHE_DIR", cache.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = Running(child);
    let event = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let mut log = Vec::new();
    let done_in = |log: &[String]| -> Vec<String> {
        log.iter()
            .map(|l| event(l))
            .filter(|e| e["message"] == "message done")
            .map(|e| e["message_id"].as_str().unwrap().to_string())
            .collect()
    };
    // Start-up compiles the plugins; then the first messages go through.
    let deadline = Instant::now() + Duration::from_secs(180);
    while done_in(&log).len() < 6 {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(e) => panic!("{e}: not 6 messages done in time:\n{}", log.join("\n")),
        }
    }
    let done_at_signal = done_in(&log).len();
    let signalled = Instant::now();
    sigterm(&child.0);
    // Messages in flight take at most about a second of chain and a few calls to moto.
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => log.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e}: the daemon did not stop:\n{}", log.join("\n")),
        }
    }
    let mut child = child;
    let exit = child.0.wait().unwrap();
    let stopped_in = signalled.elapsed();
    let text = log.join("\n");
    assert!(exit.success(), "{exit:?}:\n{text}");
    sluice_tests::assert_no_full_address("sluice daemon", &text);
    assert!(
        stopped_in < Duration::from_secs(20),
        "{stopped_in:?}:\n{text}"
    );
    let events: Vec<serde_json::Value> = log.iter().map(|l| event(l)).collect();
    let finishing = events
        .iter()
        .find(|e| e["message"] == "daemon stopping; finishing the messages in flight")
        .unwrap_or_else(|| panic!("nothing was in flight at the signal:\n{text}"));
    let in_flight = finishing["in_flight"].as_u64().unwrap();
    assert!(in_flight > 0, "{text}");
    // Nothing failed or was left half-way; the slow step's deadline is the only warning.
    assert!(
        !events
            .iter()
            .any(|e| (e["level"] == "WARN" || e["level"] == "ERROR") && e["step"] != "rule-spin"),
        "{text}"
    );
    let done: BTreeSet<String> = done_in(&log).into_iter().collect();
    assert!(done.len() < MESSAGES, "all done before the signal:\n{text}");
    // Every message is either done in full or untouched.
    let keys: BTreeSet<String> = stored().into_iter().collect();
    for id in &ids {
        let (copy, sent) = (keys.contains(&mailbox(id)), forwards(id));
        if done.contains(id) {
            assert!(copy && sent == 1, "{id}: copy {copy}, sent {sent}:\n{text}");
        } else {
            assert!(
                !copy && sent == 0,
                "{id} half-done: copy {copy}, sent {sent}:\n{text}"
            );
        }
    }
    assert_eq!(keys.len(), done.len(), "{keys:?}");
    assert_eq!(world.left_in_queue(&rt), MESSAGES - done.len(), "{text}");

    // A second daemon drains what the first left.
    let rest = (MESSAGES - done.len()).to_string();
    let out = daemon(
        &moto.env(),
        &config,
        &world.queue,
        &[
            "--max-messages",
            &rest,
            "--concurrency",
            "6",
            "--visibility",
            "10",
        ],
    );
    let log2 = stderr(&out);
    assert!(out.status.success(), "{log2}");
    let keys = stored();
    let expected: Vec<String> = {
        let mut all: Vec<String> = ids.iter().map(|id| mailbox(id)).collect();
        all.sort();
        all
    };
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected, "first:\n{text}\nsecond:\n{log2}");
    for id in &ids {
        assert_eq!(forwards(id), 1, "{id}:\nfirst:\n{text}\nsecond:\n{log2}");
    }
    assert_eq!(moto.sent_raw_messages().len(), MESSAGES);
    assert_eq!(world.left_in_queue(&rt), 0, "{log2}");
    eprintln!(
        "SIGTERM after {} of {MESSAGES} done, {in_flight} in flight; stopped in {:.1} s; \
         {} done before exit",
        done_at_signal,
        stopped_in.as_secs_f64(),
        done.len()
    );
}
