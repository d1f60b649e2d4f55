//! Relaying (through SES or a smarthost): the allow list (no open relay), the loop guard, the rewrite, and
//! sends in chunks that each happen at most once (claimed before the send, see [`Markers`]).

use serde_json::json;
use sluice_mail::{hop_count, rewrite_for_relay, Message, RelayRewrite};

use super::arc::{ArcStamp, Sealed};
use super::markers::{send_name, send_once, SendOutcome};
use super::{domain_of, Markers, SendError};
use sluice_deliver::Outbound;
use sluice_telemetry::Address;

/// Relays copies (`[relay]`).
#[derive(Debug, Clone)]
pub struct Relay {
    /// The way out: SES or a smarthost.
    pub via: Outbound,
    /// The address copies are sent from (`[relay] from`; for SES a verified identity; over
    /// SMTP also the envelope sender, see the README on SRS).
    pub from: String,
    /// The recipient domains a copy may go to (`[relay] allow_domains`). An entry matches the
    /// recipient's domain exactly, case-insensitively; an entry with a leading dot,
    /// `.example.org`, matches `example.org` and every subdomain of it. Anything else is
    /// refused: Sluice is never an open relay.
    pub allow_domains: Vec<String>,
    /// A message that already carries this many loop headers is not relayed again.
    pub max_hops: usize,
    /// `[arc]`: an ARC set on each relayed copy, after the rewrite (so it signs what is sent).
    pub arc: Option<ArcStamp>,
}

/// What one relay should send.
#[derive(Debug, Clone, Default)]
pub struct RelayJob {
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// Sends from this address instead of [`Relay::from`] (must be SES-verified too).
    pub from: Option<String>,
    /// Put before the Subject of the copy.
    pub subject_prefix: Option<String>,
    /// The loop headers on the message *as received* ([`hop_count`] of the original, before
    /// any rule edited it). The guard uses the larger of this and the count on the message
    /// relayed, so a rule that strips the headers cannot reset the count.
    pub hops_received: usize,
}

/// Why a recipient was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalKind {
    /// The recipient's domain is not in `allow_domains`: Sluice's own policy.
    NotAllowed,
    /// The message already went through `max_hops` relays: Sluice's own policy.
    Loop,
    /// The rewritten copy is larger than SES sends: a delivery failure the sender can fix.
    TooLarge,
    /// The smarthost refused the recipient for good (5xx): a delivery failure, bounced.
    Rejected,
    /// The config has no `[relay]`: Sluice's own policy.
    NoRelay,
}

impl RefusalKind {
    /// A refusal made by Sluice's policy (not a failure of this message): never bounced,
    /// since the sender of a forged or looping message would be the one to get the DSN.
    pub fn is_policy(self) -> bool {
        match self {
            RefusalKind::NotAllowed | RefusalKind::Loop | RefusalKind::NoRelay => true,
            RefusalKind::TooLarge | RefusalKind::Rejected => false,
        }
    }

    /// A refusal that comes from the operator's config (the domain is not allowed, there is
    /// no `[relay]`): the copy reaches nobody, so it is kept and alarmed, not just logged.
    /// A loop is the guard working, not a config mistake.
    pub fn is_config(self) -> bool {
        matches!(self, RefusalKind::NotAllowed | RefusalKind::NoRelay)
    }

    /// Short name for logs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::NotAllowed => "not-allowed",
            RefusalKind::Loop => "loop",
            RefusalKind::TooLarge => "too-large",
            RefusalKind::Rejected => "rejected",
            RefusalKind::NoRelay => "no-relay",
        }
    }
}

/// A recipient not relayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The recipient.
    pub recipient: String,
    /// The kind of refusal.
    pub kind: RefusalKind,
    /// In words, for the log and a DSN.
    pub reason: String,
}

/// What a relay did, per recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Sent now.
    pub sent: Vec<String>,
    /// For each recipient sent now, what the way out called its send (SES message id, the
    /// smarthost's reply, the outbox file).
    pub send_ids: std::collections::BTreeMap<String, String>,
    /// Sent by an earlier attempt (its claim is `sent`): not sent again.
    pub already_sent: Vec<String>,
    /// Claimed by an attempt that never confirmed the send (a crash between claim and
    /// confirmation), and sent again now (`[relay] sends = "at-least-once"`): the recipient
    /// may have it twice. Also in [`RelayReport::sent`].
    pub resent: Vec<String>,
    /// Claimed by an attempt that never confirmed the send: it may or may not have gone out,
    /// and is not sent again (`[relay] sends = "at-most-once"`).
    pub unconfirmed: Vec<String>,
    /// Not sent, and why (domain not allowed, loop, too large).
    pub refused: Vec<Refusal>,
    /// With `[arc]`, once a copy was rewritten: sealed (`Ok`) or why not (it went unsealed).
    pub arc: Option<Result<(), std::sync::Arc<sluice_arc::SealError>>>,
}

impl Relay {
    /// Whether a copy may go to this recipient (see [`Relay::allow_domains`]).
    pub fn allows(&self, recipient: &str) -> bool {
        sluice_deliver::relay_allows(&self.allow_domains, recipient)
    }

