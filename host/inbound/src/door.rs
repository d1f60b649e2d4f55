//! The front door: what every source of mail hands the pipeline ([`Arrival`]), and how the
//! pipeline's outcome becomes that source's answer ([`Answer`]).
//!
//! A door is whatever brings a message in: an SES notice (Lambda invoke, SNS, SQS: see
//! [`crate::event`]), `sluice deliver` reading one message from an MTA's pipe, and later a
//! milter inside an SMTP transaction. Each builds an [`Arrival`], calls
//! [`crate::Pipeline::handle`], and turns the outcome into its own way of answering with
//! [`Answer::of`]: SQS deletes or leaves the message, the Lambda reports a batch item failure,
//! `sluice deliver` exits with a sysexits code and an SMTP reply on stderr. Nothing behind the
//! pipeline (chains, targets) knows which door a message came through, except for
//! [`RefuseBy`]: whether a refusal can still be said to the sender's server.

use sluice_engine::{Verdict, Verdicts};
use sluice_mail::Message;

use crate::dispatch::{HandleError, HandleFailure, Handled};

/// One message at the door: its envelope, verdicts, and where its bytes are.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// An id unique to this message (SES's `mail.messageId`, or a digest of the bytes): names
    /// stored copies and send claims, so handling it again redoes nothing.
    pub message_id: String,
    /// The envelope sender (empty for a null sender).
    pub mail_from: String,
    /// The envelope recipients this door accepted (for SES: `receipt.recipients`, not
    /// `mail.destination`). Checked at the pipeline like every address Sluice writes.
    pub recipients: Vec<String>,
    /// SPF, DKIM, DMARC, spam and virus verdicts (SES's, read from a trusted
    /// `Authentication-Results` header, or all `unknown`).
    pub verdicts: Verdicts,
    /// When the message was received, ms since the Unix epoch (0: unknown, taken as now).
    pub received_at: u64,
    /// Where the raw message is.
    pub content: MessageContent,
    /// Who answers a refusal.
    pub refuse_by: RefuseBy,
    /// Read SPF, DKIM and DMARC from the message's topmost `Authentication-Results` header
    /// with this authserv-id once the pipeline has parsed it, in place of `verdicts` (which
    /// stay when there is no such header): see [`verdicts_from_authentication_results`].
    pub trusted_authserv_id: Option<String>,
    /// Received mail (every door), or mail a local user sends (the milter, for an
    /// authenticated or configured-outbound transaction): which chains run.
    pub flow: sluice_engine::Flow,
    /// A step (by name) not to run: set only by `sluice quarantine release`, for the step
    /// that quarantined the message ([`sluice_chain::Envelope::skip_step`]).
    pub skip_step: Option<String>,
}

/// Where an arrival's raw message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// In S3 (SES's S3 action: `receipt.action.bucketName` / `objectKey`).
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// In hand (SES's SNS action, or read from stdin).
    Inline(Vec<u8>),
    /// A Lambda action: SES passes no content; an earlier S3 action of the same receipt rule
    /// stored it, and the host finds it under its `[inbound]` bucket and prefix + message id.
    Stored,
}

/// Who tells the sender that a recipient was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseBy {
    /// The message was accepted upstream (SES answered 250 already): a refused recipient
    /// gets a delivery status notification, sent through `[relay]`.
    Dsn,
    /// The sender's server is still waiting for the answer (a pipe from the MTA, a milter):
    /// when the rules refuse every recipient, the refusal is the answer ([`Answer::Refused`])
    /// and no DSN is sent, so a forged sender gets no backscatter. When only some are
    /// refused, the others are delivered and the refused ones get a DSN as with `Dsn`.
    Reply,
}

/// An SMTP reply: what an MTA says to the sender's server, or prints after a pipe delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The basic code (250, 451, 550, ...).
    pub code: u16,
    /// The enhanced status code (RFC 3463), e.g. `5.7.1`.
    pub status: String,
    /// The text.
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.status, self.text)
    }
}

/// What a door answers for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every delivery is done (or was done by an earlier attempt): acknowledge.
    Accepted,
    /// Try again later (a 4xx); what was done stays done.
    RetryLater(Reply),
    /// Refused for good (a 5xx): the sender's server bounces it (a door answering with
    /// [`RefuseBy::Reply`]), or it goes to the dead-letter queue (SES doors).
    Refused(Reply),
}

