//! Mailbox names: `<domain>/<local-part>/<folder>/<message-id>.eml`, the same segments for
//! the directory store and the S3 mailboxes. Names derive from the recipient, folder and
//! message id only, so storing the same message twice rewrites the same file or object.

/// The longest escaped segment, in bytes: `NAME_MAX` on common file systems, and well within
/// S3's 1024-byte keys for the four segments of a mailbox key.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// A name that cannot be one segment of a mailbox path or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Nothing to name the segment with (an empty local part, domain or folder).
    #[error("the {what} is empty and cannot name a mailbox directory or key segment")]
    Empty {
        /// `local part`, `domain`, `folder` or `message id`.
        what: &'static str,
    },
    /// The escaped form is longer than [`MAX_SEGMENT_BYTES`].
    #[error("the {what} {shown:?} is {len} bytes once escaped; a mailbox path segment holds at most {max}")]
    TooLong {
        /// `local part`, `domain`, `folder` or `message id`.
        what: &'static str,
        /// The start of the value (for the message).
        shown: String,
        /// The escaped length (with any file suffix).
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Escapes `s` into one path segment, the same way for the directory store and the S3
/// mailboxes, so one name never means two mailboxes.
///
/// Every byte outside `[A-Za-z0-9_+-.]` becomes `%XX` (upper-case hex), and so does a
/// leading `.` (no `.`, `..` or hidden names). `%` itself is escaped, so the mapping is
/// injective and [`unescape_segment`] reverses it: `a/b` -> `a%2Fb`, `a_b` stays, `a\b` ->
/// `a%5Cb`, `a%2Fb` -> `a%252Fb`. Case is kept: callers lower-case local parts and domains
/// first, because addresses are compared case-insensitively (ASCII only; a non-ASCII local
/// part is kept byte for byte). Names that are empty or longer than [`MAX_SEGMENT_BYTES`] once
/// escaped are refused, never cut: cutting is what made long names collide.
pub fn escape_segment(what: &'static str, s: &str) -> Result<String, SegmentError> {
    escape_with_suffix(what, s, "")
}

/// [`escape_segment`] plus a file suffix (`.eml`) counted in the length limit.
fn escape_with_suffix(what: &'static str, s: &str, suffix: &str) -> Result<String, SegmentError> {
    if s.is_empty() {
        return Err(SegmentError::Empty { what });
    }
    let mut out = String::with_capacity(s.len() + suffix.len());
    for (i, b) in s.bytes().enumerate() {
        let keep =
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-') || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(suffix);
    if out.len() > MAX_SEGMENT_BYTES {
        let cut = s.floor_char_boundary(40);
        return Err(SegmentError::TooLong {
            what,
            shown: format!("{}...", &s[..cut]),
            len: out.len(),
            max: MAX_SEGMENT_BYTES,
        });
    }
    Ok(out)
}

/// Reverses [`escape_segment`]; `None` for text it cannot have produced.
pub fn unescape_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The four segments of a mailbox copy, `[domain, local-part, folder, <message-id>.eml]`,
/// shared by the directory store and the S3 mailboxes. Domain and local part are ASCII-lower-cased
/// (one mailbox per address whatever its case); folder and message id keep their case.
pub fn mailbox_segments(
    recipient: &str,
    folder: &str,
    message_id: &str,
) -> Result<[String; 4], SegmentError> {
    let (local, domain) = recipient.rsplit_once('@').unwrap_or((recipient, ""));
    Ok([
        escape_segment("domain", &domain.trim_end_matches('.').to_ascii_lowercase())?,
        escape_segment("local part", &local.to_ascii_lowercase())?,
        escape_segment("folder", folder)?,
        escape_with_suffix("message id", message_id, ".eml")?,
    ])
}

/// A mailbox copy named by its four segments, read back from a path or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyName {
    /// The recipient, `local@domain` (as stored: lower case).
    pub recipient: String,
    /// The folder (`INBOX`, `Junk`, ...).
    pub folder: String,
    /// The message id.
    pub message_id: String,
}

/// Reverses [`mailbox_segments`]: the four segments of a stored copy (relative to the
/// store's root or prefix), or `None` for anything else the store holds (records under
/// `_sent/`, temporary files, foreign objects).
pub fn parse_mailbox_segments(segments: &[&str]) -> Option<CopyName> {
    let [domain, local, folder, file] = segments else {
        return None;
    };
    let message_id = unescape_segment(file.strip_suffix(".eml")?)?;
    let domain = unescape_segment(domain)?;
    let local = unescape_segment(local)?;
    let folder = unescape_segment(folder)?;
    if domain.starts_with('_')
        || [&domain, &local, &folder, &message_id]
            .iter()
            .any(|s| s.is_empty())
    {
        return None;
    }
    Some(CopyName {
        recipient: format!("{local}@{domain}"),
        folder,
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        escape_segment("local part", s).unwrap()
    }

    #[test]
    fn normal_names_stay_readable() {
        for name in [
            "bob",
            "bob.smith",
            "bob+tag",
            "first_last",
            "INBOX",
            "m-1",
            "0abc",
        ] {
            assert_eq!(escape(name), name);
        }
        assert_eq!(
            mailbox_segments("Bob.Smith@Example.COM", "INBOX", "abc123").unwrap(),
            ["example.com", "bob.smith", "INBOX", "abc123.eml"]
        );
    }

    #[test]
    fn escaping_is_injective_and_reversible() {
        let long_a = format!("{}a", "x".repeat(200));
        let long_b = format!("{}b", "x".repeat(200));
        let names = [
            "a/b", "a_b", "a\\b", "a%2Fb", "a%5Cb", "a b", "a.b", ".ab", "%2Eab", "é", "%C3%A9",
            &long_a, &long_b,
        ];
        let escaped: Vec<String> = names.iter().map(|n| escape(n)).collect();
        for (i, a) in escaped.iter().enumerate() {
            assert_eq!(unescape_segment(a).as_deref(), Some(names[i]), "{a}");
            for b in &escaped[i + 1..] {
                assert_ne!(a, b);
            }
            assert!(!a.contains(['/', '\\']) && !a.starts_with('.'), "{a}");
        }
        assert_eq!(escape("a/b"), "a%2Fb");
        assert_eq!(escape("a%2Fb"), "a%252Fb");
    }

    #[test]
    fn dots_cannot_escape() {
        assert_eq!(escape(".."), "%2E.");
        assert_eq!(escape("."), "%2E");
        assert_eq!(escape("../etc"), "%2E.%2Fetc");
        let segs = mailbox_segments("../x@..example", "..", "id").unwrap();
        assert_eq!(segs[0], "%2E.example");
        assert!(
            mailbox_segments("x@..", "INBOX", "id").is_err(),
            "no domain left"
        );
        for seg in &segs {
            assert!(!seg.starts_with('.') && !seg.contains('/'), "{seg}");
        }
    }

    #[test]
    fn unstorable_names_are_refused() {
        assert_eq!(
            escape_segment("folder", ""),
            Err(SegmentError::Empty { what: "folder" })
        );
        assert!(escape_segment("local part", &"x".repeat(255)).is_ok());
        let err = escape_segment("local part", &"x".repeat(256)).unwrap_err();
        assert!(err.to_string().contains("256 bytes once escaped"), "{err}");
        // 100 characters of two bytes each, escaped to six bytes each.
        assert!(escape_segment("local part", &"é".repeat(100)).is_err());
        assert!(mailbox_segments("bob@example.com", "INBOX", &"m".repeat(252)).is_err());
        assert!(mailbox_segments("bob@example.com", "INBOX", &"m".repeat(251)).is_ok());
        assert_eq!(unescape_segment("%zz"), None);
        assert_eq!(unescape_segment("%4"), None);
    }

    #[test]
    fn stored_names_read_back() {
        let segments =
            mailbox_segments("Bob.Smith+x@Example.COM", "Junk/2026", "0100abc=").unwrap();
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        assert_eq!(
            parse_mailbox_segments(&refs),
            Some(CopyName {
                recipient: "bob.smith+x@example.com".into(),
                folder: "Junk/2026".into(),
                message_id: "0100abc=".into(),
            })
        );
        assert_eq!(parse_mailbox_segments(&["_sent", "a", "b", "c.eml"]), None);
        assert_eq!(
            parse_mailbox_segments(&["example.com", "a", "INBOX", "c.tmp"]),
            None
        );
        assert_eq!(parse_mailbox_segments(&["example.com", "a", "INBOX"]), None);
    }
}
