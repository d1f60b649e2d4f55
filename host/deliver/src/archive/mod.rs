//! `[archive]`: every message of the chosen domains kept unmodified as received, before any
//! delivery, in S3 (with Object Lock retention and SSE-S3/SSE-KMS) or a directory, with a
//! small day-partitioned index beside it that `sluice archive find` reads.
//!
//! Layout (both kinds): the message at `<root>/<message-id>.eml`, and per archived domain an
//! index record at `<root>/_index/<yyyy-mm-dd>/<domain>/<message-id>.json` (an
//! [`ArchiveRecord`]). Names derive from the message id only, so a retried message finds its
//! copy and writes nothing twice (an Object Lock version cannot be overwritten in place; a
//! second version would be a second archived copy).

pub mod dir;
pub mod s3;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_aws::{AwsError, Encryption, LockMode, S3};

use crate::config::{read_section, resolve_dir, Checked, Resolve};
use crate::names::{escape_segment, SegmentError};

/// `[archive]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Where the archive lives.
    pub target: ArchiveTarget,
    /// A failed archive write tempfails the message (nothing is delivered that is not
    /// archived); `false`: logged, counted, and the message is delivered anyway.
    pub required: bool,
    /// Recipient domains whose mail is archived, lower case; `*` for all.
    pub domains: Vec<String>,
    /// Also archive mail local users send (`[[outbound]]` chains), under the sender's domain.
    pub outbound: bool,
    /// Also keep each copy the chain changed, as delivered (after the message as received).
    pub as_delivered: bool,
}

/// `[archive] kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveTarget {
    /// `kind = "dir"`.
    Dir {
        /// The directory, absolute.
        path: PathBuf,
    },
    /// `kind = "s3"`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
        /// Object Lock retention of each archived message; `None`: none (the bucket's
        /// default retention, if it has one, still applies).
        retention: Option<Retention>,
        /// Encryption at rest.
        encryption: Encryption,
    },
}

/// `retention = { mode, days }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Object Lock mode.
    pub mode: LockMode,
    /// Days from the write.
    pub days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveSection {
    kind: String,
    path: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    retention: Option<RetentionSection>,
    sse: Option<String>,
    kms_key_id: Option<String>,
    #[serde(default = "yes")]
    required: bool,
    domains: Vec<String>,
    #[serde(default)]
    outbound: bool,
    #[serde(default)]
    as_delivered: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    mode: String,
    days: u32,
}

/// Reads `[archive]`.
pub fn read_archive(table: toml::Table, resolve: Resolve<'_>) -> Checked<ArchiveConfig> {
    let s: ArchiveSection = read_section("archive", table)?;
    let target = match s.kind.as_str() {
        "dir" => {
            if s.bucket.is_some()
                || s.prefix.is_some()
                || s.retention.is_some()
                || s.sse.is_some()
                || s.kms_key_id.is_some()
            {
                return Err("archive: kind = \"dir\" takes `path` (bucket, prefix, retention, sse and kms_key_id are for kind = \"s3\")".into());
            }
            match s.path.as_deref() {
                Some(p) if !p.is_empty() => ArchiveTarget::Dir {
                    path: resolve_dir(p, resolve),
                },
                _ => return Err("archive: kind = \"dir\" needs `path = \"DIR\"`".into()),
            }
        }
        "s3" => {
            if s.path.is_some() {
                return Err(
                    "archive: kind = \"s3\" takes `bucket` and `prefix`, not `path`".into(),
                );
            }
            let bucket = s
                .bucket
                .filter(|b| !b.is_empty())
                .ok_or("archive: kind = \"s3\" needs `bucket = \"BUCKET\"`")?;
            let retention = s
                .retention
                .map(|r| {
                    let mode = match r.mode.as_str() {
                        "compliance" => LockMode::Compliance,
                        "governance" => LockMode::Governance,
                        other => return Err(format!("archive.retention.mode = {other:?}: use \"compliance\" (nobody can delete before the date) or \"governance\" (only with s3:BypassGovernanceRetention)")),
                    };
                    if r.days == 0 {
                        return Err("archive.retention.days must be at least 1".to_string());
                    }
                    Ok(Retention { mode, days: r.days })
                })
                .transpose()?;
            let encryption = crate::store::s3::encryption(s.sse.as_deref(), s.kms_key_id)
                .map_err(|e| e.replacen("store:", "archive:", 1))?;
            ArchiveTarget::S3 {
                bucket,
                prefix: s.prefix.unwrap_or_default().trim_matches('/').to_string(),
                retention,
                encryption,
            }
        }
        other => {
            return Err(format!(
                "archive: kind = {other:?} is not known: \"s3\" or \"dir\""
            ))
        }
    };
    if s.domains.is_empty() && !s.outbound {
        return Err(
            "archive.domains is empty: name the domains whose mail is archived, or [\"*\"] for all"
                .into(),
        );
    }
    Ok(ArchiveConfig {
        target,
        required: s.required,
        domains: s
            .domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect(),
        outbound: s.outbound,
        as_delivered: s.as_delivered,
    })
}

