//! The edits a rule can ask for, and their validation.
//!
//! Validation runs twice: once per action when a rule returns (so a bad action fails that step,
//! with the step's `on_error` policy), and again inside [`crate::apply_edits`] so the splicer
//! never sees an edit that could inject a header or forge a trace field.

use serde::{Deserialize, Serialize};

// The limits live in `sluice-facts`, which the rule SDK links too.
/// Longest header value a rule may set, in bytes (before any RFC 2047 encoding).
pub const MAX_HEADER_VALUE: usize = sluice_facts::MAX_HEADER_VALUE_BYTES;
/// Longest header name a rule may use (RFC 5322 lines should stay within 78 characters).
pub const MAX_HEADER_NAME: usize = sluice_facts::MAX_HEADER_NAME_BYTES;
/// Longest banner text or HTML, in bytes.
pub const MAX_BANNER: usize = sluice_facts::MAX_BANNER_BYTES;
/// Longest address (RFC 5321 path limit minus the angle brackets).
pub const MAX_ADDRESS: usize = sluice_facts::MAX_ADDRESS_BYTES;
/// Longest folder name (a common file-name limit).
pub const MAX_FOLDER: usize = sluice_facts::MAX_FOLDER_BYTES;
/// Longest note that replaces a part, in bytes: a sentence or two, not a document.
pub const MAX_NOTE: usize = sluice_facts::MAX_NOTE_BYTES;

/// One edit of the message, as asked for by a rule. Edits are applied in order by
/// [`crate::apply_edits`], each seeing the result of the ones before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edit {
    /// Add a field at the top of the header block.
    AddHeader {
        /// Field name.
        name: String,
        /// Unstructured value; non-ASCII text is RFC 2047-encoded by the host.
        value: String,
    },
    /// Replace the first field with this name in place and remove the others (or add it at the
    /// top when there is none).
    SetHeader {
        /// Field name.
        name: String,
        /// Unstructured value; non-ASCII text is RFC 2047-encoded by the host.
        value: String,
    },
    /// Remove every field with this name.
    RemoveHeader(String),
    /// Remove every `Received` field. Only an outbound chain may ask (the chain decides, see
    /// `sluice-chain`): on mail a local user sends, those fields are the internal hops (the
    /// client's address, the submission server), while on received mail they are the trace
    /// that must stay, so `RemoveHeader("Received")` stays refused.
    RemoveReceived,
    /// Prefix the Subject; a no-op when the decoded Subject already starts with the prefix.
    PrefixSubject(String),
    /// Insert a banner into every displayed text part.
    AddBanner(Banner),
    /// Replace one leaf part (its header block and body) by a `text/plain; charset=utf-8`
    /// part holding a short note, keeping every other byte (WIT 0.2.1 `replace-part`).
    ReplacePart(PartReplacement),
}

/// A part to replace by a note: the attachment stripped, the note saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReplacement {
    /// The part's id as `Message::parts` lists it, in the message as received.
    pub id: u32,
    /// The note, plain text (UTF-8, line breaks allowed), at most [`MAX_NOTE`] bytes.
    pub text: String,
}

/// A banner for every displayed text part that does not show it already (see
/// `carries_banner`: the same banner is never added twice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Banner {
    /// Plain text, for text/plain parts (and, HTML-escaped, for text/html parts when `html` is
    /// `None`).
    pub text: String,
    /// HTML inserted as-is into text/html parts.
    pub html: Option<String>,
    /// Top or bottom of each part.
    pub position: Position,
}

/// Where a banner goes in each displayed text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Before the body (right after `<body ...>` in HTML).
    Top,
    /// After the body (right before `</body>` in HTML).
    Bottom,
}

/// What to do with a banner when the message has no displayed text part (e.g. only an image).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BannerFallback {
    /// Wrap the message: a new multipart/mixed whose first part is the banner text and whose
    /// second part is the original message, byte for byte, as message/rfc822.
    #[default]
    Wrap,
    /// Leave the body alone (header edits still apply).
    Ignore,
}

