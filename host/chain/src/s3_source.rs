//! Plugins and configs at `s3://` locations, read with the blocking S3 client.

use sluice_aws::{AwsError, BlockingS3, S3Url};

use crate::chain::{PluginFetcher, SourceError};
use crate::config::{ConfigError, ConfigFile};
use crate::reload::ConfigSource;

/// Fetches `s3://` plugin locations.
pub struct S3Plugins<'a>(pub &'a BlockingS3);

impl PluginFetcher for S3Plugins<'_> {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, SourceError> {
        let url = S3Url::parse(url)?;
        Ok(self.0.get(&url)?.bytes)
    }
}

/// A config file in S3; its version is the object's ETag.
pub struct S3ConfigSource<'a> {
    s3: &'a BlockingS3,
    url: S3Url,
    name: String,
}

impl<'a> S3ConfigSource<'a> {
    /// The config at `url` (`s3://bucket/key.toml`).
    pub fn new(s3: &'a BlockingS3, url: &str) -> Result<S3ConfigSource<'a>, AwsError> {
        Ok(S3ConfigSource {
            s3,
            url: S3Url::parse(url)?,
            name: url.to_string(),
        })
    }
}

impl ConfigSource for S3ConfigSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> Result<Option<String>, SourceError> {
        Ok(self.s3.etag(&self.url)?)
    }

    fn read(&self) -> Result<(ConfigFile, Option<String>), ConfigError> {
        let unreadable = |message: String| ConfigError {
            file: self.name.clone(),
            line: 0,
            message,
        };
        let object = self
            .s3
            .get(&self.url)
            .map_err(|e| unreadable(e.to_string()))?;
        let text = String::from_utf8(object.bytes)
            .map_err(|_| unreadable("the config is not UTF-8 text".into()))?;
        Ok((ConfigFile::parse_remote(&self.name, text)?, object.etag))
    }
}
