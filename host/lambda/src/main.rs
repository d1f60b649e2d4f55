//! Sluice as an AWS Lambda function: SES direct invoke, SNS and SQS events; or, with
//! `SLUICE_MODE=alias-api`, the alias API behind a function URL ([`alias_api`]).
//!
//! Lifecycle: the [`Pipeline`] (config, chains, AWS clients) starts once per cold start; each
//! invocation checks for a config reload, then [`respond::respond`] handles the event (an SQS
//! batch's records `SLUICE_CONCURRENCY` at a time; warm rule instances live in the pipeline,
//! so a warm function keeps them between invocations). A start
//! failure is reported to the Runtime API's `/init/error` and the process exits non-zero, so
//! Lambda shows the reason instead of a timeout.

mod alias_api;
mod init_error;
mod respond;
mod settings;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use sluice_inbound::Pipeline;

#[tokio::main]
async fn main() -> ExitCode {
    // The cold start an operator pays: from here (the process is running) to the first
    // invocation answered, logged once (Lambda's REPORT line shows only the init part).
    let process_start = Instant::now();
    // JSON by default: one object per event, which CloudWatch Logs Insights queries by field
    // (message_id, outcome, timings); SLUICE_LOG_FORMAT=text for plain lines (no colour codes,
    // no timestamp: CloudWatch adds its own). RUST_LOG picks the level (default info).
    let format = match std::env::var("SLUICE_LOG_FORMAT") {
        Ok(name) => match name.parse() {
            Ok(format) => format,
            Err(e) => return init_failed(&format!("SLUICE_LOG_FORMAT: {e}")),
        },
        Err(_) => sluice_telemetry::LogFormat::Json,
    };
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = match sluice_telemetry::filter(&directives) {
        Ok(filter) => filter,
        Err(e) => return init_failed(&format!("RUST_LOG: {e}")),
    };
    if let Err(e) = sluice_telemetry::addresses_from_env() {
        return init_failed(&e.to_string());
    }
    sluice_telemetry::init(format, sluice_telemetry::LogSink::CloudWatch, filter);
    match std::env::var("SLUICE_MODE").as_deref() {
        Err(_) | Ok("" | "mail") => {}
        Ok("alias-api") => return serve_alias_api().await,
        Ok(other) => {
            return init_failed(&format!(
                "SLUICE_MODE={other:?}: \"mail\" (the default: SES, SNS and SQS events) or \"alias-api\" (function URL events)"
            ))
        }
    }
    let (pipeline, concurrency) = match start().await {
        Ok(started) => started,
        Err(message) => {
            tracing::error!(error = %message, "init failed");
            return init_failed(&message);
        }
    };
    tracing::info!(
        init_ms = process_start.elapsed().as_secs_f64() * 1e3,
        "started: config, rules and clients ready"
    );
    // Lives as long as the process; the runtime's handler borrows it on every invocation.
    let pipeline: &'static Pipeline = Box::leak(Box::new(pipeline));
    static ANSWERED_ONE: AtomicBool = AtomicBool::new(false);
    let handler = service_fn(move |event: LambdaEvent<Value>| async move {
        // The pipeline logs a reload (or a refused new config) itself.
        let _ = pipeline.reload_if_due().await;
        let answer = respond::respond(pipeline, event.payload, concurrency)
            .await
            .map_err(Diagnostic::from);
        // Before the answer: a Lambda is frozen between invocations, maybe for good.
        pipeline.flush_uses().await;
        if !ANSWERED_ONE.swap(true, Ordering::Relaxed) {
            tracing::info!(
                since_start_ms = process_start.elapsed().as_secs_f64() * 1e3,
                "cold start: first invocation handled"
            );
        }
        answer
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// The alias API mode: the directory opens once per cold start; each function URL event is
/// answered on a blocking thread (the directory's clients are synchronous).
async fn serve_alias_api() -> ExitCode {
    let config = std::env::var("SLUICE_CONFIG").unwrap_or_default();
    if config.trim().is_empty() {
        return init_failed(
            "SLUICE_CONFIG is not set: set it to the config's path or s3://bucket/key.toml",
        );
    }
    let directory = std::env::var("SLUICE_DIRECTORY").unwrap_or_else(|_| "aliases".into());
    let admin =
        match tokio::task::spawn_blocking(move || alias_api::start(&config, &directory)).await {
            Ok(Ok(admin)) => admin,
            Ok(Err(message)) => return init_failed(&message),
            Err(e) => return init_failed(&format!("opening the directory: {e}")),
        };
    let admin: &'static sluice_directory::admin::Admin = Box::leak(Box::new(admin));
    let handler = service_fn(move |event: LambdaEvent<Value>| async move {
        tokio::task::spawn_blocking(move || alias_api::respond(admin, &event.payload))
            .await
            .map_err(|e| e.to_string())
            .and_then(|answer| answer)
            .map_err(|message| Diagnostic {
                error_type: "Sluice.NotAFunctionUrlEvent".into(),
                error_message: message,
            })
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> Result<(Pipeline, usize), String> {
    let settings = settings::from_env(|name| std::env::var(name).ok())?;
    log_precompiled_dirs(&settings.pipeline.precompiled_dirs);
    let pipeline = Pipeline::start(settings.pipeline)
        .await
        .map_err(|e| format!("SLUICE_CONFIG: {e}"))?;
    Ok((pipeline, settings.concurrency))
}

/// Says which shipped directories of precompiled rules this start reads, and how many
/// artifacts each has: a rule compiled at start (logged per plugin) should have been one.
fn log_precompiled_dirs(dirs: &[std::path::PathBuf]) {
    for dir in dirs {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let artifacts = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| {
                        e.path().extension().and_then(|x| x.to_str())
                            == Some(sluice_engine::ARTIFACT_EXTENSION)
                    })
                    .count();
                tracing::info!(dir = %dir.display(), artifacts, "precompiled rules directory");
            }
            Err(e) => tracing::debug!(dir = %dir.display(), "no precompiled rules here: {e}"),
        }
    }
}

/// Tells the operator and the Lambda service why the function cannot start. The line on
/// stderr lands in CloudWatch with the rest of the log, so its addresses are masked too.
fn init_failed(message: &str) -> ExitCode {
    eprintln!(
        "sluice-lambda: init failed: {}",
        sluice_telemetry::MaskedText(message)
    );
    init_error::report(message);
    ExitCode::FAILURE
}