impl ArchiveConfig {
    /// The domains a message is archived under: the archived domains of its recipients
    /// (received mail), or the sender's domain (mail a local user sends, with `outbound`).
    /// Empty: the message is not archived.
    pub fn domains_of(
        &self,
        mail_from: &str,
        recipients: &[String],
        outbound: bool,
    ) -> Vec<String> {
        let domain = |a: &str| {
            a.rsplit_once('@')
                .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        };
        let mut out: Vec<String> = if outbound {
            if !self.outbound {
                return Vec::new();
            }
            domain(mail_from).into_iter().collect()
        } else {
            recipients
                .iter()
                .filter_map(|r| domain(r))
                .filter(|d| self.domains.iter().any(|x| x == "*" || x == d))
                .collect()
        };
        out.sort();
        out.dedup();
        out
    }

    /// The archive, ready to write and read.
    pub fn build(&self, s3: &S3) -> Archive {
        match &self.target {
            ArchiveTarget::Dir { path } => Archive::Dir(dir::DirArchive { root: path.clone() }),
            ArchiveTarget::S3 {
                bucket,
                prefix,
                retention,
                encryption,
            } => Archive::S3(s3::S3Archive {
                s3: s3.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                retention: *retention,
                encryption: encryption.clone(),
            }),
        }
    }
}

/// One index record: what `sluice archive find` matches and prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// The message id (`sluice archive get ID`).
    pub id: String,
    /// The archived domain this record is filed under.
    pub domain: String,
    /// The day (UTC) it was received, `yyyy-mm-dd`.
    pub date: String,
    /// When it was received, ms since the epoch.
    pub received_at: u64,
    /// The envelope sender (`""`: null sender).
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the message is (`s3://...` or a path).
    pub location: String,
    /// With `as_delivered`: the names of the copies as delivered (one per recipient group
    /// the chain changed), for `sluice archive get NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
}

/// `sluice archive find`'s filters; text filters match case-insensitively as substrings.
#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    /// The archived domain (required: the index is partitioned by it).
    pub domain: String,
    /// In the envelope sender.
    pub from: Option<String>,
    /// In any envelope recipient.
    pub to: Option<String>,
    /// In the subject.
    pub subject: Option<String>,
    /// First day, inclusive.
    pub since: Option<time::Date>,
    /// Last day, inclusive.
    pub until: Option<time::Date>,
}

impl ArchiveQuery {
    /// Whether a day partition (`yyyy-mm-dd`) is within `since..=until`.
    fn wants_day(&self, day: &str) -> bool {
        let Ok(d) = parse_day(day) else {
            return false;
        };
        self.since.is_none_or(|s| d >= s) && self.until.is_none_or(|u| d <= u)
    }

    /// Whether `record` passes the text filters.
    pub fn matches(&self, record: &ArchiveRecord) -> bool {
        let has = |hay: &str, needle: &Option<String>| {
            needle
                .as_ref()
                .is_none_or(|n| hay.to_lowercase().contains(&n.to_lowercase()))
        };
        has(&record.from, &self.from)
            && has(&record.subject, &self.subject)
            && (self.to.is_none() || record.to.iter().any(|t| has(t, &self.to)))
    }
}

/// `yyyy-mm-dd`.
pub fn parse_day(s: &str) -> Result<time::Date, String> {
    let bad = || format!("{s:?} is not a date (yyyy-mm-dd)");
    let mut parts = s.splitn(3, '-');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    let month = time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    time::Date::from_calendar_date(y, month, u8::try_from(d).map_err(|_| bad())?).map_err(|_| bad())
}

/// The UTC day of `ms` since the epoch, `yyyy-mm-dd`.
pub fn day_of(ms: u64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month() as u8,
        date.day()
    )
}

