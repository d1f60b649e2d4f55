//! Hostile rules are contained: the step's policy applies, the host lives on, and the next
//! message is processed normally.

use sluice_chain::StepStatus;
use std::time::Instant;

use sluice_chain::{Disposition, GroupOutcome, ProcessResult, RuleChains};
use sluice_tests::{chains, fixture, output_of, process};

/// A chain of `hostile` (with extra TOML lines) followed by a well-behaved header step.
fn chain_with(hostile: &str, extra: &str) -> RuleChains {
    chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:{hostile}}}"
{extra}
[[domain.step]]
plugin = "{{rule:rule-headers}}"
config = {{ actions = [ {{ add_header = ["X-After", "yes"] }} ] }}
"#
    ))
}

fn run(chains: &RuleChains) -> ProcessResult {
    process(chains, "plain-lf.eml", &["bob@example.com"])
}

fn output(result: &ProcessResult) -> String {
    String::from_utf8_lossy(&output_of(result, 0, &fixture("plain-lf.eml"))).into_owned()
}

/// After a hostile step, a harmless chain still works on the same engine.
fn next_message_is_fine() {
    let ok = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_header = ["X-Fine", "1"] } ] }
"#,
    );
    let result = run(&ok);
    assert_eq!(result.groups[0].steps[0].outcome, StepStatus::Ok);
    assert!(output(&result).contains("X-Fine: 1"));
}

fn assert_failed_then_continued(result: &ProcessResult, error_part: &str) {
    let g = &result.groups[0];
    assert_eq!(g.steps.len(), 2, "{:#?}", g.steps);
    assert_eq!(g.steps[0].outcome, StepStatus::Failed);
    let error = g.steps[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains(error_part),
        "error {error:?} lacks {error_part:?}"
    );
    assert!(g.steps[0].actions.is_empty());
    assert_eq!(g.steps[1].outcome, StepStatus::Ok, "{:?}", g.steps[1].error);
    assert!(output(result).contains("X-After: yes"));
    assert_eq!(
        g.dispositions,
        vec![Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into()
        }]
    );
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    let chains = chain_with("rule-spin", "timeout_ms = 30");
    let started = Instant::now();
    let result = run(&chains);
    let elapsed = started.elapsed();
    assert_failed_then_continued(&result, "timed out after its 30 ms deadline");
    let micros = result.groups[0].steps[0].micros;
    assert!(micros >= 30_000, "stopped before its deadline: {micros} µs");
    // Bounded, not a speed target: a runaway rule must not hold the message for long.
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
    next_message_is_fine();
}

#[test]
fn memory_bomb_hits_its_cap() {
    let chains = chain_with("rule-membomb", "memory_mb = 16");
    let result = run(&chains);
    assert_failed_then_continued(&result, "memory cap of 16 MiB");
    next_message_is_fine();
}

#[test]
fn panic_is_a_trap_and_its_message_is_logged() {
    let chains = chain_with("rule-trap", "");
    let result = run(&chains);
    assert_failed_then_continued(&result, "trapped");
    let logs = &result.groups[0].steps[0].logs;
    assert!(
        logs.iter()
            .any(|l| l.text.contains("rule-trap: deliberate panic")),
        "panic message not in the step's log: {logs:?}"
    );
    next_message_is_fine();
}

#[test]
fn ten_thousand_actions_are_refused() {
    let chains = chain_with("rule-flood", "");
    let result = run(&chains);
    assert_failed_then_continued(&result, "returned 10000 actions; the limit is 256");
    assert!(!output(&result).contains("X-Flood"));
    next_message_is_fine();
}

#[test]
fn header_injection_is_refused() {
    let chains = chain_with("rule-crlf", "");
    let result = run(&chains);
    assert_failed_then_continued(&result, "invalid action #0");
    assert!(!output(&result).contains("victim@example.net"));
    next_message_is_fine();
}

#[test]
fn protected_header_cannot_be_removed() {
    let chains = chain_with("rule-unprotect", "");
    let result = run(&chains);
    assert_failed_then_continued(&result, "Received");
    assert!(output(&result).contains("Received: from mx.outside.example"));
    next_message_is_fine();
}

#[test]
fn tempfail_policy_delivers_nothing() {
    let chains = chain_with("rule-trap", "on_error = \"tempfail\"");
    let result = run(&chains);
    assert!(result.tempfailed());
    let g = &result.groups[0];
    assert_eq!(g.steps.len(), 1, "the chain stops at a tempfail");
    assert!(
        matches!(g.outcome, GroupOutcome::Tempfail { ref reason } if reason.contains("rule-trap"))
    );
    assert!(g.dispositions.is_empty());
    assert!(g.output.is_none());
}

#[test]
fn bounce_policy_bounces_the_group() {
    let chains = chain_with("rule-spin", "timeout_ms = 10\non_error = \"bounce\"");
    let result = run(&chains);
    let g = &result.groups[0];
    assert_eq!(g.steps.len(), 1);
    assert_eq!(g.steps[0].policy, Some(sluice_chain::OnError::Bounce));
    assert!(matches!(
        &g.dispositions[..],
        [Disposition::Bounce { recipient, code: 554, status, .. }]
            if recipient == "bob@example.com" && status == "5.3.0"
    ));
}

