//! Applying a chain's edits to the original bytes.
//!
//! The output is spliced from the input: the top header block is re-emitted from its pieces
//! (untouched fields byte-identical), and each displayed text part that gets a banner is
//! replaced in place by its rewritten header block and re-encoded body, using mail-parser's
//! offsets. Every byte outside those ranges is copied as it came in.

use mail_parser::{MimeHeaders, PartType};

use crate::banner::{displayed_parts, insert_text, rewrite_part, Placement};
use crate::edit::{validate_edit, Banner, BannerFallback, Edit, EditError, PartReplacement};
use crate::encoding::{base64_lines, longest_line, normalize_line_endings, quoted_printable};
use crate::header::{prefix_raw_value, HeaderBlock};
use crate::message::Message;
use crate::structure::{self, BodyChange};

/// What a chain's edits made of a message.
#[derive(Debug)]
pub enum Edited {
    /// Nothing changed (no edits, or edits the message satisfies already): deliver the
    /// original.
    Unchanged,
    /// The edited message, parsed: the parse that checked the splice, handed on so nothing
    /// after the chain (relay rewrite, ARC, the milter's diff) parses it again.
    Changed(Message),
}

/// Applies the edits in order to the original bytes. Every edit is validated again first.
/// Header edits change the top header block; banners change the displayed text parts, or,
/// when there is none, wrap the message (see [`BannerFallback`]). The output is parsed once
/// and must have the input's MIME part tree with every part the edits did not rewrite
/// byte-identical; otherwise the result is [`EditError::Malformed`] and the caller keeps the
/// original.
pub fn edit_message(
    msg: &Message,
    edits: &[Edit],
    fallback: BannerFallback,
) -> Result<Edited, EditError> {
    if edits.is_empty() {
        return Ok(Edited::Unchanged);
    }
    for edit in edits {
        validate_edit(edit)?;
    }
    let body = edits
        .iter()
        .any(|e| matches!(e, Edit::AddBanner(_) | Edit::ReplacePart(_)));
    if let Some(why) = msg.ambiguity(body) {
        return Err(EditError::Ambiguous(why));
    }
    // Parts are replaced first, by the ids of the message as received (what the rules saw);
    // the other edits then apply to that result, so a banner never moves a part's id.
    let replacements: Vec<&PartReplacement> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::ReplacePart(r) => Some(r),
            _ => None,
        })
        .collect();
    let rest: Vec<Edit> = edits
        .iter()
        .filter(|e| !matches!(e, Edit::ReplacePart(_)))
        .cloned()
        .collect();
    let out = match (replacements.is_empty(), rest.is_empty()) {
        (true, _) => splice(msg, edits, fallback, &[])?,
        (false, true) => replace_parts(msg, &replacements)?,
        (false, false) => {
            // A replacement keeps the part tree, so the ids still name the notes: no banner
            // goes into them (they are the host's words, not the sender's).
            let notes: Vec<usize> = replacements.iter().map(|r| r.id as usize).collect();
            let replaced = replace_parts(msg, &replacements)?;
            splice(&replaced, &rest, fallback, &notes)?
        }
    };
    // Edits that change nothing leave the message as received (bare CRs included).
    if out.raw() == msg.read_bytes() {
        return Ok(Edited::Unchanged);
    }
    if let Some(why) = crate::reading::output_ambiguity(out.raw(), body) {
        return Err(EditError::Malformed(format!(
            "the edited message could be read two ways ({why}), so it is left as it came in"
        )));
    }
    Ok(Edited::Changed(out))
}

/// [`edit_message`] as bytes: the edited message, or a copy of the raw bytes when nothing
/// changed.
pub fn apply_edits(
    msg: &Message,
    edits: &[Edit],
    fallback: BannerFallback,
) -> Result<Vec<u8>, EditError> {
    Ok(match edit_message(msg, edits, fallback)? {
        Edited::Unchanged => msg.raw().to_vec(),
        Edited::Changed(edited) => edited.into_raw(),
    })
}

