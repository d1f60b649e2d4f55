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
//! - With `[milter] listen` in the config, the daemon also serves the milter there (the
//!   `sluice milter` server, `[milter]`'s settings), on the same pipeline: one engine, one
//!   loaded config, and a reload applies to both doors. `--queue` may then be left out to
//!   serve only the milter. On SIGTERM the milter listener closes at once and connections in
//!   progress finish their message within `[milter] grace_s` (new transactions get 451),
//!   while the queue stops as above; the daemon exits when both are done.

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
    /// The queue URL; `None` serves only the milter (the config must have `[milter] listen`).
    pub queue: Option<String>,
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
        precompiled_dirs: Vec::new(),
    });
    let pipeline = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("daemon stopped during start-up, before consuming anything");
            return Ok(());
        }
        started = start => started.map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let pipeline = Arc::new(pipeline);
    // One stop for both doors: the signal, or the queue reaching `max_messages`. A watch, so
    // the queue loop and the milter server each see it at once.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let milter = start_milter(&pipeline, &options, stopped(stopping.clone())).await?;
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
    };
    let reloader = tokio::spawn(reload_loop(pipeline.clone()));
    let handled = match &options.queue {
        Some(queue) => consume(&pipeline, &options, queue, stopping).await?,
        None => {
            stopped(stopping).await;
            0
        }
    };
    let _ = stop.send(true);
    if let Some(milter) = milter {
        if let Err(e) = milter.await {
            tracing::error!(error = %e, "the milter server ended abnormally");
        }
    }
    signal.abort();
    reloader.abort();
    pipeline.flush_uses().await;
    tracing::info!(handled, "daemon stopped");
    Ok(())
}

/// Resolves once `stopping` says stop (or its sender is gone, which only happens on the way
/// out).
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// With `[milter] listen` in the config: binds it and serves the milter on the daemon's own
/// pipeline (one engine, one loaded config, one reload for both doors) until `stop`, with the
/// milter server's graceful stop. Without it: nothing, unless there is no queue either.
async fn start_milter(
    pipeline: &Arc<Pipeline>,
    options: &DaemonOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let section = pipeline.current().config.milter.clone().unwrap_or_default();
    let Some((listen, milter_options)) =
        crate::milter::section_settings(&section, &options.config)?
    else {
        if options.queue.is_none() {
            anyhow::bail!(
                "nothing to serve: pass --queue URL, or set [milter] listen in {}",
                options.config
            );
        }
        return Ok(None);
    };
    let listener = sluice_milter::Listener::bind(&listen).await?;
    // With port 0, how a supervisor (or a test) finds the port; not with EMF metrics, which
    // own stdout.
    if !options.metrics {
        println!("sluice daemon: milter listening on {}", listener.local());
    }
    tracing::info!(listen = %listener.local(), "daemon serving the milter");
    let pipeline = pipeline.clone();
    Ok(Some(tokio::spawn(async move {
        sluice_milter::serve(pipeline, listener, milter_options, stop).await;
        tracing::info!("milter stopped");
    })))
}

/// Checks the config for changes for both doors. Ticks every second and lets
/// [`Pipeline::reload_if_due`] keep to `reload_seconds`: a tick of exactly the interval would
/// land just short of it after each check and check only every other tick.
async fn reload_loop(pipeline: Arc<Pipeline>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pipeline.reload_if_due().await {
            ReloadOutcome::Reloaded { version } => {
                tracing::info!(version = ?version, "config reloaded")
            }
            ReloadOutcome::Refused { error } => {
                tracing::error!(%error, "new config refused, the old one keeps serving")
            }
            ReloadOutcome::NotDue | ReloadOutcome::Unchanged => {}
        }
    }
}

/// The queue loop: receives while there are free slots, until `stopping` (or
/// `max_messages`), then finishes what is in flight. Returns the messages handled.
async fn consume(
    pipeline: &Arc<Pipeline>,
    options: &DaemonOptions,
    queue: &str,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<u64> {
    let mut shutdown = Box::pin(stopped(stopping));
    let sqs = Sqs::from_env().await;
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut handled: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    tracing::info!(queue = %queue, concurrency = options.concurrency, "daemon consuming the queue");
    'poll: loop {
        if options.max_messages.is_some_and(|max| handled >= max) {
            break;
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
            r = sqs.receive(queue, want, options.wait_seconds, options.visibility_seconds) => r,
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
            let (pipeline, sqs, queue) = (pipeline.clone(), sqs.clone(), queue.to_string());
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
    Ok(handled)
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
