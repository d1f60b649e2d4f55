//! The rewrite a relayed copy needs before SES will send it, and the loop header that cuts
//! forwarding loops.
//!
//! SES sends only `From:` a verified identity, so a relayed copy carries the relay's address
//! in From (with the original sender's name in the display name, "Alice via example.com") and
//! the original From in Reply-To, so replies still reach the sender. Signatures and envelope
//! traces of the original hop (DKIM-Signature, Return-Path, Sender) would be wrong for the new
//! one and are dropped. Like [`crate::apply_edits`], only the top header block is re-emitted:
//! untouched fields and every body byte are copied as they came in.

use std::cell::Cell;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

use crate::apply::{edit_message, Edited};
use crate::edit::{validate_address, validate_value, BannerFallback, Edit, EditError};
use crate::header::{decode_value, encode_field, HeaderBlock};
use crate::message::Message;
use crate::structure::{self, BodyChange};

/// The field each relay adds at the top of a copy it sends (value: the relaying domain).
/// [`hop_count`] counts them so a message bouncing between forwarders is stopped.
pub const LOOP_HEADER: &str = "X-Sluice-Loop";

/// The longest original display name kept in the new From (characters); longer ones are cut so
/// a hostile sender cannot blow up the header.
const MAX_DISPLAY_CHARS: usize = 128;

/// How to rewrite a message for relaying.
#[derive(Debug, Clone, Copy)]
pub struct RelayRewrite<'a> {
    /// The SES-verified address the copy is sent from (bare `local@domain`).
    pub from: &'a str,
    /// Shown in the new From's display name: `"Alice via <via_domain>"`.
    pub via_domain: &'a str,
    /// Put before the Subject (a no-op when the Subject already starts with it).
    pub subject_prefix: Option<&'a str>,
    /// The value of the [`LOOP_HEADER`] field added at the top.
    pub hop_domain: &'a str,
}

/// The number of [`LOOP_HEADER`] fields: how many Sluice relays this message went through.
pub fn hop_count(msg: &Message) -> usize {
    msg.header(LOOP_HEADER).len()
}

