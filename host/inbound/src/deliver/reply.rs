//! Automatic replies (RFC 3834) a rule asked for through `reply.send`: sent after the
//! recipient's copy was stored, through the relay's way out, with a null envelope sender, at
//! most once per message and recipient (claimed like a relay chunk), and at most once per
//! sender and recipient in the interval the step's grant sets.
//!
//! The "once per N days" memory lives beside the send claims ([`Markers`]: an S3 prefix, or
//! a directory for one daemon and `sluice run`): one small JSON object per (recipient,
//! sender) pair, `<prefix>/auto-reply/<sha256>.json`, holding when the last reply went out.
//! Nothing of it is in a rule's memory, and it works the same in the Lambda and the daemon.
//! Two messages from one sender handled at the same moment by two consumers may both be
//! answered (the record is read, then written after the send): a rare second reply, never a
//! loop, since a reply's sender is null and its `Auto-Submitted` silences the other side.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_chain::PlannedReply;
use sluice_mail::{build_auto_reply, AutoReply, Message};

use super::markers::{send_name, send_once, SendOutcome};
use super::{domain_of, Markers, SendError};
use sluice_telemetry::Address;

/// Milliseconds in a day.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Sends automatic replies through the relay's way out.
#[derive(Debug, Clone)]
pub struct Replier {
    /// SES or a smarthost (the `[relay]` transport).
    pub via: sluice_deliver::Outbound,
}

/// What became of one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Sent now; what the way out called the send.
    Sent {
        /// SES message id, the smarthost's reply, or the outbox file.
        id: String,
    },
    /// Claimed by an attempt that never confirmed it, and sent again now (at least once).
    Resent {
        /// What the way out called the send.
        id: String,
    },
    /// An earlier attempt for this message sent it.
    AlreadySent,
    /// Claimed by an attempt that never confirmed it: not sent again (at most once).
    Unconfirmed,
    /// Not sent, and why (`kind`: a [`sluice_mail::NoAutoReply`] name, `not-delivered`,
    /// `own-address`, `answered-recently`, `no-relay`).
    Suppressed {
        /// A short name, for counts and tests.
        kind: &'static str,
        /// In words.
        reason: String,
    },
    /// The send failed. The message is not retried for it (the copy is delivered; a reply is
    /// a courtesy), and a retry of the message for another reason may send it.
    Failed {
        /// Why.
        error: String,
    },
}

impl std::fmt::Display for ReplyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyStatus::Sent { id } => write!(f, "sent ({id})"),
            ReplyStatus::Resent { id } => {
                write!(f, "sent again ({id}): an earlier send was unconfirmed")
            }
            ReplyStatus::AlreadySent => f.write_str("already sent"),
            ReplyStatus::Unconfirmed => f.write_str("unconfirmed (claimed earlier, not resent)"),
            ReplyStatus::Suppressed { kind, reason } => write!(f, "suppressed ({kind}): {reason}"),
            ReplyStatus::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

/// One reply decision, for [`crate::Handled::replies`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOutcome {
    /// The recipient it answers for.
    pub from: String,
    /// The sender it goes (or would go) to.
    pub to: String,
    /// What happened.
    pub status: ReplyStatus,
}

