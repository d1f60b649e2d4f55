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
