//! Send claims: the S3 records that make each send (a relay chunk, a bounce) happen at most
//! once, across retries, crashes and several consumers of one queue.
//!
//! Each send has one key. Before sending, a consumer **claims** it with a conditional write
//! (`PutObject` with `If-None-Match: *`): S3 lets exactly one writer create the key, so of two
//! daemons handling the same notification only the one whose claim was created sends. The
//! record then goes through two states:
//!
//! - `claimed`: written before the send, with the owner (one id per [`Pipeline`] process) and
//!   the claim time;
//! - `sent`: overwritten after SES accepted the send, with the SES message id.
//!
//! A consumer that finds the key already there does not send. It reads the record:
//! `sent` is done; `claimed` by another owner and younger than [`Markers::lease`] means that
//! consumer may be sending right now, so the message fails with a transient error and is
//! retried later (by then the claim is `sent`, or stale); `claimed` and older than the lease,
//! claimed by a process of this machine that no longer runs (a killed daemon), or claimed by
//! this same owner in an earlier attempt, is **unconfirmed**: the owner died (or
//! lost the answer) between claim and confirmation, and nobody can know whether SES sent it.
//!
//! **Unconfirmed claims: at least once by default.** Nobody can know whether an unconfirmed
//! send went out. With `[relay] sends = "at-least-once"` (the default) it is **sent again**:
//! the claim is taken over (rewritten with this owner, the previous owner and a resend count)
//! and the same bytes go out again, with the same Message-ID, so a redirect-only alias never
//! loses a message to a crash. The price is a possible second copy when the first had gone
//! out (the window is the few milliseconds between SES's answer and the confirmation write);
//! each resend is logged (`RESENDING UNCONFIRMED SEND`) and counted. With `"at-most-once"` an
//! unconfirmed claim is never sent again; it is logged as `UNCONFIRMED SEND`, counted and
//! reported, so an operator can check SES's sending logs (each SES send carries the message
//! tag `sluice-send`, the claim's digest) and resend by hand. A claim is released (deleted)
//! only when SES surely did not accept the send (it answered with an error, or the connection
//! failed before the request went out), so the retry sends it.
//!
//! Records are small JSON objects; give their prefix a lifecycle rule (e.g. expire after 30
//! days, longer than any SQS retention) to keep the bucket small.
//!
//! [`Pipeline`]: crate::Pipeline

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_aws::{AwsError, Created, S3Url, S3};

use sluice_deliver::{
    BoxFuture, DeliveredLog, MailboxCopy, MailboxError, RecordsAt, SendGuarantee,
};

use super::SendError;

/// How long a claim by another consumer counts as "being sent right now". Longer than a send
/// can take ([`sluice_aws::SEND_TIMEOUT`] plus the claim and confirmation writes), so a live
/// consumer always confirms within it; after it a claim is unconfirmed. It only decides
/// whether to wait for the outcome: a claimed send is never sent by anyone else.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(90);

/// This machine's name as owner ids carry it.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Whether the owner of a claim is a process of this machine that no longer runs (a daemon
/// killed and restarted): then its claim is resolved as unconfirmed at once instead of
/// waiting out the lease, which would hold the message back for every retry until it went to
/// the DLQ. Owners elsewhere, or a pid that runs (perhaps reused), keep the lease.
fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_name()
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Where the claims live, and who is claiming.
#[derive(Debug, Clone)]
pub struct Markers {
    /// The bucket, or a local directory.
    pub at: ClaimsAt,
    /// The key prefix, without a trailing `/`; may be empty.
    pub prefix: String,
    /// This consumer's id, written into its claims. Unique per process (see
    /// [`Markers::new_owner_id`]); one owner must handle a message id one call at a time (the
    /// pipeline serializes per message id), since its own unconfirmed claim is taken as left
    /// over from an earlier attempt.
    pub owner: String,
    /// See [`DEFAULT_LEASE`].
    pub lease: Duration,
    /// What an unconfirmed claim becomes (`[relay] sends`).
    pub sends: SendGuarantee,
}

