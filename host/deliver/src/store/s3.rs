//! `[store] kind = "s3"`: S3 mailboxes, one object per message, recipient and folder.

use std::sync::Arc;

use serde::Deserialize;
use sluice_aws::{Encryption, S3Url, S3};

use crate::config::{
    read_section, Checked, RecordsAt, StoreConfig, StoreContext, StoreKind, StoreTarget,
    TargetClients,
};
use crate::names::{mailbox_segments, SegmentError};
use crate::{
    BoxFuture, MailboxError, MailboxStore, SetupError, StoreOutcome, StoreRequest, TraceMeta,
};

/// `[store] kind = "s3"`.
pub const KIND: StoreKind = StoreKind { name: "s3", read };

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    /// The bucket.
    bucket: String,
    /// The key prefix.
    prefix: Option<String>,
    /// `"AES256"` (SSE-S3, the default) or `"aws:kms"`.
    sse: Option<String>,
    /// The KMS key for `sse = "aws:kms"` (id, ARN or `alias/NAME`).
    kms_key_id: Option<String>,
}

/// `[store] kind = "s3"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3StoreConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// How stored messages are encrypted at rest.
    pub encryption: Encryption,
}

fn read(table: toml::Table, _: &StoreContext<'_>) -> Checked<StoreConfig> {
    let section: S3Section = read_section("store", table).map_err(|e| {
        format!("{e} (kind = \"s3\" takes `bucket = \"BUCKET\"` and optionally `prefix`, `sse`, `kms_key_id`)")
    })?;
    if section.bucket.is_empty() {
        return Err("store: kind = \"s3\" needs `bucket = \"BUCKET\"`".into());
    }
    let encryption = encryption(section.sse.as_deref(), section.kms_key_id)?;
    Ok(Arc::new(S3StoreConfig {
        encryption,
        bucket: section.bucket,
        prefix: section
            .prefix
            .unwrap_or_default()
            .trim_matches('/')
            .to_string(),
    }))
}

/// `sse` and `kms_key_id`, checked together: a key without `sse = "aws:kms"` would be
/// silently unused, so it is refused.
pub(crate) fn encryption(
    sse: Option<&str>,
    kms_key_id: Option<String>,
) -> Result<Encryption, String> {
    match (sse, kms_key_id) {
        (None | Some("AES256"), None) => Ok(Encryption::S3),
        (None | Some("AES256"), Some(_)) => Err(
            "store: `kms_key_id` needs `sse = \"aws:kms\"` (SSE-S3, the default, uses no KMS key)"
                .into(),
        ),
        (Some("aws:kms"), Some(key)) if key.trim().is_empty() => Err(
            "store: `kms_key_id` is empty: name a key id, ARN or alias/NAME, or leave it out for the aws/s3 key"
                .into(),
        ),
        (Some("aws:kms"), key_id) => Ok(Encryption::Kms { key_id }),
        (Some(other), _) => Err(format!(
            "store: sse = {other:?} is not known: \"AES256\" (SSE-S3, the default) or \"aws:kms\" (SSE-KMS, with `kms_key_id` or the aws/s3 key)"
        )),
    }
}

impl StoreTarget for S3StoreConfig {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn home(&self) -> Option<RecordsAt> {
        Some(RecordsAt::S3 {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        })
    }

    fn needs_delivered_log(&self) -> bool {
        false
    }

    fn delivered_at(&self) -> Option<&RecordsAt> {
        None
    }

    fn build(&self, clients: &TargetClients) -> Result<Arc<dyn MailboxStore>, SetupError> {
        Ok(Arc::new(S3Mailboxes {
            s3: clients.s3.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            encryption: self.encryption.clone(),
        }))
    }
}

/// S3's limit for a key, in bytes.
const MAX_KEY: usize = 1024;

/// S3's limit for all user metadata of an object (names and values), in bytes.
const MAX_METADATA: usize = 2048;

/// `banner:ok,junk:ok`, cut with `...` so it fits in `max` bytes.
fn compact(trace: &TraceMeta, max: usize) -> String {
    let mut out = String::new();
    for (i, (step, outcome)) in trace.steps.iter().enumerate() {
        let item = format!("{}{}:{}", if i > 0 { "," } else { "" }, step, outcome);
        if out.len() + item.len() > max {
            while out.len() + 3 > max && !out.is_empty() {
                out.pop();
            }
            out.push_str(&"..."[..3.min(max - out.len())]);
            break;
        }
        out.push_str(&item);
    }
    out
}

