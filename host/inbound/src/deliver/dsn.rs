//! Delivery status notifications (RFC 3464) for refused recipients, sent through SES only
//! when the sender is probably real and wants them (no backscatter): SPF or DKIM passed,
//! neither the spam nor the virus verdict is FAIL, and the sender is not null or a mailer
//! daemon. Refusals made by Sluice's own policy (a relay not allowed, a loop) never reach
//! here: the pipeline logs and counts them instead.

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_engine::{Verdict, Verdicts};
use sluice_mail::Message;

use super::markers::{send_name, send_once, SendOutcome};
use super::{Markers, SendError};
use sluice_telemetry::Address;

/// Sends bounces through the relay's way out.
///
/// SES cannot send with a null envelope sender, so there a DSN goes out with
/// [`Bouncer::from`] as its Return-Path; a bounce of the DSN comes back to that address and is
/// never bounced again (bounces to `mailer-daemon@` and `postmaster@` are suppressed). Over
/// SMTP the envelope sender is null (`MAIL FROM:<>`), as RFC 5321 §4.5.5 asks of DSNs.
#[derive(Debug, Clone)]
pub struct Bouncer {
    /// SES or a smarthost.
    pub via: sluice_deliver::Outbound,
    /// The SES-verified sender of bounces, e.g. `mailer-daemon@relay.example.com`.
    pub from: String,
    /// Named in `Reporting-MTA: dns; <reporting_mta>` and in the DSN's Message-ID.
    pub reporting_mta: String,
}

/// One refused recipient to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceJob {
    /// The recipient.
    pub recipient: String,
    /// SMTP reply code, e.g. 550 (another value outside 400..=599 becomes 550).
    pub code: u16,
    /// Enhanced status code, e.g. `5.1.1` (a malformed one becomes `5.0.0`).
    pub status: String,
    /// The diagnostic text, e.g. "mailbox unavailable".
    pub text: String,
}

/// Why a DSN was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suppression {
    /// MAIL FROM:<> (the message is itself a bounce).
    NullSender,
    /// The sender is `mailer-daemon@` or `postmaster@` (no bounce loops).
    MailerDaemon,
    /// Neither SPF nor DKIM passed: the sender may be forged.
    Unauthenticated,
    /// SES's spam verdict is FAIL: spam senders are forged more often than not.
    Spam,
    /// SES's virus verdict is FAIL: a DSN would carry the worm's headers to a forged sender.
    Virus,
    /// Refused by Sluice's own policy (relay not allowed, a loop, no `[relay]`): logged and
    /// counted, never bounced.
    Policy,
    /// The config has no `[relay]` to send a DSN through.
    NoRelay,
}

impl Suppression {
    /// Short name for logs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::NullSender => "null-sender",
            Suppression::MailerDaemon => "mailer-daemon",
            Suppression::Unauthenticated => "unauthenticated",
            Suppression::Spam => "spam",
            Suppression::Virus => "virus",
            Suppression::Policy => "policy",
            Suppression::NoRelay => "no-relay",
        }
    }

    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Suppression::NullSender => "null sender (MAIL FROM:<>): a bounce is never bounced",
            Suppression::MailerDaemon => "the sender is a mailer daemon: no bounce loop",
            Suppression::Unauthenticated => "no backscatter: neither SPF nor DKIM passed",
            Suppression::Spam => "no backscatter: the SES spam verdict is FAIL",
            Suppression::Virus => "no backscatter: the SES virus verdict is FAIL",
            Suppression::Policy => {
                "refused by Sluice's relay policy (not allowed, loop or no relay): never bounced"
            }
            Suppression::NoRelay => "the config has no [relay] to send a bounce through",
        }
    }

    /// Whether a DSN to `mail_from` for a message with these verdicts must be suppressed:
    /// a DSN goes out only when (SPF or DKIM passed) and the spam and virus verdicts are not
    /// FAIL and the sender is neither null nor a mailer daemon.
    pub fn check(mail_from: &str, verdicts: &Verdicts) -> Option<Suppression> {
        let sender = bare_sender(mail_from);
        if sender.is_empty() {
            return Some(Suppression::NullSender);
        }
        let local = sender.rsplit_once('@').map_or(sender, |(l, _)| l);
        if ["mailer-daemon", "postmaster"]
            .iter()
            .any(|d| local.eq_ignore_ascii_case(d))
        {
            return Some(Suppression::MailerDaemon);
        }
        if verdicts.spf != Verdict::Pass && verdicts.dkim != Verdict::Pass {
            return Some(Suppression::Unauthenticated);
        }
        if verdicts.virus == Verdict::Fail {
            return Some(Suppression::Virus);
        }
        if verdicts.spam == Verdict::Fail {
            return Some(Suppression::Spam);
        }
        None
    }
}

