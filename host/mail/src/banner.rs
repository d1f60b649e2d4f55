//! Banners: which parts are displayed text, where a banner goes in them, and how a part is
//! re-encoded afterwards.

use mail_parser::{
    decoders::charsets::map::charset_decoder, parsers::MessageStream, MessagePart, MimeHeaders,
    PartType,
};

use crate::edit::{Banner, EditError, Position};
use crate::encoding::{
    base64_lines, longest_line, normalize_line_endings, quoted_printable, with_line_endings,
};
use crate::header::HeaderBlock;

/// RFC 5322 line limit (without the line ending).
const MAX_LINE: usize = 998;
/// Deeper MIME trees than this are refused (mail-parser itself stops far earlier).
const MAX_DEPTH: usize = 128;

/// The parts a reader displays: text/plain and text/html leaves of the top-level tree (a part
/// without Content-Type is text/plain, except inside multipart/digest), not marked as
/// attachments and not inside an attached message. Both sides of multipart/alternative count.
pub(crate) fn displayed_parts(m: &mail_parser::Message<'_>) -> Result<Vec<usize>, EditError> {
    let mut out = Vec::new();
    walk(m, 0, false, 0, &mut out)?;
    Ok(out)
}

fn walk(
    m: &mail_parser::Message<'_>,
    id: usize,
    in_digest: bool,
    depth: usize,
    out: &mut Vec<usize>,
) -> Result<(), EditError> {
    let part = m
        .parts
        .get(id)
        .ok_or_else(|| EditError::Malformed(format!("MIME part {id} is referenced but missing")))?;
    if depth > MAX_DEPTH {
        return Err(EditError::Malformed(format!(
            "MIME nesting deeper than {MAX_DEPTH}"
        )));
    }
    match &part.body {
        PartType::Multipart(children) => {
            let digest = part
                .content_type()
                .and_then(|ct| ct.subtype())
                .is_some_and(|s| s.eq_ignore_ascii_case("digest"));
            for &child in children {
                let child = child as usize;
                if child <= id {
                    return Err(EditError::Malformed(format!(
                        "MIME part {id} lists part {child} as its child (parts must nest forward)"
                    )));
                }
                walk(m, child, digest, depth + 1, out)?;
            }
        }
        PartType::Text(_) | PartType::Html(_) if is_displayed_text(part, in_digest) => out.push(id),
        _ => {}
    }
    Ok(())
}

fn is_displayed_text(part: &MessagePart<'_>, in_digest: bool) -> bool {
    let text_subtype = match part.content_type() {
        Some(ct) if ct.ctype().eq_ignore_ascii_case("text") => ct.subtype(),
        Some(_) => return false,
        None if in_digest => return false,
        None => Some("plain"),
    };
    let shown = text_subtype
        .is_some_and(|s| s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("html"));
    // RFC 2045 section 6.4: a part with an unknown transfer encoding is opaque data.
    let known_transfer = part
        .content_transfer_encoding()
        .is_none_or(|cte| Transfer::parse(cte).is_some());
    shown
        && known_transfer
        && !part
            .content_disposition()
            .is_some_and(|d| d.is_attachment())
}

/// The transfer encoding of a part, as far as re-encoding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// 7bit or absent.
    SevenBit,
    /// 8bit or binary.
    EightBit,
    QuotedPrintable,
    Base64,
}

impl Transfer {
    /// Reads a Content-Transfer-Encoding value, forgiving the spellings mail clients accept
    /// (`8 bit`, `7-bit`, `7bits`, empty); `None` for a real unknown encoding (`x-uuencode`).
    fn parse(value: &str) -> Option<Transfer> {
        let v: String = value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match v.as_str() {
            "" | "7bit" | "7bits" => Some(Transfer::SevenBit),
            "8bit" | "8bits" | "binary" => Some(Transfer::EightBit),
            "quotedprintable" => Some(Transfer::QuotedPrintable),
            "base64" => Some(Transfer::Base64),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Transfer::SevenBit => "7bit",
            Transfer::EightBit => "8bit",
            Transfer::QuotedPrintable => "quoted-printable",
            Transfer::Base64 => "base64",
        }
    }
}

