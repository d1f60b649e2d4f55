//! Every message of the shared corpus through the banner rule: the output parses with two
//! independent parsers, parts that are not displayed text are unchanged, the banner is in
//! every displayed text part, and malformed input is processed or refused, never a panic.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use sluice_chain::OutputMessage;
use sluice_chain::StepStatus;
use sluice_mail::Message;
use sluice_tests::{chains, corpus_dir, engine, envelope};
use std::sync::Arc;

const BANNER: &str = "SLUICE CORPUS BANNER external sender";

fn is_attachment(part: &mail_parser::MessagePart) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
}

/// Decoded contents of every part that is not displayed text, in order.
fn untouched_parts(msg: &mail_parser::Message) -> Vec<Vec<u8>> {
    msg.parts
        .iter()
        .filter_map(|p| match &p.body {
            PartType::Text(_) | PartType::Html(_) if !is_attachment(p) && is_plain_or_html(p) => {
                None
            }
            PartType::Multipart(_) => None,
            PartType::Message(m) => Some(m.raw_message().to_vec()),
            _ => Some(p.contents().to_vec()),
        })
        .collect()
}

/// Declared text/plain or text/html (no Content-Type means text/plain), with a transfer
/// encoding a reader can decode (RFC 2045 6.4: anything else is opaque data).
fn is_plain_or_html(part: &mail_parser::MessagePart) -> bool {
    let known_transfer = part.content_transfer_encoding().is_none_or(|cte| {
        let v: String = cte
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        [
            "",
            "7bit",
            "7bits",
            "8bit",
            "8bits",
            "binary",
            "quotedprintable",
            "base64",
        ]
        .contains(&v.as_str())
    });
    known_transfer
        && part.content_type().is_none_or(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("html")
                })
        })
}

