//! `[archive] kind = "s3"`: the archive in a bucket, each message under Object Lock
//! retention when `retention` is set (the bucket must have Object Lock enabled, which also
//! turns versioning on), encrypted with SSE-S3 or SSE-KMS.

use std::time::{SystemTime, UNIX_EPOCH};

use sluice_aws::{AwsError, Encryption, ObjectLock, S3Url, S3};

use super::{domain_segment, names, ArchiveError, ArchiveQuery, ArchiveRecord, Retention};

/// An S3 archive.
#[derive(Debug, Clone)]
pub struct S3Archive {
    /// The client.
    pub s3: S3,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without `/` at either end (may be empty).
    pub prefix: String,
    /// Object Lock retention per message.
    pub retention: Option<Retention>,
    /// Encryption at rest (messages and index records).
    pub encryption: Encryption,
}

impl S3Archive {
    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn url(&self, rest: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: self.key(rest),
        }
    }

    /// Writes each index record, then the message; nothing when the message is there
    /// already (a retried message must not add a second locked version).
    pub async fn put(
        &self,
        id: &str,
        bytes: &[u8],
        records: &mut [ArchiveRecord],
    ) -> Result<String, ArchiveError> {
        let url = self.url(&names(id)?.0);
        let location = url.to_string();
        if self.s3.exists(&url).await? {
            return Ok(location);
        }
        for record in records.iter_mut() {
            record.location = location.clone();
        }
        self.put_records(records).await?;
        self.write_message(&url, bytes).await?;
        Ok(location)
    }

    /// Writes `<name>.eml` unless it exists.
    pub async fn put_message(&self, name: &str, bytes: &[u8]) -> Result<String, ArchiveError> {
        let url = self.url(&names(name)?.0);
        if !self.s3.exists(&url).await? {
            self.write_message(&url, bytes).await?;
        }
        Ok(url.to_string())
    }

    /// The message object, under Object Lock when `retention` is set.
    async fn write_message(&self, url: &S3Url, bytes: &[u8]) -> Result<(), ArchiveError> {
        match self.retention {
            Some(r) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let lock = ObjectLock {
                    mode: r.mode,
                    until_epoch_s: now + i64::from(r.days) * 86_400,
                };
                self.s3
                    .put_locked(
                        url,
                        bytes.to_vec(),
                        "message/rfc822",
                        &self.encryption,
                        &lock,
                    )
                    .await?;
            }
            None => {
                self.s3
                    .put_encrypted(url, bytes.to_vec(), "message/rfc822", &[], &self.encryption)
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes (or rewrites) each index record.
    pub async fn put_records(&self, records: &[ArchiveRecord]) -> Result<(), ArchiveError> {
        for record in records {
            let rest = format!(
                "_index/{}/{}/{}",
                record.date,
                domain_segment(&record.domain)?,
                names(&record.id)?.1
            );
            let text = serde_json::to_vec(record).map_err(|e| ArchiveError::Index {
                path: rest.clone(),
                reason: e.to_string(),
            })?;
            self.s3
                .put_encrypted(
                    &self.url(&rest),
                    text,
                    "application/json",
                    &[],
                    &self.encryption,
                )
                .await?;
        }
        Ok(())
    }

    /// The records of the days and domain asked, filtered.
    pub async fn find(&self, query: &ArchiveQuery) -> Result<Vec<ArchiveRecord>, ArchiveError> {
        let index = format!("{}/", self.key("_index"));
        let domain = domain_segment(&query.domain)?;
        let mut out = Vec::new();
        for day in self.s3.list_prefixes(&self.bucket, &index).await? {
            let name = day[index.len()..].trim_end_matches('/');
            if !query.wants_day(name) {
                continue;
            }
            for listed in self
                .s3
                .list(&self.bucket, &format!("{day}{domain}/"))
                .await?
            {
                let key = listed.key;
                let url = S3Url {
                    bucket: self.bucket.clone(),
                    key,
                };
                let object = self.s3.get(&url).await?;
                let record: ArchiveRecord =
                    serde_json::from_slice(&object.bytes).map_err(|e| ArchiveError::Index {
                        path: url.to_string(),
                        reason: e.to_string(),
                    })?;
                if query.matches(&record) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// The message's bytes.
    pub async fn get(&self, id: &str) -> Result<Vec<u8>, ArchiveError> {
        match self.s3.get(&self.url(&names(id)?.0)).await {
            Ok(object) => Ok(object.bytes),
            Err(AwsError::S3NotFound { .. }) => Err(ArchiveError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}
