//! Where Sluice delivers local mail: one [`MailboxStore`] interface and the targets that need
//! no cloud account: a directory ([`DirMailboxes`]), LMTP ([`LmtpStore`], e.g. Dovecot) and
//! SMTP to a self-hosted MTA ([`SmtpStore`]). The S3 mailboxes implement the same trait in
//! `sluice-inbound`, beside the AWS clients.
//!
//! A store is built once from the typed `[store]` config ([`sluice_chain::StoreConfig`]) and
//! then takes every message: [`MailboxStore::store`] answers per copy (recipient + folder),
//! because an LMTP server answers per recipient. Each failure is a [`MailboxError`] that
//! says whether a retry can help ([`MailboxError::is_permanent`]): permanent ones become a
//! DSN, transient ones leave the message to be retried, and a [`DeliveredLog`] makes that
//! retry deliver only to the copies not yet done (LMTP and SMTP cannot overwrite a copy).
//!
//! Adding a target: one file implementing [`MailboxStore`], one `StoreConfig` variant, one
//! match arm where the pipeline builds stores, one test file.

mod delivered;
mod dir;
mod error;
mod lmtp;
mod session;
mod smtp;

use std::future::Future;
use std::pin::Pin;

pub use delivered::{copy_digest, DeliveredLog, DirDeliveredLog};
pub use dir::DirMailboxes;
pub use error::{MailboxError, Reply, SetupError};
pub use lmtp::{lmtp_recipient, LmtpStore};
pub use session::{dot_stuffed, Protocol};
pub use smtp::{SmtpSender, SmtpStore, FOLDER_HEADER};

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
