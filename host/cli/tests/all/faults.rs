//! Fault test: `sluice daemon` against moto server through [`FaultProxy`], which injects
//! real network faults between the real SDK clients and the emulator: S3 `503 SlowDown` on
//! reading the inbound message and on writing mailbox copies, S3 stalls longer than the
//! (shortened) attempt timeout, `500 InternalError` on claim and confirmation writes, SES
//! `429 TooManyRequestsException` and `503`, SQS `500` on `DeleteMessage`, and "forwarded,
//! then the answer lost" on a mailbox write and a claim write (answered 500: the SDK's
//! retry finds the claim already there) and on SES sends (the connection closed: nobody
//! can know whether it went out).
//!
//! Afterwards every message must be stored exactly once per recipient and folder (nothing
//! missing, nothing else in the bucket), every forward sent, a forward sent twice only as
//! the logged at-least-once resend of a send whose answer was lost (as many as those), the
//! queue and the DLQ empty, and each kind of fault injected at least once (the test cannot
//! pass without faults). The SES retries in process are logged one per injected 429/503.
//!
//! Parameters: `SLUICE_FAULTS_MESSAGES` (36), `SLUICE_FAULTS_SEED` (the seed of the random
//! SES throttling; printed).
//! `cargo test -p sluice --test all faults:: -- --nocapture` prints the one-line summary.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use sluice_aws::{S3Url, Ses, Sqs, S3};
use sluice_tests::faults::{Fault, FaultProxy, Rule, Target, When};
use sluice_tests::Moto;

use crate::common::sent::{depth, envelope_destinations, list_keys, sent_message_id};
use crate::common::{alias_and_forward_config, plain_message, BOB_EXTERNAL, CAROL_HOME};

/// Visibility timeout the daemon asks for: a failed message is back this soon.
const VISIBILITY: &str = "2";
/// The daemon's S3/SQS attempt timeout: a stall is cut off after this.
const ATTEMPT_TIMEOUT_MS: &str = "1500";

struct Case {
    id: String,
    rcpts: Vec<&'static str>,
    /// `(local part, folder)` of each mailbox copy.
    stored: Vec<(&'static str, &'static str)>,
    /// Relayed destinations.
    forwards: Vec<&'static str>,
}

/// Four shapes in turn: a plain mailbox, an alias with a local and an external destination,
/// a mailbox with a forward rule copying to an external address, and all of it at once.
fn case(i: u64) -> Case {
    let id = format!("fault-{i:04}");
    let (rcpts, stored, forwards) = match i % 4 {
        0 => (vec!["alice@example.com"], vec![("alice", "INBOX")], vec![]),
        1 => (
            vec!["info@example.com"],
            vec![("alice", "INBOX")],
            vec![BOB_EXTERNAL],
        ),
        2 => (
            vec!["carol@example.com"],
            vec![("carol", "INBOX")],
            vec![CAROL_HOME],
        ),
        _ => (
            vec!["alice@example.com", "info@example.com", "carol@example.com"],
            vec![("alice", "INBOX"), ("carol", "INBOX")],
            vec![BOB_EXTERNAL, CAROL_HOME],
        ),
    };
    Case {
        id,
        rcpts,
        stored,
        forwards,
    }
}

fn mailbox_key(local: &str, folder: &str, id: &str) -> String {
    format!("mailboxes/example.com/{local}/{folder}/{id}.eml")
}

/// The plan. Rules on one target are asked in order, and the first that fires injects, so
/// the moduli are chosen to interleave.
fn plan(seed: u64) -> Vec<Rule> {
    let get_inbound = || Target::s3("GET", "inbound", "incoming/");
    let put_mail = || Target::s3("PUT", "mail", "mailboxes/");
    let claims = || Target::s3("PUT", "markers", "sent/").conditional(true);
    let confirms = || Target::s3("PUT", "markers", "sent/").conditional(false);
    vec![
        Rule::new(
            "get-slowdown",
            get_inbound(),
            When::Every(4),
            Fault::s3(503, "SlowDown"),
        ),
        Rule::new("get-stall", get_inbound(), When::Every(7), Fault::Stall).times(3),
        Rule::new(
            "put-slowdown",
            put_mail(),
            When::Every(5),
            Fault::s3(503, "SlowDown"),
        ),
        Rule::new("put-stall", put_mail(), When::Every(9), Fault::Stall).times(3),
        Rule::new(
            "put-lost",
            put_mail(),
            When::Every(7),
            Fault::lose_answer_with(Fault::s3(500, "InternalError")),
        )
        .times(4),
        Rule::new(
            "claim-lost",
            claims(),
            When::Every(5),
            Fault::lose_answer_with(Fault::s3(500, "InternalError")),
        )
        .times(4),
        Rule::new(
            "claim-500",
            claims(),
            When::Every(7),
            Fault::s3(500, "InternalError"),
        ),
        Rule::new(
            "confirm-500",
            confirms(),
            When::Every(6),
            Fault::s3(500, "InternalError"),
        ),
        Rule::new(
            "ses-lost",
            Target::SesSend,
            When::Every(11),
            Fault::lose_answer_by_closing(),
        )
        .times(2),
        Rule::new(
            "ses-429",
            Target::SesSend,
            When::Chance { p: 0.25, seed },
            Fault::ses(429, "TooManyRequestsException"),
        ),
        Rule::new(
            "ses-503",
            Target::SesSend,
            When::Every(8),
            Fault::ses(503, "ServiceUnavailable"),
        ),
        Rule::new(
            "sqs-delete-500",
            Target::Sqs("DeleteMessage".into()),
            When::Every(8),
            Fault::sqs(500, "InternalError"),
        ),
    ]
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(default)
}

