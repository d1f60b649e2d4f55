//! Cost tiers: the same rule (`plugins/subject-tag`) in Rust, JavaScript and Python.
//! `cargo bench -p sluice-tests --bench languages`; figures go in the README's cost table.
//!
//! Before the timed part it prints, per language: component size, first compile (Cranelift,
//! no cache), and a cached load (deserialize from the compiled cache), each the median of 3
//! (one round under `cargo test`).
//! Criterion then times one message through a chain of that one rule (fresh or warm instance
//! + evaluate + edits), over the corpus.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_engine::{EngineOptions, LoadSource, RuleEngine, RulePlugin};
use sluice_mail::Message;
use sluice_tests::{chains, engine, envelope, foreign_rules, rule};

fn messages() -> Vec<Vec<u8>> {
    sluice_tests::corpus_messages()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn load_figures(name: &str, bytes: &[u8]) {
    let cache = tempfile::tempdir().unwrap();
    let (mut compile, mut cached) = (Vec::new(), Vec::new());
    // `cargo test --all-targets` runs benches once as a smoke test: one round is enough there.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        3
    } else {
        1
    };
    for _ in 0..rounds {
        let dir = cache.path().join(format!("c{}", compile.len()));
        let engine = RuleEngine::new(EngineOptions {
            cache_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        let started = Instant::now();
        let p = RulePlugin::load_bytes(&engine, name, bytes).unwrap();
        assert!(matches!(p.source(), LoadSource::Compiled { .. }));
        compile.push(started.elapsed().as_secs_f64() * 1000.0);
        let engine = RuleEngine::new(EngineOptions {
            cache_dir: Some(dir),
            ..Default::default()
        })
        .unwrap();
        let started = Instant::now();
        let p = RulePlugin::load_bytes(&engine, name, bytes).unwrap();
        assert!(matches!(p.source(), LoadSource::Cache { .. }));
        cached.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{name}: {:.2} MB, first compile {:.0} ms, cached load {:.2} ms",
        bytes.len() as f64 / 1e6,
        median(compile),
        median(cached)
    );
}

fn bench(c: &mut Criterion) {
    let msgs: Vec<Arc<Message>> = messages()
        .into_iter()
        .map(|raw| Arc::new(Message::parse(raw).unwrap()))
        .collect();
    let mut builds = vec![("subject-tag".to_string(), rule("subject-tag"))];
    builds.extend(foreign_rules().iter().cloned());
    for (name, path) in &builds {
        load_figures(name, &std::fs::read(path).unwrap());
    }
    let mut g = c.benchmark_group("subject-tag per message");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.sample_size(10);
    let env = envelope(&["bob@example.com"]);
    for (name, path) in &builds {
        for instances in ["fresh", "warm"] {
            let chain = chains(&format!(
                "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = {:?}\n\
                 instances = \"{instances}\"\n\
                 config = {{ internal_domains = [\"example.com\"], keywords = [\"invoice\", \"meeting\"] }}\n",
                path.display().to_string()
            ));
            g.bench_function(format!("{name} ({instances})"), |b| {
                b.iter(|| {
                    for msg in &msgs {
                        std::hint::black_box(chain.process(engine(), msg.clone(), &env));
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
