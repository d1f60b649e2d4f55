//! Sluice's AWS clients, configured from the standard chain (environment, profile, role).
//! `AWS_ENDPOINT_URL` points them at an emulator; S3 then uses path-style addressing.

mod blocking;
mod ses;
mod sqs;
mod timeouts;

pub use blocking::BlockingS3;
pub use ses::{retry_now, SendRetry, Ses, SEND_TIMEOUT, SES_MAX_RAW_BYTES};
pub use sqs::{Sqs, SqsMessage};
pub use timeouts::{
    attempt_timeout, ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT_ENV, MAX_ATTEMPTS, OPERATION_TIMEOUT,
};

use aws_sdk_s3::primitives::ByteStream;

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key (may be empty for a bucket root).
    pub key: String,
}

impl S3Url {
    /// Parses `s3://bucket/key`.
    pub fn parse(url: &str) -> Result<S3Url, AwsError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| AwsError::BadUrl(url.to_string(), "it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(AwsError::BadUrl(url.to_string(), "the bucket is empty"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Resolves a path relative to this object's "directory" (`s3://b/a/c.toml` + `x.wasm`
    /// = `s3://b/a/x.wasm`); an `s3://` URL is returned as it is.
    pub fn join(&self, relative: &str) -> Result<S3Url, AwsError> {
        if relative.starts_with("s3://") {
            return S3Url::parse(relative);
        }
        let dir = match self.key.rfind('/') {
            Some(i) => &self.key[..=i],
            None => "",
        };
        Ok(S3Url {
            bucket: self.bucket.clone(),
            key: format!("{dir}{}", relative.trim_start_matches('/')),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An AWS call that failed, with the object it was about.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// The async runtime for the blocking client could not start.
    #[error("cannot start the async runtime for AWS calls: {0}")]
    Runtime(#[source] std::sync::Arc<std::io::Error>),
    /// Not an `s3://bucket/key` URL.
    #[error("{0:?} is not an s3://bucket/key URL: {1}")]
    BadUrl(String, &'static str),
    /// The SQS call failed.
    #[error("SQS {op} {queue}: {source}")]
    Sqs {
        /// `ReceiveMessage`, `DeleteMessage`, ...
        op: &'static str,
        /// The queue URL.
        queue: String,
        /// What the SDK said.
        #[source]
        source: SdkFailure,
    },
    /// The S3 call failed.
    #[error("S3 {op} {url}: {source}")]
    S3 {
        /// `GetObject`, `PutObject`, ...
        op: &'static str,
        /// The object.
        url: String,
        /// What the SDK said (with the service's error code when there is one).
        #[source]
        source: SdkFailure,
    },
    /// The object does not exist (S3's `NoSuchKey`): reading it again cannot succeed.
    #[error("S3 {op} {url}: no such object")]
    S3NotFound {
        /// `GetObject`.
        op: &'static str,
        /// The object.
        url: String,
    },
    /// The SES call failed.
    #[error("SES {op} {what}: {source}")]
    Ses {
        /// `SendEmail`, `CreateEmailIdentity`, ...
        op: &'static str,
        /// For what (the sender and number of recipients, the identity).
        what: String,
        /// What the SDK said (with the service's error code when there is one).
        #[source]
        source: SdkFailure,
        /// SES refused the request itself (rejected message, unverified identity, bad
        /// request): sending the same request again cannot succeed. Throttling, timeouts and
        /// server errors are not permanent.
        permanent: bool,
        /// SES may have accepted the message although the call failed (a timeout, a response
        /// that was lost or unreadable): sending again could deliver it twice. `false` when SES
        /// answered with an error, or the request never left.
        maybe_sent: bool,
    },
}

/// An object's bytes and ETag.
#[derive(Debug, Clone)]
pub struct S3Object {
    /// The body.
    pub bytes: Vec<u8>,
    /// The ETag, if S3 sent one.
    pub etag: Option<String>,
}

/// One object of a listing ([`S3::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// The size in bytes.
    pub size: u64,
    /// When it was last written, milliseconds since the Unix epoch (0 if S3 did not say).
    pub modified_ms: i64,
}

/// What [`S3::put_if_absent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created the object.
    Yes {
        /// Its ETag, if S3 sent one.
        etag: Option<String>,
    },
    /// An object with that key existed already; nothing was written.
    Exists,
}

/// The S3 client.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
}

/// What an AWS call failed with, kept whole: its `source()` is the SDK's error (or the
/// error reading a response body), its text the SDK's own rendering of the whole chain
/// (service code, message, cause), which the SDK error's `Display` alone leaves out.
/// (One pointer wide: every `AwsError` carries one, and errors travel by value.)
#[derive(Debug, Clone)]
pub struct SdkFailure(std::sync::Arc<Failure>);

#[derive(Debug)]
struct Failure {
    shown: String,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl SdkFailure {
    /// `error`, shown with its whole chain.
    pub fn of<E: std::error::Error + Send + Sync + 'static>(error: E) -> SdkFailure {
        SdkFailure(std::sync::Arc::new(Failure {
            shown: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
            error: Box::new(error),
        }))
    }
}

impl std::fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.shown)
    }
}

