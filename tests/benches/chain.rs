//! Per-message costs: a bare parse, an empty step, and the banner + junk chain.
//! `cargo bench -p sluice-tests --bench chain`; figures go in the README's table.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_engine::{Context, MessageSession, StepLimits, WarmPool, WarmSettings};
use sluice_mail::Message;
use sluice_tests::{chains, empty_steps, engine, envelope, parse_and_process, unknown_verdicts};

fn messages() -> Vec<Vec<u8>> {
    sluice_tests::corpus_messages()
}

fn context() -> Arc<Context> {
    Arc::new(Context {
        domain: "example.com".into(),
        recipients: vec!["bob@example.com".into()],
        mail_from: "a@outside.example".into(),
        verdicts: unknown_verdicts(),
        received_at: 0,
        message_id: "bench".into(),
        config: "{}".into(),
    })
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let n = msgs.len() as u64;

    let mut g = c.benchmark_group("per-message");
    g.throughput(Throughput::Elements(n));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for raw in &msgs {
                std::hint::black_box(Message::parse(raw.clone()).unwrap());
            }
        })
    });
    let banner_junk = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:banner}"
config = { text = "External sender: be careful with links." }
[[domain.step]]
plugin = "{rule:junk}"
config = { score_header = "X-Spam-Score", score_threshold = 5.0 }
"#,
    );
    let env = envelope(&["bob@example.com"]);
    let four_empty = chains(&empty_steps(4, "fresh"));
    let four_warm = chains(&empty_steps(4, "warm"));
    for (name, chain) in [
        ("parse + banner + junk + edits", &banner_junk),
        ("parse + 4 empty steps", &four_empty),
        ("parse + 4 empty steps (warm)", &four_warm),
    ] {
        g.bench_function(name, |b| b.iter(|| parse_and_process(chain, &msgs, &env)));
    }
    g.finish();

    let empty = &four_empty.chains()[0].steps[0].plugin;
    let pool = WarmPool::new(WarmSettings::default());
    let msg = Arc::new(Message::parse(msgs[0].clone()).unwrap());
    let ctx = context();
    let limits = StepLimits::default();
    let grants = sluice_engine::StepGrants::default();
    let mut g = c.benchmark_group("per-step");
    g.bench_function("empty rule: new store + instantiate + call + drop", |b| {
        b.iter(|| {
            let mut session = MessageSession::new(engine(), msg.clone());
            std::hint::black_box(session.run_step("empty", empty, &limits, &grants, &ctx));
        })
    });
    g.bench_function("empty rule: warm instance call", |b| {
        b.iter(|| {
            let mut session = MessageSession::new(engine(), msg.clone());
            std::hint::black_box(
                session.run_step_warm("empty", empty, &limits, &grants, &ctx, &pool),
            );
        })
    });
    g.bench_function("empty rule: 4 steps sharing one store (per message)", |b| {
        b.iter(|| {
            let mut session = MessageSession::new(engine(), msg.clone());
            for _ in 0..4 {
                std::hint::black_box(session.run_step("empty", empty, &limits, &grants, &ctx));
            }
        })
    });
    g.finish();

    // The step config arrives as JSON with every message; how much a large alias table costs
    // per message, fresh (parsed every time) and warm (the SDK keeps the parsed config).
    let small = Arc::new(Message::parse(msgs[0].clone()).unwrap());
    let mut g = c.benchmark_group("alias directory");
    for size in [10usize, 10_000] {
        for instances in ["fresh", "warm"] {
            let chain = chains(&alias_config(size, instances));
            let env = envelope(&[&format!("a{}@example.com", size / 2)]);
            g.bench_function(format!("{size} aliases, {instances}"), |b| {
                b.iter(|| std::hint::black_box(chain.process(engine(), small.clone(), &env)))
            });
        }
    }
    g.finish();
}

/// An `alias` step with `size` aliases (`a0`..), each to one of two mailboxes.
fn alias_config(size: usize, instances: &str) -> String {
    let mut toml = format!(
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{rule:alias}}\"\n\
         instances = \"{instances}\"\n[domain.step.config]\nmailboxes = [\"alice\", \"bob\"]\n\
         [domain.step.config.aliases]\n"
    );
    for i in 0..size {
        let to = if i % 2 == 0 { "alice" } else { "bob" };
        toml.push_str(&format!("a{i} = \"{to}\"\n"));
    }
    toml
}

criterion_group!(benches, bench);
criterion_main!(benches);
