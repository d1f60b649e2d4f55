//! Deliveries: S3 mailboxes, SES relay (with the forward rewrite and the loop guard), DSN
//! bounces, and the claims that make each send happen at most once per message and recipient.
//!
//! Each delivery is idempotent, because SQS delivers a notification at least once:
//! - a mailbox copy goes to a key derived from the recipient, folder and SES message id
//!   (escaped injectively, [`sluice_chain::escape_segment`]), so a second write replaces the
//!   object with the same bytes;
//! - a relay chunk or a bounce is claimed in S3 with a conditional write before it is sent
//!   ([`Markers`]), so of all retries and consumers exactly one sends it; a crash between the
//!   claim and its confirmation leaves it *unconfirmed*, and it is not sent again (at most
//!   once, reported and logged; see the trade-off in [`Markers`]).
//!
//! Nothing here knows about chains or events: the pipeline decides what goes where and calls
//! these with the message each group delivers.

mod dsn;
mod mailbox;
mod markers;
mod outbound;
mod relay;

pub use dsn::{build_dsn, BounceJob, BounceReport, Bouncer, Suppression};
pub use mailbox::S3Mailboxes;
pub use markers::S3DeliveredLog;
pub use markers::{Claim, Markers, DEFAULT_LEASE};
pub use outbound::{Outbound, SendFailure};
pub use relay::{Refusal, RefusalKind, Relay, RelayJob, RelayReport};
pub use sluice_deliver::TraceMeta;

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
