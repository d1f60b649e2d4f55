//! The structural invariant of an edit, checked on the spliced output by parsing it again.
//!
//! Splicing works on mail-parser's offsets, and a byte in the wrong place (a boundary delimiter
//! that lost its line break, a banner that happens to contain a boundary) silently turns the
//! parts after it into text of the part before. So the output is parsed once more and compared
//! with the input's parse: the same MIME part tree, and every part the edits did not rewrite
//! byte for byte the same. When that fails the edit is refused ([`EditError::Malformed`]) and
//! the caller delivers the original: a banner is lost, never an attachment.

use mail_parser::{MessagePart, MimeHeaders, PartType};

use crate::edit::EditError;
use crate::message::{Message, ParseError};

/// What the edits did to the body, i.e. what the output may differ in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyChange<'a> {
    /// The body is spliced from the input; only these parts (mail-parser indexes) were
    /// rewritten. Empty for header-only edits.
    Parts(&'a [usize]),
    /// The message was wrapped: a multipart/mixed of a text/plain part and the input, byte for
    /// byte, as message/rfc822.
    Wrapped,
    /// These leaf parts were replaced by text/plain notes (`replace-part`); everything else,
    /// the top header block included, is the input's.
    Replaced(&'a [usize]),
}

/// The shape of one part: what the tree comparison looks at.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    kind: &'static str,
    /// `type/subtype` in lower case.
    content_type: String,
    children: Vec<u32>,
}

fn shape(part: &MessagePart<'_>) -> Shape {
    let (kind, children) = match &part.body {
        PartType::Multipart(c) => ("multipart", c.clone()),
        PartType::Text(_) => ("text", Vec::new()),
        PartType::Html(_) => ("html", Vec::new()),
        PartType::Binary(_) => ("binary", Vec::new()),
        PartType::InlineBinary(_) => ("inline binary", Vec::new()),
        PartType::Message(_) => ("message", Vec::new()),
    };
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        })
        // The defaults (RFC 2045 section 5.2, RFC 2046 section 5.1.5): a rewritten part that had
        // no Content-Type may get an explicit one saying the same.
        .unwrap_or_else(|| match kind {
            "text" => "text/plain".into(),
            "message" => "message/rfc822".into(),
            _ => String::new(),
        });
    Shape {
        kind,
        content_type,
        children,
    }
}

/// Parses `output` and checks it against `input` (the parse of `raw`) for `change`; returns
/// the parsed output, which the caller hands on: the edited message is parsed this once.
pub(crate) fn check(
    input: &mail_parser::Message<'_>,
    raw: &[u8],
    output: Vec<u8>,
    change: BodyChange<'_>,
) -> Result<Message, EditError> {
    let refuse = |what: String| {
        EditError::Malformed(format!(
            "the edited message would not keep the MIME structure ({what}), so it is left as it came in"
        ))
    };
    let parsed = Message::parse(output).map_err(|e| match e {
        ParseError::Empty | ParseError::NoHeaders => {
            refuse("the output has no header fields".into())
        }
        ParseError::ParserFailed | ParseError::TooLarge(_) => {
            refuse("the output does not parse".into())
        }
    })?;
    let (tree, out) = (parsed.parsed(), parsed.read_bytes());
    match change {
        BodyChange::Parts(rewritten) => same_tree(input, raw, tree, out, rewritten, false),
        BodyChange::Replaced(replaced) => same_tree(input, raw, tree, out, replaced, true),
        BodyChange::Wrapped => wraps(tree, out, raw),
    }
    .map_err(refuse)?;
    Ok(parsed)
}

fn same_tree(
    input: &mail_parser::Message<'_>,
    raw: &[u8],
    output: &mail_parser::Message<'_>,
    out: &[u8],
    rewritten: &[usize],
    replaced: bool,
) -> Result<(), String> {
    if input.parts.len() != output.parts.len() {
        return Err(format!(
            "{} MIME parts instead of {}",
            output.parts.len(),
            input.parts.len()
        ));
    }
    for (id, (before, after)) in input.parts.iter().zip(&output.parts).enumerate() {
        let (want, got) = (shape(before), shape(after));
        // mail-parser files an empty text/html part as text: a banner may make it html.
        let text_kinds = |s: &Shape| matches!(s.kind, "text" | "html");
        let same = if replaced && rewritten.contains(&id) {
            // A replaced part is a text/plain note now.
            got.kind == "text" && got.content_type == "text/plain"
        } else {
            want == got
                || (rewritten.contains(&id)
                    && text_kinds(&want)
                    && text_kinds(&got)
                    && want.content_type == got.content_type)
        };
        if !same {
            return Err(format!(
                "part {id} would become {got:?} instead of {want:?}"
            ));
        }
        if rewritten.contains(&id) {
            // A rewritten part must decode (mail-parser gives up on quoted-printable or base64
            // in a multipart that is never closed, for one).
            if after.is_encoding_problem && !before.is_encoding_problem {
                return Err(format!("part {id} would not decode"));
            }
            continue;
        }
        match &before.body {
            PartType::Multipart(children) => {
                let sides = (
                    Side {
                        parse: input,
                        bytes: raw,
                    },
                    Side {
                        parse: output,
                        bytes: out,
                    },
                );
                same_gaps(id, sides, children, rewritten)?
            }
            _ => {
                // The root's header block is the one header edits change.
                let span = |p: &MessagePart<'_>| {
                    let start = if id == 0 {
                        p.offset_body
                    } else {
                        p.offset_header
                    };
                    start as usize..p.offset_end as usize
                };
                if raw.get(span(before)) != out.get(span(after)) {
                    return Err(format!("part {id} would not be byte-identical"));
                }
            }
        }
    }
    Ok(())
}