/// Rewrites `msg` for relaying through SES:
/// - `From:` becomes `"<original display name or address> via <via_domain>" <from>`
///   (RFC 2047-encoded when not ASCII);
/// - `Reply-To:` is the original From field, unless the message has a Reply-To already;
/// - `DKIM-Signature`, `Return-Path` and `Sender` are removed, and every `Message-ID` but the
///   first;
/// - the subject prefix is applied;
/// - `X-Sluice-Loop: <hop_domain>` is added at the top.
///
/// Every other field and the body are byte-identical to the input.
pub fn rewrite_for_relay(msg: &Message, rw: &RelayRewrite<'_>) -> Result<Vec<u8>, EditError> {
    validate_address(rw.from)?;
    for (name, value) in [("via_domain", rw.via_domain), (LOOP_HEADER, rw.hop_domain)] {
        // The same value checks a rule's add-header gets (no line breaks, bounded length).
        validate_value(LOOP_HEADER, value).map_err(|_| EditError::InvalidHeaderValue {
            name: name.into(),
            reason: format!("{value:?} is not a plain domain"),
        })?;
    }

    // The prefix goes through the same edit a rule's prefix-subject does (validation and the
    // "already prefixed" rule included); it changes only the header block, so the body stays
    // byte-identical through the second parse.
    let prefixed;
    let msg = match rw.subject_prefix {
        Some(prefix) => {
            match edit_message(
                msg,
                &[Edit::PrefixSubject(prefix.into())],
                BannerFallback::Ignore,
            )? {
                Edited::Changed(edited) => {
                    prefixed = edited;
                    &prefixed
                }
                Edited::Unchanged => msg,
            }
        }
        None => msg,
    };

    let raw = msg.read_bytes();
    let le = msg.line_ending();
    let root = msg
        .parsed()
        .parts
        .first()
        .ok_or_else(|| EditError::Malformed("the parse has no MIME parts".into()))?;
    let (header_start, body_start) = (root.offset_header as usize, root.offset_body as usize);
    let mut top = HeaderBlock::parse(raw, &root.headers, header_start, body_start, le)?;

    if !top.contains("Reply-To") {
        if let Some((_, value)) = top.first_original("From") {
            // The original field's value as written (folding, encoding and all).
            let mut bytes = b"Reply-To:".to_vec();
            bytes.extend_from_slice(value);
            if !bytes.ends_with(b"\n") {
                bytes.extend_from_slice(le.as_bytes());
            }
            top.set_field_bytes("Reply-To", bytes, decode_value(value));
        }
    }

    let display = original_sender(msg, &top).unwrap_or_else(|| "unknown sender".into());
    let phrase = format!("{} via {}", clean_display(&display), rw.via_domain);
    top.set_field_bytes(
        "From",
        from_field(&phrase, rw.from, le),
        format!("{phrase} <{}>", rw.from),
    );

    for name in ["DKIM-Signature", "Return-Path", "Sender"] {
        top.remove(name);
    }
    let seen_message_id = Cell::new(false);
    top.remove_where(|name| {
        name.eq_ignore_ascii_case("Message-ID") && seen_message_id.replace(true)
    });
    top.add(LOOP_HEADER, rw.hop_domain);

    let mut out = Vec::with_capacity(raw.len() + 512);
    out.extend_from_slice(&raw[..header_start]);
    top.emit(&mut out, body_start < raw.len());
    out.extend_from_slice(&raw[body_start..]);
    let copy = structure::check(msg.parsed(), raw, out, BodyChange::Parts(&[]))?;
    // The copy must be from the verified sender as a reader sees it: a field the header
    // block does not take for a From (`Fr\rom:`, which parsers read as one) would otherwise
    // send it under the original or a forged address.
    let seen = copy
        .parsed()
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_owned());
    if !seen
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(rw.from))
    {
        return Err(EditError::Malformed(format!(
            "the copy would be read as from {seen:?}, not {:?}: the message has a From field the rewrite cannot replace (a malformed field name)",
            rw.from
        )));
    }
    Ok(copy.into_raw())
}

/// The original From's display name, else its address. Raw 8-bit bytes that are not UTF-8 are
/// read as Windows-1252 (a superset of Latin-1, what such bytes nearly always are), so
/// `J\xf6rg` becomes "Jörg" in the new From instead of "J\u{fffd}rg".
fn original_sender(msg: &Message, top: &HeaderBlock<'_>) -> Option<String> {
    let from_parse = || msg.from_name().or_else(|| msg.from_address());
    let Some((_, raw)) = top.first_original("From") else {
        return from_parse();
    };
    if std::str::from_utf8(raw).is_ok() {
        return from_parse();
    }
    let text = charset_decoder(b"windows-1252").map_or_else(
        || String::from_utf8_lossy(raw).into_owned(),
        |decode| decode(raw),
    );
    let HeaderValue::Address(addr) = MessageStream::new(text.as_bytes()).parse_address() else {
        return from_parse();
    };
    let first = addr.first()?;
    let pick = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    pick(first.name()).or_else(|| pick(first.address()))
}

