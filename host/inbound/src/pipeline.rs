//! The one processing function behind every event source (Lambda, daemon).

use std::path::PathBuf;
use std::time::Duration;

use crate::event::SesNotice;

/// How to start a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The config: a path or `s3://bucket/key.toml`.
    pub config: String,
    /// How often to check the config's version (S3 ETag / file mtime) for a hot reload.
    pub reload_interval: Duration,
    /// Plugin and compiled-code cache (default: `/tmp/sluice` in Lambda, else the user cache).
    pub cache_dir: Option<PathBuf>,
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// SES message id.
    pub message_id: String,
    /// Every recipient was dropped or bounced: an SES receipt rule set can stop here
    /// (`STOP_RULE_SET`).
    pub all_refused: bool,
    /// One line for the log: counts per delivery kind.
    pub summary: String,
}

/// Why a message could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {message_id}: {message}")]
pub struct HandleError {
    /// SES message id (or the SQS record id when the notice itself was unreadable).
    pub message_id: String,
    /// What went wrong and what to fix.
    pub message: String,
    /// A retry cannot help (e.g. the S3 object is gone). The event is still reported as
    /// failed, so SQS moves it to the DLQ rather than deleting it.
    pub permanent: bool,
}

/// The loaded config, chains and AWS clients.
pub struct Pipeline {
    _options: PipelineOptions,
}

impl Pipeline {
    /// Loads the config and its chains, and sets up the AWS clients from the standard chain
    /// (`AWS_ENDPOINT_URL` points them at an emulator).
    pub async fn start(options: PipelineOptions) -> Result<Pipeline, HandleError> {
        Ok(Pipeline { _options: options })
    }

    /// Reloads the config if its version changed and the check is due; a bad new config is
    /// logged and the old one keeps serving.
    pub async fn reload_if_due(&self) {}

    /// Fetches the message, runs the chain of each recipient's domain and makes every
    /// delivery. `Ok` only when every delivery is done (or was already done by an earlier
    /// attempt); otherwise nothing that was done is done again on retry.
    pub async fn handle(&self, notice: SesNotice) -> Result<Handled, HandleError> {
        Err(HandleError {
            message_id: notice.message_id,
            message: "not implemented yet".into(),
            permanent: false,
        })
    }
}
