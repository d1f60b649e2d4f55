//! The parsed message: raw bytes plus one mail-parser parse, and the accessors rules read.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::header::{decode_value, raw_name};

self_cell::self_cell!(
    /// The raw bytes and the parse that borrows from them, kept together so nothing is copied.
    struct Parsed {
        owner: Vec<u8>,
        #[covariant]
        dependent: ParsedMail,
    }
);

type ParsedMail<'a> = mail_parser::Message<'a>;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Zero bytes.
    #[error("the message is empty (0 bytes); expected an RFC 5322 message: header fields, an empty line, the body")]
    Empty,
    /// No `Name: value` line before the first empty line.
    #[error(
        "the message has no header fields: it must start with lines like \"From: a@example.com\" before the first empty line (is this a message at all, or an SES/SNS JSON envelope?)"
    )]
    NoHeaders,
    /// The MIME parser failed on this input (a bug in it, reported rather than crashing).
    #[error(
        "the MIME parser failed on this message (internal error); the message cannot be processed"
    )]
    ParserFailed,
    /// Too large for the parser's 32-bit offsets.
    #[error("the message is {0} bytes; the limit is 4 GiB")]
    TooLarge(usize),
}

/// A parsed inbound message: the raw bytes plus one mail-parser parse, reused by every accessor
/// and by [`crate::apply_edits`].
///
/// A message with bare CRs (a CR not followed by LF) in a header block is read with each of
/// them as a line break (see `reading.rs`): the parse, the accessors and any edited output use
/// those bytes, while [`Message::raw`] stays the bytes as received.
pub struct Message {
    parsed: Parsed,
    /// The bytes as received, when the parse is of normalised bytes.
    received: Option<Vec<u8>>,
    /// How many bare CRs were read as line breaks.
    bare_crs: usize,
    line_ending: &'static str,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("size", &self.size())
            .field("parts", &self.parsed().parts.len())
            .finish()
    }
}

/// One attachment (a part that is not displayed text, or is marked as an attachment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The file name from Content-Disposition or Content-Type, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

impl Message {
    /// Parses `raw` once. Refuses empty input and input without any header field; everything
    /// else parses (mail-parser recovers what it can from broken MIME).
    pub fn parse(raw: Vec<u8>) -> Result<Message, ParseError> {
        if raw.is_empty() {
            return Err(ParseError::Empty);
        }
        if u32::try_from(raw.len()).is_err() {
            return Err(ParseError::TooLarge(raw.len()));
        }
        let (raw, received, bare_crs) = match crate::reading::normalise(&raw) {
            crate::reading::LineBreaks::Clean => (raw, None, 0),
            crate::reading::LineBreaks::Normalised { bytes, bare_crs } => {
                if u32::try_from(bytes.len()).is_err() {
                    return Err(ParseError::TooLarge(bytes.len()));
                }
                (bytes, Some(raw), bare_crs)
            }
        };
        let parsed = Parsed::try_new(raw, |raw| {
            // mail-parser promises not to panic; a host that must never lose a message does not
            // rely on that promise.
            let parse = std::panic::catch_unwind(|| MessageParser::default().parse(raw.as_slice()));
            match parse {
                Ok(Some(m)) if m.parts.first().is_some_and(|p| !p.headers.is_empty()) => Ok(m),
                Ok(_) => Err(ParseError::NoHeaders),
                Err(_) => Err(ParseError::ParserFailed),
            }
        })?;
        let line_ending = detect_line_ending(parsed.borrow_owner(), parsed.borrow_dependent());
        Ok(Message {
            parsed,
            received,
            bare_crs,
            line_ending,
        })
    }