/// [`apply_edits`] on a message every reader reads the same way.
/// `notes`: parts that are notes of `replace-part`, which take no banner.
fn splice(
    msg: &Message,
    edits: &[Edit],
    fallback: BannerFallback,
    notes: &[usize],
) -> Result<Message, EditError> {
    let raw = msg.read_bytes();
    let m = msg.parsed();
    let le = msg.line_ending();
    let root = m
        .parts
        .first()
        .ok_or_else(|| EditError::Malformed("the parse has no MIME parts".into()))?;
    let (header_start, body_start) = (root.offset_header as usize, root.offset_body as usize);
    let mut top = HeaderBlock::parse(raw, &root.headers, header_start, body_start, le)?;

    let banners = edit_top_header(&mut top, edits, le);

    let mut out = Vec::with_capacity(raw.len() + 1024);
    // Whatever precedes the header block (nothing, with mail-parser) stays.
    out.extend_from_slice(&raw[..header_start]);
    let unchanged_body = |mut out: Vec<u8>, top: &HeaderBlock<'_>| {
        top.emit(&mut out, body_start < raw.len());
        out.extend_from_slice(&raw[body_start..]);
        out
    };
    // How often each header the edits name must be in the output's top header block.
    let expected: Vec<(&str, usize)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::AddHeader { name, .. } | Edit::SetHeader { name, .. } => Some(name.as_str()),
            Edit::RemoveHeader(name) => Some(name.as_str()),
            Edit::RemoveReceived => Some("Received"),
            Edit::PrefixSubject(_) => Some("Subject"),
            Edit::AddBanner(_) | Edit::ReplacePart(_) => None,
        })
        .map(|name| (name, top.count(name)))
        .collect();
    let checked = |out: Vec<u8>, change: BodyChange<'_>| {
        let parsed = structure::check(m, raw, out, change)?;
        same_header_counts(parsed.parsed(), parsed.read_bytes(), &expected)?;
        Ok(parsed)
    };
    if banners.is_empty() {
        return checked(unchanged_body(out, &top), BodyChange::Parts(&[]));
    }

    let mut displayed = displayed_parts(m)?;
    displayed.retain(|id| !notes.contains(id));
    if displayed.is_empty() {
        return match fallback {
            BannerFallback::Ignore => checked(unchanged_body(out, &top), BodyChange::Parts(&[])),
            BannerFallback::Wrap => checked(wrap(raw, top, &banners, le), BodyChange::Wrapped),
        };
    }
    if displayed == [0] {
        let at = Placement {
            raw,
            le,
            is_root: true,
            boundaries: Vec::new(),
            open_end: false,
            header_room: header_room(header_start, body_start),
        };
        let Some(mut body) = rewrite_part(root, 0, &mut top, &banners, &at)? else {
            return checked(unchanged_body(out, &top), BodyChange::Parts(&[]));
        };
        top.emit(&mut out, !body.is_empty());
        // The header block goes in front of the new body where it lies (in its spare room):
        // a large body is not copied again.
        body.splice(0..0, out);
        return checked(body, BodyChange::Parts(&displayed));
    }

    // Sub-parts: replace each part's [header start, body end) range in place.
    let (replacements, rewritten) = rewrite_sub_parts(msg, body_start, &displayed, &banners)?;
    top.emit(&mut out, true);
    splice_parts(&mut out, raw, body_start, replacements)?;
    checked(out, BodyChange::Parts(&rewritten))
}

/// Room for a header block now `header_start..body_start` long, once rewritten (a charset or
/// Content-Transfer-Encoding changed, fields added): what a new body is made with in front.
fn header_room(header_start: usize, body_start: usize) -> usize {
    body_start.saturating_sub(header_start) + 1024
}

/// Applies the header edits to the top header block, in order; returns the banners (each
/// once: the same banner asked for by two steps is shown once).
fn edit_top_header<'e>(top: &mut HeaderBlock<'_>, edits: &'e [Edit], le: &str) -> Vec<&'e Banner> {
    let mut banners: Vec<&Banner> = Vec::new();
    for edit in edits {
        match edit {
            Edit::AddHeader { name, value } => top.add(name, value),
            Edit::SetHeader { name, value } => top.set(name, value),
            Edit::RemoveHeader(name) => top.remove(name),
            Edit::RemoveReceived => top.remove("Received"),
            Edit::PrefixSubject(prefix) => prefix_subject(top, prefix, le),
            Edit::AddBanner(banner) if banners.contains(&banner) => {}
            Edit::AddBanner(banner) => banners.push(banner),
            Edit::ReplacePart(_) => {}
        }
    }
    banners
}

/// A byte range of the input and what replaces it.
type Replacement = (usize, usize, Vec<u8>);

