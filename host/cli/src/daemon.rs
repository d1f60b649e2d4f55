//! `sluice daemon`: consumes an SQS queue of SES notifications (SES -> SNS -> SQS, with or
//! without raw message delivery) and runs each message through the pipeline.
//!
//! - Long polls; at most `concurrency` messages in flight.
//! - A message is deleted only after every delivery succeeded. A failure leaves it in the
//!   queue: it reappears after its visibility timeout and, after the queue's
//!   `maxReceiveCount`, moves to the DLQ. Deliveries are idempotent, so a retry redoes
//!   nothing that was done.
//! - While a message is being handled its visibility is extended, so a slow one is not
//!   handed to a second consumer.
//! - SIGTERM or SIGINT: stop receiving, finish what is in flight, exit 0. Every message
//!   received is started at once (a receive asks for no more than the free slots), so at the
//!   signal each message is either in flight, and finished, or still in the queue. One
//!   exception: a receive cut short by the signal may have been answered already; SQS cannot
//!   take that back, so those messages reappear after their visibility timeout, untouched.
//! - Finishing can outlast the platform's grace (ECS sends SIGKILL 30 s after SIGTERM by
//!   default, systemd after `TimeoutStopSec`, 90 s): a rule chain is bounded by its steps'
//!   deadlines, but a slow S3, SES or SMTP answer is not. A kill then is safe, only slower:
//!   each send is claimed before it is made (README "Idempotency"), so the retry after the
//!   visibility timeout skips what was done and, with `sends = "at-least-once"`, sends again
//!   only a send whose outcome was not recorded. Set the grace above the slowest message.
//! - The config is checked for changes (file mtime / S3 ETag) every `reload_seconds`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use sluice_aws::{Sqs, SqsMessage};
use sluice_inbound::{parse_notification, Pipeline, PipelineOptions, ReloadOutcome};
use tokio::sync::Semaphore;

/// `sluice daemon` settings.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Config path or `s3://` URL.
    pub config: String,
    /// The queue URL.
    pub queue: String,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Visibility timeout asked for on receive, in seconds; extended while handling.
    pub visibility_seconds: i32,
    /// Long-poll wait, in seconds (0-20).
    pub wait_seconds: i32,
    /// How often to check the config for changes.
    pub reload_seconds: u64,
    /// Plugin and compiled-code cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Stop after this many messages were handled (successfully or not); for tests and
    /// batch runs. None: run until SIGTERM.
    pub max_messages: Option<u64>,
    /// Print EMF metrics on stdout (for the CloudWatch agent).
    pub metrics: bool,
}

/// Runs the daemon until SIGTERM/SIGINT (or `max_messages`).
pub fn run(options: DaemonOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(options));
    // A start-up cut short by a signal may leave a plugin compiling on a blocking thread:
    // don't wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(options: DaemonOptions) -> Result<()> {
    // Listen for SIGTERM first: loading the config and compiling plugins takes seconds, and a
    // signal that arrives before the handler exists kills the process instead of stopping it.
    let mut shutdown = Box::pin(shutdown_signal()?);
    tracing::info!(config = %options.config, "daemon starting");
    let start = Pipeline::start(PipelineOptions {
        config: options.config.clone(),
        reload_interval: Duration::from_secs(options.reload_seconds),
        cache_dir: options.cache_dir.clone(),
        metrics: options.metrics,
    });
    let pipeline = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("daemon stopped during start-up, before consuming anything");
            return Ok(());
        }
        started = start => started.map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let pipeline = Arc::new(pipeline);
    let sqs = Sqs::from_env().await;
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut handled: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    tracing::info!(queue = %options.queue, concurrency = options.concurrency, "daemon consuming the queue");
    'poll: loop {
        if options.max_messages.is_some_and(|max| handled >= max) {
            break;
        }
        match pipeline.reload_if_due().await {
            ReloadOutcome::Reloaded { version } => {
                tracing::info!(version = ?version, "config reloaded")
            }
            ReloadOutcome::Refused { error } => {
                tracing::error!(%error, "new config refused, the old one keeps serving")
            }
            ReloadOutcome::NotDue | ReloadOutcome::Unchanged => {}
        }
        // Wait for a free slot before asking SQS for more, so received messages never sit
        // invisible in memory.
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = &mut shutdown => break 'poll,
                _ = tasks.join_next() => continue 'poll,
            }
        }
        let want = free.min(10) as i32;
        let received = tokio::select! {
            _ = &mut shutdown => break 'poll,
            r = sqs.receive(&options.queue, want, options.wait_seconds, options.visibility_seconds) => r,
        };
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive from the queue; retrying in 5 s");
                tokio::select! {
                    _ = &mut shutdown => break 'poll,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue 'poll,
                }
            }
        };
        for message in messages {
            handled += 1;
            let permit = permits.clone().acquire_owned().await?;
            let (pipeline, sqs, queue) = (pipeline.clone(), sqs.clone(), options.queue.clone());
            let visibility = options.visibility_seconds;
            tasks.spawn(async move {
                handle_one(&pipeline, &sqs, &queue, visibility, message).await;
                drop(permit);
            });
        }
        // Reap finished tasks without waiting.
        while tasks.try_join_next().is_some() {}
    }
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(
            in_flight,
            "daemon stopping; finishing the messages in flight"
        );
    }
    while tasks.join_next().await.is_some() {}
    pipeline.flush_uses().await;
    tracing::info!(handled, "daemon stopped");
    Ok(())
}

/// Handles one SQS message: parse, process, delete on success; extends its visibility
/// meanwhile.
async fn handle_one(pipeline: &Pipeline, sqs: &Sqs, queue: &str, visibility: i32, m: SqsMessage) {
    let notice = match parse_notification(&m.body) {
        Ok(n) => n,
        Err(e) => {
            // Never deleted: after maxReceiveCount SQS moves it to the DLQ for a human.
            tracing::error!(
                sqs_message_id = %m.message_id,
                receive_count = m.receive_count,
                error = %e,
                "not an SES notification, left in the queue for the DLQ"
            );
            return;
        }
    };
    let extender = {
        let (sqs, queue, handle) = (sqs.clone(), queue.to_string(), m.receipt_handle.clone());
        let every = Duration::from_secs((visibility.max(2) as u64) / 2);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = sqs.set_visibility(&queue, &handle, visibility).await {
                    tracing::warn!("cannot extend the visibility of a message in progress: {e}");
                }
            }
        })
    };
    let outcome = pipeline.handle(notice).await;
    extender.abort();
    match outcome {
        Ok(h) => {
            match sqs.delete(queue, &m.receipt_handle).await {
                Ok(()) => tracing::info!(
                    message_id = %h.message_id,
                    outcome = %h.summary,
                    chain_us = h.chain_micros,
                    total_us = h.total_micros,
                    "message done"
                ),
                // Delivered, but SQS will hand it out again; the deliveries are idempotent.
                Err(e) => tracing::warn!(
                    message_id = %h.message_id,
                    outcome = %h.summary,
                    error = %e,
                    "message done, but not deleted from the queue"
                ),
            }
        }
        Err(e) => {
            tracing::warn!(
                message_id = %e.message_id,
                receive_count = m.receive_count,
                permanent = e.is_permanent(),
                error = %e.failure,
                "message failed, left in the queue for retry or the DLQ"
            );
        }
    }
}

/// A future that completes on SIGTERM or SIGINT; the handlers are installed now, not when
/// the future is first polled. (Unix only, like the daemon's targets.)
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}