/// The key of the memory record for replies from `from` to `to`.
pub fn memory_key(markers: &Markers, from: &str, to: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(from.to_lowercase().as_bytes());
    hash.update(b"\n");
    hash.update(to.to_lowercase().as_bytes());
    markers.under_prefix(&format!("auto-reply/{}.json", hex::encode(hash.finalize())))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Replier {
    /// Sends `planned` (a reply the chain did not suppress, for a recipient whose copy is
    /// stored) unless `from` answered `to` within the interval, claimed so that no retry
    /// sends it twice, and records the time in the memory. `Err` only when the memory cannot
    /// be read or a claim failed (the caller reports it as a failed reply).
    pub async fn reply(
        &self,
        message_id: &str,
        original: &Message,
        planned: &PlannedReply,
        markers: &Markers,
    ) -> Result<ReplyStatus, SendError> {
        if let Some(s) = &planned.suppressed {
            return Ok(ReplyStatus::Suppressed {
                kind: s.kind,
                reason: s.reason.clone(),
            });
        }
        let (from, to) = (planned.from.as_str(), planned.to.as_str());
        let days = u64::from(planned.request.once_per_days.max(1));
        let memory = memory_key(markers, from, to);
        let now = now_ms();
        if let Some(bytes) = markers
            .read("reading the auto-reply record", &memory)
            .await?
        {
            let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let sent_at = record["sent_at_ms"].as_u64().unwrap_or(0);
            let same_message = record["message_id"].as_str() == Some(message_id);
            if !same_message && now.saturating_sub(sent_at) < days * DAY_MS {
                let ago = now.saturating_sub(sent_at) / (60 * 60 * 1000);
                tracing::info!(message_id, from = %Address(from), to = %Address(to), "auto-reply suppressed: answered recently");
                return Ok(ReplyStatus::Suppressed {
                    kind: "answered-recently",
                    reason: format!(
                        "{to} was answered from {from} {ago} h ago; at most once every {days} day(s)"
                    ),
                });
            }
        }
        let recipients = [from.to_string()];
        let name = send_name(message_id, "reply", &recipients);
        let key = markers.marker_key(message_id, "reply", &recipients);
        let reply_id = {
            let mut hash = Sha256::new();
            hash.update(message_id.as_bytes());
            hash.update(b"\n");
            hash.update(from.to_lowercase().as_bytes());
            format!(
                "auto-{}@{}",
                &hex::encode(hash.finalize())[..32],
                domain_of(from)
            )
        };
        let raw = build_auto_reply(
            original,
            &AutoReply {
                from,
                to,
                subject: planned.request.subject.as_deref(),
                text: &planned.request.text,
                message_id: &reply_id,
            },
        )
        .map_err(|e| SendError::Unsendable(format!("message {message_id}: {e}")))?;
        let detail = json!({
            "kind": "reply",
            "message_id": message_id,
            "from": from,
            "to": to,
        });
        let what = format!("auto-reply to message {message_id} from {from} to {to}");
        let rcpt = [to.to_string()];
        // A null envelope sender (RFC 3834 §3.3): a bounce of the reply goes nowhere.
        let outcome = send_once(markers, &key, &detail, &what, || {
            self.via.send(&name, from, &rcpt, raw, true)
        })
        .await?;
        let status = match outcome {
            SendOutcome::Sent { ses_id } => ReplyStatus::Sent { id: ses_id },
            SendOutcome::Resent { ses_id } => ReplyStatus::Resent { id: ses_id },
            SendOutcome::AlreadySent => ReplyStatus::AlreadySent,
            SendOutcome::Unconfirmed => ReplyStatus::Unconfirmed,
        };
        if matches!(
            status,
            ReplyStatus::Sent { .. } | ReplyStatus::Resent { .. }
        ) {
            tracing::info!(message_id, from = %Address(from), to = %Address(to), "auto-reply sent");
            let record = json!({
                "from": from,
                "to": to,
                "message_id": message_id,
                "sent_at_ms": now,
            });
            if let Err(e) = markers
                .write(
                    "writing the auto-reply record",
                    &memory,
                    record.to_string().into_bytes(),
                )
                .await
            {
                // Sent: the next message from this sender may be answered again.
                tracing::warn!(message_id, error = %e, "auto-reply sent, but its record could not be written");
            }
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_is_one_record_per_recipient_and_sender_whatever_the_case() {
        let m = Markers::in_dir("/tmp/x".into(), "o".into());
        let a = memory_key(&m, "Bob@example.com", "alice@outside.example");
        assert_eq!(
            a,
            memory_key(&m, "bob@example.com", "ALICE@outside.example")
        );
        assert_ne!(
            a,
            memory_key(&m, "carol@example.com", "alice@outside.example")
        );
        assert!(a.starts_with("auto-reply/") && a.ends_with(".json"), "{a}");
        let mut s3 = m.clone();
        s3.prefix = "sent/".into();
        assert!(memory_key(&s3, "b@x", "a@y").starts_with("sent/auto-reply/"));
    }
}
