//! Relaying through SES: the allow list (no open relay), the loop guard, the rewrite, and
//! sends in chunks that each happen once.

use serde_json::json;
use sluice_aws::{Ses, SES_MAX_RAW_BYTES};
use sluice_mail::{hop_count, rewrite_for_relay, Message, RelayRewrite};

use super::{domain_of, DeliverError, Markers};

/// The most recipients SES takes in one send.
const CHUNK: usize = 50;

/// Relays copies through SES (`[relay] kind = "ses"`).
#[derive(Debug, Clone)]
pub struct SesRelay {
    /// The client.
    pub ses: Ses,
    /// The SES-verified address copies are sent from (`[relay] from`).
    pub from: String,
    /// The recipient domains a copy may go to (`[relay] allow_domains`). An entry matches the
    /// recipient's domain exactly, case-insensitively; an entry with a leading dot,
    /// `.example.org`, matches `example.org` and every subdomain of it. Anything else is
    /// refused: Sluice is never an open relay.
    pub allow_domains: Vec<String>,
    /// A message that already carries this many loop headers is not relayed again.
    pub max_hops: usize,
}

/// What one relay should send.
#[derive(Debug, Clone, Default)]
pub struct RelayJob {
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// Sends from this address instead of [`SesRelay::from`] (must be SES-verified too).
    pub from: Option<String>,
    /// Put before the Subject of the copy.
    pub subject_prefix: Option<String>,
}

/// What a relay did, per recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Sent now.
    pub sent: Vec<String>,
    /// Sent by an earlier attempt (its marker exists): not sent again.
    pub already_sent: Vec<String>,
    /// Not sent, with the reason (domain not allowed, loop, too large).
    pub refused: Vec<(String, String)>,
}

impl SesRelay {
    /// Whether a copy may go to this recipient (see [`SesRelay::allow_domains`]).
    pub fn allows(&self, recipient: &str) -> bool {
        let domain = domain_of(recipient);
        !domain.is_empty()
            && self.allow_domains.iter().any(|entry| {
                let entry = entry.trim().to_ascii_lowercase();
                match entry.strip_prefix('.') {
                    Some(parent) => {
                        domain == parent
                            || domain
                                .strip_suffix(parent)
                                .is_some_and(|sub| sub.ends_with('.'))
                    }
                    None => domain == entry,
                }
            })
    }

    /// Sends `msg` (the message the recipients' group delivers) to the job's recipients:
    /// refuses recipients outside the allow list and every recipient of a looping or
    /// oversized message, rewrites it for SES ([`rewrite_for_relay`], loop header of
    /// `via_domain`), and sends it in chunks of at most 50 recipients, each guarded by a
    /// marker so a retried message does not send a chunk twice.
    ///
    /// `Err` when a send or marker operation failed; the chunks sent before it have their
    /// markers, so the retry continues where this one stopped.
    pub async fn relay(
        &self,
        message_id: &str,
        via_domain: &str,
        job: &RelayJob,
        msg: &Message,
        markers: &Markers,
    ) -> Result<RelayReport, DeliverError> {
        let mut report = RelayReport::default();
        let mut allowed: Vec<String> = Vec::new();
        for rcpt in &job.recipients {
            if allowed.iter().any(|a| a.eq_ignore_ascii_case(rcpt)) {
                continue;
            }
            if self.allows(rcpt) {
                allowed.push(rcpt.clone());
            } else {
                tracing::warn!(
                    message_id,
                    recipient = %rcpt,
                    "relay refused: the recipient's domain is not in [relay] allow_domains (no open relay)"
                );
                report.refused.push((
                    rcpt.clone(),
                    format!(
                        "the domain {:?} is not in [relay] allow_domains (no open relay)",
                        domain_of(rcpt)
                    ),
                ));
            }
        }
        if allowed.is_empty() {
            return Ok(report);
        }

        let hops = hop_count(msg);
        if hops >= self.max_hops {
            tracing::warn!(
                message_id,
                hops,
                max_hops = self.max_hops,
                "relay refused: mail loop"
            );
            let reason = format!(
                "mail loop: the message already went through {hops} Sluice relays ({} headers), the limit is {}",
                sluice_mail::LOOP_HEADER,
                self.max_hops
            );
            report
                .refused
                .extend(allowed.into_iter().map(|r| (r, reason.clone())));
            return Ok(report);
        }

        let from = job.from.as_deref().unwrap_or(&self.from);
        let raw = rewrite_for_relay(
            msg,
            &RelayRewrite {
                from,
                via_domain,
                subject_prefix: job.subject_prefix.as_deref(),
                hop_domain: via_domain,
            },
        )
        .map_err(|e| {
            DeliverError::permanent(format!(
                "message {message_id}: cannot rewrite it for relaying from {from}: {e}"
            ))
        })?;
        if raw.len() > SES_MAX_RAW_BYTES {
            let reason = format!(
                "the message is {} bytes after the relay rewrite; SES sends at most {SES_MAX_RAW_BYTES} bytes",
                raw.len()
            );
            tracing::warn!(message_id, size = raw.len(), "relay refused: too large");
            report
                .refused
                .extend(allowed.into_iter().map(|r| (r, reason.clone())));
            return Ok(report);
        }

        // A stable order makes the chunks, and so their markers, the same on every retry.
        allowed.sort_by_key(|r| r.to_lowercase());
        for chunk in allowed.chunks(CHUNK) {
            let key = markers.marker_key(message_id, "relay", chunk);
            if markers.is_done(&key).await? {
                report.already_sent.extend_from_slice(chunk);
                continue;
            }
            let ses_id = self
                .ses
                .send_raw(from, chunk, raw.clone())
                .await
                .map_err(|e| {
                    DeliverError::aws(
                        format_args!(
                            "relaying message {message_id} to {} (and {} more)",
                            chunk[0],
                            chunk.len() - 1
                        ),
                        e,
                    )
                })?;
            tracing::info!(message_id, ses_id, recipients = chunk.len(), "relayed");
            markers
                .record(
                    &key,
                    json!({
                        "kind": "relay",
                        "message_id": message_id,
                        "ses_message_id": ses_id,
                        "from": from,
                        "recipients": chunk,
                    }),
                )
                .await?;
            report.sent.extend_from_slice(chunk);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let relay = SesRelay {
            ses: Ses::for_endpoint("http://127.0.0.1:9", "us-east-1"),
            from: "f@example.com".into(),
            allow_domains: vec!["Gmail.com".into(), ".partner.example".into()],
            max_hops: 3,
        };
        for ok in [
            "a@gmail.com",
            "a@GMAIL.COM",
            "a@partner.example",
            "a@eu.partner.example",
            "a@x.y.partner.example",
        ] {
            assert!(relay.allows(ok), "{ok}");
        }
        for no in [
            "a@mail.gmail.com",
            "a@evilpartner.example",
            "a@partner.example.evil",
            "a@example.com",
            "gmail.com",
            "a@",
        ] {
            assert!(!relay.allows(no), "{no}");
        }
    }
}