/// Where a displayed part sits: what its rewritten bytes must fit into.
pub(crate) struct Placement<'a> {
    /// The whole message.
    pub(crate) raw: &'a [u8],
    /// The message's line ending.
    pub(crate) le: &'static str,
    /// The part is the whole message body (then it ends with a line break; a sub-part's last
    /// line break belongs to the boundary that follows).
    pub(crate) is_root: bool,
    /// The boundaries of the multiparts around the part: a body that would contain one of
    /// them is written in base64 instead, which cannot.
    pub(crate) boundaries: Vec<&'a str>,
    /// No delimiter of its multipart follows the part (the multipart is never closed): then
    /// mail-parser cannot decode quoted-printable or base64 in it, so a 7bit part that needs
    /// more than 7 bits becomes 8bit, not quoted-printable.
    pub(crate) open_end: bool,
    /// Spare capacity the new body is made with, so the caller can put the part's header
    /// block in front of it in place (`Vec::splice` at 0) instead of copying a large body
    /// once more.
    pub(crate) header_room: usize,
}

/// Inserts `banners` into the displayed part `part` (index `id`): rewrites its Content-Type
/// charset and, when needed, its Content-Transfer-Encoding in `block`, and returns the new
/// encoded body; `None` when the part already shows every banner ([`carries_banner`]).
pub(crate) fn rewrite_part(
    part: &MessagePart<'_>,
    id: usize,
    block: &mut HeaderBlock<'_>,
    banners: &[&Banner],
    at: &Placement<'_>,
) -> Result<Option<Vec<u8>>, EditError> {
    let (le, is_root) = (at.le, at.is_root);
    let text = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_ref(),
        _ => {
            return Err(EditError::Malformed(format!(
                "part {id} is not a text part"
            )))
        }
    };
    // By the declared type: mail-parser files a damaged text/html part as Text.
    let is_html = part
        .content_type()
        .and_then(|ct| ct.subtype())
        .is_some_and(|s| s.eq_ignore_ascii_case("html"));
    // `add-banner` is idempotent: a part that already shows a banner (a reply quoting it, a
    // message that went through the chain twice) does not get it again, and a part that shows
    // every banner is left as it came, even when it could not be re-encoded.
    let banners: Vec<&Banner> = banners
        .iter()
        .copied()
        .filter(|b| !carries_banner(text, is_html, b))
        .collect();
    if banners.is_empty() {
        return Ok(None);
    }
    let Decoded {
        text,
        transfer,
        canonical_cte,
    } = decode_part(part, id, block, text, at.raw)?;

    // Banners join the text with its own line ending for base64 (whose lines are content);
    // everything else is normalized to the message's line ending.
    let text_le = if transfer == Transfer::Base64 {
        if text.contains("\r\n") {
            "\r\n"
        } else if text.contains('\n') {
            "\n"
        } else {
            le
        }
    } else {
        le
    };
    // Borrowed until the first banner: a large body is copied once, into the text with the
    // banner, which becomes the new body when it needs no re-encoding.
    let mut text = if transfer == Transfer::Base64 {
        text
    } else {
        match text {
            std::borrow::Cow::Borrowed(t) => with_line_endings(t, le),
            std::borrow::Cow::Owned(t) => std::borrow::Cow::Owned(normalize_line_endings(&t, le)),
        }
    };
    for (i, banner) in banners.iter().enumerate() {
        let room = if i + 1 == banners.len() {
            at.header_room
        } else {
            0
        };
        text = std::borrow::Cow::Owned(if is_html {
            insert_html(&text, &banner_html(banner), banner.position, room)
        } else {
            insert_text(&text, &banner.text, banner.position, text_le, is_root, room)
        });
    }
    let text_non_ascii = !text.is_ascii();
    let (body, new_transfer) = encode_body(text.into_owned(), transfer, id, at)?;
    let mime = MimeChange {
        is_html,
        text_non_ascii,
        new_transfer,
        transfer,
        canonical_cte,
        is_root,
    };
    rewrite_mime_fields(part, block, &mime, le);
    Ok(Some(body))
}

