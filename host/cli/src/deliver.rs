//! `sluice deliver` (one message on stdin from an MTA's `pipe` transport or
//! `mailbox_command`) and `sluice run --deliver`: a door in front of the same pipeline as the
//! daemon and the Lambda, delivering to the config's own `[store]` and `[relay]`.
//!
//! `sluice deliver` answers the way a `pipe` transport reads it: the exit code is a sysexits
//! code (0 delivered, 75 try again later, 65/67/69 refused) and, when it is not 0, the first
//! line on stderr is the enhanced status code and the reason (`5.7.1 ...`), which Postfix puts
//! into its bounce or its log. When the rules refuse every recipient the refusal is that
//! answer, and Sluice sends no DSN of its own (the MTA bounces, or refuses in the SMTP
//! dialogue), so a forged sender gets no backscatter from Sluice.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_inbound::door::{unknown_verdicts, RefuseBy};
use sluice_inbound::{
    Answer, Arrival, HandleError, Handled, MessageContent, Pipeline, PipelineOptions,
};

/// `sluice deliver`'s arguments.
#[derive(Args)]
pub struct DeliverArgs {
    /// The config: a file, or `s3://bucket/key.toml`.
    #[arg(long)]
    pub config: String,
    /// The envelope sender; empty (`--mail-from=`) for the null sender of a bounce. With
    /// Postfix: `--mail-from=${sender}`.
    #[arg(long, value_name = "ADDR")]
    pub mail_from: String,
    /// An envelope recipient (repeatable). With Postfix: `--rcpt=${recipient}` and
    /// `<transport>_destination_recipient_limit = 1`, so each recipient gets its own answer.
    #[arg(long = "rcpt", value_name = "ADDR", required = true)]
    pub rcpt: Vec<String>,
    /// Read SPF/DKIM/DMARC verdicts from the topmost `Authentication-Results` header with this
    /// authserv-id (your MTA's, e.g. `mx.example.com`); headers with another id are ignored.
    /// Without it every verdict is `unknown`.
    #[arg(long, value_name = "AUTHSERV-ID")]
    pub verdicts_from_header: Option<String>,
    /// The message's id for stored copies and send claims [default: a digest of its bytes, so
    /// a message the MTA hands over again is not delivered twice].
    #[arg(long)]
    pub message_id: Option<String>,
    /// Directory for fetched and compiled plugins [default: [engine] cache_dir, else
    /// $SLUICE_CACHE_DIR, else ~/.cache/sluice].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// The largest message read from stdin: SES's own limit for a received message is 40 MB;
/// an MTA's `message_size_limit` should be below this.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Runs `sluice deliver`: never an error exit of its own, every failure is an answer.
pub fn deliver(args: DeliverArgs) -> ExitCode {
    // The reply comes first: a `pipe` transport reads the status code from the output's start.
    let (answer, handled) = answer(&args);
    if let Some(reply) = answer.reply() {
        eprintln!("{} {}", reply.status, reply.text);
    }
    match handled {
        Some(h) if answer == Answer::Accepted => println!("delivered: {}", h.summary),
        Some(h) => report_kept(&h),
        None => {}
    }
    ExitCode::from(answer.exit_code())
}

/// The answer, and what was done when the pipeline handled the message.
fn answer(args: &DeliverArgs) -> (Answer, Option<Handled>) {
    match read_stdin() {
        Ok(raw) => {
            let arrival = Arrival {
                message_id: args
                    .message_id
                    .clone()
                    .unwrap_or_else(|| crate::run::content_id(&raw)),
                mail_from: args.mail_from.clone(),
                recipients: args.rcpt.clone(),
                verdicts: unknown_verdicts(),
                received_at: 0,
                content: MessageContent::Inline(raw),
                refuse_by: RefuseBy::Reply,
                trusted_authserv_id: args.verdicts_from_header.clone(),
                flow: sluice_engine::Flow::default(),
                skip_step: None,
            };
            match handle(&args.config, args.cache_dir.clone(), arrival) {
                Ok((outcome, _)) => (Answer::of(&outcome), outcome.ok()),
                // The config or a target cannot be set up: keep the message queued at the
                // MTA while the operator fixes it, rather than bounce it.
                Err(e) => (
                    retry_later("4.3.5", format!("sluice cannot start: {e:#}")),
                    None,
                ),
            }
        }
        Err(e) => (retry_later("4.3.0", format!("{e:#}")), None),
    }
}

fn retry_later(status: &str, text: String) -> Answer {
    Answer::RetryLater(sluice_inbound::Reply {
        code: 451,
        status: status.into(),
        text,
    })
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_MESSAGE_BYTES + 1)
        .read_to_end(&mut raw)
        .context("cannot read the message from stdin")?;
    if raw.len() as u64 > MAX_MESSAGE_BYTES {
        anyhow::bail!(
            "the message is larger than {} MB",
            MAX_MESSAGE_BYTES / 1024 / 1024
        );
    }
    Ok(raw)
}

/// The outcome of one arrival through a pipeline started for it, and the trace when the
/// chains ran. `Err`: the pipeline could not start (config, plugins, targets).
pub fn handle(
    config: &str,
    cache_dir: Option<PathBuf>,
    arrival: Arrival,
) -> Result<(
    Result<Handled, HandleError>,
    Option<sluice_chain::ProcessResult>,
)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(async {
        let pipeline = Pipeline::start(PipelineOptions {
            config: config.to_string(),
            // One message: never reloaded.
            reload_interval: Duration::from_secs(3600),
            cache_dir,
            metrics: false,
            precompiled_dirs: Vec::new(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let handled = pipeline.handle_traced(arrival).await;
        pipeline.flush_uses().await;
        Ok(handled)
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Says where copies the config refused were kept (`UNDELIVERABLE`, as `sluice run` does).
pub fn report_kept(handled: &Handled) {
    for kept in &handled.kept {
        let (first, reason) = &kept.refused[0];
        eprintln!(
            "sluice: UNDELIVERABLE: {} recipient(s) ({first}{}) refused by the config: {reason}; the copy is kept at {}",
            kept.refused.len(),
            if kept.refused.len() > 1 { ", …" } else { "" },
            kept.at
        );
    }
}
