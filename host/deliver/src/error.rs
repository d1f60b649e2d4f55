//! Delivery failures as values: what failed, and whether a retry can help.

use crate::names::SegmentError;

/// An SMTP/LMTP server's answer: code, enhanced status (RFC 3463) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `250`, `451`, `550`, ...
    pub code: u16,
    /// `5.1.1`; `None` when the server sent none.
    pub status: Option<String>,
    /// The text after the codes (lines joined with a space).
    pub text: String,
}

impl Reply {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx: the server refuses for good.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The enhanced status to report in a DSN: the server's, else the class of its code.
    pub fn status_or_default(&self) -> String {
        self.status.clone().unwrap_or_else(|| {
            if self.is_permanent() {
                "5.0.0".into()
            } else {
                "4.0.0".into()
            }
        })
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.status {
            Some(s) => write!(f, "{} {} {}", self.code, s, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

/// Why a copy was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MailboxError {
    /// The server refused the recipient or the message for good (5xx).
    #[error("{server} refused {recipient}: {reply}")]
    Rejected {
        /// The target, e.g. `lmtp 127.0.0.1:24`.
        server: String,
        /// The recipient as sent to the server.
        recipient: String,
        /// Its answer.
        reply: Reply,
    },
    /// The server deferred the recipient or the message (4xx): try again later.
    #[error("{server} deferred {recipient}: {reply}")]
    Deferred {
        /// The target.
        server: String,
        /// The recipient as sent to the server.
        recipient: String,
        /// Its answer.
        reply: Reply,
    },
    /// The recipient or folder cannot name a mailbox (too long, empty).
    #[error("{recipient}: {source}")]
    Unstorable {
        /// The recipient.
        recipient: String,
        /// What is wrong with the name.
        source: SegmentError,
    },
    /// The server could not be reached, or the connection broke.
    #[error("{server}: {reason}")]
    Connection {
        /// The target.
        server: String,
        /// What happened (refused, reset, timed out, TLS failed).
        reason: String,
    },
    /// The message was sent but its answer never came (the connection broke or timed out
    /// after the end of DATA): the server may have accepted it.
    #[error(
        "{server}: the message was sent but no answer came ({reason}); it may have been accepted"
    )]
    Unanswered {
        /// The target.
        server: String,
        /// What happened.
        reason: String,
    },
    /// The server answered something the protocol does not allow at that point.
    #[error("{server}: unexpected answer {during}: {reply}")]
    Protocol {
        /// The target.
        server: String,
        /// The command it answered (`LHLO`, `MAIL FROM`, `DATA`, ...).
        during: &'static str,
        /// What it said.
        reply: Reply,
    },
    /// The settings cannot work as they are (credentials unreadable, no STARTTLS offered,
    /// authentication refused); a retry helps only once an operator fixes them.
    #[error("{server}: {reason}")]
    Setup {
        /// The target.
        server: String,
        /// What to fix.
        reason: String,
    },
    /// A local file could not be written.
    #[error("cannot write {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// An S3 call failed (writing a mailbox object): a retry may succeed.
    #[error("{what}: {source}")]
    S3 {
        /// What was being done.
        what: String,
        /// What S3 said.
        #[source]
        source: sluice_aws::AwsError,
    },
    /// The record of delivered copies could not be read or written (a retry may succeed).
    #[error("the delivery record: {source}")]
    Record {
        /// Why.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl MailboxError {
    /// A retry cannot succeed: the copy should be bounced (a DSN, if the sender may get one)
    /// rather than retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailboxError::Rejected { .. } | MailboxError::Unstorable { .. } => true,
            MailboxError::Deferred { .. }
            | MailboxError::Connection { .. }
            | MailboxError::Unanswered { .. }
            | MailboxError::Protocol { .. }
            | MailboxError::Setup { .. }
            | MailboxError::Io { .. }
            | MailboxError::S3 { .. }
            | MailboxError::Record { .. } => false,
        }
    }

    /// SMTP code and enhanced status for the DSN of a permanent failure.
    pub fn bounce_status(&self) -> (u16, String) {
        match self {
            MailboxError::Rejected { reply, .. } => (reply.code, reply.status_or_default()),
            MailboxError::Unstorable { .. } => (550, "5.1.3".into()),
            _ => (554, "5.0.0".into()),
        }
    }
}

/// Why a store or sender could not be set up: the settings name something unusable (what to
/// fix). Shared behind an [`Arc`](std::sync::Arc) where the failure is reported per message.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `auth_env` names variables that are not set.
    #[error("the environment variable {name} is not set (credentials: auth_env = {prefix:?})")]
    CredentialsEnv {
        /// The variable, `<prefix>_USER` or `<prefix>_PASSWORD`.
        name: String,
        /// The config's `auth_env`.
        prefix: String,
        /// Why it could not be read.
        #[source]
        source: std::env::VarError,
    },
    /// `auth_file` cannot be read.
    #[error("cannot read the credentials file {}: {source}", path.display())]
    CredentialsRead {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `auth_file` does not start with `user:password`.
    #[error("the credentials file {} must start with a line user:password", path.display())]
    CredentialsFormat {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The TLS client could not be built (the system's roots); mail-send gives only text.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// `tls_ca_file` cannot be read or holds something that is not a certificate.
    #[error("tls_ca_file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `tls_ca_file` holds no certificate.
    #[error("tls_ca_file {}: no certificate in the file", path.display())]
    CaFileEmpty {
        /// The file.
        path: std::path::PathBuf,
    },
}
