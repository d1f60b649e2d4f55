//! How relayed copies and DSNs leave: `[relay] kind = "ses"` (SES v2 raw sends, [`ses`]),
//! `kind = "smtp"` (a smarthost, [`smtp`]), or, for `sluice run`, files in an [`Outbox`].
//! All answer a send the same way ([`Transport`]), so the claim protocol treats them alike.

pub mod ses;
pub mod smtp;

use std::path::PathBuf;
use std::sync::Arc;

use sluice_aws::AwsError;

use crate::{BoxFuture, MailboxError};

/// How a transport splits and limits sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// The most recipients one send carries (50 for SES; one for SMTP, so a per-recipient
    /// refusal maps onto one claim).
    pub chunk: usize,
    /// The largest message one send may carry (SES's raw limit); `None`: no limit of our
    /// own (a smarthost says so itself).
    pub max_bytes: Option<usize>,
    /// A permanent failure is the recipient's (SMTP answers per recipient, and sends carry
    /// one), not the whole send's.
    pub refuses_per_recipient: bool,
}

/// A way out for relayed copies and DSNs.
pub trait Transport: std::fmt::Debug + Send + Sync {
    /// Sends `raw` to `to`; `Ok` with the id the service gave it (the outbox: the file).
    /// `name` is the send's stable name (the claims' `send_name`). `from` is the sending
    /// identity (SES's `FromEmailAddress`, the SMTP `MAIL FROM`); `null_sender` makes the
    /// SMTP envelope sender `<>` (DSNs, RFC 5321 §4.5.5). Over SMTP every recipient must be
    /// accepted for `Ok`; the relay sends one recipient per call, so a refusal is that
    /// recipient's.
    fn send<'a>(
        &'a self,
        name: &'a str,
        from: &'a str,
        to: &'a [String],
        raw: Vec<u8>,
        null_sender: bool,
    ) -> BoxFuture<'a, Result<String, SendFailure>>;

    /// How sends are split and limited.
    fn limits(&self) -> SendLimits;
}

/// A transport as the dispatcher holds it.
pub type Outbound = Arc<dyn Transport>;

/// Sends written as files: `<root>/<send name>.eml` with the bytes that would go out, and
/// `<root>/<send name>.json` with the envelope (`mail_from`, `<>` for a DSN, and
/// `recipients`). It splits and limits sends like the transport it stands in for, so
/// `sluice run` shows what the daemon would send. The name is the send's
/// (`send_name` of the claims), so running a message again rewrites the same files.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// The directory.
    pub root: PathBuf,
    /// How the transport it stands in for splits and limits sends.
    pub limits: SendLimits,
}

impl Outbox {
    /// An outbox standing in for a transport with these limits.
    pub fn standing_in_for(root: PathBuf, limits: SendLimits) -> Outbox {
        Outbox { root, limits }
    }

    fn write(
        &self,
        name: &str,
        mail_from: &str,
        to: &[String],
        raw: &[u8],
    ) -> Result<String, SendFailure> {
        let eml = self.root.join(format!("{name}.eml"));
        let envelope = serde_json::json!({
            "mail_from": if mail_from.is_empty() { "<>" } else { mail_from },
            "recipients": to,
        });
        let write = |path: &std::path::Path, bytes: &[u8]| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, bytes)
        };
        write(&eml, raw)
            .and_then(|()| {
                write(
                    &eml.with_extension("json"),
                    serde_json::to_string_pretty(&envelope)
                        .unwrap_or_default()
                        .as_bytes(),
                )
            })
            .map_err(|e| SendFailure::Outbox {
                path: eml.clone(),
                source: Arc::new(e),
            })?;
        Ok(eml.display().to_string())
    }
}

impl Transport for Outbox {
    fn send<'a>(
        &'a self,
        name: &'a str,
        from: &'a str,
        to: &'a [String],
        raw: Vec<u8>,
        null_sender: bool,
    ) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move { self.write(name, if null_sender { "" } else { from }, to, &raw) })
    }

    fn limits(&self) -> SendLimits {
        self.limits
    }
}

/// A send that did not go through, by the way out it took.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendFailure {
    /// SES failed or refused the send (or another AWS call on the way).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The smarthost failed or refused the send.
    #[error(transparent)]
    Smtp(#[from] MailboxError),
    /// The outbox file (`sluice run`) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Outbox {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl SendFailure {
    /// A retry cannot help (SES refused the request; the smarthost refused the recipient).
    pub fn is_permanent(&self) -> bool {
        match self {
            SendFailure::Aws(e) => matches!(
                e,
                AwsError::Ses {
                    permanent: true,
                    ..
                }
            ),
            SendFailure::Smtp(e) => e.is_permanent(),
            SendFailure::Outbox { .. } => false,
        }
    }

    /// It may have been accepted anyway (the answer was lost): never resend.
    pub fn maybe_sent(&self) -> bool {
        match self {
            SendFailure::Aws(e) => matches!(
                e,
                AwsError::Ses {
                    maybe_sent: true,
                    ..
                }
            ),
            SendFailure::Smtp(e) => matches!(e, MailboxError::Unanswered { .. }),
            SendFailure::Outbox { .. } => false,
        }
    }
}
