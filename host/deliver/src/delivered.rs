//! Records of the copies already delivered, for stores that cannot overwrite a copy (LMTP,
//! SMTP): when some recipients of a message were deferred, the message is retried, and the
//! retry must deliver only to those not done yet.
//!
//! A record is written right after the server accepted the copy; a crash between the two
//! makes the retry deliver that copy again (at least once: a duplicate is better than a lost
//! message in someone's mailbox).

use std::path::PathBuf;

use crate::names::escape_segment;
use sha2::{Digest, Sha256};

use crate::{BoxFuture, MailboxCopy, MailboxError};

/// Where delivered copies are recorded.
pub trait DeliveredLog: Send + Sync {
    /// Whether this copy of the message was delivered before.
    fn was_delivered<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
    ) -> BoxFuture<'a, Result<bool, MailboxError>>;

    /// Records that this copy was delivered (`at`: where, for the operator).
    fn record<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
        at: &'a str,
    ) -> BoxFuture<'a, Result<(), MailboxError>>;
}

/// The record's name for one copy: the recipient (case-insensitive) and folder, hashed so
/// any address fits a file or key name.
pub fn copy_digest(copy: &MailboxCopy) -> String {
    let mut h = Sha256::new();
    h.update(copy.recipient.to_ascii_lowercase().as_bytes());
    h.update([0]);
    h.update(copy.folder.as_bytes());
    hex::encode(h.finalize())
}

/// Records as files: `<dir>/<message-id>/<digest>.delivered`.
#[derive(Debug, Clone)]
pub struct DirDeliveredLog {
    dir: PathBuf,
}

impl DirDeliveredLog {
    /// Records under `dir` (created on first use).
    pub fn new(dir: PathBuf) -> DirDeliveredLog {
        DirDeliveredLog { dir }
    }

    fn path(&self, message_id: &str, copy: &MailboxCopy) -> Result<PathBuf, MailboxError> {
        let id = escape_segment("message id", message_id).map_err(|source| {
            MailboxError::Unstorable {
                recipient: copy.recipient.clone(),
                source,
            }
        })?;
        Ok(self
            .dir
            .join(id)
            .join(format!("{}.delivered", copy_digest(copy))))
    }
}

impl DeliveredLog for DirDeliveredLog {
    fn was_delivered<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
    ) -> BoxFuture<'a, Result<bool, MailboxError>> {
        Box::pin(async move {
            let path = self.path(message_id, copy)?;
            tokio::fs::try_exists(&path)
                .await
                .map_err(|e| MailboxError::Io {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
        })
    }

    fn record<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
        at: &'a str,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let path = self.path(message_id, copy)?;
            let io = |e: std::io::Error| MailboxError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            let line = format!("{}\t{}\t{at}\n", copy.recipient, copy.folder);
            tokio::fs::write(&path, line).await.map_err(io)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_per_copy() {
        let dir = tempfile::tempdir().unwrap();
        let log = DirDeliveredLog::new(dir.path().to_path_buf());
        let a = MailboxCopy {
            recipient: "Alice@example.com".into(),
            folder: "INBOX".into(),
        };
        let a_lower = MailboxCopy {
            recipient: "alice@example.com".into(),
            folder: "INBOX".into(),
        };
        let a_junk = MailboxCopy {
            recipient: "alice@example.com".into(),
            folder: "Junk".into(),
        };
        assert!(!log.was_delivered("m1", &a).await.unwrap());
        log.record("m1", &a, "lmtp 127.0.0.1:24 alice@example.com")
            .await
            .unwrap();
        assert!(log.was_delivered("m1", &a_lower).await.unwrap());
        assert!(!log.was_delivered("m1", &a_junk).await.unwrap());
        assert!(!log.was_delivered("m2", &a).await.unwrap());
        assert!(log.was_delivered("../m1", &a).await.is_ok_and(|d| !d));
    }
}
