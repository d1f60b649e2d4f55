//! `[quarantine]`: copies a rule files into the quarantine folder (`folder`, default
//! `Quarantine`) are kept out of the mailbox, in a store of their own (a directory or an S3
//! prefix), each with a record of why: the step that filed it, what it logged, the verdicts,
//! the recipients and the chain's trace. `sluice quarantine` lists, shows, releases (into the
//! `[store]`) and deletes them, and purges those older than `days`.
//!
//! Layout: `<root>/<entry-id>.eml` (the copy as the chain left it, what would have been
//! delivered), `<root>/<entry-id>.received.eml` (the message as received, which a release
//! runs through the chain again without the quarantining step) and `<root>/<entry-id>.json`
//! (a [`QuarantineRecord`]). The entry id is the
//! message id and a digest of the group's domain and recipients, so a retried message writes
//! the same entry again instead of a second one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_aws::{AwsError, Encryption, S3Url, S3};

use crate::config::{read_section, resolve_dir, Checked, Resolve};
use crate::names::{escape_segment, SegmentError};

/// The extension of the message as received, beside the copy (`<id>.eml`).
const RECEIVED_EXT: &str = "received.eml";

/// The folder that means "quarantine" unless `folder` says otherwise.
pub const DEFAULT_QUARANTINE_FOLDER: &str = "Quarantine";

/// How long entries are kept unless `days` says otherwise.
pub const DEFAULT_QUARANTINE_DAYS: u32 = 30;

/// `[quarantine]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// Where entries are kept.
    pub target: QuarantineTarget,
    /// Entries older than this many days are removed by `sluice quarantine purge`.
    pub days: u32,
    /// A `file-into` of this folder quarantines the copy.
    pub folder: String,
}

/// `[quarantine] kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineTarget {
    /// A directory (absolute).
    Dir(PathBuf),
    /// An S3 prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix, no `/` at either end (may be empty).
        prefix: String,
        /// Encryption at rest.
        encryption: Encryption,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineSection {
    kind: String,
    path: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    sse: Option<String>,
    kms_key_id: Option<String>,
    days: Option<u32>,
    folder: Option<String>,
}

/// Reads `[quarantine]`.
pub fn read_quarantine(table: toml::Table, resolve: Resolve<'_>) -> Checked<QuarantineConfig> {
    let s: QuarantineSection = read_section("quarantine", table)?;
    let target = match s.kind.as_str() {
        "dir" => {
            if s.bucket.is_some() || s.prefix.is_some() || s.sse.is_some() || s.kms_key_id.is_some()
            {
                return Err("quarantine: kind = \"dir\" takes `path` (bucket, prefix, sse and kms_key_id are for kind = \"s3\")".into());
            }
            match s.path.as_deref() {
                Some(p) if !p.is_empty() => QuarantineTarget::Dir(resolve_dir(p, resolve)),
                _ => return Err("quarantine: kind = \"dir\" needs `path = \"DIR\"`".into()),
            }
        }
        "s3" => {
            if s.path.is_some() {
                return Err(
                    "quarantine: kind = \"s3\" takes `bucket` and `prefix`, not `path`".into(),
                );
            }
            QuarantineTarget::S3 {
                bucket: s
                    .bucket
                    .filter(|b| !b.is_empty())
                    .ok_or("quarantine: kind = \"s3\" needs `bucket = \"BUCKET\"`")?,
                prefix: s.prefix.unwrap_or_default().trim_matches('/').to_string(),
                encryption: crate::store::s3::encryption(s.sse.as_deref(), s.kms_key_id)
                    .map_err(|e| e.replacen("store:", "quarantine:", 1))?,
            }
        }
        other => {
            return Err(format!(
                "quarantine: kind = {other:?} is not known: \"s3\" or \"dir\""
            ))
        }
    };
    let folder = s.folder.unwrap_or_else(|| DEFAULT_QUARANTINE_FOLDER.into());
    if folder.trim().is_empty() || folder.eq_ignore_ascii_case(crate::DEFAULT_FOLDER) {
        return Err(format!("quarantine.folder = {folder:?}: name the folder rules file into to quarantine (not INBOX)"));
    }
    if s.days == Some(0) {
        return Err("quarantine.days must be at least 1".into());
    }
    Ok(QuarantineConfig {
        target,
        days: s.days.unwrap_or(DEFAULT_QUARANTINE_DAYS),
        folder,
    })
}