/// A display name safe to quote: controls become spaces, runs of spaces collapse, and it is cut
/// at [`MAX_DISPLAY_CHARS`].
fn clean_display(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DISPLAY_CHARS)
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `From: "phrase" <addr>` as a whole field: a quoted string when the phrase is plain ASCII,
/// else RFC 2047 encoded-words (which a phrase may consist of) followed by the address.
fn from_field(phrase: &str, addr: &str, le: &str) -> Vec<u8> {
    if phrase.is_ascii() && !phrase.contains("=?") {
        let quoted = phrase.replace('\\', "\\\\").replace('"', "\\\"");
        return encode_field("From", &format!("\"{quoted}\" <{addr}>"), le);
    }
    let mut field = encode_field("From", phrase, le);
    field.truncate(field.len() - le.len());
    field.extend_from_slice(format!(" <{addr}>{le}").as_bytes());
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: RelayRewrite<'static> = RelayRewrite {
        from: "forwarder@relay.example",
        via_domain: "example.com",
        subject_prefix: None,
        hop_domain: "relay.example",
    };

    fn rewrite(raw: &str, rw: &RelayRewrite<'_>) -> (Message, Message) {
        let msg = Message::parse(raw.as_bytes().to_vec()).unwrap();
        let out = rewrite_for_relay(&msg, rw).unwrap();
        (msg, Message::parse(out).unwrap())
    }

    /// Everything after the first empty line.
    fn body(raw: &[u8]) -> &[u8] {
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
            .unwrap();
        &raw[at..]
    }

    const SIGNED: &str = "Return-Path: <alice@outside.example>\r\n\
        DKIM-Signature: v=1; a=rsa-sha256; d=outside.example; s=s1;\r\n\tb=abc\r\n\
        Received: from mx by relay\r\n\
        From: Alice Example <alice@outside.example>\r\n\
        Sender: list@outside.example\r\n\
        To: bob@example.com\r\n\
        Subject: Hello\r\n\
        Message-ID: <one@outside.example>\r\n\
        Message-ID: <two@outside.example>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Body line 1\r\n\r\nFrom the body: not a header\r\n";

    #[test]
    fn rewrites_for_ses() {
        let (orig, out) = rewrite(SIGNED, &RW);
        assert_eq!(
            out.from_address().as_deref(),
            Some("forwarder@relay.example")
        );
        assert_eq!(
            out.from_name().as_deref(),
            Some("Alice Example via example.com")
        );
        assert_eq!(
            out.header("Reply-To"),
            ["Alice Example <alice@outside.example>"]
        );
        for gone in ["DKIM-Signature", "Return-Path", "Sender"] {
            assert!(out.header(gone).is_empty(), "{gone} kept");
        }
        assert_eq!(out.header("Message-ID"), ["<one@outside.example>"]);
        assert_eq!(out.header("Received"), ["from mx by relay"]);
        assert_eq!(out.header(LOOP_HEADER), ["relay.example"]);
        assert_eq!(hop_count(&out), 1);
        assert_eq!(hop_count(&orig), 0);
        assert!(out.raw().starts_with(b"X-Sluice-Loop: relay.example\r\n"));
        assert_eq!(body(out.raw()), body(orig.raw()));
        assert_eq!(out.subject().as_deref(), Some("Hello"));
        // Untouched fields are byte-identical.
        assert!(contains(
            out.raw(),
            b"\r\nTo: bob@example.com\r\nSubject: Hello\r\n"
        ));
    }

    #[test]
    fn keeps_an_existing_reply_to_and_uses_the_address_without_a_name() {
        let (_, out) = rewrite(
            "From: alice@outside.example\nReply-To: team@outside.example\nSubject: x\n\nbody\n",
            &RW,
        );
        assert_eq!(out.header("Reply-To"), ["team@outside.example"]);
        assert_eq!(
            out.from_name().as_deref(),
            Some("alice@outside.example via example.com")
        );
        assert_eq!(out.line_ending(), "\n");
        assert_eq!(body(out.raw()), b"body\n");
    }

    #[test]
    fn prefixes_the_subject_once() {
        let rw = RelayRewrite {
            subject_prefix: Some("[FWD]"),
            ..RW
        };
        let (orig, out) = rewrite(SIGNED, &rw);
        assert_eq!(out.subject().as_deref(), Some("[FWD] Hello"));
        assert_eq!(body(out.raw()), body(orig.raw()));
        let again = rewrite_for_relay(&out, &rw).unwrap();
        let again = Message::parse(again).unwrap();
        assert_eq!(again.subject().as_deref(), Some("[FWD] Hello"));
        assert_eq!(hop_count(&again), 2);
        assert!(rewrite_for_relay(
            &orig,
            &RelayRewrite {
                subject_prefix: Some("a\r\nBcc: x@evil"),
                ..RW
            }
        )
        .is_err());
    }

    #[test]
    fn encodes_a_non_ascii_display_name() {
        let (_, out) = rewrite(
            "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@outside.example>\r\n\
             Subject: x\r\n\r\nbody\r\n",
            &RW,
        );
        assert_eq!(
            out.from_name().as_deref(),
            Some("Jörg Müller via example.com")
        );
        assert_eq!(
            out.from_address().as_deref(),
            Some("forwarder@relay.example")
        );
        assert!(out.raw().is_ascii());
        // The original encoded From is copied as written.
        assert!(contains(
            out.raw(),
            b"Reply-To: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@outside.example>\r\n"
        ));
    }

    #[test]
    fn quotes_specials_and_drops_control_characters() {
        let (_, out) = rewrite(
            "From: \"Eve \\\"the\\\" \\\\ Admin\" <eve@outside.example>\nSubject: x\n\nb\n",
            &RW,
        );
        assert_eq!(
            out.from_name().as_deref(),
            Some("Eve \"the\" \\ Admin via example.com")
        );
        let long = format!("From: {} <a@b.example>\n\nb\n", "x".repeat(500));
        let (_, out) = rewrite(&long, &RW);
        assert!(out.from_name().unwrap().len() < 200);
    }

    #[test]
    fn refuses_bad_parameters() {
        let msg = Message::parse(SIGNED.as_bytes().to_vec()).unwrap();
        for rw in [
            RelayRewrite {
                from: "Forwarder <f@x>",
                ..RW
            },
            RelayRewrite {
                hop_domain: "a\r\nBcc: x@evil",
                ..RW
            },
            RelayRewrite {
                via_domain: "a\nb",
                ..RW
            },
        ] {
            assert!(rewrite_for_relay(&msg, &rw).is_err(), "{rw:?}");
        }
    }

    #[test]
    fn a_message_without_from_or_body() {
        let (_, out) = rewrite("Subject: x\r\n", &RW);
        assert_eq!(
            out.from_name().as_deref(),
            Some("unknown sender via example.com")
        );
        assert!(out.header("Reply-To").is_empty());
    }

    #[test]
    fn eight_bit_from_and_subject_keep_their_bytes() {
        let raw = b"From: J\xf6rg M\xfcller <jorg@outside.example>\r\n\
            Subject: Gr\xfc\xdfe aus K\xf6ln\r\n\r\nbody\r\n";
        let msg = Message::parse(raw.to_vec()).unwrap();
        // What the parse alone makes of the bytes.
        assert!(msg.from_name().unwrap().contains('\u{fffd}'));
        assert!(msg.subject().unwrap().contains('\u{fffd}'));
        let rw = RelayRewrite {
            subject_prefix: Some("[FWD]"),
            ..RW
        };
        let out = rewrite_for_relay(&msg, &rw).unwrap();
        // The original bytes, verbatim, in Reply-To and Subject.
        assert!(contains(
            &out,
            b"\r\nReply-To: J\xf6rg M\xfcller <jorg@outside.example>\r\n"
        ));
        assert!(contains(
            &out,
            b"\r\nSubject: [FWD] Gr\xfc\xdfe aus K\xf6ln\r\n"
        ));
        assert!(!contains(&out, "\u{fffd}".as_bytes()));
        let out = Message::parse(out).unwrap();
        assert_eq!(
            out.from_name().as_deref(),
            Some("Jörg Müller via example.com")
        );
        // Raw UTF-8 goes through the parse as it is.
        let raw = "From: Jörg <jorg@outside.example>\r\nSubject: Grüße\r\n\r\nbody\r\n";
        let (_, out) = rewrite(raw, &rw);
        assert_eq!(out.from_name().as_deref(), Some("Jörg via example.com"));
        assert_eq!(out.subject().as_deref(), Some("[FWD] Grüße"));
        assert!(contains(
            out.raw(),
            "\r\nSubject: [FWD] Grüße\r\n".as_bytes()
        ));
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
}