/// The new bytes of each displayed sub-part that takes a banner, as `(start, end, bytes)`
/// replacing the part's `[header start, body end)` range, and the ids of those parts.
fn rewrite_sub_parts(
    msg: &Message,
    body_start: usize,
    displayed: &[usize],
    banners: &[&Banner],
) -> Result<(Vec<Replacement>, Vec<usize>), EditError> {
    let (raw, m, le) = (msg.read_bytes(), msg.parsed(), msg.line_ending());
    let parents = parent_ids(m);
    let mut replacements = Vec::with_capacity(displayed.len());
    let mut rewritten = Vec::with_capacity(displayed.len());
    for &id in displayed {
        let part = m
            .parts
            .get(id)
            .ok_or_else(|| EditError::Malformed(format!("MIME part {id} is missing")))?;
        let (h, b, e) = (
            part.offset_header as usize,
            part.offset_body as usize,
            part.offset_end as usize,
        );
        if !(body_start <= h && h <= b && b <= e && e <= raw.len()) {
            return Err(EditError::Malformed(format!(
                "MIME part {id} has offsets {h}..{b}..{e}, out of order or outside the body {body_start}..{}",
                raw.len()
            )));
        }
        let boundaries = enclosing_boundaries(m, &parents, id);
        let open_end = boundaries
            .first()
            .is_none_or(|b| !delimiter_follows(&raw[e..], b));
        let at = Placement {
            raw,
            le,
            is_root: false,
            boundaries,
            open_end,
            header_room: header_room(h, b),
        };
        let mut block = HeaderBlock::parse(raw, &part.headers, h, b, le)?;
        let Some(body) = rewrite_part(part, id, &mut block, banners, &at)? else {
            continue;
        };
        rewritten.push(id);
        let mut head = Vec::with_capacity(b - h + 64);
        block.emit(&mut head, true);
        let mut bytes = body;
        bytes.splice(0..0, head);
        // The line break before a boundary delimiter belongs to the delimiter. A part whose
        // body is empty (`Content-Type: text/plain\r\n\r\n--b`: the empty line doubles as
        // that line break) or that ends without one (`text--b`) has none after its range,
        // so the new body must bring its own, or the delimiter becomes text of this part.
        if e < raw.len() && !raw[e..].starts_with(b"\n") && !raw[e..].starts_with(b"\r\n") {
            bytes.extend_from_slice(le.as_bytes());
        }
        replacements.push((h, e, bytes));
    }
    Ok((replacements, rewritten))
}

/// Replaces each named leaf part, header block and body, by a text/plain note; every other
/// byte is copied. A part named twice (two steps stripping the same file) is replaced once,
/// with the first note.
fn replace_parts(msg: &Message, asked: &[&PartReplacement]) -> Result<Message, EditError> {
    let (raw, m, le) = (msg.read_bytes(), msg.parsed(), msg.line_ending());
    let parents = parent_ids(m);
    let mut replacements: Vec<Replacement> = Vec::with_capacity(asked.len());
    let mut ids: Vec<usize> = Vec::with_capacity(asked.len());
    for r in asked {
        let id = r.id as usize;
        if ids.contains(&id) {
            continue;
        }
        let refuse = |reason: String| EditError::NoSuchPart { id: r.id, reason };
        let part = m.parts.get(id).ok_or_else(|| {
            refuse(format!(
                "the message has parts 0 to {}; use an id from message.parts",
                m.parts.len().saturating_sub(1)
            ))
        })?;
        if id == 0 {
            return Err(refuse(
                "it is the whole message (refuse or quarantine it instead)".into(),
            ));
        }
        if matches!(part.body, PartType::Multipart(_)) {
            return Err(refuse(
                "it is a multipart container; replace its leaf parts".into(),
            ));
        }
        if parents.get(id).copied().flatten().is_none() {
            return Err(EditError::Malformed(format!(
                "MIME part {id} is in no multipart"
            )));
        }
        let (h, e) = (part.offset_header as usize, part.offset_end as usize);
        if !(h <= part.offset_body as usize && part.offset_body as usize <= e && e <= raw.len()) {
            return Err(EditError::Malformed(format!(
                "MIME part {id} has offsets {h}..{e}, out of order or outside the message"
            )));
        }
        let boundaries = enclosing_boundaries(m, &parents, id);
        let mut bytes = note_part(&r.text, le, &boundaries);
        // As for a banner: the line break before the next delimiter belongs to it.
        if e < raw.len() && !raw[e..].starts_with(b"\n") && !raw[e..].starts_with(b"\r\n") {
            bytes.extend_from_slice(le.as_bytes());
        }
        replacements.push((h, e, bytes));
        ids.push(id);
    }
    let mut out = Vec::with_capacity(raw.len());
    splice_parts(&mut out, raw, 0, replacements)?;
    structure::check(m, raw, out, BodyChange::Replaced(&ids))
}