impl QuarantineConfig {
    /// The store, ready to use.
    pub fn build(&self, s3: &S3) -> Quarantine {
        match &self.target {
            QuarantineTarget::Dir(root) => Quarantine::Dir(root.clone()),
            QuarantineTarget::S3 {
                bucket,
                prefix,
                encryption,
            } => Quarantine::S3 {
                s3: s3.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                encryption: encryption.clone(),
            },
        }
    }
}

/// One quarantined copy: what `sluice quarantine show` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// The entry id (`show ID`, `release ID`).
    pub id: String,
    /// The message id.
    pub message_id: String,
    /// The domain whose chain quarantined it.
    pub domain: String,
    /// When, ms since the epoch.
    pub quarantined_at: u64,
    /// The envelope sender.
    pub from: String,
    /// The recipients whose copy was quarantined.
    pub recipients: Vec<String>,
    /// The `Subject` header.
    pub subject: String,
    /// The step that filed it into the quarantine folder (the last one that did).
    pub step: String,
    /// Why, in the rule's words (its log lines), else what it did.
    pub reason: String,
    /// The verdicts the chain saw (`spf`, `dkim`, `dmarc`, `spam`, `virus`, `dmarc_policy`).
    pub verdicts: BTreeMap<String, String>,
    /// The chain's trace: each step and how it ended.
    pub trace: Vec<(String, String)>,
    /// Releases so far.
    #[serde(default)]
    pub released: Vec<Release>,
    /// Where the message as received is (absent in entries kept before Sluice kept it: their
    /// release delivers the copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<ReceivedCopy>,
}

/// Where a quarantine entry keeps the message as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceivedCopy {
    /// The chain changed nothing: the copy is the message as received.
    Same,
    /// Beside the copy, in `<id>.received.eml`.
    Beside,
}

/// One `sluice quarantine release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// When, ms since the epoch.
    pub at: u64,
    /// To whom.
    pub to: Vec<String>,
    /// Where each copy went.
    pub stored: Vec<String>,
}

impl QuarantineRecord {
    /// The entry id of a group's copy: the message id, `.`, and 12 hex digits of the
    /// domain and sorted recipients.
    pub fn entry_id(message_id: &str, domain: &str, recipients: &[String]) -> String {
        format!("{message_id}.{}", group_digest(domain, recipients))
    }
}

/// 12 hex digits naming a recipient group: its domain and sorted recipients (the same group
/// of a retried message gets the same name).
pub fn group_digest(domain: &str, recipients: &[String]) -> String {
    use sha2::Digest as _;
    let mut sorted = recipients.to_vec();
    sorted.sort();
    let digest = sha2::Sha256::digest(format!("{domain}\n{}", sorted.join("\n")));
    hex::encode(digest)[..12].to_string()
}

/// Why a quarantine read or write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QuarantineError {
    /// The id cannot name a file or key.
    #[error("quarantine: {0}")]
    Name(#[from] SegmentError),
    /// A local file.
    #[error("quarantine {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// An S3 call.
    #[error("quarantine: {0}")]
    S3(#[from] AwsError),
    /// A record that is not JSON Sluice wrote.
    #[error("quarantine record {path}: {reason}")]
    Record {
        /// The record.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry has that id.
    #[error("quarantine: no entry {0:?}")]
    NotFound(String),
}

/// A built quarantine store.
#[derive(Debug, Clone)]
pub enum Quarantine {
    /// A directory.
    Dir(PathBuf),
    /// An S3 prefix.
    S3 {
        /// The client.
        s3: S3,
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// Encryption at rest.
        encryption: Encryption,
    },
}

/// [`crate::store::dir::write_atomic`], its failure as this module's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
    crate::store::dir::write_atomic(path, bytes).map_err(|(at, e)| io(&at)(e))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> QuarantineError + '_ {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => QuarantineError::NotFound(
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        _ => QuarantineError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        },
    }
}

impl Quarantine {
    fn name(id: &str, ext: &str) -> Result<String, SegmentError> {
        Ok(format!("{}.{ext}", escape_segment("quarantine id", id)?))
    }

