//! How relayed copies and DSNs leave: SES v2 raw sends, a smarthost over SMTP, or (for
//! `sluice run`) files in an outbox. All answer a send the same way, so the claim protocol
//! ([`super::markers`]) treats them alike.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_aws::{AwsError, Ses, SES_MAX_RAW_BYTES};
use sluice_deliver::{MailboxError, SmtpSender};

/// The way out (`[relay] kind`).
#[derive(Clone)]
pub enum Outbound {
    /// SES v2 `SendEmail` with raw content.
    Ses(Ses),
    /// A smarthost (pooled connections).
    Smtp(Arc<SmtpSender>),
    /// Files on this machine instead of a send (`sluice run`).
    Outbox(Arc<Outbox>),
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outbound::Ses(_) => write!(f, "ses"),
            Outbound::Smtp(s) => write!(f, "{}", s.describe()),
            Outbound::Outbox(o) => write!(f, "outbox {}", o.root.display()),
        }
    }
}

/// Sends written as files: `<root>/<send name>.eml` with the bytes that would go out, and
/// `<root>/<send name>.json` with the envelope (`mail_from`, `<>` for a DSN, and
/// `recipients`). It splits and limits sends like the transport it stands in for, so
/// `sluice run` shows what the daemon would send. The name is the send's
/// ([`super::send_name`]), so running a message again rewrites the same files.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// The directory.
    pub root: PathBuf,
    /// Recipients per send, as [`Outbound::chunk`] of the real transport.
    pub chunk: usize,
    /// The largest send, as [`Outbound::max_bytes`] of the real transport.
    pub max_bytes: Option<usize>,
}

impl Outbox {
    /// An outbox standing in for the transport `[relay]` names (SES when `smtp` is false).
    pub fn standing_in_for(root: PathBuf, smtp: bool) -> Outbox {
        Outbox {
            root,
            chunk: if smtp { 1 } else { SES_CHUNK },
            max_bytes: (!smtp).then_some(SES_MAX_RAW_BYTES),
        }
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

/// The SES message tag of a send: the first 32 hex digits of the sha256 of its name (the
/// name itself holds `/` and `.`, which tags may not).
fn send_tag(name: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16])
}

/// Recipients per SES `SendEmail` call.
const SES_CHUNK: usize = 50;

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

impl Outbound {
    /// Sends `raw` to `to`; `Ok` with the id the service gave it (the outbox: the file).
    /// `name` is the send's stable name ([`super::send_name`]). `from` is the sending
    /// identity (SES's `FromEmailAddress`, the SMTP `MAIL FROM`); `null_sender` makes the
    /// SMTP envelope sender `<>` (DSNs, RFC 5321 §4.5.5). Over SMTP every recipient must be
    /// accepted for `Ok`; the relay sends one recipient per call, so a refusal is that
    /// recipient's.
    pub async fn send(
        &self,
        name: &str,
        from: &str,
        to: &[String],
        raw: Vec<u8>,
        null_sender: bool,
    ) -> Result<String, SendFailure> {
        match self {
            Outbound::Ses(ses) => Ok(ses.send_raw(from, to, raw, &send_tag(name)).await?),
            Outbound::Smtp(smtp) => {
                let mail_from = if null_sender { "" } else { from };
                let results = smtp.send(mail_from, to, &raw).await?;
                let mut ids = Vec::new();
                for r in results {
                    ids.push(r?.text);
                }
                Ok(ids.join("; "))
            }
            Outbound::Outbox(outbox) => {
                outbox.write(name, if null_sender { "" } else { from }, to, &raw)
            }
        }
    }

    /// The largest message one send may carry (SES's raw limit); `None`: no limit of our
    /// own (a smarthost says so itself).
    pub fn max_bytes(&self) -> Option<usize> {
        match self {
            Outbound::Ses(_) => Some(SES_MAX_RAW_BYTES),
            Outbound::Smtp(_) => None,
            Outbound::Outbox(o) => o.max_bytes,
        }
    }

    /// The most recipients one send carries: 50 for SES; one for SMTP, so a per-recipient
    /// refusal maps onto one claim.
    pub fn chunk(&self) -> usize {
        match self {
            Outbound::Ses(_) => SES_CHUNK,
            Outbound::Smtp(_) => 1,
            Outbound::Outbox(o) => o.chunk,
        }
    }
}
