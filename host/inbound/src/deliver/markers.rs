//! Idempotency records for sends (relay chunks, bounces), as small S3 objects.
//!
//! A send is made only when its marker is absent, and the marker is written right after SES
//! accepted the send. A crash (or a failed marker write) between the two sends that chunk
//! again on the retry: the one at-least-once window. Everything else is exactly once.
//! Markers are never read for anything but existence; give their prefix a lifecycle rule
//! (e.g. expire after 30 days, longer than any SQS retention) to keep the bucket small.

use sha2::{Digest, Sha256};
use sluice_aws::{S3Url, S3};

use super::DeliverError;

/// Where the markers live.
#[derive(Debug, Clone)]
pub struct Markers {
    /// The client.
    pub s3: S3,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without a trailing `/`; may be empty.
    pub prefix: String,
}

impl Markers {
    /// `<prefix>/<message-id>/<kind>-<sha256 of the recipients>.json`. The recipients are
    /// lower-cased, de-duplicated and sorted first, so the key does not depend on their order
    /// or case.
    pub fn marker_key(&self, message_id: &str, kind: &str, recipients: &[String]) -> String {
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
        let name = format!("{id}/{kind}-{}.json", hex::encode(hash.finalize()));
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        }
    }

    fn url(&self, key: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    /// Whether the marker exists. Only S3's "not found" means no; any other failure is an
    /// error, so a send is never made without knowing it was not made before.
    pub async fn is_done(&self, key: &str) -> Result<bool, DeliverError> {
        let url = self.url(key);
        self.s3
            .exists(&url)
            .await
            .map_err(|e| DeliverError::aws(format_args!("checking send marker {url}"), e))
    }

    /// Writes the marker with `detail` (what was sent, the SES message id) as its JSON body.
    pub async fn record(&self, key: &str, detail: serde_json::Value) -> Result<(), DeliverError> {
        let url = self.url(key);
        self.s3
            .put(&url, detail.to_string().into_bytes(), "application/json")
            .await
            .map(|_| ())
            .map_err(|e| DeliverError::aws(format_args!("writing send marker {url}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_order_and_case() {
        let m = Markers {
            s3: S3::for_endpoint("http://127.0.0.1:9", "us-east-1"),
            bucket: "b".into(),
            prefix: "markers/".into(),
        };
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
}