/// A text/plain part (header block and body) holding `text`: 7bit when it is short-lined
/// ASCII that contains none of the enclosing boundaries, else base64 (which cannot contain a
/// delimiter).
fn note_part(text: &str, le: &str, boundaries: &[&str]) -> Vec<u8> {
    let text = normalize_line_endings(text.trim_end(), le);
    let plain = text.is_ascii()
        && longest_line(text.as_bytes()) <= 998
        && !boundaries.iter().any(|b| text.contains(b));
    let (cte, body) = if plain {
        ("7bit", text.into_bytes())
    } else {
        ("base64", base64_lines(text.as_bytes(), le))
    };
    let mut out = format!(
        "Content-Type: text/plain; charset=utf-8{le}Content-Transfer-Encoding: {cte}{le}{le}"
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// For each part index, the multipart it is a child of.
fn parent_ids(m: &mail_parser::Message<'_>) -> Vec<Option<usize>> {
    let mut parents = vec![None; m.parts.len()];
    for (id, part) in m.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &part.body {
            for &c in children {
                if let Some(slot) = parents.get_mut(c as usize) {
                    // Children nest forward (checked by displayed_parts); this keeps a broken
                    // parse from looping below.
                    if (c as usize) > id {
                        *slot = Some(id);
                    }
                }
            }
        }
    }
    parents
}

/// Whether `rest` (what follows a part) starts with the delimiter `--boundary`, after the
/// line break that belongs to it.
fn delimiter_follows(rest: &[u8], boundary: &str) -> bool {
    let rest = rest
        .strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
        .unwrap_or(rest);
    rest.strip_prefix(b"--")
        .is_some_and(|r| r.starts_with(boundary.as_bytes()))
}

/// The boundaries of every multipart around part `id`, the nearest first: its new body must
/// not contain any of them (mail-parser ends a part at `--boundary` even mid-line).
fn enclosing_boundaries<'m>(
    m: &'m mail_parser::Message<'_>,
    parents: &[Option<usize>],
    id: usize,
) -> Vec<&'m str> {
    let mut out = Vec::new();
    let mut at = parents.get(id).copied().flatten();
    while let Some(p) = at {
        if let Some(b) = m.parts[p]
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
        {
            out.push(b);
        }
        at = parents.get(p).copied().flatten();
    }
    out
}

/// prefix-subject: `prefix + " " + subject` (no extra space when the prefix ends with one);
/// nothing when the subject already starts with the prefix; `Subject: prefix` when absent.
/// The prefix goes before the subject's raw bytes, which are kept (folding, encoded-words and
/// 8-bit text in any charset): decoding and re-encoding would turn bytes that are not UTF-8
/// into U+FFFD.
fn prefix_subject(top: &mut HeaderBlock<'_>, prefix: &str, le: &str) {
    let Some(subject) = top.first_value("Subject") else {
        top.add("Subject", prefix.trim_end());
        return;
    };
    let subject = subject.trim_start();
    if subject.starts_with(prefix) || subject == prefix.trim_end() {
        return;
    }
    let sep = if prefix.ends_with(' ') || subject.is_empty() {
        ""
    } else {
        " "
    };
    let value = format!("{prefix}{sep}{subject}").trim_end().to_owned();
    match top.first_raw("Subject") {
        Some((name_part, raw_value)) => {
            let field = prefix_raw_value(&name_part, &raw_value, prefix, le);
            top.set_field_bytes("Subject", field, value);
        }
        None => top.set("Subject", &value),
    }
}

