//! What the Sluice host and the rule SDKs must agree on, kept in one place: the limits the
//! host puts on a rule's actions, and what it accepts as an address. The host checks every
//! action against these; a rule (through `sluice-sdk`) can check its config by the same rules,
//! so a destination `validate-config` accepts is one the host will not refuse later.
//!
//! No dependencies: it is compiled into rules as well as into the host.

use std::fmt;

/// The longest address accepted, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// The longest header field name a rule may add or set, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 76;
/// The longest header field value a rule may add or set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// The longest banner text (and HTML banner), in bytes.
pub const MAX_BANNER_BYTES: usize = 64 * 1024;
/// The longest folder name, in bytes (one directory or key segment).
pub const MAX_FOLDER_BYTES: usize = 255;
/// Longest note that replaces a stripped part (`replace-part`), in bytes: a sentence or two.
pub const MAX_NOTE_BYTES: usize = 4096;
/// The most addresses one `set-recipients`, `add-recipients` or forward may name.
pub const MAX_RECIPIENTS_PER_ACTION: usize = 100;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Nothing at all.
    Empty,
    /// Longer than [`MAX_ADDRESS_BYTES`].
    TooLong,
    /// A space, line break or control character.
    Space,
    /// `<` or `>`: a display-name form instead of the bare address.
    AngleBrackets,
    /// No `@`, or more than one.
    NotOneAt,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// Nothing after the `@`.
    EmptyDomain,
    /// A domain that starts or ends with a dot or has two in a row.
    EmptyLabel,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "it is empty",
            AddressError::TooLong => "it is longer than 254 bytes",
            AddressError::Space => "it contains a space, line break or control character",
            AddressError::AngleBrackets => {
                "it contains '<' or '>'; give the bare address without a display name"
            }
            AddressError::NotOneAt => "it must contain exactly one '@'",
            AddressError::EmptyLocalPart => "the local part before '@' is empty",
            AddressError::EmptyDomain => "the domain after '@' is empty",
            AddressError::EmptyLabel => "the domain has an empty label",
        })
    }
}

impl std::error::Error for AddressError {}

/// Checks a bare address (`local@domain`) the way the host checks every recipient a rule
/// names: not empty, at most [`MAX_ADDRESS_BYTES`], no spaces or control characters, no
/// angle brackets, exactly one `@` with something on both sides, no empty domain label.
/// Deliberately not a full RFC 5321 parser: quoted local parts with `@` are refused.
pub fn check_address(addr: &str) -> Result<(), AddressError> {
    if addr.is_empty() {
        return Err(AddressError::Empty);
    }
    if addr.len() > MAX_ADDRESS_BYTES {
        return Err(AddressError::TooLong);
    }
    // Brackets first: `Ann <a@example.com>` is a display-name form, and saying so helps more
    // than pointing at its space.
    if addr.contains(['<', '>']) {
        return Err(AddressError::AngleBrackets);
    }
    if addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AddressError::Space);
    }
    let mut halves = addr.split('@');
    let (Some(local), Some(domain), None) = (halves.next(), halves.next(), halves.next()) else {
        return Err(AddressError::NotOneAt);
    };
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(AddressError::EmptyLabel);
    }
    Ok(())
}

/// The longest text of an automatic reply (`reply.send`), in bytes.
pub const MAX_REPLY_TEXT_BYTES: usize = 8 * 1024;
/// The longest Subject a rule may give an automatic reply, in bytes.
pub const MAX_REPLY_SUBJECT_BYTES: usize = 200;
/// The longest interval a reply's once-per-days may ask for (a year).
pub const MAX_REPLY_ONCE_PER_DAYS: u32 = 366;

/// Why a message must not be answered automatically (RFC 3834 §2 and §3.1). The host refuses
/// to send a reply in each of these cases whatever the rule asked; a rule may check the same
/// (through `sluice-sdk`) to skip its own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoAutoReply {
    /// MAIL FROM:<>: the message is a bounce or another automatic notice.
    NullSender,
    /// The sender is `MAILER-DAEMON`, `postmaster` or another address that is not a person
    /// (`*-request`, `owner-*`, `noreply`, `bounce*`, ...).
    DaemonSender,
    /// `List-Id` or another `List-*` field: mail from a mailing list.
    ListMail,
    /// `Precedence: bulk`, `list` or `junk`.
    Bulk,
    /// `Auto-Submitted` other than `no`: the message is itself automatic.
    AutoSubmitted,
    /// The sender is the recipient itself.
    ToItself,
}

impl NoAutoReply {
    /// Short name for traces, logs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            NoAutoReply::NullSender => "null-sender",
            NoAutoReply::DaemonSender => "daemon-sender",
            NoAutoReply::ListMail => "list-mail",
            NoAutoReply::Bulk => "bulk",
            NoAutoReply::AutoSubmitted => "auto-submitted",
            NoAutoReply::ToItself => "to-itself",
        }
    }
}

impl fmt::Display for NoAutoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoAutoReply::NullSender => "null sender (MAIL FROM:<>)",
            NoAutoReply::DaemonSender => {
                "the sender is a mailer daemon or another non-person address"
            }
            NoAutoReply::ListMail => "mailing-list mail (List-Id or another List-* field)",
            NoAutoReply::Bulk => "bulk mail (Precedence: bulk, list or junk)",
            NoAutoReply::AutoSubmitted => "the message is automatic (Auto-Submitted other than no)",
            NoAutoReply::ToItself => "the sender is the recipient itself",
        })
    }
}

