//! Whether a message can be edited: read it twice, with mail-parser (whose offsets the edits
//! are spliced at) and with the strict splitter ([`crate::strict`]), and edit only when the
//! two readings agree and the strict one finds nothing the RFCs leave open.
//!
//! The rule, for input two readers can read differently:
//! - **Normalise what has one reading everyone can share.** A bare CR in a header block is a
//!   line break to Python's `email` and other line-oriented readers and part of a field to
//!   mail-parser; read as a line break before the parse, every reader (mail-parser, the
//!   rules, the recipient's client) sees the same fields and parts, and the edit goes ahead.
//!   Declining instead would let a sender dodge a warning banner by adding one CR. Only header
//!   blocks are normalised: a body's bytes are its part's content (a PDF may hold CRs).
//! - **Decline the rest.** A delimiter in the middle of a line or with a suffix, a delimiter
//!   after the close delimiter, two Content-Types, a multipart without delimiters, a text
//!   part in an unknown transfer encoding, a line in a header block that is not a field: no
//!   rewrite makes all readers agree on what the sender meant, and a banner placed by one
//!   reading lands in another part for another reader (the class of bug this module exists
//!   for: a banner written into a PDF). Banners are declined ([`crate::EditError::Ambiguous`],
//!   the original is delivered and the trace says why). Header edits copy the body byte for
//!   byte, so only an ambiguous top header block declines them.
//! - **Compare where it matters.** Beyond the named ambiguities, the parts mail-parser says
//!   are displayed text must be the strict reading's displayed text parts at the same bytes;
//!   disagreements in parts an edit copies (mail-parser misreads the extent of the messages in
//!   a multipart/digest) do not block it.

use crate::strict::{self, Ambiguity, StrictTree};

/// What reading bare CRs as line breaks does to a message.
#[derive(Debug)]
pub(crate) enum LineBreaks {
    /// No bare CR in a header block: read as received.
    Clean,
    /// Each bare CR in a header block became the message's line break (CR LF, or LF in an LF
    /// message).
    Normalised {
        /// The message with those line breaks.
        bytes: Vec<u8>,
        /// How many bare CRs were read as line breaks.
        bare_crs: usize,
    },
}