/// A text part's content, decoded, and how it was encoded.
struct Decoded<'t> {
    text: std::borrow::Cow<'t, str>,
    transfer: Transfer,
    /// The Content-Transfer-Encoding was written as one of the five names (a forgiven
    /// spelling such as `8 bit` is written back canonically with the new body).
    canonical_cte: bool,
}

/// The part's text, when it can be decoded and re-encoded without losing anything.
fn decode_part<'t>(
    part: &MessagePart<'_>,
    id: usize,
    block: &HeaderBlock<'_>,
    text: &'t str,
    raw: &[u8],
) -> Result<Decoded<'t>, EditError> {
    let undecodable = |reason: String| EditError::UndecodablePart { part: id, reason };
    let cte = block
        .first_value("Content-Transfer-Encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(transfer) = Transfer::parse(&cte) else {
        return Err(undecodable(format!(
            "unknown Content-Transfer-Encoding {cte:?}; only 7bit, 8bit, binary, quoted-printable and base64 can be re-encoded"
        )));
    };
    let canonical_cte = cte.is_empty()
        || ["7bit", "8bit", "binary", "quoted-printable", "base64"].contains(&cte.as_str());
    if part.is_encoding_problem && matches!(transfer, Transfer::QuotedPrintable | Transfer::Base64)
    {
        return Err(undecodable(format!(
            "its {cte} content is broken, so the decoded text is not trustworthy"
        )));
    }
    if let Some(charset) = part.content_type().and_then(|ct| ct.attribute("charset")) {
        let known = charset_decoder(charset.as_bytes()).is_some()
            || ["utf-8", "utf8", "us-ascii", "ascii"]
                .iter()
                .any(|c| charset.eq_ignore_ascii_case(c));
        if !known && text.contains('\u{fffd}') {
            return Err(undecodable(format!(
                "charset {charset:?} is not supported, re-encoding would lose characters"
            )));
        }
    }
    let text = match lossy_bytes(part, raw, transfer, text) {
        None => std::borrow::Cow::Borrowed(text),
        Some(Ok(text)) => std::borrow::Cow::Owned(text),
        Some(Err(reason)) => return Err(undecodable(reason)),
    };
    Ok(Decoded {
        text,
        transfer,
        canonical_cte,
    })
}

/// The new body in the part's encoding (or a safer one: quoted-printable for long or
/// non-ASCII 7bit lines, base64 when the text contains the multipart's boundary), and the
/// new Content-Transfer-Encoding when it changed.
fn encode_body(
    text: String,
    transfer: Transfer,
    id: usize,
    at: &Placement<'_>,
) -> Result<(Vec<u8>, Option<&'static str>), EditError> {
    let (le, is_root) = (at.le, at.is_root);
    // The text, when the body is an encoding of it; `None` when the body is the text itself
    // (7bit/8bit that needs no re-encoding: moved, not copied, its spare room kept).
    let mut encoded_from: Option<String> = None;
    let (mut body, mut new_transfer) = match transfer {
        Transfer::Base64 => {
            let mut b = base64_lines(text.as_bytes(), le);
            if is_root {
                b.extend_from_slice(le.as_bytes());
            }
            (b, None)
        }
        Transfer::QuotedPrintable => {
            let b = quoted_printable(text.as_bytes(), le);
            encoded_from = Some(text);
            (b, None)
        }
        Transfer::SevenBit | Transfer::EightBit => {
            let fits = longest_line(text.as_bytes()) <= MAX_LINE;
            if fits && (text.is_ascii() || transfer == Transfer::EightBit) {
                (text.into_bytes(), None)
            } else if at.open_end {
                // Quoted-printable here would not decode (see `Placement::open_end`).
                if !fits {
                    return Err(EditError::Malformed(format!(
                        "part {id} would need quoted-printable for a line over {MAX_LINE} characters, which does not decode in a multipart that is never closed"
                    )));
                }
                (text.into_bytes(), Some("8bit"))
            } else {
                let b = quoted_printable(text.as_bytes(), le);
                encoded_from = Some(text);
                (b, Some("quoted-printable"))
            }
        }
    };
    let contains_boundary = at.boundaries.iter().any(|b| contains_delimiter(&body, b));
    if contains_boundary && at.open_end {
        return Err(EditError::Malformed(format!(
            "the new text of part {id} contains the boundary of its multipart, which is never closed, so it cannot be written in base64 either"
        )));
    }
    if transfer != Transfer::Base64 && contains_boundary {
        let plain = encoded_from.as_deref().map_or(&body[..], str::as_bytes);
        body = base64_lines(plain, le);
        new_transfer = Some("base64");
    }
    Ok((body, new_transfer))
}