    pub(crate) fn parsed(&self) -> &mail_parser::Message<'_> {
        self.parsed.borrow_dependent()
    }

    /// The bytes the parse is of, and edits are spliced into: [`Message::raw`], or, when it
    /// has bare CRs in header blocks, [`Message::raw`] with each of those as a line break.
    pub fn read_bytes(&self) -> &[u8] {
        self.parsed.borrow_owner()
    }

    /// The raw bytes as received, given back without a copy.
    pub fn into_raw(self) -> Vec<u8> {
        match self.received {
            Some(received) => received,
            None => self.parsed.into_owner(),
        }
    }

    /// The raw RFC 5322 bytes as received.
    pub fn raw(&self) -> &[u8] {
        self.received
            .as_deref()
            .unwrap_or_else(|| self.parsed.borrow_owner())
    }

    /// How many bare CRs (CR not followed by LF) in header blocks were read as line breaks;
    /// the parse, the accessors and edited outputs use the message with those line breaks.
    pub fn normalised_bare_crs(&self) -> usize {
        self.bare_crs
    }

    /// Why edits to this message are declined, if they are: the message can be read two ways
    /// (see [`crate::strict::Ambiguity`]), so an edit placed by one reading could land in
    /// another part for another reader. `None` when every reader sees the same parts.
    /// `body`: whether the edits change the body (banners); header edits only re-emit the top
    /// header block and copy the body byte for byte, so only an ambiguous top header block
    /// stops them.
    pub fn ambiguity(&self, body: bool) -> Option<String> {
        crate::reading::disagreement(self.parsed(), self.read_bytes(), body)
    }

    /// The size of the raw message in bytes.
    pub fn size(&self) -> u64 {
        self.raw().len() as u64
    }

    /// Top-level fields as (name as written, value bytes after the colon).
    fn fields(&self) -> impl Iterator<Item = (String, &[u8])> {
        let raw = self.read_bytes();
        let headers = self
            .parsed()
            .parts
            .first()
            .map(|p| p.headers.as_slice())
            .unwrap_or_default();
        headers.iter().filter_map(move |h| {
            let name = raw_name(raw, h)?;
            let value = raw.get(h.offset_start as usize..h.offset_end as usize)?;
            Some((name.into_owned(), value))
        })
    }

    /// All values of the named top-level field (case-insensitive), unfolded and RFC
    /// 2047-decoded, in message order. Empty if absent.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| decode_value(v))
            .collect()
    }

    /// Every top-level field as (name as written, decoded value), in message order.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.fields().map(|(n, v)| (n, decode_value(v))).collect()
    }

    /// The distinct field names, as first written, in order of first appearance
    /// (case-insensitively distinct).
    pub fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in self.fields() {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        names
    }

    /// The decoded Subject.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").into_iter().next()
    }

    /// The first address of From:, bare (`local@domain`).
    pub fn from_address(&self) -> Option<String> {
        let addr = self.parsed().from()?.first()?.address()?.trim();
        (!addr.is_empty()).then(|| addr.to_owned())
    }

    /// The display name of the first From: address, if any.
    pub fn from_name(&self) -> Option<String> {
        let name = self.parsed().from()?.first()?.name()?.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// The displayed plain-text body, decoded to UTF-8 (text parts joined; an HTML-only message
    /// yields its text rendering), truncated to `max_bytes` on a character boundary (0 = no
    /// limit).
    pub fn text_body(&self, max_bytes: usize) -> Option<String> {
        let m = self.parsed();
        let texts: Vec<_> = (0..m.text_body.len())
            .filter_map(|i| m.body_text(i))
            .collect();
        join_truncated(&texts, max_bytes)
    }

    /// The displayed HTML body, decoded to UTF-8 (a text-only message yields its HTML
    /// rendering), truncated like [`Message::text_body`].
    pub fn html_body(&self, max_bytes: usize) -> Option<String> {
        let m = self.parsed();
        let htmls: Vec<_> = (0..m.html_body.len())
            .filter_map(|i| m.body_html(i))
            .collect();
        join_truncated(&htmls, max_bytes)
    }

    /// The attachments, without their contents.
    pub fn attachments(&self) -> Vec<AttachmentInfo> {
        let m = self.parsed();
        m.attachments
            .iter()
            .filter_map(|&id| m.parts.get(id as usize))
            .map(|part| AttachmentInfo {
                name: part.attachment_name().map(str::to_owned),
                content_type: content_type_of(part),
                size: part.len() as u64,
            })
            .collect()
    }

    /// The line ending of the header block: `"\r\n"` or `"\n"` (CRLF when there is none).
    pub fn line_ending(&self) -> &'static str {
        self.line_ending
    }
}

