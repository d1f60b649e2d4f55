//! An independent view of a message's MIME tree, from mail-parser directly (not through
//! sluice-mail), for comparing a message before and after a rewrite.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// Parses raw bytes the way sluice-mail does (default parser, every header).
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// What a part is, for tree comparison: its kind, its `type/subtype` (lower case; without
/// Content-Type the RFC 2045/2046 default: text/plain, or message/rfc822 in multipart/digest)
/// and its children's indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// `multipart`, `text` (text or HTML), `binary`, `inline-binary` or `message`.
    pub kind: &'static str,
    /// `type/subtype`, lower case.
    pub content_type: Option<String>,
    /// Indexes of the sub-parts (multipart only).
    pub children: Vec<u32>,
}

/// The shape of every part, in mail-parser's order (index 0 is the root).
pub fn shapes(m: &Message<'_>) -> Vec<Shape> {
    m.parts
        .iter()
        .zip(in_digest(m))
        .map(|(p, digest)| Shape {
            kind: kind(p),
            content_type: Some(content_type(p).unwrap_or_else(|| {
                if digest { "message/rfc822" } else { "text/plain" }.to_string()
            })),
            children: match &p.body {
                PartType::Multipart(c) => c.clone(),
                _ => Vec::new(),
            },
        })
        .collect()
}

fn kind(p: &MessagePart<'_>) -> &'static str {
    match p.body {
        PartType::Multipart(_) => "multipart",
        // mail-parser files text/html under Text when it cannot decode the charset; a banner
        // that re-encodes such a part in UTF-8 makes it Html without changing its type.
        PartType::Text(_) | PartType::Html(_) => "text",
        PartType::Binary(_) => "binary",
        PartType::InlineBinary(_) => "inline-binary",
        PartType::Message(_) => "message",
    }
}

/// `type/subtype` of a part, lower case.
pub fn content_type(p: &MessagePart<'_>) -> Option<String> {
    p.content_type().map(|ct| {
        format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase()
        )
    })
}

/// For each part, whether its parent is a multipart/digest.
fn in_digest(m: &Message<'_>) -> Vec<bool> {
    let mut out = vec![false; m.parts.len()];
    for p in &m.parts {
        if let PartType::Multipart(children) = &p.body {
            let digest = content_type(p).is_some_and(|ct| ct == "multipart/digest");
            for &c in children {
                if let Some(slot) = out.get_mut(c as usize) {
                    *slot = digest;
                }
            }
        }
    }
    out
}

/// The raw (still transfer-encoded) body bytes of a part.
pub fn raw_body<'r>(raw: &'r [u8], p: &MessagePart<'_>) -> &'r [u8] {
    let (b, e) = (p.offset_body as usize, p.offset_end as usize);
    raw.get(b.min(e)..e.min(raw.len())).unwrap_or_default()
}

/// Parts a banner may change, by the rule in the README ("text/plain and text/html leaves of
/// the top-level tree, not attachments, not inside an attached message"), written here from
/// that description rather than taken from sluice-mail: a text or HTML leaf whose Content-Type
/// is absent (outside multipart/digest) or text/plain or text/html, not
/// `Content-Disposition: attachment`, with a known transfer encoding. Every other leaf must
/// keep its body byte for byte.
pub fn may_change(m: &Message<'_>) -> Vec<bool> {
    m.parts
        .iter()
        .zip(in_digest(m))
        .map(|(p, digest)| {
            let text_leaf = matches!(p.body, PartType::Text(_) | PartType::Html(_));
            let shown_type = match content_type(p) {
                None => !digest,
                Some(ct) => ct == "text/plain" || ct == "text/html",
            };
            let known_cte = p.content_transfer_encoding().is_none_or(|cte| {
                let v: String = cte
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '-')
                    .collect::<String>()
                    .to_ascii_lowercase();
                matches!(
                    v.as_str(),
                    "" | "7bit" | "7bits" | "8bit" | "8bits" | "binary" | "quotedprintable" | "base64"
                )
            });
            let attachment = p.content_disposition().is_some_and(|d| d.is_attachment());
            text_leaf && shown_type && known_cte && !attachment
        })
        .collect()
}

/// Panics unless `after` has the same part tree as `before` and every leaf that
/// [`may_change`] does not allow to change has a byte-identical body.
pub fn assert_same_tree_and_opaque_bodies(
    what: &str,
    raw_before: &[u8],
    before: &Message<'_>,
    raw_after: &[u8],
    after: &Message<'_>,
) {
    let (sb, sa) = (shapes(before), shapes(after));
    assert_eq!(sb, sa, "{what}: the MIME part tree changed");
    for (i, may) in may_change(before).into_iter().enumerate() {
        let (pb, pa) = (&before.parts[i], &after.parts[i]);
        if may || matches!(pb.body, PartType::Multipart(_)) {
            continue;
        }
        assert!(
            raw_body(raw_before, pb) == raw_body(raw_after, pa),
            "{what}: part {i} ({:?}, {:?}) is not displayed text but its body changed",
            sb[i].kind,
            sb[i].content_type
        );
    }
}