impl std::fmt::Display for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

fn bare_sender(mail_from: &str) -> &str {
    mail_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
}

/// What a bounce did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceReport {
    /// One DSN sent to this address.
    Sent {
        /// The envelope sender the DSN went to.
        to: String,
        /// What the way out called the send (SES message id, the smarthost's reply, the
        /// outbox file).
        id: String,
    },
    /// Claimed by an attempt that never confirmed it, and sent again now (at least once).
    Resent {
        /// The envelope sender the DSN went to.
        to: String,
        /// What the way out called the send.
        id: String,
    },
    /// An earlier attempt sent it (its claim is `sent`).
    AlreadySent,
    /// Claimed by an attempt that never confirmed it: may or may not have gone out, and is
    /// not sent again (at most once).
    Unconfirmed,
    /// Not sent, and why.
    Suppressed {
        /// Why.
        reason: Suppression,
    },
}

impl std::fmt::Display for BounceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BounceReport::Sent { to, .. } => write!(f, "sent to {to}"),
            BounceReport::Resent { to, .. } => {
                write!(f, "sent again to {to} (an earlier send was unconfirmed)")
            }
            BounceReport::AlreadySent => f.write_str("already sent"),
            BounceReport::Unconfirmed => f.write_str("unconfirmed (claimed earlier, not resent)"),
            BounceReport::Suppressed { reason } => write!(f, "suppressed: {reason}"),
        }
    }
}

impl Bouncer {
    /// Sends one DSN for the refused recipients to `mail_from`, unless
    /// [`Suppression::check`] says not to (a possibly forged sender, spam, a virus, a null or
    /// mailer-daemon sender); a suppressed DSN is logged with its reason. Claimed before the
    /// send, per message and set of recipients, so it goes out at most once.
    pub async fn bounce(
        &self,
        message_id: &str,
        original: &Message,
        mail_from: &str,
        verdicts: &Verdicts,
        refused: &[BounceJob],
        markers: &Markers,
    ) -> Result<BounceReport, SendError> {
        let sender = bare_sender(mail_from);
        if refused.is_empty() {
            return Err(SendError::Unsendable(format!(
                "message {message_id}: a bounce needs at least one refused recipient"
            )));
        }
        if let Some(reason) = Suppression::check(mail_from, verdicts) {
            tracing::info!(
                message_id,
                mail_from = %Address(mail_from),
                reason = reason.as_str(),
                recipients = refused.len(),
                "bounce suppressed: {}",
                reason.describe()
            );
            return Ok(BounceReport::Suppressed { reason });
        }

        let recipients: Vec<String> = refused.iter().map(|j| j.recipient.clone()).collect();
        let name = send_name(message_id, "bounce", &recipients);
        let key = markers.marker_key(message_id, "bounce", &recipients);
        let dsn = build_dsn(
            message_id,
            &self.from,
            sender,
            &self.reporting_mta,
            original,
            refused,
        )
        .map_err(|e| {
            SendError::Unsendable(format!("message {message_id}: cannot build the DSN: {e}"))
        })?;
        let detail = json!({
            "kind": "bounce",
            "message_id": message_id,
            "to": sender,
            "recipients": recipients,
        });
        let what = format!("bouncing message {message_id} to {sender}");
        let to = [sender.to_string()];
        let outcome = send_once(markers, &key, &detail, &what, || {
            self.via.send(&name, &self.from, &to, dsn, true)
        })
        .await?;
        Ok(match outcome {
            SendOutcome::Sent { ses_id } => {
                tracing::info!(message_id, ses_id, to = %Address(sender), "bounce sent");
                BounceReport::Sent {
                    to: sender.to_string(),
                    id: ses_id,
                }
            }
            SendOutcome::Resent { ses_id } => {
                tracing::info!(message_id, ses_id, to = %Address(sender), "bounce sent again");
                BounceReport::Resent {
                    to: sender.to_string(),
                    id: ses_id,
                }
            }
            SendOutcome::AlreadySent => BounceReport::AlreadySent,
            SendOutcome::Unconfirmed => BounceReport::Unconfirmed,
        })
    }
}

