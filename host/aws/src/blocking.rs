//! S3 for synchronous callers (chain loading, the CLI): the async client on a private
//! current-thread runtime. `sluice-chain` builds its plugin fetcher and config source for
//! `s3://` locations on it.

use crate::{AwsError, S3Object, S3Url, S3};

/// A blocking S3 client.
pub struct BlockingS3 {
    rt: tokio::runtime::Runtime,
    s3: S3,
}

fn runtime() -> Result<tokio::runtime::Runtime, AwsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AwsError::Runtime(std::sync::Arc::new(e)))
}

impl BlockingS3 {
    /// From the standard AWS configuration chain.
    pub fn from_env() -> Result<BlockingS3, AwsError> {
        let rt = runtime()?;
        let s3 = rt.block_on(S3::from_env());
        Ok(BlockingS3 { rt, s3 })
    }

    /// For an explicit endpoint with static test credentials (emulators).
    pub fn for_endpoint(endpoint: &str, region: &str) -> Result<BlockingS3, AwsError> {
        Ok(BlockingS3 {
            rt: runtime()?,
            s3: S3::for_endpoint(endpoint, region),
        })
    }

    /// Reads an object.
    pub fn get(&self, url: &S3Url) -> Result<S3Object, AwsError> {
        self.rt.block_on(self.s3.get(url))
    }

    /// An object's ETag.
    pub fn etag(&self, url: &S3Url) -> Result<Option<String>, AwsError> {
        self.rt.block_on(self.s3.etag(url))
    }

    /// Writes an object.
    pub fn put(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Option<String>, AwsError> {
        self.rt.block_on(self.s3.put(url, bytes, content_type))
    }

    /// Deletes an object.
    pub fn delete(&self, url: &S3Url) -> Result<(), AwsError> {
        self.rt.block_on(self.s3.delete(url))
    }

    /// Creates a bucket (fine if this account owns it already).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), AwsError> {
        self.rt.block_on(self.s3.create_bucket(bucket))
    }
}
