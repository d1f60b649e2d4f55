//! A header block as a list of pieces of the original bytes, edited in place and re-emitted.
//!
//! Fields nobody edits are emitted from the original bytes (folding, case, odd spacing and all),
//! so an edit of one field never disturbs another. New fields are encoded here: RFC 2047 for
//! non-ASCII text, folding at whitespace for long ASCII values.

use std::borrow::Cow;

use encodify::{rfc2047, Fold};
use mail_builder::headers::{raw::Raw, Header as _};
use mail_parser::{parsers::MessageStream, Header, HeaderValue};

use crate::edit::EditError;
use crate::encoding::{crlf_to, longest_line};

/// The longest line we aim for when folding (RFC 5322 section 2.1.1 "SHOULD").
const FOLD_AT: usize = 78;
/// The longest line RFC 5322 allows.
const MAX_LINE: usize = 998;
/// The longest line of encoded-words (RFC 2047 section 2).
const ENCODED_LINE: usize = 76;
/// The shortest encoded-word that holds any one character: `=?UTF-8?Q??=` around four `=XX`.
const MIN_FIRST_WORD: usize = "=?UTF-8?Q??=".len() + 4 * 3;

/// One piece of a header block.
#[derive(Debug, Clone)]
enum Piece<'a> {
    /// A field exactly as it came in.
    Original {
        name: Cow<'a, str>,
        /// The whole field, name to line ending (including folded lines).
        bytes: &'a [u8],
        /// The value part (after the colon), still folded and encoded.
        value: &'a [u8],
    },
    /// A field the host wrote.
    New {
        name: String,
        /// The unencoded value, for later edits that read it (prefix-subject).
        value: String,
        bytes: Vec<u8>,
    },
    /// Bytes between fields the parser skipped (e.g. a line without a colon): kept verbatim.
    Raw(&'a [u8]),
}

impl Piece<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            Piece::Original { name, .. } => Some(name),
            Piece::New { name, .. } => Some(name),
            Piece::Raw(_) => None,
        }
    }

    fn is(&self, name: &str) -> bool {
        self.name().is_some_and(|n| n.eq_ignore_ascii_case(name))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Original { bytes, .. } | Piece::Raw(bytes) => bytes,
            Piece::New { bytes, .. } => bytes,
        }
    }
}

/// The header block of the message or of one MIME part.
#[derive(Debug, Clone)]
pub(crate) struct HeaderBlock<'a> {
    pieces: Vec<Piece<'a>>,
    /// What follows the last field up to the body: normally the empty line; empty when the
    /// input ended inside the header block.
    separator: &'a [u8],
    le: &'static str,
}

/// The field name as written (without the colon and surrounding spaces).
pub(crate) fn raw_name<'a>(raw: &'a [u8], h: &Header<'_>) -> Option<Cow<'a, str>> {
    let bytes = raw.get(h.offset_field as usize..h.offset_start as usize)?;
    let bytes = bytes.strip_suffix(b":").unwrap_or(bytes);
    Some(String::from_utf8_lossy(bytes.trim_ascii()))
}