impl std::error::Error for SdkFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.error.as_ref())
    }
}

impl S3 {
    /// A client from the standard AWS configuration chain, with Sluice's timeouts and
    /// retries ([`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`], [`MAX_ATTEMPTS`]).
    pub async fn from_env() -> S3 {
        let shared = aws_config::load_from_env().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(timeouts::retry_config())
            .timeout_config(timeouts::timeout_config(std::time::Duration::ZERO));
        if std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        {
            builder = builder.force_path_style(true);
        }
        S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
        }
    }

    /// A client for an explicit endpoint with static credentials (tests, emulators), with
    /// the same timeouts and retries as [`S3::from_env`].
    pub fn for_endpoint(endpoint: &str, region: &str) -> S3 {
        let creds =
            aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "static");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .retry_config(timeouts::retry_config())
            .timeout_config(timeouts::timeout_config(std::time::Duration::ZERO))
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    /// Creates a bucket (no error if this account already owns it).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), AwsError> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsError::S3 {
                op: "CreateBucket",
                url: format!("s3://{bucket}"),
                source: SdkFailure::of(e),
            }),
        }
    }

    /// Deletes an object.
    pub async fn delete(&self, url: &S3Url) -> Result<(), AwsError> {
        self.client
            .delete_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::S3 {
                op: "DeleteObject",
                url: url.to_string(),
                source: SdkFailure::of(e),
            })
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Reads an object.
    pub async fn get(&self, url: &S3Url) -> Result<S3Object, AwsError> {
        let err = |source: SdkFailure| AwsError::S3 {
            op: "GetObject",
            url: url.to_string(),
            source,
        };
        let out = self
            .client
            .get_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|se| se.is_no_such_key()) {
                    AwsError::S3NotFound {
                        op: "GetObject",
                        url: url.to_string(),
                    }
                } else {
                    err(SdkFailure::of(e))
                }
            })?;
        let etag = out.e_tag().map(str::to_string);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| err(SdkFailure::of(e)))?
            .into_bytes()
            .to_vec();
        Ok(S3Object { bytes, etag })
    }

    /// Every object under `prefix` in `bucket` (`ListObjectsV2`, all pages), in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::S3 {
                    op: "ListObjectsV2",
                    url: format!("s3://{bucket}/{prefix}"),
                    source: SdkFailure::of(e),
                })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(Listed {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified_ms: object
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The object's ETag without reading it (`HeadObject`).
    pub async fn etag(&self, url: &S3Url) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
            .map_err(|e| AwsError::S3 {
                op: "HeadObject",
                url: url.to_string(),
                source: SdkFailure::of(e),
            })?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// Whether the object exists (`HeadObject`): `false` only when S3 answers that it does
    /// not; every other failure (access denied, network) is an error, so a caller never takes
    /// "could not check" for "absent".
    pub async fn exists(&self, url: &S3Url) -> Result<bool, AwsError> {
        match self
            .client
            .head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::S3 {
                op: "HeadObject",
                url: url.to_string(),
                source: SdkFailure::of(e),
            }),
        }
    }

    /// Writes an object (server-side encryption on).
    pub async fn put(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Option<String>, AwsError> {
        self.put_with_metadata(url, bytes, content_type, &[]).await
    }

    /// Creates an object only if no object has that key (`PutObject` with `If-None-Match: *`),
    /// server-side encryption on. S3 decides atomically: of two writers racing for one key,
    /// exactly one gets [`Created::Yes`]; the other gets [`Created::Exists`] (S3's 412
    /// PreconditionFailed). A 409 ConditionalRequestConflict (another conditional write to the
    /// key is in flight) is an error: the caller retries later and then sees the winner.
    pub async fn put_if_absent(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Created, AwsError> {
        let result = self
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_type(content_type)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Created::Yes {
                etag: out.e_tag().map(str::to_string),
            }),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                Ok(Created::Exists)
            }
            Err(e) => Err(AwsError::S3 {
                op: "PutObject(If-None-Match)",
                url: url.to_string(),
                source: SdkFailure::of(e),
            }),
        }
    }

    /// Writes an object with user metadata (`x-amz-meta-NAME`; give names without the
    /// prefix), server-side encryption on (SSE-S3). S3 limits the user metadata to 2 KB in all.
    pub async fn put_with_metadata(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(String, String)],
    ) -> Result<Option<String>, AwsError> {
        self.put_encrypted(url, bytes, content_type, metadata, &Encryption::S3)
            .await
    }

    /// [`put_with_metadata`](S3::put_with_metadata) with the server-side encryption named:
    /// SSE-S3, or SSE-KMS under the bucket's default AWS-managed key or a named key.
    pub async fn put_encrypted(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(String, String)],
        encryption: &Encryption,
    ) -> Result<Option<String>, AwsError> {
        let mut request = self.encrypted_put(url, content_type, encryption);
        for (name, value) in metadata {
            request = request.metadata(name, value);
        }
        let out = request
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| AwsError::S3 {
                op: "PutObject",
                url: url.to_string(),
                source: SdkFailure::of(e),
            })?;
        Ok(out.e_tag().map(str::to_string))
    }
}

