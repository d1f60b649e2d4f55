//! Deliveries: S3 mailboxes, SES relay (with the forward rewrite and the loop guard), DSN
//! bounces, and the markers that make each of them happen once per message and recipient.
//!
//! Each delivery is idempotent, because SQS delivers a notification at least once:
//! - a mailbox copy goes to a key derived from the recipient, folder and SES message id, so a
//!   second write replaces the object with the same bytes;
//! - a relay chunk or a bounce is sent only when its [`Markers`] record is absent, and the
//!   record is written right after SES accepted the send. The one window left: a crash (or a
//!   failed marker write) between SES accepting a send and the marker write sends that chunk
//!   again on the retry. Everything else happens exactly once.
//!
//! Nothing here knows about chains or events: the pipeline decides what goes where and calls
//! these with the message each group delivers.

mod dsn;
mod mailbox;
mod markers;
mod relay;

pub use dsn::{build_dsn, BounceJob, BounceReport, Bouncer};
pub use mailbox::{S3Mailboxes, TraceMeta};
pub use markers::Markers;
pub use relay::{RelayJob, RelayReport, SesRelay};

use sluice_aws::AwsError;

/// A delivery that failed, saying what failed and for which object or recipient.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliverError {
    /// What failed, for which object or recipient, and what SES/S3 said.
    pub message: String,
    /// A retry cannot help (SES rejected the message, the message cannot be rewritten).
    pub permanent: bool,
}

impl DeliverError {
    /// A failure a retry may fix.
    pub fn transient(message: impl Into<String>) -> DeliverError {
        DeliverError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure a retry cannot fix.
    pub fn permanent(message: impl Into<String>) -> DeliverError {
        DeliverError {
            message: message.into(),
            permanent: true,
        }
    }

    /// `what` failed because of `err`; permanent when SES said the request itself is bad.
    pub(crate) fn aws(what: impl std::fmt::Display, err: AwsError) -> DeliverError {
        let permanent = matches!(
            err,
            AwsError::Ses {
                permanent: true,
                ..
            }
        );
        DeliverError {
            message: format!("{what}: {err}"),
            permanent,
        }
    }
}

/// The domain of `local@domain` (after the last `@`), lower case; empty when there is none.
pub(crate) fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}