/// Builds the RFC 3464 DSN: `multipart/report; report-type=delivery-status` with a text/plain
/// explanation, a `message/delivery-status` part (one block per refused recipient) and the
/// original's header block as `text/rfc822-headers`. The DSN's Message-ID derives from the
/// message id and recipients, so a re-built DSN is the same message.
pub fn build_dsn(
    message_id: &str,
    from: &str,
    to: &str,
    reporting_mta: &str,
    original: &Message,
    refused: &[BounceJob],
) -> std::io::Result<Vec<u8>> {
    let mta = one_line(reporting_mta, 255);
    let jobs: Vec<BounceJob> = refused.iter().map(clean_job).collect();

    let mut human = format!(
        "This is the mail system at {mta}.\r\n\r\n\
         Your message could not be delivered to the following recipient(s):\r\n\r\n"
    );
    let mut status = format!(
        "Reporting-MTA: dns; {mta}\r\nArrival-Date: {}\r\n",
        Date::now().to_rfc822()
    );
    for job in &jobs {
        human.push_str(&format!(
            "  <{}>: {} {} {}\r\n",
            job.recipient, job.code, job.status, job.text
        ));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n\
             Diagnostic-Code: smtp; {} {} {}\r\n",
            job.recipient, job.status, job.code, job.status, job.text
        ));
    }
    human.push_str(
        "\r\nThe delivery status of each recipient and the header of your message are attached.\r\n",
    );
    let status_cte = if status.is_ascii() { "7bit" } else { "8bit" };

    let mut hash = Sha256::new();
    hash.update(message_id.as_bytes());
    for job in &jobs {
        hash.update(b"\n");
        hash.update(job.recipient.to_lowercase().as_bytes());
    }
    let dsn_id = format!("dsn-{}@{mta}", &hex::encode(hash.finalize())[..32]);

    let mut builder = MessageBuilder::new()
        .from(("Mail Delivery System", from))
        .to(to)
        .subject("Undelivered Mail Returned to Sender")
        .message_id(dsn_id)
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if let Some(id) = original.header("Message-ID").first() {
        let id = id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        if !id.is_empty() && !id.contains(char::is_whitespace) {
            builder = builder.in_reply_to(id.clone()).references(id);
        }
    }
    builder
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            vec![
                MimePart::new("text/plain", human),
                MimePart::new(
                    "message/delivery-status",
                    BodyPart::Binary(status.into_bytes().into()),
                )
                .transfer_encoding(status_cte),
                MimePart::new(
                    "text/rfc822-headers",
                    BodyPart::Binary(header_block(original.raw()).to_vec().into()),
                ),
            ],
        ))
        .write_to_vec()
}