/// Why an edit was refused or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The header name is empty, too long or has a character not allowed in a field name.
    #[error(
        "invalid header name {name:?}: {reason}; use 1 to 76 printable ASCII characters without ':' or spaces"
    )]
    InvalidHeaderName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The header value would inject a line break or is too long.
    #[error("invalid value for header {name:?}: {reason}")]
    InvalidHeaderValue {
        /// The field the value was for.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trace, authentication or loop-guard header a rule must not add, change or remove.
    #[error(
        "header {name:?} is protected: rules cannot {action} Received, DKIM-Signature, Authentication-Results, ARC-* or X-Sluice-Loop fields"
    )]
    ProtectedHeader {
        /// The field name as given.
        name: String,
        /// `add`, `set` or `remove`.
        action: &'static str,
    },
    /// A top-level MIME structure header; changing it would break the body.
    #[error(
        "header {name:?} describes the MIME structure: rules cannot {action} Content-Type, Content-Transfer-Encoding or MIME-Version (use add-banner to change the body)"
    )]
    MimeStructureHeader {
        /// The field name as given.
        name: String,
        /// `add`, `set` or `remove`.
        action: &'static str,
    },
    /// The subject prefix is empty or not a valid header value.
    #[error("invalid subject prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The banner is empty, too long or contains NUL.
    #[error("invalid banner: {0}")]
    InvalidBanner(String),
    /// Not a bare `local@domain` address.
    #[error("invalid address {addr:?}: {reason}; give a bare address like local@example.com")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not usable as a mailbox folder (directory) name.
    #[error("invalid folder {folder:?}: {reason}")]
    InvalidFolder {
        /// The folder as given.
        folder: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The parse of the message is inconsistent (offsets out of range or out of order), so the
    /// bytes cannot be spliced safely. The message is left alone rather than corrupted.
    #[error("cannot edit this message safely: {0}")]
    Malformed(String),
    /// The message can be read two ways (two parsers see different parts: a boundary in the
    /// middle of a line, a close delimiter given twice, two Content-Types), so an edit placed
    /// by one reading could land in another part for the recipient's reader. Declined: the
    /// original is delivered.
    #[error("edits declined: the message can be read two ways ({0})")]
    Ambiguous(String),
    /// The note for `replace-part` is empty, too long or contains NUL.
    #[error("invalid replace-part note: {0}")]
    InvalidNote(String),
    /// `replace-part` names a part this message does not have as a leaf part.
    #[error("cannot replace part {id}: {reason}")]
    NoSuchPart {
        /// The id as given.
        id: u32,
        /// Why it cannot be replaced (no such part, the whole message, a multipart).
        reason: String,
    },
    /// A displayed text part cannot be decoded faithfully (broken transfer encoding, unknown
    /// charset or transfer encoding), so re-encoding it with a banner would change its text.
    #[error("cannot add a banner to part {part}: {reason}")]
    UndecodablePart {
        /// The mail-parser part index.
        part: usize,
        /// What could not be decoded.
        reason: String,
    },
}

/// True for the trace and authentication fields rules must never touch, and for the relay's
/// loop header ([`crate::LOOP_HEADER`]): a rule that could remove it would let a message loop
/// between forwarders forever, and one that could add it could stop a message from being
/// relayed.
pub(crate) fn is_protected(name: &str) -> bool {
    [
        "received",
        "dkim-signature",
        "authentication-results",
        crate::LOOP_HEADER,
    ]
    .iter()
    .any(|p| name.eq_ignore_ascii_case(p))
        || name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("arc-"))
}

/// True for the top-level fields that describe the body's MIME structure.
pub(crate) fn is_mime_structure(name: &str) -> bool {
    ["content-type", "content-transfer-encoding", "mime-version"]
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p))
}

/// Checks one edit; called per action when a rule returns, before anything is applied.
pub fn validate_edit(edit: &Edit) -> Result<(), EditError> {
    match edit {
        Edit::AddHeader { name, value } => {
            validate_name(name, "add")?;
            validate_value(name, value)
        }
        Edit::SetHeader { name, value } => {
            validate_name(name, "set")?;
            validate_value(name, value)
        }
        Edit::RemoveHeader(name) => validate_name(name, "remove"),
        Edit::RemoveReceived => Ok(()),
        Edit::PrefixSubject(prefix) => {
            if prefix.trim().is_empty() {
                return Err(EditError::InvalidPrefix {
                    prefix: prefix.clone(),
                    reason: "it is empty; give the text to put before the subject, e.g. \"[EXT]\""
                        .into(),
                });
            }
            value_problem(prefix).map_or(Ok(()), |reason| {
                Err(EditError::InvalidPrefix {
                    prefix: prefix.clone(),
                    reason,
                })
            })
        }
        Edit::AddBanner(banner) => validate_banner(banner),
        Edit::ReplacePart(r) => validate_note(&r.text),
    }
}