/// sysexits(3) codes, as an MTA's `pipe` transport reads them.
pub mod sysexits {
    /// Delivered.
    pub const OK: u8 = 0;
    /// EX_DATAERR: the message cannot be read.
    pub const DATAERR: u8 = 65;
    /// EX_NOUSER: the recipient address is refused.
    pub const NOUSER: u8 = 67;
    /// EX_UNAVAILABLE: refused (a rule's bounce, a copy the config refuses).
    pub const UNAVAILABLE: u8 = 69;
    /// EX_TEMPFAIL: try again later.
    pub const TEMPFAIL: u8 = 75;
}

impl Answer {
    /// The answer for a pipeline outcome.
    pub fn of(outcome: &Result<Handled, HandleError>) -> Answer {
        match outcome {
            Ok(h) => {
                if let Some(reply) = &h.refused {
                    Answer::Refused(reply.clone())
                } else if let Some(kept) = h.kept.first() {
                    // Kept under `_undeliverable/`, not lost; still the sender must not be
                    // told it was delivered.
                    Answer::Refused(Reply {
                        code: 550,
                        status: "5.7.1".into(),
                        text: format!(
                            "{} recipient(s) refused by this server's configuration ({})",
                            kept.refused.len(),
                            kept.refused[0].1
                        ),
                    })
                } else {
                    Answer::Accepted
                }
            }
            Err(e) if !e.is_permanent() => Answer::RetryLater(Reply {
                code: 451,
                status: "4.3.0".into(),
                text: format!("temporary failure, try again later: {}", e.failure),
            }),
            Err(e) => Answer::Refused(match &e.failure {
                HandleFailure::Parse(_) => Reply {
                    code: 554,
                    status: "5.6.0".into(),
                    text: e.failure.to_string(),
                },
                HandleFailure::BadAddress { role, .. } => Reply {
                    code: 550,
                    // Bad destination / bad sender mailbox address syntax (RFC 3463).
                    status: if *role == "sender" { "5.1.7" } else { "5.1.3" }.into(),
                    text: e.failure.to_string(),
                },
                other => Reply {
                    code: 554,
                    status: "5.3.0".into(),
                    text: other.to_string(),
                },
            }),
        }
    }

    /// The sysexits code a `pipe` transport maps to defer (75) or bounce (others).
    pub fn exit_code(&self) -> u8 {
        match self {
            Answer::Accepted => sysexits::OK,
            Answer::RetryLater(_) => sysexits::TEMPFAIL,
            Answer::Refused(r) if r.status == "5.6.0" => sysexits::DATAERR,
            Answer::Refused(r) if r.status.starts_with("5.1.") => sysexits::NOUSER,
            Answer::Refused(_) => sysexits::UNAVAILABLE,
        }
    }

    /// The reply, if this is not an acceptance.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Answer::Accepted => None,
            Answer::RetryLater(r) | Answer::Refused(r) => Some(r),
        }
    }
}

/// Verdicts with nothing known (a door that has no authentication results).
pub fn unknown_verdicts() -> Verdicts {
    Verdicts {
        spf: Verdict::Unknown,
        dkim: Verdict::Unknown,
        dmarc: Verdict::Unknown,
        spam: Verdict::Unknown,
        virus: Verdict::Unknown,
        dmarc_policy: None,
    }
}

/// The SPF, DKIM and DMARC verdicts of the topmost `Authentication-Results` header (RFC 8601)
/// whose authserv-id is `authserv_id` (case-insensitive): the one the operator's own MTA (or
/// its milters) added. Headers with another id are ignored, so a sender cannot forge a pass;
/// the MTA must remove incoming headers that carry its own id (Postfix with OpenDKIM /
/// OpenDMARC does). Spam and virus stay `unknown`; `dmarc_policy` comes from a
/// `policy.dmarc=` property or a `p=` comment. `None` when there is no such header.
pub fn verdicts_from_authentication_results(
    message: &Message,
    authserv_id: &str,
) -> Option<Verdicts> {
    let value = message
        .header("Authentication-Results")
        .into_iter()
        .find(|v| authserv_id_of(v).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))?;
    let mut verdicts = unknown_verdicts();
    // After the authserv-id (and an optional version), `;`-separated resinfo clauses.
    for clause in strip_comments(&value).split(';').skip(1) {
        let mut words = clause.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let verdict = match result.to_ascii_lowercase().as_str() {
            "pass" => Verdict::Pass,
            "fail" | "hardfail" | "softfail" => Verdict::Fail,
            "neutral" | "none" | "policy" => Verdict::Gray,
            "temperror" | "permerror" => Verdict::ProcessingFailed,
            _ => Verdict::Unknown,
        };
        let slot = match method.to_ascii_lowercase().as_str() {
            "spf" => &mut verdicts.spf,
            // Several signatures: one that passes is enough, as for SES's verdict.
            "dkim" if verdicts.dkim == Verdict::Pass => continue,
            "dkim" => &mut verdicts.dkim,
            "dmarc" => {
                for property in words {
                    if let Some(p) = property
                        .strip_prefix("policy.dmarc=")
                        .or_else(|| property.strip_prefix("p="))
                    {
                        verdicts.dmarc_policy = Some(p.to_ascii_lowercase());
                    }
                }
                &mut verdicts.dmarc
            }
            _ => continue,
        };
        *slot = verdict;
    }
    if verdicts.dmarc_policy.is_none() {
        // OpenDMARC writes the policy in a comment: `dmarc=pass (p=reject dis=none)`.
        verdicts.dmarc_policy = comment_policy(&value);
    }
    Some(verdicts)
}