/// A part's `type/subtype`, lower case; the RFC 2045 default when it declares none.
pub(crate) fn content_type_of(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

fn detect_line_ending(raw: &[u8], parsed: &mail_parser::Message<'_>) -> &'static str {
    let header_end = parsed
        .parts
        .first()
        .map_or(raw.len(), |p| p.offset_body as usize);
    let block = raw.get(..header_end).unwrap_or(raw);
    match block.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && block[i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

fn join_truncated<S: AsRef<str>>(parts: &[S], max_bytes: usize) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            joined.push('\n');
        }
        joined.push_str(p.as_ref());
        if max_bytes != 0 && joined.len() >= max_bytes {
            break;
        }
    }
    if max_bytes != 0 && joined.len() > max_bytes {
        let cut = joined.floor_char_boundary(max_bytes);
        joined.truncate(cut);
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Message>();
    }

    #[test]
    fn refuses_clearly() {
        assert_eq!(Message::parse(vec![]).unwrap_err(), ParseError::Empty);
        let err = Message::parse(b"just some text\n\nmore\n".to_vec()).unwrap_err();
        assert_eq!(err, ParseError::NoHeaders);
        assert!(err.to_string().contains("header fields"));
        assert!(Message::parse(b"\n\n\n".to_vec()).is_err());
    }

    #[test]
    fn header_accessors() {
        let m = msg("From: \"Jörg\" <jorg@example.com>, b@example.org\r\n\
                     Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and\r\n more\r\n\
                     x-custom: one\r\n\
                     X-Custom: two\r\n\
                     \r\nbody\r\n");
        assert_eq!(m.subject().as_deref(), Some("Grüße and more"));
        assert_eq!(m.header("X-CUSTOM"), ["one", "two"]);
        assert!(m.header("Missing").is_empty());
        assert_eq!(m.from_address().as_deref(), Some("jorg@example.com"));
        assert_eq!(m.from_name().as_deref(), Some("Jörg"));
        let names: Vec<String> = m.headers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["From", "Subject", "x-custom", "X-Custom"]);
        assert_eq!(m.line_ending(), "\r\n");
        assert_eq!(msg("From: a@b\n\nx").line_ending(), "\n");
        assert_eq!(m.size(), m.raw().len() as u64);
    }

    #[test]
    fn bodies_and_truncation() {
        let m =
            msg("From: a@b\nContent-Type: text/plain; charset=utf-8\n\nh\u{e9}llo w\u{f6}rld\n");
        assert_eq!(m.text_body(0).as_deref(), Some("h\u{e9}llo w\u{f6}rld\n"));
        // "h" + "é" (2 bytes): a 2-byte cut must not split the é.
        assert_eq!(m.text_body(2).as_deref(), Some("h"));
        assert_eq!(m.text_body(3).as_deref(), Some("hé"));
        assert!(m.html_body(0).is_some_and(|h| h.contains("llo")));
        let html = msg("From: a@b\nContent-Type: text/html\n\n<p>Hi <b>there</b></p>\n");
        assert!(html.text_body(0).is_some_and(|t| t.contains("Hi there")));
        assert_eq!(html.html_body(5).as_deref(), Some("<p>Hi"));
    }

    #[test]
    fn attachment_list() {
        let m = msg(
            "From: a@b\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\
                     Content-Type: text/plain\n\nhi\n--x\n\
                     Content-Type: application/PDF; name=\"r.pdf\"\n\
                     Content-Disposition: attachment; filename=\"report.pdf\"\n\
                     Content-Transfer-Encoding: base64\n\nJVBERi0=\n--x--\n",
        );
        let att = m.attachments();
        assert_eq!(
            att,
            [AttachmentInfo {
                name: Some("report.pdf".into()),
                content_type: "application/pdf".into(),
                size: 5
            }]
        );
    }
}
