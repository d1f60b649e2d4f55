//! Parsing of SES, SNS and SQS events into [`SesNotice`]s.
//!
//! CONTRACT (owned by the events helper; the types below are used by the pipeline, the Lambda
//! binary and the daemon: keep their names and fields).

use sluice_engine::Verdicts;

/// What SES said about one received message: everything but its bytes, plus where they are.
#[derive(Debug, Clone)]
pub struct SesNotice {
    /// `mail.messageId`: SES's id, also the S3 object name of the S3 action.
    pub message_id: String,
    /// `mail.source`: the envelope sender (empty for a null sender).
    pub mail_from: String,
    /// `receipt.recipients`: the recipients this receipt rule matched (not `mail.destination`).
    pub recipients: Vec<String>,
    /// `receipt.{spf,dkim,dmarc,spam,virus}Verdict.status` (+ `dmarcPolicy`).
    pub verdicts: Verdicts,
    /// `mail.timestamp`, ms since the Unix epoch (0 if unparseable).
    pub received_at: u64,
    /// Where the raw message is.
    pub content: MessageContent,
}

/// Where a notice's raw message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// The S3 action stored it (`receipt.action.bucketName` / `objectKey`).
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The SNS action carried it inline (`content`, decoded from Base64 or UTF-8).
    Inline(Vec<u8>),
    /// A Lambda action: SES passes no content; an earlier S3 action of the same receipt rule
    /// stored it, and the host finds it under its `[inbound]` bucket and prefix + message id.
    Stored,
}