/// The authserv-id: the first word before the first `;`.
fn authserv_id_of(value: &str) -> Option<&str> {
    value.split(';').next()?.split_whitespace().next()
}

/// The text without `( ... )` comments (not nested beyond one level, enough for the forms
/// MTAs write).
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `p=reject` inside a comment after `dmarc=`.
fn comment_policy(value: &str) -> Option<String> {
    let after = &value[value.to_ascii_lowercase().find("dmarc=")?..];
    let comment = &after[after.find('(')? + 1..after.find(')')?];
    comment
        .split_whitespace()
        .find_map(|w| w.strip_prefix("p="))
        .map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> Message {
        Message::parse(raw.to_vec()).unwrap()
    }

    const MESSAGE: &[u8] = b"Authentication-Results: mx.example.com;\r\n\
        \tspf=pass smtp.mailfrom=a@sender.test;\r\n\
        \tdkim=fail header.d=sender.test; dkim=pass header.d=sender.test;\r\n\
        \tdmarc=pass (p=reject dis=none) header.from=sender.test\r\n\
        Authentication-Results: forged.example; spf=fail; dmarc=fail\r\n\
        Authentication-Results: mx.example.com; spf=fail\r\n\
        From: a@sender.test\r\n\r\nbody\r\n";

    #[test]
    fn the_topmost_header_with_the_named_authserv_id_gives_the_verdicts() {
        let v = verdicts_from_authentication_results(&parsed(MESSAGE), "MX.example.com").unwrap();
        assert_eq!(v.spf, Verdict::Pass);
        assert_eq!(v.dkim, Verdict::Pass, "one passing signature is enough");
        assert_eq!(v.dmarc, Verdict::Pass);
        assert_eq!(v.dmarc_policy.as_deref(), Some("reject"));
        assert_eq!(v.spam, Verdict::Unknown);
    }

    #[test]
    fn a_header_with_another_authserv_id_is_ignored() {
        let v = verdicts_from_authentication_results(&parsed(MESSAGE), "forged.example").unwrap();
        assert_eq!(v.spf, Verdict::Fail, "named explicitly, it is read");
        assert!(verdicts_from_authentication_results(&parsed(MESSAGE), "other.example").is_none());
        let only_forged = b"Authentication-Results: evil.test; spf=pass; dkim=pass\r\n\r\nx";
        assert!(
            verdicts_from_authentication_results(&parsed(only_forged), "mx.example.com").is_none()
        );
    }

    #[test]
    fn results_map_onto_verdicts_and_a_body_line_is_not_a_header() {
        let raw = b"Subject: x\r\nAuthentication-Results: mx; spf=softfail; dkim=temperror;\r\n dmarc=none policy.dmarc=quarantine\r\n\r\nAuthentication-Results: mx; spf=pass\r\n";
        let v = verdicts_from_authentication_results(&parsed(raw), "mx").unwrap();
        assert_eq!(v.spf, Verdict::Fail);
        assert_eq!(v.dkim, Verdict::ProcessingFailed);
        assert_eq!(v.dmarc, Verdict::Gray);
        assert_eq!(v.dmarc_policy.as_deref(), Some("quarantine"));
    }

    fn reply(code: u16, status: &str) -> Reply {
        Reply {
            code,
            status: status.into(),
            text: "x".into(),
        }
    }

    #[test]
    fn answers_map_to_sysexits_as_a_pipe_transport_reads_them() {
        assert_eq!(Answer::Accepted.exit_code(), 0);
        assert_eq!(Answer::RetryLater(reply(451, "4.3.0")).exit_code(), 75);
        assert_eq!(Answer::Refused(reply(554, "5.6.0")).exit_code(), 65);
        assert_eq!(Answer::Refused(reply(550, "5.1.1")).exit_code(), 67);
        assert_eq!(Answer::Refused(reply(550, "5.7.1")).exit_code(), 69);
        assert_eq!(reply(550, "5.7.1").to_string(), "550 5.7.1 x");
    }
}
