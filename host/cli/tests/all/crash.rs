//! Crash test: `sluice daemon` against moto server is SIGKILLed at random points while
//! messages are in flight, restarted each time, then left to drain; afterwards every message
//! must be stored exactly once per recipient and folder, every forward sent (0 never sent:
//! `[relay] sends` is at least once by default), a forward sent twice only when a kill fell
//! between SES's answer and the claim's confirmation and the next attempt logged
//! `RESENDING UNCONFIRMED SEND` for it (each such resend counted), the queue empty and the
//! DLQ holding exactly the messages that were meant to fail.
//!
//! Parameters (environment):
//! - `SLUICE_CRASH_MESSAGES` (40): good messages;
//! - `SLUICE_CRASH_KILLS` (5): SIGKILLs;
//! - `SLUICE_CRASH_DAEMONS` (1): daemons consuming the one queue;
//! - `SLUICE_CRASH_CONCURRENCY` (4): `--concurrency` of each daemon;
//! - `SLUICE_CRASH_SEED` (from the clock; always printed): the PRNG seed that picks the kill
//!   points and victims.
//!
//! The long run: `SLUICE_CRASH_MESSAGES=500 SLUICE_CRASH_KILLS=50 SLUICE_CRASH_DAEMONS=2
//! cargo test -p sluice --test all crash:: -- --nocapture`.
//!
//! A kill lands after a random number (1..=N/(M+1)) of messages completed in the victim's
//! current incarnation plus a random 0-250 ms, so other messages are mid-pipeline (S3 reads,
//! mailbox writes, SES sends, marker writes) when it dies; a kill that waited 3 s for
//! completions happens anyway. Killed in-flight messages come back after the 2 s visibility
//! timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use sluice_aws::{S3Url, Ses, Sqs, S3};
use sluice_tests::Moto;

use crate::common::sent::{depth, envelope_destinations, list_keys, sent_message_id};
use crate::common::{alias_and_forward_config, plain_message, BOB_EXTERNAL, CAROL_HOME};
/// Visibility timeout the daemons ask for: a killed message is back this soon.
const VISIBILITY: &str = "2";

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: small, seedable, good enough to pick kill points reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One good message: who it is for, its verdict, and what must come of it.
struct Case {
    id: String,
    rcpts: Vec<&'static str>,
    spam: &'static str,
    /// `(local part, folder)` of each mailbox copy.
    stored: Vec<(&'static str, &'static str)>,
    /// Relayed destinations (each exactly one SES send).
    forwards: Vec<&'static str>,
}

/// Five shapes, in turn: a plain mailbox, an alias with a local and an external destination,
/// a mailbox with a forward rule copying to an external address, spam filed into Junk, and all
/// of it in one message.
fn case(i: u64) -> Case {
    let id = format!("crash-{i:05}");
    let (rcpts, spam, stored, forwards) = match i % 5 {
        0 => (
            vec!["alice@example.com"],
            "PASS",
            vec![("alice", "INBOX")],
            vec![],
        ),
        1 => (
            vec!["info@example.com"],
            "PASS",
            vec![("alice", "INBOX")],
            vec![BOB_EXTERNAL],
        ),
        2 => (
            vec!["carol@example.com"],
            "PASS",
            vec![("carol", "INBOX")],
            vec![CAROL_HOME],
        ),
        3 => (
            vec!["bob@example.com"],
            "FAIL",
            vec![("bob", "Junk")],
            vec![],
        ),
        _ => (
            vec!["alice@example.com", "info@example.com", "carol@example.com"],
            "PASS",
            vec![("alice", "INBOX"), ("carol", "INBOX")],
            vec![BOB_EXTERNAL, CAROL_HOME],
        ),
    };
    Case {
        id,
        rcpts,
        spam,
        stored,
        forwards,
    }
}

fn mailbox_key(local: &str, folder: &str, id: &str) -> String {
    format!("mailboxes/example.com/{local}/{folder}/{id}.eml")
}