/// Mailboxes as S3 objects: `<prefix>/<domain>/<local-part>/<folder>/<message-id>.eml`.
///
/// The key derives only from the recipient, folder and SES message id, so storing the same
/// message again (an SQS redelivery) writes the same key: idempotent by construction. Objects
/// are written with SSE-S3 (AES256).
#[derive(Debug, Clone)]
pub struct S3Mailboxes {
    /// The client.
    pub s3: S3,
    /// The bucket (`[store] bucket`).
    pub bucket: String,
    /// The key prefix (`[store] prefix`), without a trailing `/`; may be empty.
    pub prefix: String,
    /// Server-side encryption of each stored copy (`[store] sse`, `kms_key_id`).
    pub encryption: Encryption,
}

impl S3Mailboxes {
    /// The key for one copy: the same segments as the directory store
    /// ([`mailbox_segments`]: domain and local part ASCII-lower-cased, every
    /// segment escaped injectively), so no two addresses share a mailbox and no input can
    /// leave its own. A name that cannot be stored (empty, a segment over 255 bytes escaped,
    /// a key over S3's 1024 bytes) is refused, not cut.
    pub fn key_for(
        &self,
        recipient: &str,
        folder: &str,
        message_id: &str,
    ) -> Result<String, SegmentError> {
        let parts = mailbox_segments(recipient, folder, message_id)?.join("/");
        let prefix = self.prefix.trim_matches('/');
        let key = if prefix.is_empty() {
            parts
        } else {
            format!("{prefix}/{parts}")
        };
        if key.len() > MAX_KEY {
            return Err(SegmentError::TooLong {
                what: "mailbox key",
                shown: key[..key.floor_char_boundary(60)].to_string(),
                len: key.len(),
                max: MAX_KEY,
            });
        }
        Ok(key)
    }

    /// Stores `bytes` as the recipient's copy in `folder` and returns its key. The object
    /// metadata carries the trace: `sluice-message-id`, `sluice-recipient`, `sluice-folder`
    /// and `sluice-steps` (cut to stay within S3's 2 KB metadata limit).
    pub async fn store(
        &self,
        recipient: &str,
        folder: &str,
        message_id: &str,
        bytes: Vec<u8>,
        trace: &TraceMeta,
    ) -> Result<String, MailboxError> {
        let key = self
            .key_for(recipient, folder, message_id)
            .map_err(|source| MailboxError::Unstorable {
                recipient: recipient.to_string(),
                source,
            })?;
        let mut metadata = vec![
            ("sluice-message-id".to_string(), header_safe(message_id)),
            ("sluice-recipient".to_string(), header_safe(recipient)),
            ("sluice-folder".to_string(), header_safe(folder)),
        ];
        let used: usize = metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        let name = "sluice-steps";
        let budget = MAX_METADATA.saturating_sub(used + name.len() + 64);
        metadata.push((name.to_string(), header_safe(&compact(trace, budget / 3))));
        let url = S3Url {
            bucket: self.bucket.clone(),
            key,
        };
        self.s3
            .put_encrypted(&url, bytes, "message/rfc822", &metadata, &self.encryption)
            .await
            .map_err(|source| MailboxError::S3 {
                what: format!("storing message {message_id} for {recipient} in {folder}"),
                source,
            })?;
        Ok(url.key)
    }
}

impl MailboxStore for S3Mailboxes {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn overwrites(&self) -> bool {
        true
    }

    fn store<'a>(&'a self, request: StoreRequest<'a>) -> BoxFuture<'a, Vec<StoreOutcome>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(request.copies.len());
            for copy in request.copies {
                let result = match self.key_for(&copy.recipient, &copy.folder, request.message_id) {
                    Err(source) => Err(MailboxError::Unstorable {
                        recipient: copy.recipient.clone(),
                        source,
                    }),
                    Ok(_) => S3Mailboxes::store(
                        self,
                        &copy.recipient,
                        &copy.folder,
                        request.message_id,
                        request.bytes.to_vec(),
                        request.trace,
                    )
                    .await
                    .map(|key| format!("s3://{}/{key}", self.bucket)),
                };
                out.push(StoreOutcome {
                    copy: copy.clone(),
                    result,
                });
            }
            out
        })
    }
}