/// The decoded text of every displayed text/plain and text/html part (the parts the banner
/// goes into; text/enriched and friends are left alone like attachments).
fn displayed_texts(msg: &mail_parser::Message) -> Vec<String> {
    msg.parts
        .iter()
        .filter_map(|p| match &p.body {
            PartType::Text(t) | PartType::Html(t) if !is_attachment(p) && is_plain_or_html(p) => {
                Some(t.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The line break before a MIME boundary belongs to the boundary, so an attached message's
/// last line break is not part of its body.
fn trim_eol(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &bytes[..end]
}

#[test]
fn corpus_through_the_banner_rule() {
    let Some(dir) = corpus_dir() else { return };
    let chains = chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:banner}}"
config = {{ text = "{BANNER}" }}
"#
    ));
    let mut files: Vec<_> = std::fs::read_dir(dir.join("eml"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let (mut processed, mut wrapped, mut refused) = (0, 0, Vec::new());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(path).unwrap();
        let message = match Message::parse(raw.clone()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                let why = e.to_string();
                assert!(!why.is_empty(), "{name}: refusal must say why");
                refused.push(format!("{name}: {why}"));
                continue;
            }
        };
        let result = chains.process(engine(), message, &envelope(&["bob@example.com"]));
        let group = &result.groups[0];
        assert_eq!(
            group.steps[0].outcome,
            StepStatus::Ok,
            "{name}: {:?}",
            group.steps[0].error
        );
        if let Some(e) = &group.edit_error {
            // Refused to edit: delivered unchanged, with the reason in the trace.
            assert!(!e.is_empty());
            refused.push(format!("{name}: edits refused: {e}"));
            continue;
        }
        let out = match &group.output {
            Some(OutputMessage::Edited(edited)) => edited.raw().to_vec(),
            Some(OutputMessage::Original) => {
                // The rule saw its banner already, or added nothing.
                processed += 1;
                continue;
            }
            None => panic!("{name}: no output"),
        };
        let parsed = MessageParser::default()
            .parse(&out)
            .unwrap_or_else(|| panic!("{name}: output does not parse with mail-parser"));
        mailparse::parse_mail(&out)
            .unwrap_or_else(|e| panic!("{name}: output does not parse with mailparse: {e}"));
        let original = MessageParser::default().parse(&raw).unwrap();

        let texts = displayed_texts(&parsed);
        assert!(!texts.is_empty(), "{name}: no displayed text in the output");
        for (i, t) in texts.iter().enumerate() {
            assert!(
                t.contains(BANNER),
                "{name}: displayed text part {i} lacks the banner"
            );
        }
        // Wrapped: the second part of the wrapper is the original, byte for byte. Read with
        // mailparse: mail-parser lets a malformed attached message run past its boundary.
        let second = mailparse::parse_mail(&out).unwrap();
        let inner_is_original = second.ctype.mimetype == "multipart/mixed"
            && second.subparts.len() == 2
            && second.subparts[1].ctype.mimetype == "message/rfc822"
            && second.subparts[1]
                .get_body_raw()
                .is_ok_and(|b| trim_eol(&b) == trim_eol(&raw));
        if displayed_texts(&original).is_empty() || inner_is_original {
            assert!(
                inner_is_original,
                "{name}: wrapped, but the original is not attached intact"
            );
            wrapped += 1;
        } else {
            assert_eq!(
                untouched_parts(&parsed),
                untouched_parts(&original),
                "{name}: a part that is not displayed text changed"
            );
        }
        processed += 1;
    }
    println!(
        "corpus: {} messages, {processed} processed ({wrapped} wrapped), {} refused",
        files.len(),
        refused.len()
    );
    for r in &refused {
        println!("  refused {r}");
    }
    assert!(
        processed >= files.len() / 2,
        "most of the corpus must be processed"
    );
}

/// Decoded bodies of the leaf parts, in order, per mailparse (independent of mail-parser).
fn mailparse_leaves(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    fn walk(p: &mailparse::ParsedMail<'_>, out: &mut Vec<(String, Vec<u8>)>) {
        if p.subparts.is_empty() {
            out.push((
                p.ctype.mimetype.clone(),
                p.get_body_raw().unwrap_or_default(),
            ));
        }
        for sp in &p.subparts {
            walk(sp, out);
        }
    }
    let mut out = Vec::new();
    walk(&mailparse::parse_mail(raw).unwrap(), &mut out);
    out
}

/// Every corpus message with an attachment has its first attachment stripped
/// (`replace-part`): the output parses with mail-parser, mailparse and the strict reader,
/// has the same parts, every other part byte-identical (strict ranges) and decoding the same
/// (mailparse), the note in place of the attachment and the attachment's bytes gone. A
/// message that two readers read differently is declined with the reason, never edited.
#[test]
fn corpus_strips_the_first_attachment() {
    use sluice_mail::{apply_edits, strict, BannerFallback, Edit, EditError, PartReplacement};
    let Some(dir) = corpus_dir() else { return };
    let mut files: Vec<_> = std::fs::read_dir(dir.join("eml"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let (mut stripped, mut declined) = (0, Vec::new());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(m) = Message::parse(std::fs::read(path).unwrap()) else {
            continue;
        };
        let Some(part) = m.parts().into_iter().find(|p| {
            p.id != 0 && (p.disposition.as_deref() == Some("attachment") || p.name.is_some())
        }) else {
            continue;
        };
        let note = format!("The attachment {} was removed by policy.", part.id);
        let edit = Edit::ReplacePart(PartReplacement {
            id: part.id,
            text: note.clone(),
        });
        let out = match apply_edits(&m, &[edit], BannerFallback::Wrap) {
            Ok(out) => out,
            Err(e @ (EditError::Ambiguous(_) | EditError::Malformed(_))) => {
                declined.push(format!("{name}: {e}"));
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let raw = m.read_bytes();
        let (before, after) = (strict::split(raw), strict::split(&out));
        assert!(
            after.ambiguities.is_empty(),
            "{name}: {:?}",
            after.ambiguities
        );
        assert_eq!(before.parts.len(), after.parts.len(), "{name}");
        let (was_leaves, is_leaves) = (mailparse_leaves(raw), mailparse_leaves(&out));
        assert_eq!(was_leaves.len(), is_leaves.len(), "{name}");
        let again = Message::parse(out.clone()).unwrap();
        assert_eq!(again.parts().len(), m.parts().len(), "{name}");
        let mut leaf = 0;
        for (k, (was, is)) in before.parts.iter().zip(&after.parts).enumerate() {
            assert_eq!(was.children, is.children, "{name}: part {k}");
            if was.children.is_some() {
                continue;
            }
            if k == part.id as usize {
                assert_eq!(is.content_type, "text/plain", "{name}");
                let text = String::from_utf8(is_leaves[leaf].1.clone()).unwrap();
                assert_eq!(text.trim_end(), note, "{name}");
                let body = &raw[was.body.clone()];
                if body.len() >= 32 {
                    assert!(
                        !out.windows(body.len()).any(|w| w == body),
                        "{name}: the stripped part's bytes are still there"
                    );
                }
            } else {
                assert_eq!(
                    raw[was.header.start..was.body.end],
                    out[is.header.start..is.body.end],
                    "{name}: part {k} changed"
                );
                assert_eq!(was_leaves[leaf], is_leaves[leaf], "{name}: leaf {leaf}");
            }
            leaf += 1;
        }
        stripped += 1;
    }
    eprintln!(
        "stripped the first attachment of {stripped} corpus messages; declined {}: {declined:#?}",
        declined.len()
    );
    assert!(stripped > 0);
}