impl S3 {
    /// A `PutObject` of `url` with its content type and server-side encryption set: what
    /// every encrypted write shares.
    fn encrypted_put(
        &self,
        url: &S3Url,
        content_type: &str,
        encryption: &Encryption,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        use aws_sdk_s3::types::ServerSideEncryption;
        let request = self
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_type(content_type);
        match encryption {
            Encryption::S3 => request.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms { key_id } => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        }
    }

    /// [`put_encrypted`](S3::put_encrypted) under Object Lock: the object version cannot be
    /// deleted or overwritten before `lock.until_epoch_s` (compliance: by nobody; governance:
    /// only with `s3:BypassGovernanceRetention`). The bucket must have Object Lock enabled;
    /// S3 refuses the write otherwise (`InvalidRequest`).
    pub async fn put_locked(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
        encryption: &Encryption,
        lock: &ObjectLock,
    ) -> Result<Option<String>, AwsError> {
        use aws_sdk_s3::types::ObjectLockMode;
        let request = self
            .encrypted_put(url, content_type, encryption)
            .object_lock_mode(match lock.mode {
                LockMode::Compliance => ObjectLockMode::Compliance,
                LockMode::Governance => ObjectLockMode::Governance,
            })
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                lock.until_epoch_s,
            ));
        let out = request
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| AwsError::S3 {
                op: "PutObject(ObjectLock)",
                url: url.to_string(),
                source: SdkFailure::of(e),
            })?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// Whether the bucket has Object Lock enabled (`GetObjectLockConfiguration`): `false`
    /// when S3 answers that it has none; every other failure is an error.
    pub async fn object_lock_enabled(&self, bucket: &str) -> Result<bool, AwsError> {
        match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| e.as_str() == "Enabled")),
            Err(e)
                if e.as_service_error()
                    .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::S3 {
                op: "GetObjectLockConfiguration",
                url: format!("s3://{bucket}"),
                source: SdkFailure::of(e),
            }),
        }
    }

    /// The next level of "directories" under `prefix`: the common prefixes of
    /// `ListObjectsV2` with delimiter `/` (each ending in `/`), all pages, in key order.
    pub async fn list_prefixes(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::S3 {
                    op: "ListObjectsV2",
                    url: format!("s3://{bucket}/{prefix}"),
                    source: SdkFailure::of(e),
                })?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

/// S3 Object Lock retention for one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Compliance or governance.
    pub mode: LockMode,
    /// Retained until this time (seconds since the epoch).
    pub until_epoch_s: i64,
}

/// S3 Object Lock's two modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, the root account included, can delete the version before the date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete it (with the bypass header).
    Governance,
}

/// Server-side encryption for an object Sluice writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Encryption {
    /// SSE-S3 (AES-256 with keys S3 manages): no KMS permission or cost.
    #[default]
    S3,
    /// SSE-KMS: under `key_id` (a key id, ARN or `alias/NAME`), or S3's AWS-managed
    /// `aws/s3` key when none is named. The writer needs `kms:GenerateDataKey` on the key,
    /// and every reader `kms:Decrypt`.
    Kms {
        /// The KMS key; `None` for the AWS-managed key.
        key_id: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://acme-rules/chains/prod.toml").unwrap();
        assert_eq!(u.bucket, "acme-rules");
        assert_eq!(u.key, "chains/prod.toml");
        assert_eq!(
            u.join("banner.wasm").unwrap().to_string(),
            "s3://acme-rules/chains/banner.wasm"
        );
        assert_eq!(
            u.join("s3://other/x.wasm").unwrap().to_string(),
            "s3://other/x.wasm"
        );
        assert!(S3Url::parse("http://x/y").is_err());
        assert!(S3Url::parse("s3:///y").is_err());
    }
}