/// An HTTP-header-safe metadata value: printable ASCII kept, every other byte `%XX`.
/// (A `%XX` value is worst case 3 times as long: callers give `compact` a third of the budget.)
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(prefix: &str) -> S3Mailboxes {
        S3Mailboxes {
            s3: S3::for_endpoint("http://127.0.0.1:9", "us-east-1"),
            bucket: "b".into(),
            prefix: prefix.into(),
            encryption: Encryption::S3,
        }
    }

    fn read_s3(text: &str) -> Result<(), String> {
        crate::config::tests::read_with(read, text).map(|_| ())
    }

    #[test]
    fn encryption_is_sse_s3_unless_kms_is_named() {
        assert_eq!(encryption(None, None), Ok(Encryption::S3));
        assert_eq!(encryption(Some("AES256"), None), Ok(Encryption::S3));
        assert_eq!(
            encryption(Some("aws:kms"), None),
            Ok(Encryption::Kms { key_id: None })
        );
        assert_eq!(
            encryption(Some("aws:kms"), Some("alias/mail".into())),
            Ok(Encryption::Kms {
                key_id: Some("alias/mail".into())
            })
        );
        read_s3("bucket = \"b\"\nsse = \"aws:kms\"\nkms_key_id = \"k\"").unwrap();
        let e = read_s3("bucket = \"b\"\nkms_key_id = \"alias/mail\"").unwrap_err();
        assert!(e.contains("needs `sse = \"aws:kms\"`"), "{e}");
        let e = read_s3("bucket = \"b\"\nsse = \"kms\"").unwrap_err();
        assert!(e.contains("\"AES256\"") && e.contains("\"aws:kms\""), "{e}");
        let e = read_s3("bucket = \"b\"\nsse = \"aws:kms\"\nkms_key_id = \" \"").unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn key_layout() {
        assert_eq!(
            boxes("mailboxes")
                .key_for("Bob.Smith@Example.COM", "INBOX", "abc123")
                .unwrap(),
            "mailboxes/example.com/bob.smith/INBOX/abc123.eml"
        );
        assert_eq!(
            boxes("").key_for("bob@example.com", "Junk", "m1").unwrap(),
            "example.com/bob/Junk/m1.eml"
        );
        assert_eq!(
            boxes("/a/b/")
                .key_for("bob@example.com", "Junk", "m1")
                .unwrap(),
            "a/b/example.com/bob/Junk/m1.eml"
        );
    }

    #[test]
    fn keys_cannot_escape_or_collide() {
        let b = boxes("p");
        assert_eq!(
            b.key_for("../etc@example.com", "..", "../../x").unwrap(),
            "p/example.com/%2E.%2Fetc/%2E./%2E.%2F..%2Fx.eml"
        );
        assert_eq!(
            b.key_for("a/b@ex/ample.com", "a/b", "m\r\n1").unwrap(),
            "p/ex%2Fample.com/a%2Fb/a%2Fb/m%0D%0A1.eml"
        );
        assert!(b.key_for("nobody", "INBOX", "m").is_err(), "no domain");
        let long = |c: char| format!("{}{c}@example.com", "x".repeat(200));
        let mut keys: Vec<String> = ["a/b@x.org", "a_b@x.org", "a\\b@x.org", "a%2Fb@x.org"]
            .iter()
            .map(|r| b.key_for(r, "INBOX", "m").unwrap())
            .chain(
                [long('a'), long('b')]
                    .iter()
                    .map(|r| b.key_for(r, "INBOX", "m").unwrap()),
            )
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "{keys:?}");
        for key in &keys {
            assert!(
                key.split('/').all(|s| !s.is_empty() && !s.starts_with('.')),
                "{key}"
            );
        }
        let err = b
            .key_for(&format!("{}@example.com", "é".repeat(300)), "x", "m")
            .unwrap_err();
        assert!(err.to_string().contains("local part"), "{err}");
    }

    #[test]
    fn compact_trace_fits() {
        let trace = TraceMeta {
            steps: vec![("banner".into(), "ok".into()), ("junk".into(), "ok".into())],
        };
        assert_eq!(compact(&trace, 100), "banner:ok,junk:ok");
        assert_eq!(compact(&trace, 12), "banner:ok...");
        let many = TraceMeta {
            steps: (0..500)
                .map(|i| (format!("step{i}"), "ok".into()))
                .collect(),
        };
        let c = compact(&many, 600);
        assert!(c.len() <= 600 && c.ends_with("..."), "{}", c.len());
        assert_eq!(header_safe("a é%\n"), "a %C3%A9%25%0A");
    }
}