/// A bare CR in a header block is the one ambiguity with a reading every parser accepts: a
/// line break, which is what Python's `email` and other line-oriented readers make of it
/// (mail-parser reads it as part of the field, so it sees other fields, other types, other
/// parts). So those are normalised before the parse. A bare CR in a body is left alone: the
/// body's bytes are the part's content, and it only changes the structure when a delimiter
/// follows it, which the strict reading reports as a delimiter in the middle of a line.
///
/// Where the header blocks are is taken from the reading with every bare CR as a line break
/// (the one being adopted): a bare CR can be what ends a header block.
pub(crate) fn normalise(raw: &[u8]) -> LineBreaks {
    let crs: Vec<usize> = strict::bare_crs(raw).collect();
    if crs.is_empty() {
        return LineBreaks::Clean;
    }
    let le: &[u8] = match raw.iter().position(|&b| b == b'\n') {
        Some(i) if i == 0 || raw[i - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    };
    let with_breaks = |which: &mut dyn FnMut(usize) -> bool| {
        let mut bytes = Vec::with_capacity(raw.len() + 64);
        let mut breaks = Vec::new();
        let mut from = 0;
        for (n, &at) in crs.iter().enumerate() {
            if which(n) {
                bytes.extend_from_slice(&raw[from..at]);
                breaks.push(bytes.len());
                bytes.extend_from_slice(le);
                from = at + 1;
            }
        }
        bytes.extend_from_slice(&raw[from..]);
        (bytes, breaks)
    };
    let (all, breaks) = with_breaks(&mut |_| true);
    let tree = strict::split(&all);
    let in_header: Vec<bool> = breaks.iter().map(|&at| tree.locate(at).1).collect();
    let count = in_header.iter().filter(|&&h| h).count();
    if count == 0 {
        return LineBreaks::Clean;
    }
    let (bytes, _) = with_breaks(&mut |n| in_header[n]);
    LineBreaks::Normalised {
        bytes,
        bare_crs: count,
    }
}

/// Why `m` (mail-parser's parse of `raw`) cannot be edited safely, if it cannot: the first
/// ambiguity the strict reading finds, or the first part the two readings disagree on. With
/// `body` false (header edits only) just what makes the top header block ambiguous: the body
/// is copied byte for byte, so every reader sees the same body as before.
pub(crate) fn disagreement(m: &mail_parser::Message<'_>, raw: &[u8], body: bool) -> Option<String> {
    if !body {
        return first_in_top_block(raw);
    }
    let tree = strict::split(raw);
    first_open(&tree).or_else(|| compare(m, &tree))
}

/// What makes a spliced output ambiguous, if anything: the same test as for the input, on the
/// output. A splice on an unambiguous input can still produce one (a rewritten header block
/// that loses its empty line, say), and the recipient must read what Sluice wrote.
pub(crate) fn output_ambiguity(out: &[u8], body: bool) -> Option<String> {
    if !body {
        return first_in_top_block(out);
    }
    first_open(&strict::split(out))
}

/// The first ambiguity of the top header block: all a header-only edit depends on, read
/// without the body (a body of megabytes is not read for a subject prefix).
fn first_in_top_block(raw: &[u8]) -> Option<String> {
    strict::top_block(raw).first().map(ToString::to_string)
}

/// The first ambiguity of `tree` that matters to a body edit: any but a bare CR in a body.
fn first_open(tree: &StrictTree) -> Option<String> {
    tree.ambiguities
        .iter()
        .find(|a| {
            !matches!(
                a,
                Ambiguity::BareCr {
                    in_header: false,
                    ..
                }
            )
        })
        .map(ToString::to_string)
}

/// Whether both readers put a banner in the same places: the parts mail-parser says are
/// displayed text (the ones a banner rewrites) must be exactly the strict reading's displayed
/// text leaves, with the same header block start and body. Then every rewritten range is one
/// text part to both, every other byte is copied, and no displayed text is left without the
/// banner (nor wrapped away). Disagreements elsewhere (mail-parser reads the messages of a
/// multipart/digest with the wrong extent, say) do not matter to an edit that copies them.
fn compare(m: &mail_parser::Message<'_>, tree: &StrictTree) -> Option<String> {
    let Ok(ours) = crate::banner::displayed_parts(m) else {
        // A parse the banner code refuses is refused there, with its own reason.
        return None;
    };
    let theirs: Vec<(usize, &strict::StrictPart)> = tree
        .leaves()
        .filter(|(_, p)| p.is_displayed_text())
        .collect();
    let describe = |ids: &[usize]| match ids {
        [] => "no part".to_owned(),
        [one] => format!("part {one}"),
        more => format!("parts {more:?}"),
    };
    let their_ids: Vec<usize> = theirs.iter().map(|(i, _)| *i).collect();
    let differ = || {
        Some(format!(
            "one reader shows {} as the message text, another {}",
            describe(&ours),
            describe(&their_ids)
        ))
    };
    if ours.len() != theirs.len() {
        return differ();
    }
    for (&id, (_, strict)) in ours.iter().zip(&theirs) {
        let part = m.parts.get(id)?;
        let body = part.offset_body as usize..part.offset_end as usize;
        // An empty body is empty wherever a reader puts it.
        let same_body = body == strict.body || (body.is_empty() && strict.body.is_empty());
        // The root's header block is the message's; a banner rewrites only its body.
        let same_start = id == 0 || part.offset_header as usize == strict.header.start;
        if !same_body || !same_start {
            return differ().map(|d| {
                format!(
                    "{d}; its bytes are {}..{} to one and {}..{} to the other",
                    part.offset_header, part.offset_end, strict.header.start, strict.body.end
                )
            });
        }
    }
    None
}