/// The place that holds the records: an S3 bucket (shared by every consumer of the queue), or
/// a directory on this machine (one daemon with a local store, and `sluice run`). Both make
/// a claim with a create-if-absent write, so the protocol is the same.
#[derive(Debug, Clone)]
pub enum ClaimsAt {
    /// `PutObject` with `If-None-Match: *`.
    S3 {
        /// The client.
        s3: S3,
        /// The bucket.
        bucket: String,
    },
    /// Files created with `O_EXCL`; each key is a relative path under the directory.
    Dir(PathBuf),
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This consumer created the claim: send, then [`Markers::confirm`] (or
    /// [`Markers::release`] when SES surely did not accept it).
    Won,
    /// An earlier attempt sent it (state `sent`, or a marker without state from before
    /// claims existed).
    AlreadySent,
    /// Claimed and never confirmed (the owner died between claim and confirmation, or lost
    /// SES's answer): it may or may not have been sent. [`Markers::sends`] decides whether
    /// it is sent again ([`Markers::take_over`]).
    Unconfirmed {
        /// Who claimed it.
        owner: String,
        /// How long ago, in seconds (by this host's clock).
        age_secs: u64,
        /// How many times it was sent again already.
        resends: u64,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Markers {
    /// Claims in `bucket`/`prefix` as `owner`, with the default lease.
    pub fn new(s3: S3, bucket: String, prefix: String, owner: String) -> Markers {
        Markers {
            at: ClaimsAt::S3 { s3, bucket },
            prefix,
            owner,
            lease: DEFAULT_LEASE,
            sends: SendGuarantee::default(),
        }
    }

    /// Claims at `at`: in the bucket (with `s3`), or in the directory.
    pub fn at(at: &RecordsAt, s3: &S3, owner: String) -> Markers {
        match at {
            RecordsAt::S3 { bucket, prefix } => {
                Markers::new(s3.clone(), bucket.clone(), prefix.clone(), owner)
            }
            RecordsAt::Dir(dir) => Markers::in_dir(dir.clone(), owner),
        }
    }

    /// Claims in files under `dir` as `owner`, with the default lease.
    pub fn in_dir(dir: PathBuf, owner: String) -> Markers {
        Markers {
            at: ClaimsAt::Dir(dir),
            prefix: String::new(),
            owner,
            lease: DEFAULT_LEASE,
            sends: SendGuarantee::default(),
        }
    }

    /// A fresh owner id: host name (when known), process id and 64 random bits, so two
    /// processes (or two pipelines in one process) never share one.
    pub fn new_owner_id() -> String {
        let host = host_name();
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        format!("{host}/{}/{:016x}", std::process::id(), hasher.finish())
    }

    /// `<prefix>/<message-id>/<kind>-<sha256 of the recipients>.json`. The recipients are
    /// lower-cased, de-duplicated and sorted first, so the key does not depend on their order
    /// or case.
    pub fn marker_key(&self, message_id: &str, kind: &str, recipients: &[String]) -> String {
        self.under_prefix(&format!("{}.json", send_name(message_id, kind, recipients)))
    }

    /// `name` under the configured prefix (which may be empty or have slashes at its ends).
    pub(crate) fn under_prefix(&self, name: &str) -> String {
        match self.prefix.trim_matches('/') {
            "" => name.to_string(),
            prefix => format!("{prefix}/{name}"),
        }
    }

    /// Where `key` is, for messages.
    fn describe(&self, key: &str) -> String {
        match &self.at {
            ClaimsAt::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            ClaimsAt::Dir(dir) => dir.join(key).display().to_string(),
        }
    }

    fn local_error(what: &str, key: &Path, e: std::io::Error) -> SendError {
        SendError::Local {
            what: format!("{what} {}", key.display()),
            reason: e.to_string(),
        }
    }

    /// Creates `key` with `bytes` unless it exists; `true` when this call created it.
    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool, SendError> {
        match &self.at {
            ClaimsAt::S3 { s3, bucket } => {
                let url = S3Url {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                };
                let created = s3
                    .put_if_absent(&url, bytes, "application/json")
                    .await
                    .map_err(|e| SendError::aws(format_args!("claiming send {url}"), e))?;
                Ok(matches!(created, Created::Yes { .. }))
            }
            ClaimsAt::Dir(dir) => {
                let path = dir.join(key);
                let err = |e| Markers::local_error("claiming send", &path, e);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(mut f) => {
                        f.write_all(&bytes).map_err(err)?;
                        f.sync_all().map_err(err)?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(err(e)),
                }
            }
        }
    }

    /// Writes `key` (replacing it), a JSON record.
    pub(crate) async fn write(
        &self,
        what: &str,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<(), SendError> {
        self.write_as(what, key, bytes, "application/json").await
    }

    /// Writes `key` (replacing it) with this content type (S3 only).
    async fn write_as(
        &self,
        what: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), SendError> {
        match &self.at {
            ClaimsAt::S3 { s3, bucket } => {
                let url = S3Url {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                };
                s3.put(&url, bytes, content_type)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError::aws(format_args!("{what} {url}"), e))
            }
            ClaimsAt::Dir(dir) => {
                let path = dir.join(key);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let err = |e| Markers::local_error(what, &path, e);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                std::fs::write(&tmp, &bytes).map_err(err)?;
                std::fs::rename(&tmp, &path).map_err(err)
            }
        }
    }

    /// The bytes at `key`; `None` when there is none (only "not found" means none).
    pub(crate) async fn read(&self, what: &str, key: &str) -> Result<Option<Vec<u8>>, SendError> {
        match &self.at {
            ClaimsAt::S3 { s3, bucket } => {
                let url = S3Url {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                };
                match s3.get(&url).await {
                    Ok(obj) => Ok(Some(obj.bytes)),
                    Err(AwsError::S3NotFound { .. }) => Ok(None),
                    Err(e) => Err(SendError::aws(format_args!("{what} {url}"), e)),
                }
            }
            ClaimsAt::Dir(dir) => {
                let path = dir.join(key);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Markers::local_error(what, &path, e)),
                }
            }
        }
    }

    /// Whether `key` exists.
    async fn exists(&self, what: &str, key: &str) -> Result<bool, SendError> {
        match &self.at {
            ClaimsAt::S3 { s3, bucket } => {
                let url = S3Url {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                };
                s3.exists(&url)
                    .await
                    .map_err(|e| SendError::aws(format_args!("{what} {url}"), e))
            }
            ClaimsAt::Dir(dir) => Ok(dir.join(key).is_file()),
        }
    }

    /// Claims the send at `key` (`detail` says what it is: kind, message id, recipients).
    /// `Ok(Claim::Won)` only when this call created the record. A claim by another owner
    /// younger than the lease is an `Err` (transient): that consumer may be sending it now.
    ///
    /// Each claim carries a fresh `claim_id`. When the create-if-absent write went through
    /// but its answer was lost, the SDK's retry of it finds the key taken (412): the record
    /// then holds this call's own `claim_id`, and the claim is won, not mistaken for an
    /// unconfirmed one left by an earlier attempt (which would be resent, or under
    /// at-most-once never sent).
    pub async fn claim(&self, key: &str, detail: &Value) -> Result<Claim, SendError> {
        let claim_id = new_claim_id();
        let mut record = detail.clone();
        record["state"] = json!("claimed");
        record["owner"] = json!(self.owner);
        record["claim_id"] = json!(claim_id);
        record["claimed_at_ms"] = json!(now_ms());
        match self.create_new(key, record.to_string().into_bytes()).await {
            Ok(true) => return Ok(Claim::Won),
            Ok(false) => {}
            Err(e) => {
                self.release_if_mine(key, &claim_id).await;
                return Err(e);
            }
        }
        let url = self.describe(key);
        let Some(existing) = self.read("reading the existing claim", key).await? else {
            // Released between our write and this read: the next attempt claims again.
            return Err(SendError::ClaimHeld(format!(
                "send {url} was released while this attempt looked at it; retry"
            )));
        };
        let record: Value = serde_json::from_slice(&existing).unwrap_or(Value::Null);
        if record["state"] == "claimed" && record["claim_id"] == json!(claim_id) {
            tracing::info!(
                claim = key,
                "the claim was written although its answer was lost (the retried write found it): won"
            );
            return Ok(Claim::Won);
        }
        if record["state"] != "claimed" {
            return Ok(Claim::AlreadySent);
        }
        let owner = record["owner"].as_str().unwrap_or("unknown").to_string();
        let age_ms = record["claimed_at_ms"]
            .as_u64()
            .map(|at| now_ms().saturating_sub(at))
            .unwrap_or(u64::MAX);
        if owner != self.owner
            && u128::from(age_ms) < self.lease.as_millis()
            && !owner_is_gone(&owner)
        {
            return Err(SendError::ClaimHeld(format!(
                "send {url} is claimed by another consumer ({owner}, {} s ago) and not confirmed yet; retry after it finishes (lease {} s)",
                age_ms / 1000,
                self.lease.as_secs()
            )));
        }
        Ok(Claim::Unconfirmed {
            owner,
            age_secs: age_ms / 1000,
            resends: record["resends"].as_u64().unwrap_or(0),
        })
    }

    /// After a claim write that failed, whose attempts may have created the record
    /// nonetheless (a lost answer, then retries that failed): deletes the record if it is
    /// this call's (`claim_id`), so the next attempt claims afresh instead of finding an
    /// "unconfirmed" claim of a send that was never made. Best effort: when S3 cannot be
    /// read now, the next attempt finds the claim and treats it as unconfirmed.
    async fn release_if_mine(&self, key: &str, claim_id: &str) {
        let Ok(Some(bytes)) = self.read("reading a claim that failed", key).await else {
            return;
        };
        let record: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if record["state"] == "claimed" && record["claim_id"] == json!(claim_id) {
            match self.release(key).await {
                Ok(()) => tracing::info!(
                    claim = key,
                    "the claim was written although its write failed; released (nothing was sent)"
                ),
                Err(e) => {
                    tracing::warn!(claim = key, error = %e, "cannot release a claim whose write failed")
                }
            }
        }
    }

    /// Claims an unconfirmed send for this owner, to send it again: the record is rewritten
    /// as `claimed` by this owner, now, with the previous owner and the resend count. Only
    /// the consumer that holds the message (SQS hands it to one at a time) gets here, and
    /// the fresh claim makes any other consumer wait out the lease.
    /// `detail` carries `resend_of` and `resends` (see [`with_resend`]); so does the `sent`
    /// record [`Markers::confirm`] writes from it.
    pub async fn take_over(&self, key: &str, detail: &Value) -> Result<(), SendError> {
        let mut record = detail.clone();
        record["state"] = json!("claimed");
        record["owner"] = json!(self.owner);
        record["claimed_at_ms"] = json!(now_ms());
        self.write(
            "claiming an unconfirmed send again",
            key,
            record.to_string().into_bytes(),
        )
        .await
    }

    /// Marks a won claim `sent` after SES accepted it, with the SES message id.
    pub async fn confirm(
        &self,
        key: &str,
        detail: &Value,
        ses_message_id: &str,
    ) -> Result<(), SendError> {
        let mut record = detail.clone();
        record["state"] = json!("sent");
        record["owner"] = json!(self.owner);
        record["sent_at_ms"] = json!(now_ms());
        record["ses_message_id"] = json!(ses_message_id);
        self.write("confirming send", key, record.to_string().into_bytes())
            .await
    }

    /// Deletes a won claim whose send SES surely did not accept, so a retry sends it.
    pub async fn release(&self, key: &str) -> Result<(), SendError> {
        match &self.at {
            ClaimsAt::S3 { s3, bucket } => {
                let url = S3Url {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                };
                s3.delete(&url)
                    .await
                    .map_err(|e| SendError::aws(format_args!("releasing claim {url}"), e))
            }
            ClaimsAt::Dir(dir) => {
                let path = dir.join(key);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Markers::local_error("releasing claim", &path, e)),
                }
            }
        }
    }

    /// Keeps a message that reaches none of `recipients` because the config refuses them
    /// (a relay to a domain outside `allow_domains`, a relay with no `[relay]`):
    /// `<prefix>/_undeliverable/<message-id>/kept-<sha256 of the recipients>.eml`, and beside
    /// it a `.json` with the envelope and the reasons. Written whole each time (a retry writes
    /// the same), so it is safe to repeat. Returns where the copy is.
    pub async fn keep_undeliverable(
        &self,
        message_id: &str,
        mail_from: &str,
        refused: &[(String, String)],
        bytes: &[u8],
    ) -> Result<String, SendError> {
        let recipients: Vec<String> = refused.iter().map(|(r, _)| r.clone()).collect();
        let name = send_name(message_id, "kept", &recipients);
        let base = self.under_prefix(&format!("_undeliverable/{name}"));
        let record = json!({
            "message_id": message_id,
            "mail_from": mail_from,
            "refused": refused
                .iter()
                .map(|(recipient, reason)| json!({ "recipient": recipient, "reason": reason }))
                .collect::<Vec<_>>(),
            "kept_at_ms": now_ms(),
        });
        let eml = format!("{base}.eml");
        self.write_as(
            "keeping an undeliverable message",
            &eml,
            bytes.to_vec(),
            "message/rfc822",
        )
        .await?;
        self.write(
            "keeping an undeliverable message",
            &format!("{base}.json"),
            record.to_string().into_bytes(),
        )
        .await?;
        Ok(self.describe(&eml))
    }

    /// The record at `key` (`None` when there is none). Only "not found" means none.
    pub async fn record(&self, key: &str) -> Result<Option<Value>, SendError> {
        if !self.exists("checking claim", key).await? {
            return Ok(None);
        }
        Ok(self
            .read("reading claim", key)
            .await?
            .map(|bytes| serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

/// 64 random bits in hex: which `claim` call wrote a claim record.
fn new_claim_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", hasher.finish())
}

/// `<message-id>/<kind>-<sha256 of the recipients>`: the one name of a send, for its claim
/// and for the outbox file `sluice run` writes. The recipients are lower-cased,
/// de-duplicated and sorted first; the message id keeps `[A-Za-z0-9_-]` (others become `_`).
pub fn send_name(message_id: &str, kind: &str, recipients: &[String]) -> String {
    let mut rcpts: Vec<String> = recipients.iter().map(|r| r.to_lowercase()).collect();
    rcpts.sort();
    rcpts.dedup();
    let mut hash = Sha256::new();
    for r in &rcpts {
        hash.update(r.as_bytes());
        hash.update(b"\n");
    }
    let id: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    format!("{id}/{kind}-{}", hex::encode(hash.finalize()))
}

/// Records of delivered mailbox copies in the markers bucket, for stores that cannot
/// overwrite a copy (LMTP, SMTP): `<prefix>/<message-id>/stored-<digest>.json`.
#[derive(Debug, Clone)]
pub struct S3DeliveredLog {
    /// Where the records go (the same place as the send claims).
    pub markers: Markers,
}

impl S3DeliveredLog {
    fn key(&self, message_id: &str, copy: &MailboxCopy) -> String {
        self.markers
            .marker_key(message_id, "stored", &[sluice_deliver::copy_digest(copy)])
    }
}

fn service(e: SendError) -> MailboxError {
    MailboxError::Record {
        source: std::sync::Arc::new(e),
    }
}

impl DeliveredLog for S3DeliveredLog {
    fn was_delivered<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
    ) -> BoxFuture<'a, Result<bool, MailboxError>> {
        Box::pin(async move {
            self.markers
                .exists("reading the delivery record", &self.key(message_id, copy))
                .await
                .map_err(service)
        })
    }

    fn record<'a>(
        &'a self,
        message_id: &'a str,
        copy: &'a MailboxCopy,
        at: &'a str,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let record = json!({
                "kind": "stored",
                "message_id": message_id,
                "recipient": copy.recipient,
                "folder": copy.folder,
                "at": at,
                "owner": self.markers.owner,
                "stored_at_ms": now_ms(),
            });
            self.markers
                .write(
                    "writing the delivery record",
                    &self.key(message_id, copy),
                    record.to_string().into_bytes(),
                )
                .await
                .map_err(service)
        })
    }
}

