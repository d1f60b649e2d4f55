//! `rule-reader`: calls every `message` accessor and reports what it saw as `X-Seen-*`
//! headers, for the host's message-model tests.
//!
//! Accessors called: `header("From")`, `headers()`, `subject()`, `from()`, `from-name()`,
//! `size()`, `text-body(100)`, `html-body(0)`, `attachments()`, `raw()`.
//!
//! Headers returned (all `add-header`, in this order; values are ASCII-safe: bytes outside
//! printable ASCII are written `\u{..}` and values are cut to 200 characters with `...`;
//! an absent optional value is `<none>`):
//!
//! | header | value |
//! |---|---|
//! | `X-Seen-Subject` | `subject()` |
//! | `X-Seen-Distinct-Header-Names` | `header-names()` (0.1.1), joined with `,` |
//! | `X-Seen-From` | `from()` |
//! | `X-Seen-From-Name` | `from-name()` |
//! | `X-Seen-From-Header` | `header("From")` values joined with ` \| ` |
//! | `X-Seen-Header-Count` | number of `headers()` |
//! | `X-Seen-Header-Names` | `headers()` names joined with `,` |
//! | `X-Seen-Size` | `size()` |
//! | `X-Seen-Text-Len` | byte length of `text-body(100)` (so at most 100) |
//! | `X-Seen-Text` | `text-body(100)` |
//! | `X-Seen-Html-Len` | byte length of `html-body(0)` |
//! | `X-Seen-Attachments` | `name/type/size` per attachment joined with `;` (`<none>` for no name), empty if none |
//! | `X-Seen-Raw-Len` | `raw()` length (equals `size()` on a correct host) |
//! | `X-Seen-Recipients` | `ctx.recipients` joined with `,` |
//! | `X-Seen-Domain` | `ctx.domain` |
//! | `X-Seen-Mail-From` | `ctx.mail-from` |
//! | `X-Seen-Message-Id` | `ctx.message-id` |
//! | `X-Seen-Received-At` | `ctx.received-at` |
//! | `X-Seen-Spf`, `-Dkim`, `-Dmarc`, `-Spam`, `-Virus` | verdict names (`pass`, `processing-failed`, ...) |
//! | `X-Seen-Dmarc-Policy` | `ctx.verdicts.dmarc-policy` |
//! | `X-Seen-Config` | `ctx.config`, the raw JSON |
//!
//! Any config is accepted.

use sluice_sdk::prelude::*;
use sluice_sdk::serde_json::Value;

/// The rule.
pub struct Reader;

/// Longest reported value, in characters (before the `...`).
pub const MAX_VALUE: usize = 200;

impl Rule for Reader {
    type Config = Value;

    fn evaluate(msg: &Message, ctx: &Context, _: &Value) -> Result<Vec<Action>, RuleError> {
        let from_header = msg.header("From");
        let headers = msg.headers();
        let text = msg.text_body(100);
        let html = msg.html_body(0);
        let attachments = msg.attachments();
        let raw_len = msg.raw().len();
        let v = ctx.verdicts();
        let len = |s: &Option<String>| s.as_ref().map_or("<none>".into(), |s| s.len().to_string());
        let seen = [
            ("Subject", opt(msg.subject())),
            ("From", opt(msg.from())),
            ("From-Name", opt(msg.from_name())),
            ("From-Header", from_header.join(" | ")),
            ("Header-Count", headers.len().to_string()),
            (
                "Header-Names",
                headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("Distinct-Header-Names", msg.header_names().join(",")),
            ("Size", msg.size().to_string()),
            ("Text-Len", len(&text)),
            ("Text", opt(text)),
            ("Html-Len", len(&html)),
            ("Attachments", describe_attachments(&attachments)),
            ("Raw-Len", raw_len.to_string()),
            ("Recipients", ctx.recipients().join(",")),
            ("Domain", ctx.domain().to_string()),
            ("Mail-From", ctx.mail_from().to_string()),
            ("Message-Id", ctx.message_id().to_string()),
            ("Received-At", ctx.received_at().to_string()),
            ("Spf", v.spf.as_str().into()),
            ("Dkim", v.dkim.as_str().into()),
            ("Dmarc", v.dmarc.as_str().into()),
            ("Spam", v.spam.as_str().into()),
            ("Virus", v.virus.as_str().into()),
            ("Dmarc-Policy", opt(v.dmarc_policy.clone())),
            ("Config", ctx.config_json().to_string()),
        ];
        Ok(seen
            .into_iter()
            .map(|(name, value)| Action::add_header(format!("X-Seen-{name}"), ascii_safe(&value)))
            .collect())
    }
}

sluice_sdk::export_rule!(Reader);

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "<none>".into())
}

/// `name/type/size` per attachment, joined with `;`.
pub fn describe_attachments(attachments: &[AttachmentInfo]) -> String {
    attachments
        .iter()
        .map(|a| {
            let name = a.name.as_deref().unwrap_or("<none>");
            format!("{name}/{}/{}", a.content_type, a.size)
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Printable ASCII kept, everything else (including CR, LF, tab) as `\u{hex}`; at most
/// [`MAX_VALUE`] characters of input, then `...`.
pub fn ascii_safe(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_VALUE {
            out.push_str("...");
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_ascii_safe_and_bounded() {
        assert_eq!(
            ascii_safe("Grüße\r\nBcc: x"),
            "Gr\\u{fc}\\u{df}e\\u{d}\\u{a}Bcc: x"
        );
        let long = "a".repeat(500);
        assert_eq!(ascii_safe(&long), format!("{}...", "a".repeat(MAX_VALUE)));
    }

    #[test]
    fn attachments_are_listed() {
        let list = vec![
            AttachmentInfo {
                name: Some("a.pdf".into()),
                content_type: "application/pdf".into(),
                size: 10,
            },
            AttachmentInfo {
                name: None,
                content_type: "image/png".into(),
                size: 3,
            },
        ];
        assert_eq!(
            describe_attachments(&list),
            "a.pdf/application/pdf/10;<none>/image/png/3"
        );
        assert_eq!(describe_attachments(&[]), "");
    }
}
