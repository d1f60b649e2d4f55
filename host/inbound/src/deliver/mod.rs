//! Deliveries: S3 mailboxes, SES relay (with the forward rewrite and the loop guard), DSN
//! bounces, automatic replies, and the claims that make each send happen at most once per message and recipient.
//!
//! Each delivery is idempotent, because SQS delivers a notification at least once:
//! - a mailbox copy goes to a key derived from the recipient, folder and SES message id
//!   (escaped injectively, [`sluice_deliver::escape_segment`]), so a second write replaces the
//!   object with the same bytes;
//! - a relay chunk or a bounce is claimed in S3 with a conditional write before it is sent
//!   ([`Markers`]), so of all retries and consumers exactly one sends it; a crash between the
//!   claim and its confirmation leaves it *unconfirmed*, and it is not sent again (at most
//!   once, reported and logged; see the trade-off in [`Markers`]).
//!
//! Nothing here knows about chains or events: the pipeline decides what goes where and calls
//! these with the message each group delivers.

mod arc;
mod dsn;
mod markers;
mod relay;
mod reply;

pub use arc::{ArcStamp, Sealed};
pub use dsn::{build_dsn, BounceJob, BounceReport, Bouncer, Suppression};
pub use markers::S3DeliveredLog;
pub use markers::{send_name, Claim, ClaimsAt, Markers, DEFAULT_LEASE};
pub use relay::{Refusal, RefusalKind, Relay, RelayJob, RelayReport};
pub use reply::{memory_key, Replier, ReplyOutcome, ReplyStatus};
pub use sluice_deliver::TraceMeta;

use sluice_aws::AwsError;
use sluice_deliver::{SendFailure, SetupError};

/// Why a config's mailbox store or its way out for relays and DSNs cannot be used (what to
/// fix). Built once per config and reported for every message that needs the target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The config has no `[store]` but a recipient is local.
    #[error("{config} has no [store] (kind = \"s3\", \"dir\", \"lmtp\" or \"smtp\")")]
    NoStore {
        /// The config's name.
        config: String,
    },
    /// `[store]` names a target that cannot be set up.
    #[error("[store] kind = \"{kind}\": {source}")]
    Store {
        /// The kind.
        kind: &'static str,
        /// What to fix.
        #[source]
        source: SetupError,
    },
    /// `[relay]` names a way out that cannot be set up.
    #[error("[relay] kind = \"{kind}\": {source}")]
    Relay {
        /// The kind.
        kind: &'static str,
        /// What to fix.
        #[source]
        source: SetupError,
    },
    /// Something must be relayed or bounced but the config has no `[relay]`.
    #[error("the config has no [relay]")]
    NoRelay,
}

/// A relay, bounce or claim that failed: what failed, and (through
/// [`SendError::is_permanent`]) whether a retry can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// An S3 or SES call failed (permanent only when SES refused the request itself).
    #[error("{what}: {source}")]
    Aws {
        /// What was being done, for which object or recipient.
        what: String,
        /// What the service said.
        source: AwsError,
    },
    /// Another consumer holds a live claim on this send: it may be sending it now.
    #[error("{0}")]
    ClaimHeld(String),
    /// The send itself failed (SES or the smarthost answered with an error, or no answer).
    #[error("{what}: {failure}")]
    Send {
        /// What was being sent.
        what: String,
        /// How it failed.
        failure: Box<SendFailure>,
    },
    /// What must be sent cannot be made from this message (the relay rewrite, the DSN, a
    /// mailbox key): a retry would fail the same way.
    #[error("{0}")]
    Unsendable(String),
    /// The way out could not be set up (a smarthost's credentials or CA file), or there is
    /// none.
    #[error(transparent)]
    Setup(std::sync::Arc<TargetError>),
    /// A claim or outbox file on this machine could not be read or written.
    #[error("{what}: {reason}")]
    Local {
        /// What was being done, to which file.
        what: String,
        /// The I/O error.
        reason: String,
    },
}

impl SendError {
    /// A retry cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Aws { source, .. } => matches!(
                source,
                AwsError::Ses {
                    permanent: true,
                    ..
                }
            ),
            SendError::Send { failure, .. } => failure.is_permanent(),
            SendError::Unsendable(_) => true,
            SendError::ClaimHeld(_) | SendError::Setup(_) | SendError::Local { .. } => false,
        }
    }

    /// `what` failed because of `err`.
    pub(crate) fn aws(what: impl std::fmt::Display, err: AwsError) -> SendError {
        SendError::Aws {
            what: what.to_string(),
            source: err,
        }
    }
}

/// The domain of `local@domain` (after the last `@`), lower case; empty when there is none.
pub(crate) fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}
