//! `sluice daemon` end to end against a real emulator (moto server on loopback) with the real
//! aws-sdk-rust clients: raw messages in S3, SES notifications (in SNS envelopes, as an SNS ->
//! SQS subscription delivers them) in SQS, mailboxes read back from S3 and what SES "sent"
//! read back from moto.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
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
