//! Constructors and predicates on the generated WIT types.

use crate::{
    Action, Banner, Bounce, Header, Message, PartReplacement, Position, RuleError, Verdict,
    Verdicts,
};

/// Constructors, so a rule writes `Action::add_header("X-Tag", "1")`.
impl Action {
    /// `add-header`: add a field at the top of the header block.
    pub fn add_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::AddHeader(Header {
            name: name.into(),
            value: value.into(),
        })
    }

    /// `set-header`: replace every field with this name by one field (or add it).
    pub fn set_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::SetHeader(Header {
            name: name.into(),
            value: value.into(),
        })
    }

    /// `remove-header`: remove every field with this name (protected names are refused).
    pub fn remove_header(name: impl Into<String>) -> Self {
        Action::RemoveHeader(name.into())
    }

    /// `prefix-subject`: prefix the Subject unless it already starts with `prefix`.
    pub fn prefix_subject(prefix: impl Into<String>) -> Self {
        Action::PrefixSubject(prefix.into())
    }

    /// `add-banner` with full control over HTML and position. The host adds it only to the
    /// displayed parts that do not show it already, so a rule need not check.
    pub fn banner(text: impl Into<String>, html: Option<String>, position: Position) -> Self {
        Action::AddBanner(Banner {
            text: text.into(),
            html,
            position,
        })
    }

    /// `add-banner` of a plain-text banner at the top (the host escapes it for HTML parts).
    pub fn banner_top(text: impl Into<String>) -> Self {
        Self::banner(text, None, Position::Top)
    }

    /// `add-banner` of a plain-text banner at the bottom.
    pub fn banner_bottom(text: impl Into<String>) -> Self {
        Self::banner(text, None, Position::Bottom)
    }

    /// `set-recipients`: replace the group's recipients.
    pub fn set_recipients<I, S>(recipients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Action::SetRecipients(recipients.into_iter().map(Into::into).collect())
    }

    /// `add-recipients`: forward a copy to these addresses too.
    pub fn add_recipients<I, S>(recipients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Action::AddRecipients(recipients.into_iter().map(Into::into).collect())
    }

    /// `file-into`: deliver local recipients into `folder` instead of `INBOX`.
    pub fn file_into(folder: impl Into<String>) -> Self {
        Action::FileInto(folder.into())
    }

    /// `bounce` with an SMTP code and an RFC 3463 status: `Action::bounce(550, "5.1.1", "no such user")`.
    pub fn bounce(code: u16, status: impl Into<String>, text: impl Into<String>) -> Self {
        Action::Bounce(Bounce {
            code,
            status: status.into(),
            text: text.into(),
        })
    }

    /// A policy refusal: `bounce` 550 5.7.1 with `text`.
    pub fn reject(text: impl Into<String>) -> Self {
        Self::bounce(550, "5.7.1", text)
    }

    /// `replace-part` (WIT 0.2.1): strip the part `id` (from [`Message::parts`]) and put a
    /// text/plain note in its place; every other byte of the message is kept. A host older
    /// than 0.2.1 refuses to load a rule built with this SDK.
    ///
    /// [`Message::parts`]: crate::Message::parts
    pub fn replace_part(id: u32, note: impl Into<String>) -> Self {
        Action::ReplacePart(PartReplacement {
            id,
            text: note.into(),
        })
    }
}

impl RuleError {
    /// A failure that retrying will not fix (bad config, unparseable input).
    pub fn permanent(message: impl Into<String>) -> Self {
        RuleError {
            message: message.into(),
            temporary: false,
        }
    }

    /// A failure that may go away on retry (with `on_error = "bounce"` the host tempfails).
    pub fn temporary(message: impl Into<String>) -> Self {
        RuleError {
            message: message.into(),
            temporary: true,
        }
    }
}

impl Verdicts {
    /// Every verdict `unknown` and no DMARC policy: what the host reports for a message with
    /// no SES verdicts (e.g. one run from a file), and a starting point in native tests.
    pub fn unknown() -> Verdicts {
        Verdicts {
            spf: Verdict::Unknown,
            dkim: Verdict::Unknown,
            dmarc: Verdict::Unknown,
            spam: Verdict::Unknown,
            virus: Verdict::Unknown,
            dmarc_policy: None,
        }
    }
}

impl Verdict {
    /// `true` for `pass`.
    pub fn passed(self) -> bool {
        self == Verdict::Pass
    }

    /// `true` for `fail` (not for `gray`, `processing-failed`, `disabled` or `unknown`).
    pub fn failed(self) -> bool {
        self == Verdict::Fail
    }

    /// The WIT name: `pass`, `fail`, `gray`, `processing-failed`, `disabled`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Gray => "gray",
            Verdict::ProcessingFailed => "processing-failed",
            Verdict::Disabled => "disabled",
            Verdict::Unknown => "unknown",
        }
    }
}

impl Message {
    /// The first value of the named header, if present (see `header` for all of them).
    pub fn first_header(&self, name: &str) -> Option<String> {
        self.header(name).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_build_the_wit_variants() {
        assert_eq!(
            Action::add_header("X-A", "1"),
            Action::AddHeader(Header {
                name: "X-A".into(),
                value: "1".into()
            })
        );
        assert_eq!(
            Action::reject("no"),
            Action::Bounce(Bounce {
                code: 550,
                status: "5.7.1".into(),
                text: "no".into()
            })
        );
        assert_eq!(
            Action::add_recipients(["a@x.test"]),
            Action::AddRecipients(vec!["a@x.test".to_string()])
        );
        assert!(!RuleError::permanent("x").temporary);
        assert!(Verdict::Fail.failed() && !Verdict::Gray.failed() && Verdict::Pass.passed());
        assert_eq!(Verdict::ProcessingFailed.as_str(), "processing-failed");
    }

    #[test]
    fn config_parsing_reports_serde_json_messages() {
        #[derive(serde::Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            text: String,
        }
        let err = crate::parse_config::<C>(r#"{"txt": "a"}"#).unwrap_err();
        assert!(
            err.contains("unknown field `txt`") && err.contains("column"),
            "{err}"
        );
        assert!(crate::parse_config::<C>("  ").is_ok());
        assert!(crate::parse_config::<crate::NoConfig>("{}").is_ok());
        assert!(crate::parse_config::<crate::NoConfig>(r#"{"a":1}"#).is_err());
    }
}