/// An unstructured value unfolded and RFC 2047-decoded.
pub(crate) fn decode_value(value: &[u8]) -> String {
    match MessageStream::new(value).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

impl<'a> HeaderBlock<'a> {
    /// Builds the block spanning `raw[start..end]` from the parser's fields, checking that their
    /// offsets are in range and in order.
    pub(crate) fn parse(
        raw: &'a [u8],
        headers: &[Header<'_>],
        start: usize,
        end: usize,
        le: &'static str,
    ) -> Result<Self, EditError> {
        if start > end || end > raw.len() {
            return Err(EditError::Malformed(format!(
                "header block {start}..{end} lies outside the {} byte message",
                raw.len()
            )));
        }
        let mut pieces = Vec::with_capacity(headers.len());
        let mut pos = start;
        for h in headers {
            let (field, value, field_end) = (
                h.offset_field as usize,
                h.offset_start as usize,
                h.offset_end as usize,
            );
            if !(pos <= field && field < value && value <= field_end && field_end <= end) {
                return Err(EditError::Malformed(format!(
                    "header field {:?} has offsets {field}..{value}..{field_end}, out of order or outside its header block {pos}..{end}",
                    h.name.as_str()
                )));
            }
            if field > pos {
                pieces.push(Piece::Raw(&raw[pos..field]));
            }
            let name = raw_name(raw, h).unwrap_or_default();
            pieces.push(Piece::Original {
                name,
                bytes: &raw[field..field_end],
                value: &raw[value..field_end],
            });
            pos = field_end;
        }
        Ok(HeaderBlock {
            pieces,
            separator: &raw[pos..end],
            le,
        })
    }

    /// The decoded value of the first field with this name.
    pub(crate) fn first_value(&self, name: &str) -> Option<String> {
        self.pieces.iter().find(|p| p.is(name)).map(|p| match p {
            Piece::Original { value, .. } => decode_value(value),
            Piece::New { value, .. } => value.clone(),
            Piece::Raw(_) => String::new(),
        })
    }

    /// The first field with this name when it is an original one: (the bytes up to and
    /// including the colon, the raw folded value with its line ending).
    pub(crate) fn first_original(&self, name: &str) -> Option<(&'a [u8], &'a [u8])> {
        match self.pieces.iter().find(|p| p.is(name))? {
            Piece::Original { bytes, value, .. } => {
                Some((&bytes[..bytes.len() - value.len()], *value))
            }
            _ => None,
        }
    }

    /// The first field with this name, original or written by the host, as bytes: (the name
    /// up to and including the colon, the raw value with its folding and line ending). Unlike
    /// [`HeaderBlock::first_value`] nothing is decoded, so 8-bit bytes survive.
    pub(crate) fn first_raw(&self, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let piece = self.pieces.iter().find(|p| p.is(name))?;
        let bytes = piece.bytes();
        let value_len = match piece {
            Piece::Original { value, .. } => value.len(),
            _ => bytes.len() - bytes.iter().position(|&b| b == b':')? - 1,
        };
        let (name_part, value) = bytes.split_at(bytes.len() - value_len);
        Some((name_part.to_vec(), value.to_vec()))
    }

    /// How many fields have this name.
    pub(crate) fn count(&self, name: &str) -> usize {
        self.pieces.iter().filter(|p| p.is(name)).count()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.pieces.iter().any(|p| p.is(name))
    }

    fn new_piece(&self, name: &str, value: &str) -> Piece<'a> {
        Piece::New {
            name: name.to_owned(),
            value: value.to_owned(),
            bytes: encode_field(name, value, self.le),
        }
    }

    /// add-header: a new field at the top.
    pub(crate) fn add(&mut self, name: &str, value: &str) {
        let piece = self.new_piece(name, value);
        self.pieces.insert(0, piece);
    }

    /// set-header: replace the first field in place, drop the others, or add at the top.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        let piece = self.new_piece(name, value);
        self.replace_or(piece, true);
    }

    /// Replaces the first field with the piece's name by `piece` and drops the others; when
    /// there is none, adds it at the top (`top`) or at the end of the block.
    fn replace_or(&mut self, piece: Piece<'a>, top: bool) {
        let name = piece.name().unwrap_or_default().to_owned();
        match self.pieces.iter().position(|p| p.is(&name)) {
            Some(first) => {
                self.pieces[first] = piece;
                let mut i = 0;
                self.pieces.retain(|p| {
                    i += 1;
                    i - 1 == first || !p.is(&name)
                });
            }
            None if top => self.pieces.insert(0, piece),
            None => self.pieces.push(piece),
        }
    }

    /// Sets a MIME field of a part the host rewrites, with a value already in wire form
    /// (ASCII, no line ending); appended at the end of the block when absent.
    pub(crate) fn set_mime_field(&mut self, name: &str, wire_value: &str) {
        let bytes = format!("{name}: {wire_value}{}", self.le).into_bytes();
        self.replace_or(
            Piece::New {
                name: name.to_owned(),
                value: wire_value.to_owned(),
                bytes,
            },
            false,
        );
    }

    /// Replaces the first field named `name` by exact bytes (a whole field with line ending).
    pub(crate) fn set_field_bytes(&mut self, name: &str, bytes: Vec<u8>, value: String) {
        self.replace_or(
            Piece::New {
                name: name.to_owned(),
                value,
                bytes,
            },
            false,
        );
    }

    /// remove-header: every field with this name goes, folded lines included.
    pub(crate) fn remove(&mut self, name: &str) {
        self.pieces.retain(|p| !p.is(name));
    }

    /// Drops every field for which `drop` says so.
    pub(crate) fn remove_where(&mut self, drop: impl Fn(&str) -> bool) {
        self.pieces.retain(|p| !p.name().is_some_and(&drop));
    }

    /// Appends a new field at the end of the block.
    pub(crate) fn push(&mut self, name: &str, wire_value: &str) {
        let bytes = format!("{name}: {wire_value}{}", self.le).into_bytes();
        self.pieces.push(Piece::New {
            name: name.to_owned(),
            value: wire_value.to_owned(),
            bytes,
        });
    }

    /// Writes the block. With `body_follows`, makes sure it ends with the empty line even when
    /// the input had none (a message that was all headers and now gets a body).
    pub(crate) fn emit(&self, out: &mut Vec<u8>, body_follows: bool) {
        for (i, piece) in self.pieces.iter().enumerate() {
            // An original last field may end without a line break (input cut short); a field
            // the host appends after it must still start on its own line.
            if i > 0 && matches!(piece, Piece::New { .. }) && !out.ends_with(b"\n") {
                out.extend_from_slice(self.le.as_bytes());
            }
            out.extend_from_slice(piece.bytes());
        }
        if self.separator.is_empty() && body_follows {
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.extend_from_slice(self.le.as_bytes());
            }
            out.extend_from_slice(self.le.as_bytes());
        } else {
            out.extend_from_slice(self.separator);
        }
    }
}