/// A message without displayed text: a new multipart/mixed with the original top-level fields
/// (as edited, minus the MIME ones), a text/plain part with the banners and the original bytes,
/// unchanged, as a message/rfc822 part.
fn wrap(raw: &[u8], mut top: HeaderBlock<'_>, banners: &[&Banner], le: &'static str) -> Vec<u8> {
    top.remove_where(|name| {
        [
            "content-type",
            "content-transfer-encoding",
            "mime-version",
            "content-disposition",
        ]
        .iter()
        .any(|m| name.eq_ignore_ascii_case(m))
    });
    let mut text = String::new();
    for banner in banners {
        text = insert_text(&text, &banner.text, banner.position, le, true, 0);
    }
    let (text_cte, text_body) = if text.is_ascii() && longest_line(text.as_bytes()) <= 998 {
        ("7bit", text.into_bytes())
    } else {
        ("quoted-printable", quoted_printable(text.as_bytes(), le))
    };
    let boundary = unique_boundary(raw, &text_body);
    // message/rfc822 allows only 7bit, 8bit or binary: say which the original needs.
    let inner_cte = if raw.contains(&0) || longest_line(raw) > 998 {
        Some("binary")
    } else if !raw.is_ascii() {
        Some("8bit")
    } else {
        None
    };

    top.push("MIME-Version", "1.0");
    top.push(
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
    );
    let mut out = Vec::with_capacity(raw.len() + text_body.len() + 512);
    top.emit(&mut out, true);
    let line = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(le.as_bytes());
    };
    line(&mut out, &format!("--{boundary}"));
    line(&mut out, "Content-Type: text/plain; charset=utf-8");
    line(&mut out, &format!("Content-Transfer-Encoding: {text_cte}"));
    line(&mut out, "");
    out.extend_from_slice(&text_body);
    if !text_body.ends_with(b"\n") {
        out.extend_from_slice(le.as_bytes());
    }
    line(&mut out, &format!("--{boundary}"));
    line(&mut out, "Content-Type: message/rfc822");
    if let Some(cte) = inner_cte {
        line(&mut out, &format!("Content-Transfer-Encoding: {cte}"));
    }
    line(&mut out, "");
    out.extend_from_slice(raw);
    // The line break before a boundary belongs to the boundary, so the part is exactly `raw`.
    out.extend_from_slice(le.as_bytes());
    line(&mut out, &format!("--{boundary}--"));
    out
}

/// A boundary that occurs in neither the original message nor the banner text. Deterministic
/// (derived from the content) so the same input gives the same output.
fn unique_boundary(raw: &[u8], text: &[u8]) -> String {
    // FNV-1a: cheap and good enough to make a collision with message text unlikely; the loop
    // below makes it impossible.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in raw.iter().chain(text) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0u32..)
        .map(|n| format!("sluice-wrap-{hash:016x}-{n}"))
        .find(|b| !contains(raw, b.as_bytes()) && !contains(text, b.as_bytes()))
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The output's top header block has each edited header as often as the edits meant. A
/// malformed input (a line that starts with a bare CR, say) can make a spliced field land
/// after what a parser reads as the end of the header block; then the edit did not happen
/// and the original is kept instead.
fn same_header_counts(
    parsed: &mail_parser::Message<'_>,
    out: &[u8],
    expected: &[(&str, usize)],
) -> Result<(), EditError> {
    let Some(top) = parsed.parts.first() else {
        return Err(EditError::Malformed("the output has no MIME parts".into()));
    };
    for (name, want) in expected {
        let got = top
            .headers
            .iter()
            .filter(|h| {
                crate::header::raw_name(out, h).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .count();
        if got != *want {
            return Err(EditError::Malformed(format!(
                "the edited message would have {got} {name} field(s) in its header block instead of {want} (the input's header block is malformed), so it is left as it came in"
            )));
        }
    }
    Ok(())
}

/// Appends `raw[from..]` to `out` with each `(start, end, bytes)` range replaced by its bytes
/// (sorted here); ranges that overlap are a malformed message, not a panic. The banner and
/// the part replacement both rewrite parts this way, keeping every other byte.
fn splice_parts(
    out: &mut Vec<u8>,
    raw: &[u8],
    from: usize,
    mut replacements: Vec<Replacement>,
) -> Result<(), EditError> {
    replacements.sort_by_key(|r| r.0);
    let mut pos = from;
    for (start, end, bytes) in replacements {
        if start < pos {
            return Err(EditError::Malformed(format!(
                "MIME parts overlap at byte {start} (the previous part ends at {pos})"
            )));
        }
        out.extend_from_slice(&raw[pos..start]);
        out.extend_from_slice(&bytes);
        pos = end;
    }
    out.extend_from_slice(&raw[pos..]);
    Ok(())
}
