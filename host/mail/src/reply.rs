//! Automatic replies (RFC 3834): when a message must not be answered, and the reply itself.
//!
//! The reply is a new message, not a rewrite of the original: `From:` the recipient it answers
//! for, `To:` the envelope sender, `Auto-Submitted: auto-replied` (so the other side's
//! responders stay quiet), `In-Reply-To` and `References` from the original's Message-ID and
//! References (so it threads), and a plain-text body. Nothing of the original's body goes
//! back: a forged sender learns nothing but that the address exists and is away.

use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;

use crate::edit::validate_address;
use crate::message::Message;

pub use sluice_facts::NoAutoReply;

/// The most Message-IDs a reply's References keeps (the original's own and the latest of its
/// References): enough to thread, bounded against a hostile header.
const MAX_REFERENCES: usize = 10;

/// Whether `msg`, received from `mail_from` (empty: a null sender) for `recipient`, must not
/// be answered automatically, and why (see [`NoAutoReply`]).
pub fn no_auto_reply(msg: &Message, mail_from: &str, recipient: &str) -> Option<NoAutoReply> {
    let names = msg.header_names();
    sluice_facts::no_auto_reply(
        mail_from,
        recipient,
        names.iter().map(String::as_str),
        |name| msg.header(name),
    )
}

/// What a reply says and to whom.
#[derive(Debug, Clone, Copy)]
pub struct AutoReply<'a> {
    /// The recipient it answers for: the reply's `From:`.
    pub from: &'a str,
    /// The envelope sender of the original: the reply's `To:`.
    pub to: &'a str,
    /// The Subject; `None` gives `Auto: <original subject>`.
    pub subject: Option<&'a str>,
    /// The plain-text body.
    pub text: &'a str,
    /// The reply's own Message-ID, without angle brackets (stable per message and recipient,
    /// so a rebuilt reply is the same message).
    pub message_id: &'a str,
}

/// Why a reply could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// `from` or `to` is not a bare address.
    #[error("reply {role}: {reason}")]
    Address {
        /// `from` or `to`.
        role: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The builder failed to write the message.
    #[error("cannot write the reply: {0}")]
    Write(#[from] std::io::Error),
}

/// The Message-IDs of `msg` (bare, without brackets): its References then its own Message-ID.
fn thread_ids(msg: &Message) -> (Option<String>, Vec<String>) {
    let bare = |s: &str| {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>');
        (!s.is_empty()
            && !s.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>'))
        .then(|| s.to_string())
    };
    let own = msg.header("Message-ID").first().and_then(|v| bare(v));
    let mut refs: Vec<String> = msg
        .header("References")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|r| bare(&r))
        .collect();
    if let Some(id) = &own {
        refs.retain(|r| r != id);
        refs.push(id.clone());
    }
    let skip = refs.len().saturating_sub(MAX_REFERENCES);
    (own, refs.split_off(skip))
}

/// Builds the reply to `original` (RFC 3834 §3).
pub fn build_auto_reply(original: &Message, reply: &AutoReply<'_>) -> Result<Vec<u8>, ReplyError> {
    for (role, addr) in [("from", reply.from), ("to", reply.to)] {
        validate_address(addr).map_err(|e| ReplyError::Address {
            role,
            reason: e.to_string(),
        })?;
    }
    let subject = match reply.subject {
        Some(s) => s.to_string(),
        None => {
            let original = original.subject().unwrap_or_default();
            let original: String = original
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(200)
                .collect();
            format!("Auto: {}", original.trim())
        }
    };
    let text = if reply.text.ends_with('\n') {
        reply.text.replace("\r\n", "\n")
    } else {
        format!("{}\n", reply.text.replace("\r\n", "\n"))
    };
    let mut builder = MessageBuilder::new()
        .from(reply.from)
        .to(reply.to)
        .subject(subject)
        .message_id(reply.message_id.to_string())
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .text_body(text);
    let (own, refs) = thread_ids(original);
    if let Some(id) = own {
        builder = builder.in_reply_to(id);
    }
    if !refs.is_empty() {
        let value: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.header("References", Raw::new(value.join("\r\n ")));
    }
    Ok(builder.write_to_vec()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "From: Alice <alice@outside.example>\r\n\
        To: bob@example.com\r\n\
        Subject: Lunch on Friday?\r\n\
        Message-ID: <m2@outside.example>\r\n\
        References: <m0@outside.example>\r\n <m1@outside.example>\r\n\
        \r\n\
        Are you in?\r\n";

    fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(raw).unwrap()
    }

    #[test]
    fn a_reply_threads_says_it_is_automatic_and_carries_only_its_own_text() {
        let msg = Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
        let raw = build_auto_reply(
            &msg,
            &AutoReply {
                from: "bob@example.com",
                to: "alice@outside.example",
                subject: None,
                text: "Away until Monday. – Bob",
                message_id: "auto-1@example.com",
            },
        )
        .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"), "{text}");
        let reply = parse(&raw);
        assert_eq!(reply.subject(), Some("Auto: Lunch on Friday?"));
        assert_eq!(reply.in_reply_to().as_text(), Some("m2@outside.example"));
        let refs: Vec<&str> = reply
            .references()
            .as_text_list()
            .unwrap_or_default()
            .iter()
            .map(|r| r.as_ref())
            .collect();
        assert_eq!(
            refs,
            [
                "m0@outside.example",
                "m1@outside.example",
                "m2@outside.example"
            ]
        );
        assert_eq!(reply.message_id(), Some("auto-1@example.com"));
        assert_eq!(
            reply
                .from()
                .and_then(|f| f.first())
                .and_then(|a| a.address()),
            Some("bob@example.com")
        );
        assert_eq!(
            reply.to().and_then(|f| f.first()).and_then(|a| a.address()),
            Some("alice@outside.example")
        );
        assert_eq!(
            reply.body_text(0).as_deref().map(str::trim_end),
            Some("Away until Monday. – Bob")
        );
        assert!(!text.contains("Are you in?"), "{text}");
    }

    #[test]
    fn the_subject_can_be_given_and_bad_addresses_are_refused() {
        let msg = Message::parse(b"Subject: x\r\n\r\nbody\r\n".to_vec()).unwrap();
        let mut reply = AutoReply {
            from: "bob@example.com",
            to: "alice@outside.example",
            subject: Some("Out of office"),
            text: "Away",
            message_id: "auto-2@example.com",
        };
        let raw = build_auto_reply(&msg, &reply).unwrap();
        let parsed = parse(&raw);
        assert_eq!(parsed.subject(), Some("Out of office"));
        assert!(parsed.in_reply_to().is_empty(), "no Message-ID to answer");
        reply.to = "alice@outside.example\r\nBcc: all@example.com";
        assert!(build_auto_reply(&msg, &reply).is_err());
    }

    #[test]
    fn the_host_reads_the_never_answer_list_from_the_message() {
        let list = Message::parse(
            b"From: a@outside.example\r\nList-Id: <team.lists.example>\r\n\r\nx\r\n".to_vec(),
        )
        .unwrap();
        assert_eq!(
            no_auto_reply(&list, "a@outside.example", "bob@example.com"),
            Some(NoAutoReply::ListMail)
        );
        let person = Message::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
        assert_eq!(
            no_auto_reply(&person, "alice@outside.example", "bob@example.com"),
            None
        );
        assert_eq!(
            no_auto_reply(&person, "", "bob@example.com"),
            Some(NoAutoReply::NullSender)
        );
    }
}