/// Encodes `name: value` as a whole field with line ending: RFC 2047 when the value is not
/// plain ASCII (or looks like an encoded-word, or cannot be folded under 998 characters),
/// otherwise folded at whitespace after 78 characters where possible.
pub(crate) fn encode_field(name: &str, value: &str, le: &str) -> Vec<u8> {
    let plain = value.is_ascii()
        && !value.contains("=?")
        && !value.bytes().any(|b| b.is_ascii_control() && b != b'\t');
    if plain {
        if let Some(folded) = fold_ascii(name, value, le) {
            return folded.into_bytes();
        }
    }
    encode_words(name, value, le).into_bytes()
}

/// Puts `prefix` before a field's raw value (`raw_value`: after the colon, folded, possibly
/// RFC 2047-encoded or raw 8-bit) and returns the whole new field. The value's bytes are kept as
/// they are; only the prefix is written: as is when plain ASCII, else as UTF-8 encoded-words.
/// One space separates them (none when the prefix ends with one), inside the encoded-word when
/// the value starts with one (readers drop whitespace between encoded-words). A first line that
/// would grow past 78 characters is folded after the prefix.
pub(crate) fn prefix_raw_value(
    name_part: &[u8],
    raw_value: &[u8],
    prefix: &str,
    le: &str,
) -> Vec<u8> {
    let rest = raw_value.trim_ascii_start();
    let rest_is_word = rest.starts_with(b"=?");
    let plain = prefix.is_ascii()
        && !prefix.contains("=?")
        && !prefix.bytes().any(|b| b.is_ascii_control());
    let (mut wire, spaced) = if plain {
        (prefix.to_owned(), prefix.ends_with(' '))
    } else {
        let core = prefix.trim_end();
        let text = if rest_is_word {
            format!("{core} ")
        } else {
            core.to_owned()
        };
        // Encoded as a Subject field (the name only sets the first line's budget), then cut
        // back to the words.
        let field = encode_words("Subject", &text, le);
        let words = field["Subject:".len()..field.len() - le.len()].trim_start();
        // Encoded-words must be separated from what follows by whitespace of their own.
        (words.to_owned(), false)
    };
    let mut out = name_part.to_vec();
    out.push(b' ');
    if rest.is_empty() {
        out.extend_from_slice(wire.trim_end().as_bytes());
        out.extend_from_slice(le.as_bytes());
        return out;
    }
    let first_line = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    let last_line = wire.rsplit('\n').next().unwrap_or(&wire).len();
    let fold =
        (if wire.contains('\n') { 0 } else { out.len() }) + last_line + 1 + first_line > FOLD_AT;
    if fold {
        wire.truncate(wire.trim_end().len());
        out.extend_from_slice(wire.as_bytes());
        out.extend_from_slice(le.as_bytes());
        out.push(b' ');
    } else {
        out.extend_from_slice(wire.as_bytes());
        if !spaced {
            out.push(b' ');
        }
    }
    out.extend_from_slice(rest);
    if !out.ends_with(b"\n") {
        out.extend_from_slice(le.as_bytes());
    }
    out
}

/// Folds `name: value` before whitespace so lines stay within 78 characters where possible;
/// `None` when some line would still exceed 998.
///
/// mail-builder's `Raw` header folds unstructured text exactly so (before a whitespace run,
/// which it keeps); it writes CRLF, turned into `le` here. Its `Text` header does not serve:
/// it writes any value over 77 characters as encoded-words instead of folding it.
fn fold_ascii(name: &str, value: &str, le: &str) -> Option<String> {
    if value.is_empty() {
        return Some(format!("{name}:{le}"));
    }
    let mut out = format!("{name}: ").into_bytes();
    let column = out.len();
    Raw::new(value).write_header(&mut out, column);
    let out = crlf_to(out, le);
    if longest_line(&out) > MAX_LINE {
        return None;
    }
    // ASCII in, ASCII out: the value is plain ASCII and the folder only adds line breaks.
    String::from_utf8(out).ok()
}