    /// Sends `msg` (the message the recipients' group delivers) to the job's recipients:
    /// refuses recipients outside the allow list and every recipient of a looping (counted
    /// with [`RelayJob::hops_received`]) or oversized message, rewrites it for SES
    /// ([`rewrite_for_relay`], loop header of `via_domain`), and sends it in chunks of at
    /// most 50 recipients, each claimed before its send so that no retry, crash or second
    /// consumer sends a chunk twice.
    ///
    /// `Err` when a send or claim failed, or another consumer holds a live claim on a chunk;
    /// the chunks sent before it are confirmed, so the retry continues where this one
    /// stopped.
    pub async fn relay(
        &self,
        message_id: &str,
        via_domain: &str,
        job: &RelayJob,
        msg: &Message,
        markers: &Markers,
    ) -> Result<RelayReport, SendError> {
        let mut report = RelayReport::default();
        let mut allowed = self.admit(message_id, job, msg, &mut report);
        if allowed.is_empty() {
            return Ok(report);
        }
        let from = job.from.as_deref().unwrap_or(&self.from);
        let raw = self.outgoing_copy(message_id, via_domain, from, job, msg, &mut report)?;
        if let Some(max) = self.via.limits().max_bytes.filter(|max| raw.len() > *max) {
            let reason = format!(
                "the message is {} bytes after the relay rewrite; SES sends at most {max} bytes",
                raw.len()
            );
            tracing::warn!(message_id, size = raw.len(), "relay refused: too large");
            report.refused.extend(allowed.into_iter().map(|r| Refusal {
                recipient: r,
                kind: RefusalKind::TooLarge,
                reason: reason.clone(),
            }));
            return Ok(report);
        }
        // A stable order makes the chunks, and so their claims, the same on every retry.
        allowed.sort_by_key(|r| r.to_lowercase());
        for chunk in allowed.chunks(self.via.limits().chunk) {
            self.send_chunk(message_id, from, chunk, &raw, markers, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// The job's recipients the relay may send to (each once): the others are refused,
    /// every one of them when the message has been relayed too often (a loop).
    fn admit(
        &self,
        message_id: &str,
        job: &RelayJob,
        msg: &Message,
        report: &mut RelayReport,
    ) -> Vec<String> {
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
                    recipient = %Address(rcpt),
                    "relay refused: the recipient's domain is not in [relay] allow_domains (no open relay)"
                );
                report.refused.push(Refusal {
                    recipient: rcpt.clone(),
                    kind: RefusalKind::NotAllowed,
                    reason: format!(
                        "the domain {:?} is not in [relay] allow_domains (no open relay)",
                        domain_of(rcpt)
                    ),
                });
            }
        }
        let hops = job.hops_received.max(hop_count(msg));
        if allowed.is_empty() || hops < self.max_hops {
            return allowed;
        }
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
        report.refused.extend(allowed.into_iter().map(|r| Refusal {
            recipient: r,
            kind: RefusalKind::Loop,
            reason: reason.clone(),
        }));
        Vec::new()
    }

    /// The bytes that go out: the forward rewrite (from the relay's address, the loop
    /// header), sealed with an ARC set when `[arc]` is configured.
    fn outgoing_copy(
        &self,
        message_id: &str,
        via_domain: &str,
        from: &str,
        job: &RelayJob,
        msg: &Message,
        report: &mut RelayReport,
    ) -> Result<Vec<u8>, SendError> {
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
            SendError::Unsendable(format!(
                "message {message_id}: cannot rewrite it for relaying from {from}: {e}"
            ))
        })?;
        Ok(
            match self.arc.as_ref().map(|a| a.seal(&raw, message_id, "relay")) {
                Some(Sealed::Yes(sealed)) => {
                    report.arc = Some(Ok(()));
                    sealed
                }
                Some(Sealed::No(why)) => {
                    report.arc = Some(Err(why));
                    raw
                }
                None => raw,
            },
        )
    }

    /// Sends one chunk of recipients once (claimed, then confirmed) and records the outcome.
    async fn send_chunk(
        &self,
        message_id: &str,
        from: &str,
        chunk: &[String],
        raw: &[u8],
        markers: &Markers,
        report: &mut RelayReport,
    ) -> Result<(), SendError> {
        let name = send_name(message_id, "relay", chunk);
        let key = markers.marker_key(message_id, "relay", chunk);
        let detail = json!({
            "kind": "relay",
            "message_id": message_id,
            "from": from,
            "recipients": chunk,
        });
        let what = format!(
            "relaying message {message_id} to {} (and {} more)",
            chunk[0],
            chunk.len() - 1
        );
        let sent = send_once(markers, &key, &detail, &what, || {
            self.via.send(&name, from, chunk, raw.to_vec(), false)
        })
        .await;
        let outcome = match sent {
            // The smarthost refused this recipient for good: a failure to report to the
            // sender (bounced like any other), not a reason to retry the message.
            Err(e) if e.is_permanent() && self.via.limits().refuses_per_recipient => {
                tracing::warn!(message_id, recipient = %Address(&chunk[0]), error = %e, "relay refused by the smarthost");
                report.refused.extend(chunk.iter().map(|r| Refusal {
                    recipient: r.clone(),
                    kind: RefusalKind::Rejected,
                    reason: e.to_string(),
                }));
                return Ok(());
            }
            other => other?,
        };
        let resent = matches!(outcome, SendOutcome::Resent { .. });
        match outcome {
            SendOutcome::Sent { ses_id } | SendOutcome::Resent { ses_id } => {
                tracing::info!(message_id, ses_id, recipients = chunk.len(), "relayed");
                if resent {
                    report.resent.extend_from_slice(chunk);
                }
                report.sent.extend_from_slice(chunk);
                for r in chunk {
                    report.send_ids.insert(r.clone(), ses_id.clone());
                }
            }
            SendOutcome::AlreadySent => report.already_sent.extend_from_slice(chunk),
            SendOutcome::Unconfirmed => report.unconfirmed.extend_from_slice(chunk),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let relay = Relay {
            via: std::sync::Arc::new(sluice_deliver::relay::ses::SesTransport(
                sluice_aws::Ses::for_endpoint("http://127.0.0.1:9", "us-east-1"),
            )),
            from: "f@example.com".into(),
            allow_domains: vec!["Gmail.com".into(), ".partner.example".into()],
            max_hops: 3,
            arc: None,
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