/// Claims, sends and confirms one send: the one protocol relay chunks and bounces share.
/// `send` is called only when the claim was won.
pub(crate) async fn send_once<F, Fut>(
    markers: &Markers,
    key: &str,
    detail: &Value,
    what: &str,
    send: F,
) -> Result<SendOutcome, SendError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, sluice_deliver::SendFailure>>,
{
    let mut detail = std::borrow::Cow::Borrowed(detail);
    let resend = match markers.claim(key, &detail).await? {
        Claim::AlreadySent => return Ok(SendOutcome::AlreadySent),
        Claim::Unconfirmed {
            owner,
            age_secs,
            resends,
        } => match markers.sends {
            SendGuarantee::AtMostOnce => {
                tracing::error!(
                    claim = key,
                    owner,
                    age_secs,
                    "UNCONFIRMED SEND: {what} was claimed {age_secs} s ago by {owner} and never confirmed; \
                     it may or may not have been sent and is NOT sent again ([relay] sends = \"at-most-once\"). \
                     Check the SES sending logs (or the smarthost's) and resend by hand if it is missing."
                );
                return Ok(SendOutcome::Unconfirmed);
            }
            SendGuarantee::AtLeastOnce => {
                detail = std::borrow::Cow::Owned(with_resend(&detail, &owner, resends + 1));
                markers.take_over(key, &detail).await?;
                tracing::warn!(
                    claim = key,
                    owner,
                    age_secs,
                    resends = resends + 1,
                    "RESENDING UNCONFIRMED SEND: {what} was claimed {age_secs} s ago by {owner} and never confirmed; \
                     sending it again ([relay] sends = \"at-least-once\"): the recipient may get it twice"
                );
                true
            }
        },
        Claim::Won => false,
    };
    let ses_id = match send().await {
        Ok(id) => id,
        Err(e) => {
            let maybe_sent = e.maybe_sent();
            let err = SendError::Send {
                what: what.to_string(),
                failure: Box::new(e),
            };
            if maybe_sent {
                tracing::error!(
                    claim = key,
                    "{what}: it may have been accepted although the call failed; the claim stays, so it is not sent again"
                );
            } else if let Err(release) = markers.release(key).await {
                tracing::error!(
                    claim = key,
                    error = %release,
                    "{what}: not sent, and the claim could not be released; it will be reported unconfirmed and not sent"
                );
            }
            return Err(err);
        }
    };
    if let Err(e) = markers.confirm(key, &detail, &ses_id).await {
        // SES accepted it: the send is done. The claim stays `claimed`, which a retry takes
        // for unconfirmed and does not send again.
        tracing::warn!(claim = key, ses_id, error = %e, "{what}: sent, but the claim could not be marked sent");
    }
    Ok(if resend {
        SendOutcome::Resent { ses_id }
    } else {
        SendOutcome::Sent { ses_id }
    })
}