fn validate_note(text: &str) -> Result<(), EditError> {
    if text.trim().is_empty() {
        return Err(EditError::InvalidNote(
            "it is empty; say what was removed and why".into(),
        ));
    }
    if text.contains('\0') {
        return Err(EditError::InvalidNote("it contains NUL".into()));
    }
    if text.len() > MAX_NOTE {
        return Err(EditError::InvalidNote(format!(
            "it is {} bytes long, the limit is {MAX_NOTE}",
            text.len()
        )));
    }
    Ok(())
}

fn validate_name(name: &str, action: &'static str) -> Result<(), EditError> {
    let bad = |reason: String| EditError::InvalidHeaderName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(bad(format!("it is {} bytes long", name.len())));
    }
    if let Some(c) = name.chars().find(|c| !matches!(c, '!'..='9' | ';'..='~')) {
        return Err(bad(format!("it contains {c:?}")));
    }
    if is_protected(name) {
        return Err(EditError::ProtectedHeader {
            name: name.to_owned(),
            action,
        });
    }
    if is_mime_structure(name) {
        return Err(EditError::MimeStructureHeader {
            name: name.to_owned(),
            action,
        });
    }
    Ok(())
}

/// What is wrong with a header value, if anything.
fn value_problem(value: &str) -> Option<String> {
    if let Some(c) = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Some(format!(
            "it contains {c:?} (header injection); remove line breaks and NUL, the host folds long values itself"
        ));
    }
    if value.len() > MAX_HEADER_VALUE {
        return Some(format!(
            "it is {} bytes long, the limit is {MAX_HEADER_VALUE}",
            value.len()
        ));
    }
    None
}

pub(crate) fn validate_value(name: &str, value: &str) -> Result<(), EditError> {
    value_problem(value).map_or(Ok(()), |reason| {
        Err(EditError::InvalidHeaderValue {
            name: name.to_owned(),
            reason,
        })
    })
}

fn validate_banner(banner: &Banner) -> Result<(), EditError> {
    if banner.text.trim().is_empty() {
        return Err(EditError::InvalidBanner(
            "the text is empty; text parts need it even when html is given".into(),
        ));
    }
    for (what, s) in [("text", Some(&banner.text)), ("html", banner.html.as_ref())] {
        let Some(s) = s else { continue };
        if s.contains('\0') {
            return Err(EditError::InvalidBanner(format!("the {what} contains NUL")));
        }
        if s.len() > MAX_BANNER {
            return Err(EditError::InvalidBanner(format!(
                "the {what} is {} bytes long, the limit is {MAX_BANNER}",
                s.len()
            )));
        }
    }
    Ok(())
}