/// Why an archive write or read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// The message id cannot name a file or key.
    #[error("archive: {0}")]
    Name(#[from] SegmentError),
    /// A local file could not be written or read.
    #[error("archive {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// An S3 call failed.
    #[error("archive: {0}")]
    S3(#[from] AwsError),
    /// An index record is not JSON Sluice wrote.
    #[error("archive index {path}: {reason}")]
    Index {
        /// The record.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No archived message has that id.
    #[error("archive: no message {0:?}")]
    NotFound(String),
}

/// A built archive.
#[derive(Debug, Clone)]
pub enum Archive {
    /// A directory.
    Dir(dir::DirArchive),
    /// S3.
    S3(s3::S3Archive),
}

impl Archive {
    /// Archives `bytes` once under `records[0].id`, and writes each record to the index.
    /// A message archived already is not written again (its index records are). Returns
    /// where the message is.
    pub async fn put(
        &self,
        bytes: &[u8],
        records: &mut [ArchiveRecord],
    ) -> Result<String, ArchiveError> {
        let Some(first) = records.first() else {
            return Ok(String::new());
        };
        let id = first.id.clone();
        match self {
            Archive::Dir(a) => {
                let (a, bytes, mut recs) = (a.clone(), bytes.to_vec(), records.to_vec());
                let (location, recs) = tokio::task::spawn_blocking(move || {
                    let location = a.put(&id, &bytes, &mut recs)?;
                    Ok::<_, ArchiveError>((location, recs))
                })
                .await
                .map_err(|e| ArchiveError::Io {
                    path: "archive".into(),
                    reason: format!("the archive task failed: {e}"),
                })??;
                records.clone_from_slice(&recs);
                Ok(location)
            }
            Archive::S3(a) => a.put(&id, bytes, records).await,
        }
    }

    /// Keeps a copy as delivered under `name` (`<id>.delivered-<hex>`), once, with the same
    /// retention; then rewrites `records` (which name it) in the index.
    pub async fn put_delivered(
        &self,
        name: &str,
        bytes: &[u8],
        records: &[ArchiveRecord],
    ) -> Result<String, ArchiveError> {
        match self {
            Archive::Dir(a) => {
                let (a, name, bytes, recs) = (
                    a.clone(),
                    name.to_string(),
                    bytes.to_vec(),
                    records.to_vec(),
                );
                tokio::task::spawn_blocking(move || {
                    let at = a.put_message(&name, &bytes)?;
                    a.put_records(&recs)?;
                    Ok(at)
                })
                .await
                .map_err(|e| ArchiveError::Io {
                    path: "archive".into(),
                    reason: format!("the archive task failed: {e}"),
                })?
            }
            Archive::S3(a) => {
                let at = a.put_message(name, bytes).await?;
                a.put_records(records).await?;
                Ok(at)
            }
        }
    }

    /// The index records of `query.domain` on the days asked, filtered, oldest day first.
    pub async fn find(&self, query: &ArchiveQuery) -> Result<Vec<ArchiveRecord>, ArchiveError> {
        let mut found = match self {
            Archive::Dir(a) => a.find(query)?,
            Archive::S3(a) => a.find(query).await?,
        };
        found.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        Ok(found)
    }

    /// The archived message, byte for byte.
    pub async fn get(&self, id: &str) -> Result<Vec<u8>, ArchiveError> {
        match self {
            Archive::Dir(a) => a.get(id),
            Archive::S3(a) => a.get(id).await,
        }
    }

    /// Where the archive is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Archive::Dir(a) => a.root.display().to_string(),
            Archive::S3(a) => format!("s3://{}/{}", a.bucket, a.prefix),
        }
    }
}

/// `<id>.eml` and `<id>.json`, escaped.
fn names(id: &str) -> Result<(String, String), SegmentError> {
    let id = escape_segment("message id", id)?;
    Ok((format!("{id}.eml"), format!("{id}.json")))
}