/// `detail` with the resend history of a claim taken over from `previous_owner`.
fn with_resend(detail: &Value, previous_owner: &str, resends: u64) -> Value {
    let mut detail = detail.clone();
    detail["resend_of"] = json!(previous_owner);
    detail["resends"] = json!(resends);
    detail
}

/// What [`send_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// Sent now.
    Sent {
        /// The SES message id.
        ses_id: String,
    },
    /// Claimed earlier and never confirmed, and sent again now (at least once).
    Resent {
        /// The SES message id of this send.
        ses_id: String,
    },
    /// Sent by an earlier attempt.
    AlreadySent,
    /// Claimed earlier and never confirmed: not sent again (at most once).
    Unconfirmed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_order_and_case() {
        let m = Markers::new(
            S3::for_endpoint("http://127.0.0.1:9", "us-east-1"),
            "b".into(),
            "markers/".into(),
            "me".into(),
        );
        let a = m.marker_key("msg-1", "relay", &["B@x.org".into(), "a@y.org".into()]);
        let b = m.marker_key(
            "msg-1",
            "relay",
            &["a@y.org".into(), "b@x.org".into(), "A@y.org".into()],
        );
        assert_eq!(a, b);
        assert!(
            a.starts_with("markers/msg-1/relay-") && a.ends_with(".json"),
            "{a}"
        );
        assert_eq!(a.len(), "markers/msg-1/relay-.json".len() + 64);
        assert_ne!(
            a,
            m.marker_key("msg-1", "bounce", &["a@y.org".into(), "b@x.org".into()])
        );
        assert_ne!(
            a,
            m.marker_key("msg-2", "relay", &["a@y.org".into(), "b@x.org".into()])
        );
        assert_ne!(a, m.marker_key("msg-1", "relay", &["a@y.org".into()]));
        assert!(m
            .marker_key("../../x", "relay", &[])
            .starts_with("markers/______x/"));
    }

    #[test]
    fn owner_ids_differ() {
        let (a, b) = (Markers::new_owner_id(), Markers::new_owner_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("/{}/", std::process::id())), "{a}");
    }

    #[test]
    fn a_dead_owner_on_this_machine_is_gone() {
        // A process that ran here and exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = host_name();
        assert!(owner_is_gone(&format!("{host}/{dead}/00ff")));
        // This process, another machine, or an id of another shape: not gone.
        assert!(!owner_is_gone(&Markers::new_owner_id()));
        assert!(!owner_is_gone(&format!("elsewhere-{host}/{dead}/00ff")));
        assert!(!owner_is_gone(&format!("{host}/1/00ff")));
        assert!(!owner_is_gone("me"));
    }
}