/// What the rewritten part's MIME fields must say.
struct MimeChange {
    is_html: bool,
    text_non_ascii: bool,
    /// The new Content-Transfer-Encoding, when the body's changed.
    new_transfer: Option<&'static str>,
    /// The encoding the part came in.
    transfer: Transfer,
    canonical_cte: bool,
    is_root: bool,
}

/// Makes the part's Content-Type (UTF-8 charset), Content-Transfer-Encoding and, at the
/// top, MIME-Version say what the new body is.
fn rewrite_mime_fields(
    part: &MessagePart<'_>,
    block: &mut HeaderBlock<'_>,
    mime: &MimeChange,
    le: &str,
) {
    let mut touched_mime = false;
    // A part with several Content-Type fields (malformed) gets one fresh field: which one a
    // reader would pick is a guess, so the rewritten part says exactly what it now is.
    let single_text_type = block.count("Content-Type") == 1
        && block
            .first_value("Content-Type")
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/"));
    if let Some((name_part, raw_value)) = block.first_original("Content-Type") {
        let value = Some(raw_value)
            .filter(|_| single_text_type)
            .and_then(with_utf8_charset)
            .unwrap_or_else(|| regenerate_content_type(part, mime.is_html, le).into_bytes());
        let mut bytes = name_part.to_vec();
        bytes.extend_from_slice(&value);
        let value = String::from_utf8_lossy(&value).into_owned();
        block.set_field_bytes("Content-Type", bytes, value);
    } else if mime.text_non_ascii || mime.new_transfer.is_some() {
        let subtype = if mime.is_html { "html" } else { "plain" };
        block.set_mime_field("Content-Type", &format!("text/{subtype}; charset=utf-8"));
        touched_mime = true;
    }
    if let Some(cte) = mime.new_transfer {
        block.set_mime_field("Content-Transfer-Encoding", cte);
        touched_mime = true;
    } else if block.count("Content-Transfer-Encoding") > 1 || !mime.canonical_cte {
        // Duplicates: keep one, naming the encoding the new body is actually in.
        block.set_mime_field("Content-Transfer-Encoding", mime.transfer.name());
    }
    if mime.is_root && touched_mime && !block.contains("MIME-Version") {
        block.push("MIME-Version", "1.0");
    }
}

/// When the parse had to put U+FFFD for bytes of the part that are not in its charset (8-bit
/// text without a charset or declared UTF-8/ASCII, mostly Latin-1), re-encoding the text would
/// replace those bytes for good. `None`: the text is faithful. `Some(Ok(text))`: the text
/// again, with each invalid byte read as Windows-1252 (a superset of Latin-1) instead.
/// `Some(Err(why))`: it cannot be recovered (another declared charset).
fn lossy_bytes(
    part: &MessagePart<'_>,
    raw: &[u8],
    transfer: Transfer,
    text: &str,
) -> Option<Result<String, String>> {
    const FFFD: &[u8] = "\u{fffd}".as_bytes();
    if !text.contains('\u{fffd}') {
        return None;
    }
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    let content = match transfer {
        Transfer::SevenBit | Transfer::EightBit => std::borrow::Cow::Borrowed(body),
        Transfer::QuotedPrintable => MessageStream::new(body).decode_quoted_printable_mime(b"").1,
        Transfer::Base64 => MessageStream::new(body).decode_base64_mime(b"").1,
    };
    if memchr::memmem::find(&content, FFFD).is_some() {
        return None; // a real U+FFFD in UTF-8 content
    }
    let utf8ish = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .is_none_or(|c| {
            ["utf-8", "utf8", "us-ascii", "ascii"]
                .iter()
                .any(|u| c.eq_ignore_ascii_case(u))
        });
    let cp1252 = charset_decoder(b"windows-1252");
    let (true, Some(cp1252)) = (utf8ish, cp1252) else {
        return Some(Err(
            "its text has bytes its charset cannot decode; re-encoding would replace them".into(),
        ));
    };
    let mut out = String::with_capacity(content.len());
    for chunk in content.utf8_chunks() {
        out.push_str(chunk.valid());
        out.push_str(&cp1252(chunk.invalid()));
    }
    Some(Ok(out))
}

