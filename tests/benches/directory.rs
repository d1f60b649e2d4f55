//! Alias resolution per message against a directory of 10, 10,000 and 1,000,000 aliases
//! (the per-message cost must not grow with the table), cached and uncached; and what the
//! same aliases cost as a 10,000-entry inline `config`, fresh and warm.
//! `cargo bench -p sluice-tests --bench directory`; figures go in the README's table.
//!
//! The directory is the `file` kind (a CSV read into memory when the chain loads): the
//! per-message path is the same as DynamoDB's from the host's cache on; without the cache
//! (`cache_ttl_s = 0`) it is the store's own lookup, here a hash map, there a network call.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice_mail::Message;
use sluice_tests::{chains, engine, envelope, fixture};

/// Distinct addresses the timed loop cycles through.
const ADDRESSES: usize = 1000;

/// A CSV directory of `n` active aliases `a<i>@example.com` -> `alice@example.com`.
fn csv_directory(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::with_capacity(n * 48);
    csv.push_str("address,status,to\n");
    for i in 0..n {
        csv.push_str(&format!("a{i}@example.com,active,alice@example.com\n"));
    }
    let path = dir.join(format!("aliases-{n}.csv"));
    std::fs::write(&path, csv).expect("write the directory");
    path
}

fn directory_chain(path: &std::path::Path, ttl_s: u64) -> sluice_chain::RuleChains {
    chains(&format!(
        r#"
[directory.aliases]
kind = "file"
path = "{}"
cache_ttl_s = {ttl_s}

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:alias}}"
lookups = ["aliases"]
config = {{ mailboxes = ["alice"], directory = "aliases" }}
"#,
        path.display()
    ))
}

fn inline_chain(n: usize, instances: &str) -> sluice_chain::RuleChains {
    let aliases: Vec<String> = (0..n).map(|i| format!("a{i} = \"alice\"")).collect();
    chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:alias}}"
instances = "{instances}"
config = {{ mailboxes = ["alice"], aliases = {{ {} }} }}
"#,
        aliases.join(", ")
    ))
}

/// One message per iteration, to the next of [`ADDRESSES`] aliases; checks the first
/// answer so a broken setup cannot pass for a fast one.
fn bench_resolution(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    chains: &sluice_chain::RuleChains,
    table_size: usize,
) {
    let message = Arc::new(Message::parse(fixture("plain-lf.eml")).expect("fixture"));
    let envelopes: Vec<_> = (0..ADDRESSES.min(table_size))
        .map(|i| {
            envelope(&[&format!(
                "a{}@example.com",
                i * (table_size / ADDRESSES).max(1)
            )])
        })
        .collect();
    let first = chains.process(engine(), message.clone(), &envelopes[0]);
    assert!(
        matches!(&first.groups[0].dispositions[..], [sluice_chain::Disposition::Deliver { recipient, .. }] if recipient == "alice@example.com"),
        "{first:#?}"
    );
    let mut next = 0;
    c.bench_function(id, |b| {
        b.iter(|| {
            next = (next + 1) % envelopes.len();
            std::hint::black_box(chains.process(engine(), message.clone(), &envelopes[next]))
        })
    });
}

fn directory(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("alias resolution");
    g.measurement_time(Duration::from_secs(3));
    for n in [10, 10_000, 1_000_000] {
        let path = csv_directory(dir.path(), n);
        for (label, ttl) in [("directory, cached", 60), ("directory, uncached", 0)] {
            let chains = directory_chain(&path, ttl);
            bench_resolution(&mut g, BenchmarkId::new(label, n), &chains, n);
        }
    }
    for instances in ["fresh", "warm"] {
        let chains = inline_chain(10_000, instances);
        bench_resolution(
            &mut g,
            BenchmarkId::new(format!("inline config, {instances}"), 10_000),
            &chains,
            10_000,
        );
    }
    g.finish();
}

criterion_group!(benches, directory);
criterion_main!(benches);
