//! Automatic replies (`sluice:rules/reply`, WIT 0.2.1): the grant a step needs, the request a
//! rule makes, and the checks the host makes when it is made.
//!
//! The engine only records the request; the chain keeps it for recipients that are delivered,
//! and the dispatcher applies the never-answer list (RFC 3834), the once-per-N-days memory and
//! sends it. So a rule can ask, but never choose whom the reply goes to.

/// The longest reply text a rule may ask for, in bytes.
pub const MAX_REPLY_TEXT: usize = sluice_facts::MAX_REPLY_TEXT_BYTES;
/// The longest Subject a rule may give its reply, in bytes.
pub const MAX_REPLY_SUBJECT: usize = sluice_facts::MAX_REPLY_SUBJECT_BYTES;
/// The longest memory a reply may ask for: a year.
pub const MAX_ONCE_PER_DAYS: u32 = sluice_facts::MAX_REPLY_ONCE_PER_DAYS;

/// A step's permission to answer senders (`reply = { once_per_days = N }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyGrant {
    /// A sender gets at most one reply per recipient in this many days; a rule may ask for a
    /// longer interval, never a shorter one.
    pub once_per_days: u32,
}

/// An automatic reply a rule asked for, on behalf of one recipient of its group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplyRequest {
    /// The group recipient the reply is from (its `From:`).
    pub recipient: String,
    /// The plain-text body.
    pub text: String,
    /// The Subject; `None` gives `Auto: <original subject>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The interval the host enforces: the larger of the rule's and the grant's.
    pub once_per_days: u32,
}

/// Checks a reply request against the grant and the group's recipients, and fixes its
/// interval. `Err` is the message of the rule error the rule gets.
pub(crate) fn check_reply(
    grant: Option<&ReplyGrant>,
    step: &str,
    recipients: &[String],
    earlier: &[ReplyRequest],
    asked: ReplyRequest,
) -> Result<ReplyRequest, String> {
    let ReplyRequest {
        recipient,
        text,
        subject,
        once_per_days,
    } = asked;
    let Some(grant) = grant else {
        return Err(format!(
            "reply is not granted to step {step:?}: add `reply = {{ once_per_days = 7 }}` to the step in the config"
        ));
    };
    let Some(own) = recipients
        .iter()
        .find(|r| r.eq_ignore_ascii_case(&recipient))
    else {
        return Err(format!(
            "reply: {:?} is not one of the group's recipients",
            crate::state::preview(&recipient, 256)
        ));
    };
    if earlier
        .iter()
        .any(|r| r.recipient.eq_ignore_ascii_case(&recipient))
    {
        return Err(format!(
            "reply: the step already asked for a reply from {own}; one per recipient and message"
        ));
    }
    if text.len() > MAX_REPLY_TEXT {
        return Err(format!(
            "reply: the text is {} bytes; the limit is {MAX_REPLY_TEXT}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err("reply: the text contains NUL".into());
    }
    if let Some(s) = &subject {
        if s.len() > MAX_REPLY_SUBJECT {
            return Err(format!(
                "reply: the subject is {} bytes; the limit is {MAX_REPLY_SUBJECT}",
                s.len()
            ));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err("reply: the subject contains a control character (CR, LF ...)".into());
        }
    }
    if once_per_days > MAX_ONCE_PER_DAYS {
        return Err(format!(
            "reply: once-per-days is {once_per_days}; the limit is {MAX_ONCE_PER_DAYS}"
        ));
    }
    Ok(ReplyRequest {
        recipient: own.clone(),
        text,
        subject,
        once_per_days: once_per_days.max(grant.once_per_days),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(
        grant: Option<&ReplyGrant>,
        recipient: &str,
        earlier: &[ReplyRequest],
    ) -> Result<ReplyRequest, String> {
        check_reply(
            grant,
            "ooo",
            &["Bob@example.com".to_string()],
            earlier,
            ReplyRequest {
                recipient: recipient.into(),
                text: "Away".into(),
                subject: None,
                once_per_days: 1,
            },
        )
    }

    #[test]
    fn a_reply_needs_the_grant_a_group_recipient_and_is_once_per_recipient() {
        let grant = ReplyGrant { once_per_days: 7 };
        let err = ask(None, "bob@example.com", &[]).unwrap_err();
        assert!(
            err.contains("not granted") && err.contains("reply = {"),
            "{err}"
        );
        let err = ask(Some(&grant), "mallory@example.com", &[]).unwrap_err();
        assert!(err.contains("not one of the group's recipients"), "{err}");
        let ok = ask(Some(&grant), "BOB@example.com", &[]).unwrap();
        assert_eq!(ok.recipient, "Bob@example.com");
        assert_eq!(ok.once_per_days, 7, "never shorter than the grant");
        let err = ask(Some(&grant), "bob@example.com", &[ok]).unwrap_err();
        assert!(err.contains("already asked"), "{err}");
    }

    #[test]
    fn text_and_subject_are_bounded() {
        let grant = ReplyGrant { once_per_days: 1 };
        let rcpts = ["bob@example.com".to_string()];
        let long = "x".repeat(MAX_REPLY_TEXT + 1);
        let r = |text: &str, subject: Option<&str>, days| {
            check_reply(
                Some(&grant),
                "s",
                &rcpts,
                &[],
                ReplyRequest {
                    recipient: "bob@example.com".into(),
                    text: text.into(),
                    subject: subject.map(Into::into),
                    once_per_days: days,
                },
            )
        };
        assert!(r(&long, None, 1).unwrap_err().contains("limit is 8192"));
        assert!(r("a", Some("x\r\nBcc: all"), 1)
            .unwrap_err()
            .contains("control"));
        assert!(r("a", None, 1000).unwrap_err().contains("once-per-days"));
        assert_eq!(r("a", Some("Away"), 30).unwrap().once_per_days, 30);
    }
}