#[test]
fn faults_between_the_daemon_and_aws_lose_nothing_and_send_nothing_twice() {
    let _turn = crate::turn(module_path!());
    let started = Instant::now();
    let n = env_num("SLUICE_FAULTS_MESSAGES", 36);
    let seed = env_num(
        "SLUICE_FAULTS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!("faults test: seed {seed} (rerun with SLUICE_FAULTS_SEED={seed}), {n} messages");
    let dir = tempfile::tempdir().unwrap();
    let config = alias_and_forward_config(dir.path(), false);
    let rt = crate::common::rt();
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, plan(seed));
    // The test's own clients talk to moto directly: only the daemon meets the faults.
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    let sqs = Sqs::for_endpoint(&moto.endpoint, "us-east-1");
    let cases: Vec<Case> = (0..n).map(case).collect();
    let (queue, dlq) = rt.block_on(async {
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
        let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": "10" });
        let queue = sqs
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
        for c in &cases {
            let url = S3Url::parse(&format!("s3://inbound/incoming/{}", c.id)).unwrap();
            s3.put(
                &url,
                plain_message("Fault test", &c.id, &c.rcpts),
                "message/rfc822",
            )
            .await
            .unwrap();
            let body = crate::common::notification_with(&c.id, &c.rcpts, "PASS", "PASS", "inbound");
            sqs.client()
                .send_message()
                .queue_url(&queue)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        (queue, dlq)
    });

    let log_path = dir.path().join("daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", config.to_str().unwrap()])
        .args(["--queue", &queue, "--wait", "1", "--visibility", VISIBILITY])
        .args(["--concurrency", "4", "--reload-seconds", "3600"])
        .envs(moto.env())
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env(sluice_aws::ATTEMPT_TIMEOUT_ENV, ATTEMPT_TIMEOUT_MS)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .expect("sluice daemon starts");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Drain: every mailbox copy there and the queue empty.
    let expected_keys: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| {
            c.stored
                .iter()
                .map(|(local, folder)| mailbox_key(local, folder, &c.id))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let keys: BTreeSet<String> = list_keys(&rt, &s3, "mail").into_iter().collect();
        let main = depth(&rt, &sqs, &queue);
        if expected_keys.is_subset(&keys) && main.total() == 0 {
            break;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("the daemon exited ({status}):\n{}", log());
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!(
                "not drained within 100 s: {} of {} mailbox copies missing, queue {main:?}; injected: {}\nlog tail:\n{}",
                expected_keys.difference(&keys).count(),
                expected_keys.len(),
                proxy.summary(),
                log().lines().rev().take(40).collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    while daemon.try_wait().unwrap().is_none() {
        if Instant::now() > stop_deadline {
            let _ = daemon.kill();
            panic!("the daemon did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log();
    let mut problems: Vec<String> = Vec::new();

    // Mailboxes: exactly the expected keys.
    let keys = list_keys(&rt, &s3, "mail");
    let key_set: BTreeSet<String> = keys.iter().cloned().collect();
    let lost = expected_keys.difference(&key_set).count();
    let unexpected = key_set.difference(&expected_keys).count() + (keys.len() - key_set.len());
    for k in expected_keys.difference(&key_set) {
        problems.push(format!("mailbox copy missing: {k}"));
    }
    for k in key_set.difference(&expected_keys) {
        problems.push(format!("unexpected object in the mail bucket: {k}"));
    }

    // Sends: per (message, envelope destinations) and per (message, destination).
    let raw_messages = moto.sent_raw_messages();
    let mut per_send: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
    let mut per_pair: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in &raw_messages {
        let raw = m["raw_data"].as_str().unwrap_or_default();
        let id = sent_message_id(raw).unwrap_or_else(|| format!("<no id: {raw:.80}>"));
        let mut dests = match envelope_destinations(m) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        dests.sort();
        for d in &dests {
            *per_pair.entry((id.clone(), d.clone())).or_default() += 1;
        }
        *per_send.entry((id, dests)).or_default() += 1;
    }
    let expected_pairs: BTreeSet<(String, String)> = cases
        .iter()
        .flat_map(|c| c.forwards.iter().map(|d| (c.id.clone(), d.to_string())))
        .collect();
    let never_sent = expected_pairs
        .iter()
        .filter(|p| !per_pair.contains_key(*p))
        .inspect(|p| problems.push(format!("forward never sent: {} -> {}", p.0, p.1)))
        .count();
    for (pair, count) in &per_pair {
        if !expected_pairs.contains(pair) {
            problems.push(format!(
                "unexpected send ({count}x): {} -> {}",
                pair.0, pair.1
            ));
        }
    }
    // A send made twice must be a logged resend of a send whose answer was lost.
    let resend_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("RESENDING UNCONFIRMED SEND"))
        .collect();
    let mut sent_twice = 0;
    for ((id, dests), count) in &per_send {
        if *count > 1 {
            sent_twice += count - 1;
            let resent = resend_lines
                .iter()
                .filter(|l| l.contains(id.as_str()))
                .count();
            if resent < count - 1 {
                problems.push(format!(
                    "{id} -> {} destination(s) sent {count} times with {resent} resend(s) logged",
                    dests.len()
                ));
            }
        }
    }
    let ses_lost = proxy.injected("ses-lost");
    if sent_twice as u64 != ses_lost || resend_lines.len() as u64 != ses_lost {
        problems.push(format!(
            "{ses_lost} SES answer(s) lost, so as many resends and second copies are expected: {} resend(s) logged, {sent_twice} send(s) made twice",
            resend_lines.len()
        ));
    }
    // Each injected 429/503 was retried in process (not through the queue).
    let ses_refused = proxy.injected("ses-429") + proxy.injected("ses-503");
    let ses_retries = log
        .lines()
        .filter(|l| l.contains("SES did not accept the send"))
        .count() as u64;
    // A refused send not retried in process (its attempts or its 45 s budget were spent: a
    // slow machine) fails its message back to the queue, whose next attempt sends it (the
    // "0 never sent" above): each such send is one failed message attempt.
    let failed_attempts = log.lines().filter(|l| l.contains("message failed")).count() as u64;
    if ses_retries > ses_refused || ses_retries == 0 || ses_refused - ses_retries > failed_attempts
    {
        problems.push(format!(
            "{ses_refused} SES send(s) answered 429/503, {ses_retries} retried in process, {failed_attempts} message attempt(s) failed"
        ));
    }
    // A claim whose answer was lost is found to be this attempt's own: won when the SDK's
    // retry of the write finds it, released when the write failed for good (its retries
    // failed too, or the SDK's retry quota was spent); never taken for an unconfirmed claim
    // (that would be a resend, counted above).
    let claims_found = log
        .lines()
        .filter(|l| l.contains("the claim was written although its answer was lost"))
        .count() as u64;
    let claims_released = log
        .lines()
        .filter(|l| l.contains("the claim was written although its write failed"))
        .count() as u64;
    // Only lost answers to claims S3 made count: a lost answer to a claim that existed
    // already (a retried message whose send is done) is a plain error to the client.
    let claims_landed = proxy.landed("claim-lost");
    if claims_found + claims_released != claims_landed || claims_landed == 0 {
        problems.push(format!(
            "{claims_landed} claim(s) written with the answer lost, {claims_found} found to be the writer's own and {claims_released} released"
        ));
    }

    // Queue and DLQ empty.
    let main = depth(&rt, &sqs, &queue);
    let dead = depth(&rt, &sqs, &dlq);
    if main.total() != 0 {
        problems.push(format!("the queue is not empty: {main:?}"));
    }
    if dead.total() != 0 {
        problems.push(format!("the DLQ is not empty: {dead:?}"));
    }
    // The test cannot pass without faults: every rule injected.
    for c in proxy.counts() {
        if c.injected == 0 {
            problems.push(format!(
                "rule {} ({}) injected nothing ({} matched)",
                c.name, c.kind, c.matched
            ));
        }
    }
    let done = log.lines().filter(|l| l.contains("message done")).count();
    println!(
        "faults test: seed {seed}: {n} messages ({} mailbox copies, {} forwards), {} requests forwarded; injected: {}; \
         outcome: {lost} lost, {unexpected} stored twice or stray, {never_sent} never sent, {sent_twice} sent twice \
         ({} resend(s) after {ses_lost} lost SES answer(s)), {ses_retries} SES retries in process, {claims_found} lost claim answers resolved as won and {claims_released} released, \
         {done} done / {failed_attempts} failed attempts, queue {}, DLQ {}; {} problem(s); {:.1} s",
        expected_keys.len(),
        expected_pairs.len(),
        proxy.forwarded(),
        proxy.summary(),
        resend_lines.len(),
        main.total(),
        dead.total(),
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\nlog tail:\n{}",
        problems.len(),
        problems.join("\n  "),
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    sluice_tests::assert_no_full_address("faults test daemon", &log);
}
