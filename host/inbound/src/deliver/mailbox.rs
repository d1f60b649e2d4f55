//! S3 mailboxes: one object per message, recipient and folder.

use sluice_aws::{S3Url, S3};

use super::DeliverError;

/// The longest key component (local part, domain, folder, message id), in bytes. S3 allows
/// 1024 bytes per key; four capped components and a prefix stay well within it.
const MAX_COMPONENT: usize = 200;

/// S3's limit for all user metadata of an object (names and values), in bytes.
const MAX_METADATA: usize = 2048;

/// What the chain did, stored with each mailbox copy as object metadata so an operator can
/// see why a message landed where it did without the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceMeta {
    /// (step name, outcome) in chain order, e.g. `("banner", "ok")`, `("junk", "timeout")`.
    pub steps: Vec<(String, String)>,
}

impl TraceMeta {
    /// `banner:ok,junk:ok`, cut with `...` so it fits in `max` bytes.
    fn compact(&self, max: usize) -> String {
        let mut out = String::new();
        for (i, (step, outcome)) in self.steps.iter().enumerate() {
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
}

impl S3Mailboxes {
    /// The key for one copy. Domain and local part are lower-cased; every component is made
    /// safe to be one path segment (no `/` or `\`, no leading `.`, no control characters,
    /// at most 200 bytes), so no input can escape its mailbox.
    pub fn key_for(&self, recipient: &str, folder: &str, message_id: &str) -> String {
        let (local, domain) = recipient.rsplit_once('@').unwrap_or((recipient, ""));
        let parts = [
            segment(&domain.trim_end_matches('.').to_lowercase()),
            segment(&local.to_lowercase()),
            segment(folder),
            format!("{}.eml", segment(message_id)),
        ];
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            parts.join("/")
        } else {
            format!("{prefix}/{}", parts.join("/"))
        }
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
    ) -> Result<String, DeliverError> {
        let key = self.key_for(recipient, folder, message_id);
        let mut metadata = vec![
            ("sluice-message-id".to_string(), header_safe(message_id)),
            ("sluice-recipient".to_string(), header_safe(recipient)),
            ("sluice-folder".to_string(), header_safe(folder)),
        ];
        let used: usize = metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        let name = "sluice-steps";
        let budget = MAX_METADATA.saturating_sub(used + name.len() + 64);
        metadata.push((name.to_string(), header_safe(&trace.compact(budget / 3))));
        let url = S3Url {
            bucket: self.bucket.clone(),
            key,
        };
        self.s3
            .put_with_metadata(&url, bytes, "message/rfc822", &metadata)
            .await
            .map_err(|e| {
                DeliverError::aws(
                    format_args!("storing message {message_id} for {recipient} in {folder}"),
                    e,
                )
            })?;
        Ok(url.key)
    }
}

/// One key segment: `/`, `\` and control characters become `_`, a leading `.` becomes `_`
/// (no `.`, `..` or hidden names), empty becomes `_`, cut at 200 bytes on a character
/// boundary.
fn segment(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.len() > MAX_COMPONENT {
        out.truncate(out.floor_char_boundary(MAX_COMPONENT));
    }
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
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
        }
    }

    #[test]
    fn key_layout() {
        assert_eq!(
            boxes("mailboxes").key_for("Bob.Smith@Example.COM", "INBOX", "abc123"),
            "mailboxes/example.com/bob.smith/INBOX/abc123.eml"
        );
        assert_eq!(
            boxes("").key_for("bob@example.com", "Junk", "m1"),
            "example.com/bob/Junk/m1.eml"
        );
        assert_eq!(
            boxes("/a/b/").key_for("bob@example.com", "Junk", "m1"),
            "a/b/example.com/bob/Junk/m1.eml"
        );
    }

    #[test]
    fn keys_cannot_escape() {
        let b = boxes("p");
        assert_eq!(
            b.key_for("../etc@example.com", "..", "../../x"),
            "p/example.com/_._etc/_./_._.._x.eml"
        );
        assert_eq!(
            b.key_for("a/b@ex/ample.com", "a/b", "m\r\n1"),
            "p/ex_ample.com/a_b/a_b/m__1.eml"
        );
        assert_eq!(
            b.key_for("nobody", "", ".hidden"),
            "p/_/nobody/_/_hidden.eml"
        );
        let long = b.key_for(&format!("{}@example.com", "é".repeat(300)), "x", "m");
        let local = long.split('/').nth(2).unwrap();
        assert!(local.len() <= MAX_COMPONENT && local.starts_with('é'));
        for key in [
            b.key_for("../etc@example.com", "..", "../../x"),
            b.key_for("x@..", "a", "b"),
        ] {
            assert!(
                key.split('/').all(|s| !s.is_empty() && !s.starts_with('.')),
                "{key}"
            );
        }
    }

    #[test]
    fn compact_trace_fits() {
        let trace = TraceMeta {
            steps: vec![("banner".into(), "ok".into()), ("junk".into(), "ok".into())],
        };
        assert_eq!(trace.compact(100), "banner:ok,junk:ok");
        assert_eq!(trace.compact(12), "banner:ok...");
        let many = TraceMeta {
            steps: (0..500)
                .map(|i| (format!("step{i}"), "ok".into()))
                .collect(),
        };
        let c = many.compact(600);
        assert!(c.len() <= 600 && c.ends_with("..."), "{}", c.len());
        assert_eq!(header_safe("a é%\n"), "a %C3%A9%25%0A");
    }
}
