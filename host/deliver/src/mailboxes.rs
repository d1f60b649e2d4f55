//! Reading back what the S3 and directory stores hold (`sluice mailbox`): the copies of a
//! mailbox, one copy's bytes, and a mirror into a Maildir an IMAP server can serve.
//!
//! Both stores name a copy `<domain>/<local-part>/<folder>/<message-id>.eml` (see
//! [`crate::mailbox_segments`]), so one listing serves both; anything else under the root
//! (send claims in `_sent/`, temporary files) is not a copy and is skipped.

use std::path::{Path, PathBuf};

use sluice_aws::{AwsError, S3Url, S3};

use crate::config::RecordsAt;
use crate::names::{escape_segment, parse_mailbox_segments, CopyName, SegmentError};

/// One stored copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// Whose copy, in which folder, of which message.
    pub name: CopyName,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_ms: i64,
    /// Where it is: `s3://bucket/key` or a file path.
    pub location: String,
}

/// Why the mailboxes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// S3 failed.
    #[error(transparent)]
    S3(#[from] AwsError),
    /// A directory or file of a directory store could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot name a mailbox.
    #[error("{address:?} cannot name a mailbox: {source}")]
    Address {
        /// The address as given.
        address: String,
        /// Why.
        #[source]
        source: SegmentError,
    },
}

/// The mailboxes of a `[store]` that keeps its copies itself (`kind = "s3"` or `"dir"`).
#[derive(Debug, Clone)]
pub enum StoredMailboxes {
    /// S3 mailboxes under a bucket and prefix.
    S3 {
        /// The client.
        s3: S3,
        /// The bucket.
        bucket: String,
        /// The prefix (no leading or trailing `/`; may be empty).
        prefix: String,
    },
    /// A directory store's root.
    Dir(PathBuf),
}

impl StoredMailboxes {
    /// The mailboxes at a store's home ([`crate::StoreTarget::home`]).
    pub fn at(home: RecordsAt, s3: S3) -> StoredMailboxes {
        match home {
            RecordsAt::S3 { bucket, prefix } => StoredMailboxes::S3 { s3, bucket, prefix },
            RecordsAt::Dir(path) => StoredMailboxes::Dir(path),
        }
    }

    /// Every copy, or only `address`'s (any case), sorted by recipient, folder and time.
    pub async fn list(&self, address: Option<&str>) -> Result<Vec<StoredCopy>, ReadError> {
        let below = address.map(mailbox_dir).transpose()?;
        let mut copies = match self {
            StoredMailboxes::S3 { s3, bucket, prefix } => {
                let mut start = prefix.clone();
                if !start.is_empty() {
                    start.push('/');
                }
                let root_len = start.len();
                if let Some([domain, local]) = &below {
                    start.push_str(&format!("{domain}/{local}/"));
                }
                let mut copies = Vec::new();
                for object in s3.list(bucket, &start).await? {
                    let segments: Vec<&str> = object.key[root_len..].split('/').collect();
                    if let Some(name) = parse_mailbox_segments(&segments) {
                        copies.push(StoredCopy {
                            name,
                            size: object.size,
                            stored_ms: object.modified_ms,
                            location: format!("s3://{bucket}/{}", object.key),
                        });
                    }
                }
                copies
            }
            StoredMailboxes::Dir(root) => {
                let mut copies = Vec::new();
                let start = match &below {
                    Some([domain, local]) => root.join(domain).join(local),
                    None => root.clone(),
                };
                let depth = if below.is_some() { 2 } else { 4 };
                walk_dir(
                    &start,
                    depth,
                    &mut Vec::new(),
                    &mut |relative, path, meta| {
                        let mut segments: Vec<&str> = match &below {
                            Some([domain, local]) => vec![domain.as_str(), local.as_str()],
                            None => Vec::new(),
                        };
                        segments.extend(relative.iter().map(String::as_str));
                        if let Some(name) = parse_mailbox_segments(&segments) {
                            copies.push(StoredCopy {
                                name,
                                size: meta.len(),
                                stored_ms: modified_ms(meta),
                                location: path.display().to_string(),
                            });
                        }
                    },
                )?;
                copies
            }
        };
        copies.sort_by(|a, b| {
            (
                &a.name.recipient,
                &a.name.folder,
                a.stored_ms,
                &a.name.message_id,
            )
                .cmp(&(
                    &b.name.recipient,
                    &b.name.folder,
                    b.stored_ms,
                    &b.name.message_id,
                ))
        });
        Ok(copies)
    }

    /// The bytes of one copy (as listed).
    pub async fn get(&self, copy: &StoredCopy) -> Result<Vec<u8>, ReadError> {
        match self {
            StoredMailboxes::S3 { s3, .. } => {
                Ok(s3.get(&S3Url::parse(&copy.location)?).await?.bytes)
            }
            StoredMailboxes::Dir(_) => {
                let path = PathBuf::from(&copy.location);
                std::fs::read(&path).map_err(|source| ReadError::Io { path, source })
            }
        }
    }
}

/// The two escaped segments naming `address`'s mailbox, as the stores write them.
fn mailbox_dir(address: &str) -> Result<[String; 2], ReadError> {
    let refused = |source| ReadError::Address {
        address: address.to_string(),
        source,
    };
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    Ok([
        escape_segment("domain", &domain.trim_end_matches('.').to_ascii_lowercase())
            .map_err(refused)?,
        escape_segment("local part", &local.to_ascii_lowercase()).map_err(refused)?,
    ])
}

fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calls `found` for every file exactly `depth` levels below `dir`, with the names on the
/// way. A directory that does not exist holds nothing (an address with no mail yet).
fn walk_dir(
    dir: &Path,
    depth: usize,
    relative: &mut Vec<String>,
    found: &mut dyn FnMut(&[String], &Path, &std::fs::Metadata),
) -> Result<(), ReadError> {
    let io = |path: &Path, source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && relative.is_empty() => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| io(&path, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        relative.push(name);
        if depth == 1 && meta.is_file() {
            found(relative, &path, &meta);
        } else if depth > 1 && meta.is_dir() {
            walk_dir(&path, depth - 1, relative, found)?;
        }
        relative.pop();
    }
    Ok(())
}