#[test]
fn a_step_that_keeps_failing_is_skipped_until_its_cooldown_ends() {
    let chains = chain_with(
        "rule-trap",
        "breaker = { failures = 2, window_ms = 60000, cooldown_ms = 300 }",
    );
    let outcomes = |r: &ProcessResult| r.groups[0].steps[0].outcome;
    assert_eq!(outcomes(&run(&chains)), StepStatus::Failed);
    assert_eq!(outcomes(&run(&chains)), StepStatus::Failed);
    let skipped = run(&chains);
    assert_eq!(outcomes(&skipped), StepStatus::Skipped);
    let error = skipped.groups[0].steps[0].error.clone().unwrap_or_default();
    assert!(error.contains("circuit breaker open"), "{error}");
    // The policy still applies (continue) and the next step still runs.
    assert_failed_or_skipped_then_continued(&skipped);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(
        outcomes(&run(&chains)),
        StepStatus::Failed,
        "after the cool-down the step runs again"
    );
    assert_eq!(
        outcomes(&run(&chains)),
        StepStatus::Skipped,
        "and one more failure reopens it"
    );
}

fn assert_failed_or_skipped_then_continued(result: &ProcessResult) {
    let g = &result.groups[0];
    assert_eq!(g.steps.len(), 2);
    assert_eq!(g.steps[1].outcome, StepStatus::Ok);
    assert!(output(result).contains("X-After: yes"));
}

/// A noisy step's config as an inline TOML table.
fn noisy(config: &str) -> RuleChains {
    chain_with("rule-noisy", &format!("config = {{ {config} }}"))
}

#[test]
fn a_log_flood_is_cut_to_the_step_budget_and_counted() {
    // 10,000 lines of 1 KB: 10 MB the host would otherwise print and keep.
    let result = run(&noisy("log_lines = 10000, log_bytes = 1000"));
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{:?}", step.error);
    let kept: usize = step.logs.iter().map(|l| l.text.len()).sum();
    assert!(kept <= 32 * 1024, "kept {kept} bytes of logs");
    assert!(!step.logs.is_empty());
    assert_eq!(step.logs.len() + step.dropped_logs, 10_000);
    let json = serde_json::to_string(&step).unwrap();
    assert!(json.len() < 64 * 1024, "trace line of {} bytes", json.len());
    assert!(json.contains("\"dropped_logs\""), "{}", &json[..200]);
}

#[test]
fn a_huge_invalid_value_is_not_echoed_whole() {
    // A 20 MB subject prefix is invalid (8 KiB limit); the reason quotes only its start.
    let result = run(&noisy("prefix_bytes = 20000000"));
    assert_failed_then_continued(&result, "invalid subject prefix");
    let error = result.groups[0].steps[0].error.clone().unwrap();
    assert!(error.len() < 2048, "error of {} bytes", error.len());
    assert!(error.contains("20000000 bytes long"), "{error}");
}

#[test]
fn a_huge_rule_error_is_cut() {
    let result = run(&noisy("error_bytes = 5000000"));
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError);
    let error = step.error.as_deref().unwrap();
    assert!(error.len() < 2048, "error of {} bytes", error.len());
}

#[test]
fn recipient_requests_are_checked_when_made_and_bounded_in_bytes() {
    // The first request is invalid (a 300-byte local part): the step fails at request #0.
    let result = run(&noisy("forwards = 100000, forward_bytes = 300"));
    assert_failed_then_continued(&result, "invalid recipients request #0");
    // Valid requests of ~2.2 KB each: the 256 KiB budget stops the rule before the count
    // limit (1024) would, and long before 100,000 requests pile up in host memory.
    let result = run(&noisy(
        "forwards = 100000, forward_bytes = 200, forward_to = 10",
    ));
    assert_failed_then_continued(&result, "recipient requests of more than 256 KiB");
    // Many small ones: the count limit.
    let result = run(&noisy("forwards = 100000"));
    assert_failed_then_continued(&result, "more than 1024 recipient requests");
    next_message_is_fine();
}

#[test]
fn a_deadline_holds_under_cpu_load() {
    // Twice as many busy threads as cores: the epoch ticker wakes late, and a deadline that
    // counted wake-ups stretched 100 ms to 200-300 ms. It follows the wall clock now.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<_> = (0..2 * cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let chains = chain_with("rule-spin", "timeout_ms = 100");
    let micros: Vec<u64> = (0..5)
        .map(|_| run(&chains).groups[0].steps[0].micros)
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    println!("100 ms deadline under load: {micros:?} µs");
    let worst = *micros.iter().max().unwrap();
    assert!(worst >= 100_000, "stopped early: {micros:?}");
    // A bound, not a speed target: within 2x even on a loaded machine.
    assert!(worst < 200_000, "overshot: {micros:?} µs");
}