/// Checks a bare addr-spec `local@domain` (recipients from `set-recipients`/`add-recipients`).
pub fn validate_address(addr: &str) -> Result<(), EditError> {
    sluice_facts::check_address(addr).map_err(|e| EditError::InvalidAddress {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks a mailbox folder name, used as one directory (or key segment) name.
pub fn validate_folder(folder: &str) -> Result<(), EditError> {
    let bad = |reason: &str| EditError::InvalidFolder {
        folder: folder.to_owned(),
        reason: reason.into(),
    };
    if folder.is_empty() {
        return Err(bad("it is empty; use e.g. \"Junk\""));
    }
    if folder.len() > MAX_FOLDER {
        return Err(bad("it is longer than 255 bytes"));
    }
    if folder.contains(['/', '\\']) {
        return Err(bad(
            "it contains '/' or '\\'; a folder is one name, not a path",
        ));
    }
    if folder.chars().any(char::is_control) {
        return Err(bad("it contains NUL or a control character"));
    }
    if folder.starts_with('.') {
        return Err(bad(
            "it starts with '.' (\".\", \"..\" and hidden names are not folders)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str, value: &str) -> Edit {
        Edit::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn header_names() {
        assert!(validate_edit(&add("X-Sluice", "ok")).is_ok());
        assert!(matches!(
            validate_edit(&add("", "v")),
            Err(EditError::InvalidHeaderName { .. })
        ));
        assert!(matches!(
            validate_edit(&add("X Y", "v")),
            Err(EditError::InvalidHeaderName { .. })
        ));
        assert!(matches!(
            validate_edit(&add("X:Y", "v")),
            Err(EditError::InvalidHeaderName { .. })
        ));
        assert!(matches!(
            validate_edit(&add("X-É", "v")),
            Err(EditError::InvalidHeaderName { .. })
        ));
        assert!(validate_edit(&add(&"a".repeat(76), "v")).is_ok());
        assert!(validate_edit(&add(&"a".repeat(77), "v")).is_err());
    }

    #[test]
    fn injection_refused() {
        for v in ["a\r\nBcc: x@evil", "a\nb", "a\rb", "a\0b"] {
            let err = validate_edit(&add("X-A", v)).unwrap_err();
            assert!(matches!(err, EditError::InvalidHeaderValue { .. }), "{err}");
            assert!(err.to_string().contains("header injection"), "{err}");
            assert!(validate_edit(&Edit::PrefixSubject(v.into())).is_err());
        }
        assert!(validate_edit(&add("X-A", &"a".repeat(MAX_HEADER_VALUE + 1))).is_err());
    }

    #[test]
    fn protected_and_structure_headers() {
        for name in [
            "Received",
            "dkim-signature",
            "AUTHENTICATION-RESULTS",
            "ARC-Seal",
            "arc-message-signature",
            "X-Sluice-Loop",
            "x-sluice-loop",
        ] {
            for edit in [
                add(name, "x"),
                Edit::SetHeader {
                    name: name.into(),
                    value: "x".into(),
                },
                Edit::RemoveHeader(name.into()),
            ] {
                let err = validate_edit(&edit).unwrap_err();
                assert!(matches!(err, EditError::ProtectedHeader { .. }), "{err}");
                assert!(err.to_string().contains(name), "{err}");
            }
        }
        for name in ["Content-Type", "content-transfer-encoding", "MIME-Version"] {
            let err = validate_edit(&Edit::RemoveHeader(name.into())).unwrap_err();
            assert!(
                matches!(err, EditError::MimeStructureHeader { .. }),
                "{err}"
            );
        }
        assert!(validate_edit(&Edit::RemoveHeader("Arcade".into())).is_ok());
        assert!(validate_edit(&Edit::RemoveHeader("X-Sluice-Loops".into())).is_ok());
        let err = validate_edit(&Edit::RemoveHeader(crate::LOOP_HEADER.into())).unwrap_err();
        assert!(err.to_string().contains("X-Sluice-Loop fields"), "{err}");
    }

    #[test]
    fn banners_and_prefixes() {
        let banner = |text: &str| {
            Edit::AddBanner(Banner {
                text: text.into(),
                html: None,
                position: Position::Top,
            })
        };
        assert!(validate_edit(&banner("External sender")).is_ok());
        assert!(validate_edit(&banner(" ")).is_err());
        assert!(validate_edit(&banner("a\0")).is_err());
        assert!(validate_edit(&Edit::PrefixSubject(" ".into())).is_err());
        assert!(validate_edit(&Edit::PrefixSubject("[EXT]".into())).is_ok());
    }

    #[test]
    fn addresses() {
        assert!(validate_address("a.b+c@example.com").is_ok());
        for bad in [
            "", "a", "a@", "@b", "a@b@c", "a b@c", "a@b\r\n", "<a@b>", "a@.b", "a@b..c",
        ] {
            assert!(validate_address(bad).is_err(), "{bad:?}");
        }
        assert!(validate_address(&format!("{}@b.c", "a".repeat(251))).is_err());
    }

    #[test]
    fn folders() {
        assert!(validate_folder("Junk").is_ok());
        assert!(validate_folder("Archive 2024").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\0", "a\nb"] {
            assert!(validate_folder(bad).is_err(), "{bad:?}");
        }
        assert!(validate_folder(&"x".repeat(256)).is_err());
    }

    #[test]
    fn serde_shapes() {
        assert_eq!(
            serde_json::to_string(&Position::Bottom).unwrap(),
            "\"bottom\""
        );
        assert_eq!(
            serde_json::to_string(&BannerFallback::Ignore).unwrap(),
            "\"ignore\""
        );
        assert_eq!(BannerFallback::default(), BannerFallback::Wrap);
        let edit = Edit::AddBanner(Banner {
            text: "t".into(),
            html: None,
            position: Position::Top,
        });
        let back: Edit = serde_json::from_str(&serde_json::to_string(&edit).unwrap()).unwrap();
        assert_eq!(back, edit);
    }
}