/// Encodes the whole value as UTF-8 encoded-words (B or Q, whichever is shorter), each at most
/// 75 characters, in lines of at most 76.
///
/// encodify's word encoder (the one mail-builder 2 is built on) does the encoding; mail-builder's
/// own `Text` header does not serve: it decides by itself whether to encode, so it would write
/// an ASCII value that looks like an encoded-word (`=?utf-8?q?x?=`) as is, to be decoded by
/// readers; and its Q words keep characters such as `"`, `(` and `,` literal, which RFC 2047
/// section 5 rule 3 forbids in a phrase (these words also make up a From display name).
fn encode_words(name: &str, value: &str, le: &str) -> String {
    if value.is_empty() {
        return format!("{name}:{le}");
    }
    let encoder = if rfc2047::Q_PHRASE.payload_len(value) <= rfc2047::B.payload_len(value) {
        rfc2047::Q_PHRASE
    } else {
        rfc2047::B
    };
    let separator = format!("{le} ");
    let fold = Fold::new(ENCODED_LINE, separator.as_bytes(), 1);
    // A long name still gets a word on its line, as the hand-written encoder did: a fold right
    // after the colon leaves its space in the value for some readers (mailparse). So the encoder
    // is told the first line has room for at least one word holding any one character.
    let mut column = (name.len() + ": ".len()).min(ENCODED_LINE - MIN_FIRST_WORD);
    let mut words = String::with_capacity(value.len() * 3);
    encoder.encode_words("UTF-8", value, &mut column, fold, &mut words);
    let mut out = String::with_capacity(name.len() + words.len() + 4);
    out.push_str(name);
    out.push(':');
    // Should the encoder still start with a fold, the field must not end the line in a space.
    if !words.starts_with(&separator) {
        out.push(' ');
    }
    out.push_str(&words);
    out.push_str(le);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_with_mailparse(field: &[u8]) -> (String, String) {
        let (h, _) = mailparse::parse_header(field).unwrap();
        (h.get_key(), h.get_value())
    }

    fn lines(field: &str) -> Vec<&str> {
        field.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    #[test]
    fn short_ascii_is_one_line() {
        assert_eq!(
            encode_field("X-A", "hello world", "\r\n"),
            b"X-A: hello world\r\n"
        );
        assert_eq!(encode_field("X-A", "", "\n"), b"X-A:\n");
    }

    #[test]
    fn long_ascii_folds_at_whitespace() {
        let value = "word ".repeat(40) + "end";
        let field = String::from_utf8(encode_field("X-Long", &value, "\r\n")).unwrap();
        for line in lines(&field) {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert!(lines(&field).len() > 2);
        assert_eq!(
            decode_value(field.split_once(':').unwrap().1.as_bytes()),
            value.trim()
        );
        let (_, v) = decode_with_mailparse(field.as_bytes());
        assert_eq!(v, value);
    }

    #[test]
    fn unbreakable_ascii_falls_back_to_encoded_words() {
        let value = "x".repeat(2000);
        let field = String::from_utf8(encode_field("X-Token", &value, "\n")).unwrap();
        assert!(field.split('\n').all(|l| l.len() <= 76), "{field}");
        let (_, v) = decode_with_mailparse(field.as_bytes());
        assert_eq!(v, value);
    }

    #[test]
    fn non_ascii_round_trips_through_both_parsers() {
        for value in [
            "Grüße aus Köln",
            "日本語のテキストとても長い件名がここに続きますので折り返しが必要になります日本語のテキスト",
            "mixed ascii text with one é somewhere in a rather long sentence that needs several encoded words",
            "=?utf-8?q?looks_encoded?=",
            "emoji 🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉 end",
        ] {
            for le in ["\r\n", "\n"] {
                let field = String::from_utf8(encode_field("Subject", value, le)).unwrap();
                assert!(field.is_ascii());
                for word in field.split_whitespace().filter(|w| w.starts_with("=?")) {
                    assert!(word.len() <= rfc2047::MAX_WORD_LEN, "{word}");
                }
                for line in field.split(le) {
                    assert!(line.len() <= 78, "{line:?}");
                }
                let (k, v) = decode_with_mailparse(field.as_bytes());
                assert_eq!((k.as_str(), v.as_str()), ("Subject", value), "{field}");
                assert_eq!(decode_value(field.split_once(':').unwrap().1.as_bytes()), value);
            }
        }
    }

    #[test]
    fn long_name_still_encodes() {
        let name = "X-".to_owned() + &"n".repeat(74);
        let field = String::from_utf8(encode_field(&name, "ü", "\r\n")).unwrap();
        let (_, v) = decode_with_mailparse(field.as_bytes());
        assert_eq!(v, "ü");
    }
}