    fn url(bucket: &str, prefix: &str, name: &str) -> S3Url {
        S3Url {
            bucket: bucket.to_string(),
            key: if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            },
        }
    }

    async fn write(
        &self,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<String, QuarantineError> {
        match self {
            Quarantine::Dir(root) => {
                let path = root.join(name);
                let at = path.display().to_string();
                tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                    .await
                    .map_err(|e| QuarantineError::Io {
                        path: at.clone(),
                        reason: e.to_string(),
                    })??;
                Ok(at)
            }
            Quarantine::S3 {
                s3,
                bucket,
                prefix,
                encryption,
            } => {
                let url = Self::url(bucket, prefix, name);
                s3.put_encrypted(&url, bytes, content_type, &[], encryption)
                    .await?;
                Ok(url.to_string())
            }
        }
    }

    async fn read(&self, name: &str, id: &str) -> Result<Vec<u8>, QuarantineError> {
        match self {
            Quarantine::Dir(root) => {
                let path = root.join(name);
                std::fs::read(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => QuarantineError::NotFound(id.to_string()),
                    _ => io(&path)(e),
                })
            }
            Quarantine::S3 {
                s3, bucket, prefix, ..
            } => match s3.get(&Self::url(bucket, prefix, name)).await {
                Ok(o) => Ok(o.bytes),
                Err(AwsError::S3NotFound { .. }) => Err(QuarantineError::NotFound(id.to_string())),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Keeps `bytes` (the copy the chain made), `received` (the message as it came in) and
    /// the record, noting where the message as received is (the messages first, so a record
    /// never names a missing message). Returns where the copy is.
    pub async fn put(
        &self,
        record: &QuarantineRecord,
        bytes: &[u8],
        received: &[u8],
    ) -> Result<String, QuarantineError> {
        let mut record = record.clone();
        record.received = Some(if received == bytes {
            ReceivedCopy::Same
        } else {
            self.write(
                &Self::name(&record.id, RECEIVED_EXT)?,
                received.to_vec(),
                "message/rfc822",
            )
            .await?;
            ReceivedCopy::Beside
        });
        let at = self
            .write(
                &Self::name(&record.id, "eml")?,
                bytes.to_vec(),
                "message/rfc822",
            )
            .await?;
        self.save(&record).await?;
        Ok(at)
    }

    /// The message of `record` as received, or `None` for an entry kept before Sluice kept
    /// it (its release can only deliver the copy).
    pub async fn received(
        &self,
        record: &QuarantineRecord,
    ) -> Result<Option<Vec<u8>>, QuarantineError> {
        match record.received {
            None => Ok(None),
            Some(ReceivedCopy::Same) => self.message(&record.id).await.map(Some),
            Some(ReceivedCopy::Beside) => self
                .read(&Self::name(&record.id, RECEIVED_EXT)?, &record.id)
                .await
                .map(Some),
        }
    }

    /// Writes `record` (again, after a release).
    pub async fn save(&self, record: &QuarantineRecord) -> Result<(), QuarantineError> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| QuarantineError::Record {
            path: record.id.clone(),
            reason: e.to_string(),
        })?;
        self.write(&Self::name(&record.id, "json")?, json, "application/json")
            .await?;
        Ok(())
    }

    /// The record of `id`.
    pub async fn record(&self, id: &str) -> Result<QuarantineRecord, QuarantineError> {
        let bytes = self.read(&Self::name(id, "json")?, id).await?;
        serde_json::from_slice(&bytes).map_err(|e| QuarantineError::Record {
            path: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// The quarantined message of `id`.
    pub async fn message(&self, id: &str) -> Result<Vec<u8>, QuarantineError> {
        self.read(&Self::name(id, "eml")?, id).await
    }

    /// Every record, oldest first.
    pub async fn list(&self) -> Result<Vec<QuarantineRecord>, QuarantineError> {
        let names: Vec<String> = match self {
            Quarantine::Dir(root) => match std::fs::read_dir(root) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(root)(e)),
            },
            Quarantine::S3 {
                s3, bucket, prefix, ..
            } => {
                let under = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                s3.list(bucket, &under)
                    .await?
                    .into_iter()
                    .map(|l| l.key)
                    .filter_map(|k| {
                        k.strip_prefix(&under)
                            .filter(|r| !r.contains('/'))
                            .map(str::to_string)
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for name in names.iter().filter(|n| n.ends_with(".json")) {
            let bytes = self.read(name, name).await?;
            let record: QuarantineRecord =
                serde_json::from_slice(&bytes).map_err(|e| QuarantineError::Record {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
            out.push(record);
        }
        out.sort_by(|a, b| (a.quarantined_at, &a.id).cmp(&(b.quarantined_at, &b.id)));
        Ok(out)
    }

    /// Removes the entry (message and record).
    pub async fn delete(&self, id: &str) -> Result<(), QuarantineError> {
        // The record must exist: deleting an unknown id is an error, not a silent no-op.
        self.record(id).await?;
        for ext in ["eml", RECEIVED_EXT, "json"] {
            let name = Self::name(id, ext)?;
            match self {
                Quarantine::Dir(root) => {
                    let path = root.join(&name);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&path)(e)),
                    }
                }
                Quarantine::S3 {
                    s3, bucket, prefix, ..
                } => s3.delete(&Self::url(bucket, prefix, &name)).await?,
            }
        }
        Ok(())
    }

    /// Where the store is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Quarantine::Dir(root) => root.display().to_string(),
            Quarantine::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Checked<QuarantineConfig> {
        read_quarantine(toml::from_str(text).unwrap(), &|p| {
            PathBuf::from("/etc/sluice").join(p)
        })
    }

    #[test]
    fn sections_read_and_refuse() {
        let q = read("kind = \"dir\"\npath = \"q\"").unwrap();
        assert_eq!(q.target, QuarantineTarget::Dir("/etc/sluice/q".into()));
        assert_eq!((q.days, q.folder.as_str()), (30, "Quarantine"));
        let q = read("kind = \"s3\"\nbucket = \"b\"\nprefix = \"q/\"\ndays = 7\nfolder = \"Held\"")
            .unwrap();
        assert_eq!(q.days, 7);
        assert_eq!(q.folder, "Held");
        for (text, says) in [
            ("kind = \"dir\"", "needs `path"),
            ("kind = \"s3\"", "needs `bucket"),
            (
                "kind = \"dir\"\npath = \"q\"\nfolder = \"inbox\"",
                "not INBOX",
            ),
            ("kind = \"dir\"\npath = \"q\"\ndays = 0", "at least 1"),
            (
                "kind = \"dir\"\npath = \"q\"\nbucket = \"b\"",
                "kind = \"s3\"",
            ),
            ("kind = \"nfs\"", "\"s3\" or \"dir\""),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn entry_ids_are_stable_per_group() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = QuarantineRecord::entry_id("m1", "example.com", &r(&["b@x", "a@x"]));
        assert_eq!(
            a,
            QuarantineRecord::entry_id("m1", "example.com", &r(&["a@x", "b@x"]))
        );
        assert_ne!(
            a,
            QuarantineRecord::entry_id("m1", "example.com", &r(&["a@x"]))
        );
        assert!(a.starts_with("m1.") && a.len() == 3 + 12);
    }

    #[tokio::test]
    async fn dir_entries_are_kept_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::Dir(dir.path().join("q"));
        let record = QuarantineRecord {
            id: "m1.abc".into(),
            message_id: "m1".into(),
            domain: "example.com".into(),
            quarantined_at: 5,
            from: "x@y.org".into(),
            recipients: vec!["a@example.com".into()],
            subject: "s".into(),
            step: "junk".into(),
            reason: "score 9 >= 5".into(),
            verdicts: BTreeMap::new(),
            trace: vec![("junk".into(), "ok".into())],
            released: Vec::new(),
            received: None,
        };
        assert!(q.list().await.unwrap().is_empty());
        q.put(&record, b"raw", b"raw").await.unwrap();
        let listed = q.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].received, Some(ReceivedCopy::Same));
        assert_eq!(q.message("m1.abc").await.unwrap(), b"raw");
        assert_eq!(q.received(&listed[0]).await.unwrap().unwrap(), b"raw");
        // A copy the chain changed: the message as received is kept beside it.
        q.put(&record, b"edited", b"raw").await.unwrap();
        let kept = q.record("m1.abc").await.unwrap();
        assert_eq!(kept.received, Some(ReceivedCopy::Beside));
        assert_eq!(q.message("m1.abc").await.unwrap(), b"edited");
        assert_eq!(q.received(&kept).await.unwrap().unwrap(), b"raw");
        // An entry from before: no message as received.
        assert_eq!(q.received(&record).await.unwrap(), None);
        q.delete("m1.abc").await.unwrap();
        assert!(q.list().await.unwrap().is_empty());
        assert!(std::fs::read_dir(dir.path().join("q"))
            .unwrap()
            .next()
            .is_none());
        assert!(matches!(
            q.delete("m1.abc").await,
            Err(QuarantineError::NotFound(_))
        ));
    }
}
