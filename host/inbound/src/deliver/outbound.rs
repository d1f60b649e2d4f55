//! How relayed copies and DSNs leave: SES v2 raw sends, or a smarthost over SMTP. Both answer
//! a send the same way, so the claim protocol ([`super::markers`]) treats them alike.

use std::sync::Arc;

use sluice_aws::{AwsError, Ses};
use sluice_deliver::{DeliveryError, SmtpSender};

/// The way out (`[relay] kind`).
#[derive(Clone)]
pub enum Outbound {
    /// SES v2 `SendEmail` with raw content.
    Ses(Ses),
    /// A smarthost (pooled connections).
    Smtp(Arc<SmtpSender>),
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outbound::Ses(_) => write!(f, "ses"),
            Outbound::Smtp(s) => write!(f, "{}", s.describe()),
        }
    }
}

/// A send that did not go through.
#[derive(Debug, Clone)]
pub struct SendFailure {
    /// What the service or server said.
    pub message: String,
    /// A retry cannot help (SES refused the request; the smarthost refused the recipient).
    pub permanent: bool,
    /// It may have been accepted anyway (the answer was lost): never resend.
    pub maybe_sent: bool,
}

impl From<AwsError> for SendFailure {
    fn from(e: AwsError) -> SendFailure {
        let (permanent, maybe_sent) = match &e {
            AwsError::Ses {
                permanent,
                maybe_sent,
                ..
            } => (*permanent, *maybe_sent),
            _ => (false, false),
        };
        SendFailure {
            message: e.to_string(),
            permanent,
            maybe_sent,
        }
    }
}

impl From<DeliveryError> for SendFailure {
    fn from(e: DeliveryError) -> SendFailure {
        SendFailure {
            maybe_sent: matches!(e, DeliveryError::Unanswered { .. }),
            permanent: e.is_permanent(),
            message: e.to_string(),
        }
    }
}

impl Outbound {
    /// Sends `raw` to `to`; `Ok` with the id the service gave it. `from` is the sending
    /// identity (SES's `FromEmailAddress`, the SMTP `MAIL FROM`); `null_sender` makes the
    /// SMTP envelope sender `<>` (DSNs, RFC 5321 §4.5.5). Over SMTP every recipient must be
    /// accepted for `Ok`; the relay sends one recipient per call, so a refusal is that
    /// recipient's.
    pub async fn send(
        &self,
        from: &str,
        to: &[String],
        raw: Vec<u8>,
        null_sender: bool,
    ) -> Result<String, SendFailure> {
        match self {
            Outbound::Ses(ses) => Ok(ses.send_raw(from, to, raw).await?),
            Outbound::Smtp(smtp) => {
                let mail_from = if null_sender { "" } else { from };
                let results = smtp.send(mail_from, to, &raw).await?;
                let mut ids = Vec::new();
                for r in results {
                    ids.push(r?.text);
                }
                Ok(ids.join("; "))
            }
        }
    }

    /// The most recipients one send carries: 50 for SES; one for SMTP, so a per-recipient
    /// refusal maps onto one claim.
    pub fn chunk(&self) -> usize {
        match self {
            Outbound::Ses(_) => 50,
            Outbound::Smtp(_) => 1,
        }
    }
}
