//! Messages per second through the whole pipeline (`Pipeline::handle`: parse, the four
//! reference rules, edits, the delivered-copy log, the mailbox write), with the AWS calls
//! taken out: the message is inline in the notice (no S3 read) and the store is `kind =
//! "dir"` on local disk (no S3 write), so what is measured is Sluice, not moto.
//! `cargo bench -p sluice-tests --bench pipeline`; figures go in the README's table.
//!
//! Each iteration handles a batch of [`BATCH`] corpus messages, [`CONCURRENCY`] at a time
//! (the Lambda's default `SLUICE_CONCURRENCY`), each under a fresh SES id so none is skipped
//! as already delivered. Criterion reports the batch's time and the throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_inbound::{Arrival, MessageContent, Pipeline, PipelineOptions, RefuseBy};
use sluice_tests::reference::reference_chain;
use sluice_tests::{corpus_messages, expand, unknown_verdicts};

const BATCH: usize = 100;
const CONCURRENCY: usize = 10;

fn start(dir: &std::path::Path, instances: &str, rt: &tokio::runtime::Runtime) -> Arc<Pipeline> {
    let config = dir.join(format!("sluice-{instances}.toml"));
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"dir\"\npath = \"mail-{instances}\"\n{}",
            expand(&reference_chain(instances))
        ),
    )
    .expect("write the config");
    let options = PipelineOptions {
        config: config.display().to_string(),
        reload_interval: Duration::from_secs(3600),
        cache_dir: Some(dir.join("cache")),
        metrics: false,
        precompiled_dirs: Vec::new(),
    };
    Arc::new(
        rt.block_on(Pipeline::start(options))
            .expect("the pipeline starts"),
    )
}

fn pipeline(c: &mut Criterion) {
    // The AWS clients are made but never called; keep their set-up off the network.
    for (k, v) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        std::env::set_var(k, v);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let messages: Arc<Vec<Vec<u8>>> = Arc::new(corpus_messages());
    let next_id = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("pipeline");
    g.measurement_time(Duration::from_secs(10));
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH as u64));
    for instances in ["fresh", "warm"] {
        let pipeline = start(dir.path(), instances, &rt);
        let handle_batch = |pipeline: Arc<Pipeline>| {
            let (messages, next_id) = (messages.clone(), next_id.clone());
            async move {
                let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..BATCH {
                    let permit = limit.clone().acquire_owned().await.expect("semaphore");
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let notice = Arrival {
                        message_id: format!("bench-{id}"),
                        mail_from: "sender@outside.example".into(),
                        recipients: vec!["info@example.com".into()],
                        verdicts: unknown_verdicts(),
                        received_at: 1_700_000_000_000,
                        content: MessageContent::Inline(messages[i % messages.len()].clone()),
                        refuse_by: RefuseBy::Dsn,
                        trusted_authserv_id: None,
                        flow: sluice_engine::Flow::default(),
                        skip_step: None,
                    };
                    let pipeline = pipeline.clone();
                    tasks.spawn(async move {
                        let handled = pipeline.handle(notice).await;
                        drop(permit);
                        handled
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    let handled = done.expect("a task").expect("a message handled");
                    assert_eq!(handled.stored.len(), 1, "{handled:?}");
                }
            }
        };
        g.bench_function(
            BenchmarkId::new("reference chain, 10 at a time", instances),
            |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        rt.block_on(handle_batch(pipeline.clone()));
                    }
                    started.elapsed()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
