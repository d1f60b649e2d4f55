//! Where Sluice delivers: every target, one module each, with its config section. Local
//! mailboxes ([`MailboxStore`]): a directory ([`store::dir`]), S3 ([`store::s3`]), LMTP
//! ([`store::lmtp`], e.g. Dovecot) and SMTP to a self-hosted MTA ([`store::smtp`]); the ways
//! out for relayed copies and DSNs ([`relay::Transport`]): SES ([`relay::ses`]) and a
//! smarthost ([`relay::smtp`]). [`config`] reads `[store]` and `[relay]` through the
//! registry of kinds; the rule chain is not known here.
//!
//! A store is built once from the checked `[store]` ([`StoreTarget::build`]) and then takes
//! every message: [`MailboxStore::store`] answers per copy (recipient + folder),
//! because an LMTP server answers per recipient. Each failure is a [`MailboxError`] that
//! says whether a retry can help ([`MailboxError::is_permanent`]): permanent ones become a
//! DSN, transient ones leave the message to be retried, and a [`DeliveredLog`] makes that
//! retry deliver only to the copies not yet done (LMTP and SMTP cannot overwrite a copy).
//!
//! Adding a target: one module (its section, checks, constructor and implementation), one
//! line in [`config::STORE_KINDS`] or [`config::RELAY_KINDS`], one test file.

pub mod archive;
pub mod config;
mod delivered;
mod error;
pub mod mailboxes;
pub mod maildir;
mod names;
pub mod quarantine;
pub mod relay;
mod server;
mod session;
pub mod store;

use std::future::Future;
use std::pin::Pin;

pub use archive::{
    read_archive, Archive, ArchiveConfig, ArchiveError, ArchiveQuery, ArchiveRecord, ArchiveTarget,
};
pub use config::{
    read_relay, read_store, relay_allows, RecordsAt, RelayConfig, RelayTarget, SendGuarantee,
    StoreConfig, StoreContext, StoreTarget, TargetClients, DEFAULT_MAX_HOPS,
};
pub use delivered::{copy_digest, DeliveredLog, DirDeliveredLog};
pub use error::{MailboxError, Reply, SetupError};
pub use names::{
    escape_segment, mailbox_segments, parse_mailbox_segments, unescape_segment, CopyName,
    SegmentError, MAX_SEGMENT_BYTES,
};
pub use quarantine::{
    read_quarantine, Quarantine, QuarantineConfig, QuarantineError, QuarantineRecord, ReceivedCopy,
    Release,
};
pub use relay::{Outbound, Outbox, SendFailure, SendLimits, Transport};
pub use server::{
    Credentials, ServerAddress, ServerConfig, TlsMode, AUTH_KEYS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SERVER_TIMEOUT, SERVER_KEYS,
};
pub use session::{dot_stuffed, Protocol};
pub use store::dir::{DirMailboxes, DirStore, DirStoreError};
pub use store::lmtp::{lmtp_recipient, LmtpStore, LmtpStoreConfig, LmtpUser};
pub use store::s3::S3Mailboxes;
pub use store::smtp::{SmtpSender, SmtpStore, SmtpStoreConfig, FOLDER_HEADER};

/// The folder a copy goes to unless a rule files it elsewhere.
pub const DEFAULT_FOLDER: &str = "INBOX";

/// A boxed future, so stores can be trait objects chosen at start-up.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the chain did, kept with each mailbox copy where the store can (S3 object metadata)
/// so an operator can see why a message landed where it did without the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceMeta {
    /// (step name, outcome) in chain order, e.g. `("banner", "ok")`, `("junk", "timeout")`.
    pub steps: Vec<(String, String)>,
}

/// One mailbox copy: a recipient and the folder a rule chose (`INBOX` unless filed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxCopy {
    /// The envelope recipient.
    pub recipient: String,
    /// The folder (`INBOX`, `Junk`, ...).
    pub folder: String,
}

/// One message to store for one or more copies.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    /// SES message id (names the copy where the store names things).
    pub message_id: &'a str,
    /// The envelope sender as received (`""` for a null sender).
    pub mail_from: &'a str,
    /// The message as the chain left it.
    pub bytes: &'a [u8],
    /// The copies to make.
    pub copies: &'a [MailboxCopy],
    /// The chain's trace.
    pub trace: &'a TraceMeta,
}

/// What became of one copy: where it went (`s3://…`, a path, `lmtp 127.0.0.1:24 alice@…`),
/// or why not.
#[derive(Debug)]
pub struct StoreOutcome {
    /// The copy.
    pub copy: MailboxCopy,
    /// Where it is, or the failure.
    pub result: Result<String, MailboxError>,
}

/// A place local mailboxes live.
pub trait MailboxStore: Send + Sync {
    /// Names the target for logs and errors, e.g. `lmtp 127.0.0.1:24`.
    fn describe(&self) -> String;

    /// Whether storing a copy again replaces it (directory, S3: names derive from the
    /// message id) rather than adding a second one (LMTP, SMTP). Stores that do not
    /// overwrite need a [`DeliveredLog`] so a retry skips the copies already made.
    fn overwrites(&self) -> bool;

    /// Stores the message for each copy; one outcome per copy, in any order.
    fn store<'a>(&'a self, request: StoreRequest<'a>) -> BoxFuture<'a, Vec<StoreOutcome>>;
}

/// Every copy of `request` failed with the same (transient or permanent) error.
pub(crate) fn all_failed(
    request: &StoreRequest<'_>,
    error: impl Fn() -> MailboxError,
) -> Vec<StoreOutcome> {
    request
        .copies
        .iter()
        .map(|c| StoreOutcome {
            copy: c.clone(),
            result: Err(error()),
        })
        .collect()
}