/// An SES receipt notification (S3 action, SPF pass) in the SNS envelope an SNS -> SQS
/// subscription delivers.
fn notification(id: &str, rcpts: &[&str], spam: &str) -> String {
    crate::common::notification_with(id, rcpts, "PASS", spam, "inbound")
}

struct Queues {
    main: String,
    dlq: String,
}

/// One daemon slot: the running process (if any) and the log of each incarnation.
struct Slot {
    child: Option<Child>,
    logs: Vec<PathBuf>,
    cache: PathBuf,
}

/// The daemons; every process still running is SIGKILLed on drop (also when an assertion
/// failed).
struct Fleet {
    slots: Vec<Slot>,
    env: Vec<(&'static str, String)>,
    config: PathBuf,
    queue: String,
    concurrency: u64,
    dir: PathBuf,
}

impl Fleet {
    fn start(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        assert!(s.child.is_none());
        let log = self
            .dir
            .join(format!("daemon{slot}-run{:03}.log", s.logs.len()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["daemon", "--config", self.config.to_str().unwrap()])
            .args([
                "--queue",
                &self.queue,
                "--wait",
                "1",
                "--visibility",
                VISIBILITY,
            ])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--reload-seconds", "3600"])
            .envs(self.env.iter().cloned())
            .env("SLUICE_CACHE_DIR", &s.cache)
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("sluice daemon starts");
        s.child = Some(child);
        s.logs.push(log);
    }

    fn current_log(&self, slot: usize) -> String {
        self.slots[slot]
            .logs
            .last()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits (bounded) until the slot's current incarnation says it consumes.
    fn wait_consuming(&mut self, slot: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let log = self.current_log(slot);
            if log.contains("consuming") {
                return;
            }
            if let Some(status) = self.slots[slot]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().unwrap())
            {
                panic!("daemon {slot} exited before consuming ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "daemon {slot} did not start consuming within 90 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Messages the slot's current incarnation finished.
    fn done_now(&self, slot: usize) -> usize {
        self.current_log(slot)
            .lines()
            .filter(|l| l.contains(" done"))
            .count()
    }

    fn sigkill(&mut self, slot: usize) {
        if let Some(mut child) = self.slots[slot].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM every running daemon and waits (bounded) for it; returns the failures.
    fn stop_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(mut child) = slot.child.take() else {
                continue;
            };
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match status {
                Some(s) if s.success() => {}
                Some(s) => problems.push(format!("daemon {i} exited with {s} on SIGTERM")),
                None => problems.push(format!("daemon {i} did not stop within 20 s of SIGTERM")),
            }
        }
        problems
    }

    /// The logs of every incarnation, one after the other.
    fn all_logs(&self) -> String {
        let mut all = String::new();
        for path in self.slots.iter().flat_map(|s| &s.logs) {
            all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
            if !all.ends_with('\n') {
                all.push('\n');
            }
        }
        all
    }

    /// Every log line of every incarnation that mentions `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            for (run, path) in slot.logs.iter().enumerate() {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                out.extend(
                    text.lines()
                        .filter(|l| l.contains(needle))
                        .map(|l| format!("  [daemon {i} run {run}] {l}")),
                );
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in 0..self.slots.len() {
            self.sigkill(slot);
        }
    }
}

#[test]
fn sigkilled_daemons_store_every_message_once_and_never_forward_twice() {
    let _turn = crate::turn(module_path!());
    let started = Instant::now();
    let n = env_num("SLUICE_CRASH_MESSAGES", 40);
    let kills = env_num("SLUICE_CRASH_KILLS", 5);
    let daemons = env_num("SLUICE_CRASH_DAEMONS", 1).max(1) as usize;
    let concurrency = env_num("SLUICE_CRASH_CONCURRENCY", 4).max(1);
    let seed = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .expect("SLUICE_CRASH_SEED is a number")
        })
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    println!(
        "crash test: seed {seed} (rerun with SLUICE_CRASH_SEED={seed}), {n} messages, {kills} kills, {daemons} daemon(s), concurrency {concurrency}"
    );
    let mut rng = Rng(seed);