/// One parse with the bytes it was made from.
#[derive(Clone, Copy)]
struct Side<'p, 'm> {
    parse: &'p mail_parser::Message<'m>,
    bytes: &'p [u8],
}

/// The bytes of a multipart between its children (preamble, delimiter lines, epilogue) are
/// copied, except that a rewritten child may have gained the line break its delimiter needs.
fn same_gaps(
    id: usize,
    (input, output): (Side<'_, '_>, Side<'_, '_>),
    children: &[u32],
    rewritten: &[usize],
) -> Result<(), String> {
    let (before, after) = (&input.parse.parts[id], &output.parse.parts[id]);
    // Gap k lies between child k-1 (or the multipart's body start) and child k (or its end).
    let gap = |m: &mail_parser::Message<'_>, p: &MessagePart<'_>, k: usize| {
        let start = match k {
            0 => p.offset_body,
            _ => m.parts.get(children[k - 1] as usize)?.offset_end,
        };
        let end = match children.get(k) {
            Some(&c) => m.parts.get(c as usize)?.offset_header,
            None => p.offset_end,
        };
        Some(start as usize..end as usize)
    };
    for k in 0..=children.len() {
        let was = gap(input.parse, before, k).and_then(|r| input.bytes.get(r));
        let is = gap(output.parse, after, k).and_then(|r| output.bytes.get(r));
        let after_rewritten = k > 0 && rewritten.contains(&(children[k - 1] as usize));
        let kept = match (was, is) {
            (Some(was), Some(is)) if after_rewritten => is.ends_with(was),
            (was, is) => was == is,
        };
        if !kept {
            return Err(format!(
                "the bytes before child {k} of multipart part {id} would change"
            ));
        }
        // mail-parser finds `--boundary` anywhere, RFC 2046 readers only at the start of a
        // line: a delimiter that lost its line break still parses the same here but merges
        // parts for everyone else. After a rewritten part it must start a line; elsewhere it
        // must start a line wherever it did in the input.
        let boundary = before
            .content_type()
            .and_then(|ct| ct.attribute("boundary"));
        let starts_line = |m: &mail_parser::Message<'_>, p: &MessagePart<'_>, bytes: &[u8]| {
            let range = gap(m, p, k)?;
            delimiter_starts_line(bytes, range, boundary?)
        };
        let was_line = starts_line(input.parse, before, input.bytes).unwrap_or(true);
        let is_line = starts_line(output.parse, after, output.bytes).unwrap_or(true);
        if !is_line && (was_line || after_rewritten) {
            return Err(format!(
                "the delimiter before child {k} of multipart part {id} would not start a line"
            ));
        }
    }
    Ok(())
}

/// Whether the first `--boundary` in `bytes[range]` follows a line break; `None` when there is
/// none.
fn delimiter_starts_line(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    boundary: &str,
) -> Option<bool> {
    let delimiter = [b"--".as_slice(), boundary.as_bytes()].concat();
    let gap = bytes.get(range.clone())?;
    let at = range.start + memchr::memmem::find(gap, &delimiter)?;
    Some(at == 0 || bytes[at - 1] == b'\n')
}

fn wraps(output: &mail_parser::Message<'_>, out: &[u8], raw: &[u8]) -> Result<(), String> {
    let shapes: Vec<Shape> = output.parts.iter().map(shape).collect();
    let expected = [
        ("multipart", "multipart/mixed"),
        ("text", "text/plain"),
        ("message", "message/rfc822"),
    ];
    let matches = shapes.len() == expected.len()
        && shapes
            .iter()
            .zip(expected)
            .all(|(s, (kind, ct))| s.kind == kind && s.content_type == ct)
        && shapes[0].children == [1, 2];
    if !matches {
        return Err(format!(
            "the wrapper is {shapes:?}, not multipart/mixed of text/plain and message/rfc822"
        ));
    }
    // The wrapped message starts right after its part's header block and is the original.
    // Neither where mail-parser thinks the part ends nor the tree it reads inside is
    // compared: it parses a nested message by its enclosing boundary too (a message/rfc822
    // ending in another one swallows the enclosing delimiter, an unclosed multipart ends
    // early, an empty multipart gains a child), so those depend on the wrapper, not on the
    // bytes, which are the original's.
    let inner = &output.parts[2];
    let original = out
        .get(inner.offset_body as usize..)
        .is_some_and(|rest| rest.starts_with(raw));
    if !original {
        return Err("the wrapped message is not the original byte for byte".into());
    }
    Ok(())
}