/// Local parts that never get an automatic reply: not a person, or a list's own address.
fn is_daemon_local_part(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "mailer-daemon" | "postmaster" | "listserv" | "majordomo" | "mailer" | "daemon"
    ) || l.starts_with("owner-")
        || l.ends_with("-request")
        || l.ends_with("-owner")
        || l.starts_with("bounce")
        || l.starts_with("noreply")
        || l.starts_with("no-reply")
        || l.starts_with("do-not-reply")
        || l.starts_with("donotreply")
}

/// Whether a message from `mail_from` (the envelope sender, empty for a null sender) to
/// `recipient` must not be answered automatically, and why; `header(name)` gives every value
/// of a header field (case-insensitive name), `names` every field name of the message. The
/// first reason in the order of [`NoAutoReply`] is given.
pub fn no_auto_reply<'a>(
    mail_from: &str,
    recipient: &str,
    names: impl IntoIterator<Item = &'a str>,
    header: impl Fn(&str) -> Vec<String>,
) -> Option<NoAutoReply> {
    let sender = mail_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if sender.is_empty() {
        return Some(NoAutoReply::NullSender);
    }
    let local = sender.rsplit_once('@').map_or(sender, |(l, _)| l);
    if is_daemon_local_part(local) {
        return Some(NoAutoReply::DaemonSender);
    }
    if names
        .into_iter()
        .any(|n| n.len() > 5 && n.is_char_boundary(5) && n[..5].eq_ignore_ascii_case("list-"))
    {
        return Some(NoAutoReply::ListMail);
    }
    if header("Precedence").iter().any(|v| {
        let v = v.trim();
        ["bulk", "list", "junk"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
    }) {
        return Some(NoAutoReply::Bulk);
    }
    if header("Auto-Submitted").iter().any(|v| {
        // `no` may carry comments or parameters: `no (a person wrote this)`.
        let token = v
            .trim()
            .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
            .next()
            .unwrap_or("");
        !token.eq_ignore_ascii_case("no")
    }) {
        return Some(NoAutoReply::AutoSubmitted);
    }
    if sender.eq_ignore_ascii_case(recipient.trim()) {
        return Some(NoAutoReply::ToItself);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_the_host_accepts_and_why_others_are_refused() {
        for ok in ["a@b", "ann+tag@example.com", "x@sub.example.co.uk"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for (bad, why) in [
            ("", AddressError::Empty),
            (long.as_str(), AddressError::TooLong),
            ("a b@example.com", AddressError::Space),
            ("a@example.com\r\n", AddressError::Space),
            ("Ann <a@example.com>", AddressError::AngleBrackets),
            ("<a@example.com>", AddressError::AngleBrackets),
            ("nobody", AddressError::NotOneAt),
            ("a@b@c", AddressError::NotOneAt),
            ("@example.com", AddressError::EmptyLocalPart),
            ("a@", AddressError::EmptyDomain),
            ("a@x..example", AddressError::EmptyLabel),
            ("a@.example", AddressError::EmptyLabel),
            ("a@example.", AddressError::EmptyLabel),
        ] {
            assert_eq!(check_address(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            AddressError::NotOneAt.to_string(),
            "it must contain exactly one '@'"
        );
    }

    #[test]
    fn the_never_answer_list_of_rfc_3834() {
        let check = |from: &str, headers: &[(&str, &str)]| {
            no_auto_reply(
                from,
                "bob@example.com",
                headers.iter().map(|(n, _)| *n),
                |name| {
                    headers
                        .iter()
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_string())
                        .collect()
                },
            )
        };
        let person = "alice@outside.example";
        assert_eq!(check(person, &[("Subject", "Hi")]), None);
        assert_eq!(check(person, &[("Auto-Submitted", "no")]), None);
        assert_eq!(check(person, &[("Auto-Submitted", "No (typed)")]), None);
        assert_eq!(check(person, &[("Precedence", "first-class")]), None);
        assert_eq!(check("", &[]), Some(NoAutoReply::NullSender));
        assert_eq!(check("<>", &[]), Some(NoAutoReply::NullSender));
        for daemon in [
            "MAILER-DAEMON@mx.example",
            "postmaster@outside.example",
            "owner-team@lists.example",
            "team-request@lists.example",
            "noreply@shop.example",
            "bounces+123@esp.example",
        ] {
            assert_eq!(
                check(daemon, &[]),
                Some(NoAutoReply::DaemonSender),
                "{daemon}"
            );
        }
        assert_eq!(
            check(person, &[("List-Id", "<team.lists.example>")]),
            Some(NoAutoReply::ListMail)
        );
        assert_eq!(
            check(person, &[("list-unsubscribe", "<mailto:x@y>")]),
            Some(NoAutoReply::ListMail)
        );
        assert_eq!(
            check(person, &[("Precedence", " Bulk ")]),
            Some(NoAutoReply::Bulk)
        );
        assert_eq!(
            check(person, &[("Precedence", "junk")]),
            Some(NoAutoReply::Bulk)
        );
        assert_eq!(
            check(person, &[("Precedence", "list")]),
            Some(NoAutoReply::Bulk)
        );
        assert_eq!(
            check(person, &[("Auto-Submitted", "auto-replied")]),
            Some(NoAutoReply::AutoSubmitted)
        );
        assert_eq!(
            check(
                person,
                &[("Auto-Submitted", "auto-generated; owner-email=x@y")]
            ),
            Some(NoAutoReply::AutoSubmitted)
        );
        assert_eq!(check("BOB@example.com", &[]), Some(NoAutoReply::ToItself));
    }
}