/// The domain as an index path segment.
fn domain_segment(domain: &str) -> Result<String, SegmentError> {
    escape_segment("domain", &domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Checked<ArchiveConfig> {
        read_archive(toml::from_str(text).unwrap(), &|p| {
            PathBuf::from("/etc/sluice").join(p)
        })
    }

    #[test]
    fn sections_read_and_refuse() {
        let a = read("kind = \"dir\"\npath = \"arch\"\ndomains = [\"Example.com\"]").unwrap();
        assert_eq!(
            a.target,
            ArchiveTarget::Dir {
                path: "/etc/sluice/arch".into()
            }
        );
        assert!(a.required);
        assert_eq!(a.domains, ["example.com"]);
        let a = read("kind = \"s3\"\nbucket = \"b\"\nprefix = \"/a/\"\nrequired = false\ndomains = [\"*\"]\nretention = { mode = \"compliance\", days = 7 }\nsse = \"aws:kms\"\nkms_key_id = \"alias/a\"").unwrap();
        assert!(!a.required);
        assert_eq!(
            a.target,
            ArchiveTarget::S3 {
                bucket: "b".into(),
                prefix: "a".into(),
                retention: Some(Retention {
                    mode: LockMode::Compliance,
                    days: 7
                }),
                encryption: Encryption::Kms {
                    key_id: Some("alias/a".into())
                },
            }
        );
        for (text, says) in [
            ("kind = \"s3\"\ndomains = [\"*\"]", "needs `bucket"),
            ("kind = \"dir\"\ndomains = [\"*\"]", "needs `path"),
            ("kind = \"dir\"\npath = \"a\"\nbucket = \"b\"\ndomains = [\"*\"]", "kind = \"s3\""),
            ("kind = \"s3\"\nbucket = \"b\"\ndomains = [\"*\"]\nretention = { mode = \"strict\", days = 1 }", "\"governance\""),
            ("kind = \"s3\"\nbucket = \"b\"\ndomains = [\"*\"]\nretention = { mode = \"governance\", days = 0 }", "at least 1"),
            ("kind = \"s3\"\nbucket = \"b\"\ndomains = [\"*\"]\nkms_key_id = \"k\"", "archive: `kms_key_id` needs"),
            ("kind = \"tape\"\ndomains = [\"*\"]", "\"s3\" or \"dir\""),
            ("kind = \"dir\"\npath = \"a\"\ndomains = []", "is empty"),
            ("kind = \"dir\"\npath = \"a\"\ndomains = [\"*\"]\nfolder = \"x\"", "unknown field `folder`"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn domains_of_a_message() {
        let a = read("kind = \"dir\"\npath = \"a\"\ndomains = [\"example.com\"]").unwrap();
        let rcpts = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            a.domains_of(
                "x@y.org",
                &rcpts(&["a@Example.COM", "b@example.com", "c@other.org"]),
                false
            ),
            ["example.com"]
        );
        assert!(a
            .domains_of("x@y.org", &rcpts(&["c@other.org"]), false)
            .is_empty());
        assert!(
            a.domains_of("me@example.com", &rcpts(&["c@other.org"]), true)
                .is_empty(),
            "outbound is off"
        );
        let all = read("kind = \"dir\"\npath = \"a\"\ndomains = [\"*\"]\noutbound = true").unwrap();
        assert_eq!(
            all.domains_of("", &rcpts(&["c@other.org", "a@b.net"]), false),
            ["b.net", "other.org"]
        );
        assert_eq!(
            all.domains_of("me@Example.com", &rcpts(&["c@other.org"]), true),
            ["example.com"]
        );
    }

    #[test]
    fn days_and_queries() {
        assert_eq!(day_of(1_796_000_000_000), "2026-11-30");
        assert_eq!(parse_day("2026-11-29").unwrap().to_string(), "2026-11-29");
        assert!(parse_day("2026-13-01").is_err());
        assert!(parse_day("yesterday").is_err());
        let q = ArchiveQuery {
            domain: "example.com".into(),
            from: Some("ALICE".into()),
            to: Some("bob@".into()),
            subject: Some("numbers".into()),
            since: parse_day("2026-11-01").ok(),
            until: parse_day("2026-11-30").ok(),
        };
        assert!(
            q.wants_day("2026-11-29") && q.wants_day("2026-11-01") && !q.wants_day("2026-12-01")
        );
        let r = ArchiveRecord {
            id: "m".into(),
            domain: "example.com".into(),
            date: "2026-11-29".into(),
            received_at: 0,
            from: "alice@sender.example".into(),
            to: vec!["carol@example.com".into(), "bob@example.com".into()],
            subject: "Quarterly Numbers".into(),
            size: 1,
            location: String::new(),
            delivered: Vec::new(),
        };
        assert!(q.matches(&r));
        assert!(!ArchiveQuery {
            to: Some("dave".into()),
            ..q.clone()
        }
        .matches(&r));
        assert!(!ArchiveQuery {
            subject: Some("invoice".into()),
            ..q
        }
        .matches(&r));
    }
}