/// The top header block of a raw message: up to and including the empty line (or all of it
/// when there is no body).
fn header_block(raw: &[u8]) -> &[u8] {
    let mut line_start = 0;
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            let line = &raw[line_start..i];
            if line.is_empty() || line == b"\r" {
                return &raw[..=i];
            }
            line_start = i + 1;
        }
    }
    raw
}

/// Text for one header-like line: controls become spaces, cut at `max` characters.
fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

fn clean_job(job: &BounceJob) -> BounceJob {
    let status_ok = {
        let parts: Vec<&str> = job.status.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    BounceJob {
        recipient: one_line(&job.recipient, 254).replace(' ', ""),
        code: if (400..=599).contains(&job.code) {
            job.code
        } else {
            550
        },
        status: if status_ok {
            job.status.clone()
        } else {
            "5.0.0".into()
        },
        text: one_line(&job.text, 300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    const ORIGINAL: &str = "From: Alice <alice@outside.example>\r\n\
        To: bob@example.com, carol@example.com\r\n\
        Subject: Hello\r\n\
        Message-ID: <orig-1@outside.example>\r\n\
        \r\n\
        Secret body text\r\n";

    fn jobs() -> Vec<BounceJob> {
        ["bob@example.com", "carol@example.com"]
            .iter()
            .map(|r| BounceJob {
                recipient: r.to_string(),
                code: 550,
                status: "5.1.1".into(),
                text: "mailbox unavailable".into(),
            })
            .collect()
    }

    #[test]
    fn dsn_structure() {
        let original = Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
        let raw = build_dsn(
            "ses-1",
            "mailer-daemon@relay.example",
            "alice@outside.example",
            "relay.example",
            &original,
            &jobs(),
        )
        .unwrap();
        let dsn = MessageParser::default().parse(&raw[..]).unwrap();
        let ct = dsn.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(dsn.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            dsn.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(dsn.in_reply_to().as_text(), Some("orig-1@outside.example"));
        assert_eq!(dsn.references().as_text(), Some("orig-1@outside.example"));
        assert_eq!(
            dsn.from().unwrap().first().unwrap().address(),
            Some("mailer-daemon@relay.example")
        );
        assert_eq!(
            dsn.to().unwrap().first().unwrap().address(),
            Some("alice@outside.example")
        );

        let PartType::Multipart(children) = &dsn.parts[0].body else {
            panic!("not multipart")
        };
        assert_eq!(children.len(), 3);
        let types: Vec<String> = children
            .iter()
            .map(|&i| {
                let ct = dsn.parts[i as usize].content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            types,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let text = |i: usize| {
            let part = &dsn.parts[children[i] as usize];
            String::from_utf8_lossy(part.contents()).into_owned()
        };
        assert!(text(0).contains("<bob@example.com>: 550 5.1.1 mailbox unavailable"));
        let status = text(1);
        assert!(status.starts_with("Reporting-MTA: dns; relay.example\r\nArrival-Date: "));
        for r in ["bob@example.com", "carol@example.com"] {
            assert!(
                status.contains(&format!(
                    "Final-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                     Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\r\n"
                )),
                "{status}"
            );
        }
        let headers = text(2);
        assert!(headers.contains("Message-ID: <orig-1@outside.example>"));
        assert!(!headers.contains("Secret body text"));
    }

    #[test]
    fn jobs_are_cleaned() {
        let job = clean_job(&BounceJob {
            recipient: "a@b.example\r\nBcc: x".into(),
            code: 250,
            status: "2.0.0".into(),
            text: "line\r\nInjected: yes".into(),
        });
        assert_eq!(job.recipient, "a@b.exampleBcc:x");
        assert_eq!(job.code, 550);
        assert_eq!(job.status, "5.0.0");
        assert_eq!(job.text, "line  Injected: yes");
        assert_eq!(clean_job(&jobs()[0]), jobs()[0]);
        assert_eq!(header_block(b"A: b\nC: d\n\nbody"), b"A: b\nC: d\n\n");
        assert_eq!(header_block(b"A: b"), b"A: b");
    }
}