    // Builds the rules (once per test process) and writes the config.
    let dir = tempfile::tempdir().unwrap();
    let config = alias_and_forward_config(dir.path(), true);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let moto = Moto::start();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    let sqs = Sqs::for_endpoint(&moto.endpoint, "us-east-1");
    // A legitimate message is received at most once per kill that caught it in flight, plus
    // once: it must never reach the DLQ; the broken ones get there after this many receives.
    let max_receives = kills + 3;
    let queues = rt.block_on(async {
        for bucket in ["inbound", "mail", "markers"] {
            s3.create_bucket(bucket).await.unwrap();
        }
        let dlq = sqs
            .client()
            .create_queue()
            .queue_name("ses-inbound-dlq")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .client()
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(Attr::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .and_then(|mut a| a.remove(&Attr::QueueArn))
            .expect("the DLQ has an ARN");
        let policy = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": max_receives.to_string(),
        });
        let main = sqs
            .client()
            .create_queue()
            .queue_name("ses-inbound")
            .attributes(Attr::RedrivePolicy, policy.to_string())
            .attributes(Attr::VisibilityTimeout, VISIBILITY)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        Ses::for_endpoint(&moto.endpoint, "us-east-1")
            .create_email_identity("example.com")
            .await
            .unwrap();
        Queues { main, dlq }
    });

    // Meant to fail, enqueued first so they collect their receives early: a body that is no
    // SES notification, and a notification whose message is not in S3.
    let garbage = "{not json: crash-garbage".to_string();
    let missing = notification("crash-missing", &["alice@example.com"], "PASS");
    let cases: Vec<Case> = (0..n).map(case).collect();
    rt.block_on(async {
        for body in [&garbage, &missing] {
            sqs.client()
                .send_message()
                .queue_url(&queues.main)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        for c in &cases {
            let url = S3Url::parse(&format!("s3://inbound/incoming/{}", c.id)).unwrap();
            s3.put(
                &url,
                plain_message("Crash test", &c.id, &c.rcpts),
                "message/rfc822",
            )
            .await
            .unwrap();
            sqs.client()
                .send_message()
                .queue_url(&queues.main)
                .message_body(notification(&c.id, &c.rcpts, c.spam))
                .send()
                .await
                .unwrap();
        }
    });
    println!(
        "crash test: {} messages queued in {:.1} s",
        n + 2,
        started.elapsed().as_secs_f64()
    );

    let mut fleet = Fleet {
        slots: (0..daemons)
            .map(|i| Slot {
                child: None,
                logs: Vec::new(),
                cache: dir.path().join(format!("cache{i}")),
            })
            .collect(),
        env: moto.env(),
        config,
        queue: queues.main.clone(),
        concurrency,
        dir: dir.path().to_path_buf(),
    };
    // One after the other; each slot has its own compiled-rule cache, reused by every
    // incarnation, so a restart is quick.
    for slot in 0..daemons {
        fleet.start(slot);
        fleet.wait_consuming(slot);
    }

    let kill_phase = Instant::now();
    let per = (n / (kills + 1)).max(1);
    let mut kills_in_flight = 0;
    for k in 0..kills {
        let victim = rng.below(daemons as u64) as usize;
        fleet.wait_consuming(victim);
        let target = fleet.done_now(victim) + 1 + rng.below(per) as usize;
        let patience = Instant::now() + Duration::from_secs(3);
        while fleet.done_now(victim) < target && Instant::now() < patience {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        let before = depth(&rt, &sqs, &queues.main);
        let done = fleet.done_now(victim);
        fleet.sigkill(victim);
        if before.in_flight > 0 {
            kills_in_flight += 1;
        }
        println!(
            "crash test: kill {}/{kills} at {:.2} s: daemon {victim} after {done} message(s) in this run; queue {} visible, {} in flight",
            k + 1,
            started.elapsed().as_secs_f64(),
            before.visible,
            before.in_flight
        );
        fleet.start(victim);
    }
    let kill_secs = kill_phase.elapsed().as_secs_f64();

    // Drain: every mailbox copy there, the queue empty, the broken messages in the DLQ.
    let expected_keys: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| {
            c.stored
                .iter()
                .map(|(local, folder)| mailbox_key(local, folder, &c.id))
        })
        .collect();
    let drain_limit = Duration::from_secs(60 + n / 5 + max_receives * 4);
    let drain_deadline = Instant::now() + drain_limit;
    loop {
        let keys: BTreeSet<String> = list_keys(&rt, &s3, "mail").into_iter().collect();
        let main = depth(&rt, &sqs, &queues.main);
        let dlq = depth(&rt, &sqs, &queues.dlq);
        let missing_keys: Vec<&String> = expected_keys.difference(&keys).collect();
        if missing_keys.is_empty() && main.total() == 0 && dlq.total() >= 2 {
            break;
        }
        if Instant::now() > drain_deadline {
            panic!(
                "not drained within {} s (seed {seed}): {} of {} mailbox copies missing (first: {:?}); queue {main:?}; DLQ {dlq:?}\nlog lines of the first missing message:\n{}",
                drain_limit.as_secs(),
                missing_keys.len(),
                expected_keys.len(),
                missing_keys.iter().take(5).collect::<Vec<_>>(),
                missing_keys
                    .first()
                    .and_then(|k| k.rsplit('/').next())
                    .map(|f| fleet.log_lines(f.trim_end_matches(".eml")).join("\n"))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut problems = fleet.stop_all();
    let total_secs = started.elapsed().as_secs_f64();

    // Mailboxes: exactly the expected keys, nothing else in the bucket.
    let keys: Vec<String> = list_keys(&rt, &s3, "mail");
    let key_set: BTreeSet<String> = keys.iter().cloned().collect();
    if keys.len() != key_set.len() {
        problems.push(format!(
            "the mail bucket lists {} keys, {} distinct",
            keys.len(),
            key_set.len()
        ));
    }
    for k in expected_keys.difference(&key_set) {
        problems.push(format!("mailbox copy missing: {k}"));
    }
    for k in key_set.difference(&expected_keys) {
        problems.push(format!("unexpected object in the mail bucket: {k}"));
    }

    // Forwards: count every destination of every SES send per (message, destination).
    let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
    let raw_messages = moto.sent_raw_messages();
    for m in &raw_messages {
        let raw = m["raw_data"].as_str().unwrap_or_default();
        let id = sent_message_id(raw).unwrap_or_else(|| format!("<no id: {:.120}>", raw));
        let dests = match envelope_destinations(m) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        if dests.is_empty() {
            problems.push(format!("an SES send of {id} without destinations"));
        }
        for d in dests {
            *sent.entry((id.clone(), d)).or_default() += 1;
        }
    }
    let expected_forwards: BTreeSet<(String, String)> = cases
        .iter()
        .flat_map(|c| c.forwards.iter().map(|d| (c.id.clone(), d.to_string())))
        .collect();
    let mut duplicates = 0;
    let mut duplicated_messages = BTreeSet::new();
    let mut lost = 0;
    let mut resends = 0;
    // Messages whose daemon log lines go into the failure message.
    let mut interesting: BTreeSet<String> = BTreeSet::new();
    for pair in &expected_forwards {
        let resent = fleet
            .log_lines(&pair.0)
            .iter()
            .filter(|l| l.contains("RESENDING UNCONFIRMED SEND"))
            .count();
        resends += resent;
        match sent.get(pair).copied().unwrap_or(0) {
            0 => {
                // At least once: a kill between the claim and its confirmation is resolved by
                // sending again; a forward never sent is lost.
                lost += 1;
                interesting.insert(pair.0.clone());
                problems.push(format!("forward never sent: {} -> {}", pair.0, pair.1));
            }
            count => {
                duplicates += count - 1;
                if count > 1 {
                    duplicated_messages.insert(pair.0.clone());
                }
                // A second copy is the price of at least once, and only ever follows a
                // logged resend of an unconfirmed claim.
                if count > 1 + resent {
                    interesting.insert(pair.0.clone());
                    problems.push(format!(
                        "forward sent {count} times with {resent} resend(s) logged: {} -> {}",
                        pair.0, pair.1
                    ));
                }
            }
        }
    }
    for (pair, count) in &sent {
        if !expected_forwards.contains(pair) {
            problems.push(format!(
                "unexpected SES send ({count}x): {} -> {}",
                pair.0, pair.1
            ));
        }
    }
    let expected_sends = expected_forwards.len();

    // Queue empty; the DLQ holds exactly the two broken messages.
    let main = depth(&rt, &sqs, &queues.main);
    if main.total() != 0 {
        problems.push(format!("the queue is not empty: {main:?}"));
    }
    let dlq_bodies: Vec<String> = rt.block_on(async {
        let mut bodies = Vec::new();
        for _ in 0..20 {
            let out = sqs
                .client()
                .receive_message()
                .queue_url(&queues.dlq)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let got = out.messages.unwrap_or_default();
            if got.is_empty() {
                break;
            }
            bodies.extend(got.into_iter().filter_map(|m| m.body));
        }
        bodies
    });
    let mut dlq_names: Vec<String> = dlq_bodies
        .iter()
        .map(|b| {
            if *b == garbage {
                "garbage".to_string()
            } else if *b == missing {
                "crash-missing".to_string()
            } else {
                let id = cases
                    .iter()
                    .find(|c| b.contains(&format!("\\\"messageId\\\":\\\"{}\\\"", c.id)))
                    .map(|c| c.id.clone());
                if let Some(id) = &id {
                    interesting.insert(id.clone());
                }
                format!("unexpected: {}", id.unwrap_or_else(|| format!("{b:.200}")))
            }
        })
        .collect();
    dlq_names.sort();
    if dlq_names != ["crash-missing", "garbage"] {
        problems.push(format!(
            "the DLQ should hold exactly the garbage body and crash-missing: {dlq_names:?}"
        ));
    }

    println!(
        "crash test: seed {seed}: {n} messages ({} mailbox copies, {expected_sends} forwards), {kills} kills ({kills_in_flight} with messages in flight) over {kill_secs:.1} s, {} daemon run(s); {} SES sends, {resends} resend(s) of unconfirmed claims (killed between claim and confirmation), {duplicates} duplicate forward(s) in {} message(s) (each after a resend), {lost} never sent; {} problem(s); {total_secs:.1} s in all",
        expected_keys.len(),
        fleet.slots.iter().map(|s| s.logs.len()).sum::<usize>(),
        raw_messages.len(),
        duplicated_messages.len(),
        problems.len(),
    );
    if !problems.is_empty() {
        let mut detail = String::new();
        for id in interesting.iter().take(4) {
            detail.push_str(&format!("\nlast log lines of {id}:\n"));
            let lines = fleet.log_lines(id);
            let skip = lines.len().saturating_sub(8);
            detail.push_str(&lines[skip..].join("\n"));
        }
        panic!(
            "seed {seed} (SLUICE_CRASH_SEED={seed}): {} problem(s):\n  {}{detail}",
            problems.len(),
            problems
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    // Whatever the kills interrupted, no line of any incarnation's log shows an address whole
    // (a killed daemon's last line may be cut short: it is scanned as it is).
    sluice_tests::assert_no_full_address("crash test daemons", &fleet.all_logs());
}
