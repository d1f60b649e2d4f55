//! What a rule's HTTP call costs per message: `rule-classify` posting the Subject to a
//! classifier on loopback (one new connection per call: the stand-in answers
//! `Connection: close`), next to the same chain shape with an empty step.
//! `cargo bench -p sluice-tests --bench http`; figures go in the README's table.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_mail::Message;
use sluice_tests::classifier::Classifier;
use sluice_tests::{chains, engine, envelope, fixture};

fn http(c: &mut Criterion) {
    let service = Classifier::start();
    let classify = chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-classify}}"
timeout_ms = 2000
http = {{ allow = ["{}"] }}
config = {{ url = "{}" }}
"#,
        service.url("/v1/"),
        service.url("/v1/score")
    ));
    let empty = chains(&sluice_tests::empty_steps(1, "fresh"));
    let message = Arc::new(Message::parse(fixture("plain-lf.eml")).expect("fixture"));
    let to = envelope(&["bob@example.com"]);
    let first = classify.process(engine(), message.clone(), &to);
    assert!(
        matches!(&first.groups[0].dispositions[..], [sluice_chain::Disposition::Deliver { folder, .. }] if folder == "Junk"),
        "{first:#?}"
    );
    let mut g = c.benchmark_group("http per message");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("one empty step", |b| {
        b.iter(|| std::hint::black_box(empty.process(engine(), message.clone(), &to)))
    });
    g.bench_function("one step calling a loopback classifier", |b| {
        b.iter(|| std::hint::black_box(classify.process(engine(), message.clone(), &to)))
    });
    g.finish();
}

criterion_group!(benches, http);
criterion_main!(benches);
