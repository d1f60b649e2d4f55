//! Automatic replies (`sluice:rules/reply`, WIT 0.2.1): an out-of-office answer to the
//! sender, sent by the host on behalf of one of the group's recipients.
//!
//! The step must be granted it (`reply = { once_per_days = 7 }` in the host's config). The host
//! picks the recipient of the reply (the envelope sender), builds it (RFC 3834:
//! `Auto-Submitted: auto-replied`, `In-Reply-To`, `References`, a null envelope sender),
//! sends it only after the recipient's copy was delivered, never answers mailing lists, bulk
//! or automatic mail, null or daemon senders or the recipient itself, and answers one sender
//! at most once per recipient in the interval. [`never_answer`] is the same check, for a
//! rule that wants to skip its own work (a lookup) for such mail.
//!
//! ```no_run
//! use sluice_sdk::reply::{self, Reply};
//! # fn f() -> Result<(), sluice_sdk::RuleError> {
//! reply::send(&Reply::new("bob@example.com", "I am away until Monday.").once_per_days(7))?;
//! # Ok(()) }
//! ```
//!
//! Outside wasm32 (native unit tests) the replies are kept in a thread-local list that
//! [`take_sent`] returns.

use crate::{Context, Message, RuleError};

pub use sluice_facts::NoAutoReply;

/// A reply to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// The group recipient the reply is from (its `From:`).
    pub recipient: String,
    /// The plain-text body (at most [`sluice_facts::MAX_REPLY_TEXT_BYTES`]).
    pub text: String,
    /// The Subject; `None` gives `Auto: <original subject>`.
    pub subject: Option<String>,
    /// Answer one sender at most once in this many days (0: the step's grant decides; a
    /// shorter interval than the grant's is raised to it).
    pub once_per_days: u32,
}

impl Reply {
    /// A reply from `recipient` saying `text`.
    pub fn new(recipient: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply {
            recipient: recipient.into(),
            text: text.into(),
            ..Reply::default()
        }
    }

    /// Sets the Subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Reply {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the interval.
    pub fn once_per_days(mut self, days: u32) -> Reply {
        self.once_per_days = days;
        self
    }
}

/// Asks the host to answer the sender. `Err` (permanent) when the step is not granted
/// `reply`, the recipient is not one of the group's, the text or subject is too long, or a
/// reply from this recipient was already asked for in this step.
pub fn send(reply: &Reply) -> Result<(), RuleError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::sluice::rules::reply::send(
            &crate::bindings::sluice::rules::reply::ReplyRequest {
                recipient: reply.recipient.clone(),
                text: reply.text.clone(),
                subject: reply.subject.clone(),
                once_per_days: reply.once_per_days,
            },
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        double::send(reply)
    }
}

/// Why the host will not answer this message for `recipient`, if it will not (RFC 3834's
/// list, the host's own check): a rule may call it first to skip its work.
pub fn never_answer(msg: &Message, ctx: &Context, recipient: &str) -> Option<NoAutoReply> {
    let names = msg.header_names();
    sluice_facts::no_auto_reply(
        ctx.mail_from(),
        recipient,
        names.iter().map(String::as_str),
        |name| msg.header(name),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub use double::take_sent;

#[cfg(not(target_arch = "wasm32"))]
mod double {
    use std::cell::RefCell;

    use super::Reply;
    use crate::RuleError;

    thread_local! {
        static SENT: RefCell<Vec<Reply>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn send(reply: &Reply) -> Result<(), RuleError> {
        SENT.with(|s| s.borrow_mut().push(reply.clone()));
        Ok(())
    }

    /// The replies asked for since the last call.
    pub fn take_sent() -> Vec<Reply> {
        SENT.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_double_keeps_what_was_asked() {
        let ask = Reply::new("bob@example.com", "Away")
            .subject("Out of office")
            .once_per_days(3);
        send(&ask).unwrap();
        assert_eq!(take_sent(), [ask]);
        assert!(take_sent().is_empty());
    }
}