/// True when `body` contains `--boundary`, which mail-parser takes for a delimiter anywhere.
fn contains_delimiter(body: &[u8], boundary: &str) -> bool {
    let delimiter = [b"--".as_slice(), boundary.as_bytes()].concat();
    !boundary.is_empty() && memchr::memmem::find(body, &delimiter).is_some()
}

/// The raw Content-Type value (after the colon, with its folding and line ending) with the
/// charset parameter set to utf-8 and every other byte kept, 8-bit ones included (a raw
/// Latin-1 `name=` stays as it was); `None` when it has comments or unbalanced quotes (then the
/// value is regenerated from the parse).
pub(crate) fn with_utf8_charset(raw_value: &[u8]) -> Option<Vec<u8>> {
    if raw_value.contains(&b'(') {
        return None;
    }
    // Split on ';' outside quoted strings (every delimiter is ASCII, so bytes will do).
    let mut segments: Vec<&[u8]> = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, &c) in raw_value.iter().enumerate() {
        match c {
            _ if escaped => escaped = false,
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                segments.push(&raw_value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    segments.push(&raw_value[start..]);
    if !segments[0].contains(&b'/') {
        return None; // no type/subtype to keep
    }
    let mut found = false;
    let mut out_segments: Vec<Vec<u8>> = Vec::with_capacity(segments.len() + 1);
    for (i, seg) in segments.iter().enumerate() {
        let trimmed = seg.trim_ascii();
        let param = trimmed
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if i > 0
            && (param.eq_ignore_ascii_case(b"charset") || param.eq_ignore_ascii_case(b"charset*"))
        {
            if found {
                continue; // a duplicate charset parameter: drop it
            }
            found = true;
            let lead = &seg[..seg.len() - seg.trim_ascii_start().len()];
            let trail = &seg[seg.trim_ascii_end().len()..];
            out_segments.push([lead, b"charset=utf-8", trail].concat());
        } else {
            out_segments.push(seg.to_vec());
        }
    }
    let mut value = out_segments.join(&b';');
    if !found {
        let at = value.trim_ascii_end().len();
        let sep: &[u8] = if value[..at].trim_ascii_end().ends_with(b";") {
            b" "
        } else {
            b"; "
        };
        value.splice(at..at, [sep, b"charset=utf-8"].concat());
    }
    Some(value)
}

/// A fresh Content-Type value (leading space, trailing line ending) from the parse.
fn regenerate_content_type(part: &MessagePart<'_>, is_html: bool, le: &str) -> String {
    let mut value = format!(
        " text/{}; charset=utf-8",
        if is_html { "html" } else { "plain" }
    );
    if let Some(attrs) = part.content_type().and_then(|ct| ct.attributes()) {
        for a in attrs
            .iter()
            .filter(|a| !a.name.eq_ignore_ascii_case("charset"))
        {
            let v = a.value.replace('\\', "\\\\").replace('"', "\\\"");
            if a.name.is_ascii() && v.is_ascii() && !v.contains(['\r', '\n']) {
                value.push_str(&format!(";{le} {}=\"{v}\"", a.name));
            }
        }
    }
    value.push_str(le);
    value
}

/// The HTML a banner inserts: its `html`, or its text escaped in a `<div>`
/// ([`text_as_html`]).
pub(crate) fn banner_html(banner: &Banner) -> String {
    match &banner.html {
        Some(html) => html.clone(),
        None => format!("<div>{}</div>", text_as_html(&banner.text)),
    }
}

/// A text banner as HTML: each line escaped, lines joined with `<br>`.
fn text_as_html(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        for c in line.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Whether the decoded `text` of a displayed part already shows `banner`: a text part its
/// text; an HTML part its `html`, its text as the host renders it, or its text as it is.
/// Line endings and the banner's surrounding whitespace do not count.
pub(crate) fn carries_banner(text: &str, is_html: bool, banner: &Banner) -> bool {
    let normalized;
    let hay = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    let shows = |needle: &str| {
        let needle = needle.trim().replace("\r\n", "\n");
        !needle.is_empty() && hay.contains(&needle)
    };
    if !is_html {
        return shows(&banner.text);
    }
    banner.html.as_deref().is_some_and(shows)
        || shows(&text_as_html(&banner.text))
        || shows(&banner.text)
}

/// A plain-text banner: `banner`, an empty line, the body (top) or the body, an empty line,
/// the banner (bottom). `ends_with_break` adds a final line break after a bottom banner.
/// `room`: spare capacity to make the result with (see `Placement::header_room`).
pub(crate) fn insert_text(
    body: &str,
    banner: &str,
    position: Position,
    le: &str,
    ends_with_break: bool,
    room: usize,
) -> String {
    let banner = normalize_line_endings(banner.trim_end_matches(['\r', '\n']), le);
    let tail = if ends_with_break { le } else { "" };
    let pieces: [&str; 5] = if body.trim().is_empty() {
        [banner.as_str(), tail, "", "", ""]
    } else {
        match position {
            Position::Top => [banner.as_str(), le, le, body, ""],
            Position::Bottom => {
                let sep = if body.ends_with('\n') { "" } else { le };
                [body, sep, le, banner.as_str(), tail]
            }
        }
    };
    let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum::<usize>() + room);
    for piece in pieces {
        out.push_str(piece);
    }
    out
}

/// Inserts `banner` right after the opening `<body ...>` tag (top) or right before `</body>`
/// (bottom), case-insensitively; at the start or end of the document when there is no such tag.
/// `room`: spare capacity to make the result with (see `Placement::header_room`).
pub(crate) fn insert_html(html: &str, banner: &str, position: Position, room: usize) -> String {
    let at = match position {
        Position::Top => body_open_end(html).unwrap_or(0),
        Position::Bottom => body_close_start(html).unwrap_or(html.len()),
    };
    let mut out = String::with_capacity(html.len() + banner.len() + room);
    out.push_str(&html[..at]);
    out.push_str(banner);
    out.push_str(&html[at..]);
    out
}

/// Finds `needle` (ASCII, lower case) in `hay` case-insensitively, followed by a tag-name end.
fn tag_positions<'h>(hay: &'h [u8], needle: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
    hay.windows(needle.len())
        .enumerate()
        .filter_map(move |(i, w)| {
            let ends = hay
                .get(i + needle.len())
                .is_none_or(|&c| c == b'>' || c == b'/' || c.is_ascii_whitespace());
            (w.eq_ignore_ascii_case(needle) && ends).then_some(i)
        })
}

/// The byte index just after the `>` of the first `<body ...>` tag.
fn body_open_end(html: &str) -> Option<usize> {
    let bytes = html.as_bytes();
    let start = tag_positions(bytes, b"<body").next()?;
    let mut quote = None;
    for (i, &c) in bytes.iter().enumerate().skip(start + 5) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The byte index of the last `</body` tag.
fn body_close_start(html: &str) -> Option<usize> {
    tag_positions(html.as_bytes(), b"</body").last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_rewrite_keeps_other_parameters() {
        let charset_utf8 =
            |v: &str| with_utf8_charset(v.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            charset_utf8(" text/plain; charset=iso-8859-1; format=flowed\r\n").unwrap(),
            " text/plain; charset=utf-8; format=flowed\r\n"
        );
        assert_eq!(
            charset_utf8(" text/plain;\r\n\tformat=flowed;\r\n\tCHARSET=\"windows-1252\"\r\n")
                .unwrap(),
            " text/plain;\r\n\tformat=flowed;\r\n\tcharset=utf-8\r\n"
        );
        assert_eq!(
            charset_utf8(" text/html\n").unwrap(),
            " text/html; charset=utf-8\n"
        );
        assert_eq!(
            charset_utf8(" text/html;\n").unwrap(),
            " text/html; charset=utf-8\n"
        );
        assert_eq!(
            charset_utf8(" text/plain; name=\"a;charset=x\"\n").unwrap(),
            " text/plain; name=\"a;charset=x\"; charset=utf-8\n"
        );
        assert!(charset_utf8(" text/plain (comment)\n").is_none());
        assert!(charset_utf8(" \r\n").is_none());
        assert!(charset_utf8(" ; charset=x\r\n").is_none());
        // 8-bit bytes in another parameter are kept, not replaced.
        assert_eq!(
            with_utf8_charset(b" text/plain; name=\"caf\xe9.txt\"; charset=iso-8859-1\r\n")
                .unwrap(),
            b" text/plain; name=\"caf\xe9.txt\"; charset=utf-8\r\n"
        );
    }

    #[test]
    fn html_positions() {
        let html = "<html><BODY class=\"a>b\" bgcolor='x'><p>hi</p></Body ></html>";
        assert_eq!(
            insert_html(html, "[B]", Position::Top, 0),
            "<html><BODY class=\"a>b\" bgcolor='x'>[B]<p>hi</p></Body ></html>"
        );
        assert_eq!(
            insert_html(html, "[B]", Position::Bottom, 0),
            "<html><BODY class=\"a>b\" bgcolor='x'><p>hi</p>[B]</Body ></html>"
        );
        assert_eq!(
            insert_html("<p>x</p>", "[B]", Position::Top, 0),
            "[B]<p>x</p>"
        );
        assert_eq!(
            insert_html("<p>x</p>", "[B]", Position::Bottom, 0),
            "<p>x</p>[B]"
        );
        // <bodyguard> is not a body tag.
        assert_eq!(
            insert_html("<bodyguard>x", "[B]", Position::Top, 0),
            "[B]<bodyguard>x"
        );
        assert_eq!(insert_html("<body>", "[B]", Position::Top, 0), "<body>[B]");
    }

    #[test]
    fn finds_a_banner_already_shown() {
        let b = |text: &str, html: Option<&str>| Banner {
            text: text.into(),
            html: html.map(Into::into),
            position: Position::Top,
        };
        let c = b("External sender: <be careful>", None);
        assert!(!carries_banner("hello", false, &c));
        assert!(!carries_banner("<p>hello</p>", true, &c));
        assert!(carries_banner(
            "External sender: <be careful>\r\n\r\nhello",
            false,
            &c
        ));
        // In an HTML part: as the host renders it, or as plain text.
        assert!(carries_banner(
            "<body>External sender: &lt;be careful&gt;<p>hi</p>",
            true,
            &c
        ));
        assert!(carries_banner(
            "<pre>External sender: <be careful>",
            true,
            &c
        ));
        // The text banner in an HTML part does not count for a text part's check.
        assert!(!carries_banner(
            "External sender: &lt;be careful&gt;",
            false,
            &c
        ));
        let c = b("EXT\r\nline 2", Some("<div class=\"ext\">EXT</div>"));
        assert!(carries_banner("EXT\nline 2\nbody", false, &c));
        assert!(carries_banner(
            "<body><div class=\"ext\">EXT</div>hi",
            true,
            &c
        ));
        assert!(!carries_banner("<body><div>EXT</div>hi", true, &c));
        let c = b("Careful: <x> & 'y'\nline 2", None);
        assert!(carries_banner(
            "<body><div>Careful: &lt;x&gt; &amp; &#39;y&#39;<br>line 2</div>hi",
            true,
            &c
        ));
    }

    #[test]
    fn text_banner_escaped_in_html() {
        let b = Banner {
            text: "Careful: <script> & \"quotes\"\r\nline 2\n".into(),
            html: None,
            position: Position::Top,
        };
        assert_eq!(
            banner_html(&b),
            "<div>Careful: &lt;script&gt; &amp; &quot;quotes&quot;<br>line 2</div>"
        );
    }

    #[test]
    fn text_positions() {
        assert_eq!(
            insert_text("body\n", "B", Position::Top, "\n", true, 0),
            "B\n\nbody\n"
        );
        assert_eq!(
            insert_text("body", "B", Position::Bottom, "\r\n", true, 0),
            "body\r\n\r\nB\r\n"
        );
        assert_eq!(
            insert_text("body\n", "B\n", Position::Bottom, "\n", false, 0),
            "body\n\nB"
        );
        assert_eq!(insert_text("", "B", Position::Top, "\n", true, 0), "B\n");
    }
}
