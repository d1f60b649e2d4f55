//! `mail_edit`: parse arbitrary bytes as a message, apply one to four rule edits chosen by the
//! input's first bytes, with both banner fallbacks.
//!
//! Input: 9 parameter bytes, then the message. Byte 0: the number of edits (`& 3`, plus one);
//! then two bytes per edit: the action (add-banner, add/set/remove-header, prefix-subject)
//! and its parameters (header name and value, banner text, HTML and position), from the
//! tables below or from the message's last bytes.
//!
//! Invariants, whenever `apply_edits` returns `Ok`:
//! - the output parses (sluice-mail and mail-parser);
//! - header-only edits leave every body byte as it was;
//! - with a banner: the same MIME part tree (number of parts, kinds and content types) and
//!   byte-identical bodies for every part not displayed as text (see [`mime::may_change`]);
//!   or, only with `BannerFallback::Wrap`, the wrap: multipart/mixed of a text/plain banner
//!   and the original, byte for byte, as message/rfc822, and then only when no part of the
//!   input is displayed text;
//! - each header the edits touch is there as often as the edits say (removed: 0, set: 1, ...);
//! - by an independent reading, the strict RFC 2046 splitter (`sluice_mail::strict`, no
//!   mail-parser): the bytes Sluice read differ from the input only in line breaks; with a
//!   banner, neither the input as read nor the output has anything two readers could read
//!   differently (a bare CR in a body aside), and the output has the input's strict part tree
//!   with every leaf that is not displayed text byte-identical and every displayed text leaf
//!   still displayed text; a wrap only when the strict reading finds no displayed text either.
//!   A message mail-parser reads another way than the strict splitter is declined
//!   (`EditError::Ambiguous`), never edited.

use mail_parser::PartType;
use sluice_mail::strict::{self, Ambiguity, StrictTree};
use sluice_mail::{apply_edits, Banner, BannerFallback, Edit, Message, Position};

use crate::input::{text_from, Params};
use crate::mime;

const NAMES: &[&str] = &[
    "X-Sluice",
    "Subject",
    "From",
    "To",
    "Reply-To",
    "Message-ID",
    "x-sluice",
    "Content-Disposition",
    "Content-ID",
    "X-Sluice-Header-Name-Of-Exactly-Seventy-Six-Characters-For-The-Limit-Test-Ok",
    "Received",
    "MIME-Version",
    "X-\u{dc}nicode",
    "Date",
    "X-Sluice-Loop",
    "Bcc",
];

const HTML: &[&str] = &[
    "<p>External sender</p>",
    "<b>\u{c4}u\u{df}erst</b> wichtig",
    "</body></html><body>",
    "<!-- unterminated",
    "<div style=\"color:red\">\r\n--sluice\r\n</div>",
    "&amp;&lt;",
    "", // replaced by bytes from the message
    "<p>=?utf-8?q?x?= =3D</p>",
];

/// A header value: one of the fixed ones, or the message's last bytes.
fn value(i: u8, payload: &[u8]) -> String {
    match i % 14 {
        0 => "ok".into(),
        1 => String::new(),
        2 => " leading space".into(),
        3 => "Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2709}".into(),
        4 => "=?utf-8?q?already_encoded?=".into(),
        5 => "word ".repeat(60),
        6 => "x".repeat(200),
        7 => "a\tb".into(),
        8 => "\"Quoted Name\" <a@b.example>".into(),
        9 => "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}".repeat(10),
        10 => "x\r\nBcc: evil@example.com".into(),
        11 => "trailing space ".into(),
        _ => text_from(payload, payload.len().saturating_sub(40), 40),
    }
}

fn banner_text(i: u8, payload: &[u8]) -> String {
    match i % 8 {
        0 => "CAUTION: external sender".into(),
        1 => "\u{dc}n\u{ef}c\u{f6}d\u{e9} banner \u{2709} \u{6ce8}\u{610f}".into(),
        2 => "line one\nline two\r\nline three\r".into(),
        3 => "--boundary\r\n\r\n--boundary--".into(),
        4 => "y".repeat(1200),
        5 => "   ".into(),
        6 => "=?utf-8?q?x?= =3D =\r\n.".into(),
        _ => text_from(payload, payload.len().saturating_sub(60), 60),
    }
}

/// One edit from two parameter bytes.
fn edit(p: &mut Params<'_>, payload: &[u8]) -> Edit {
    let (action, arg) = (p.byte(), p.byte());
    let name = NAMES[usize::from(arg & 0x0f)].to_string();
    match action % 5 {
        0 => {
            let html = (arg & 2 != 0).then(|| match HTML[usize::from(arg >> 5)] {
                "" => text_from(payload, 0, 60),
                h => h.to_string(),
            });
            Edit::AddBanner(Banner {
                text: banner_text((arg >> 2) & 7, payload),
                html,
                position: if arg & 1 == 0 {
                    Position::Top
                } else {
                    Position::Bottom
                },
            })
        }
        1 => Edit::AddHeader {
            name,
            value: value(arg >> 4, payload),
        },
        2 => Edit::SetHeader {
            name,
            value: value(arg >> 4, payload),
        },
        3 => Edit::RemoveHeader(name),
        _ => Edit::PrefixSubject(match arg % 6 {
            0 => "[EXT]".into(),
            1 => "[EXT] ".into(),
            2 => "\u{26a0}\u{fe0f} Extern:".into(),
            3 => " ".into(),
            4 => "Re:".into(),
            _ => value(arg >> 3, payload),
        }),
    }
}

/// The edits an input asks for, and its message bytes (`None` when it is too short).
pub fn decode(data: &[u8]) -> Option<(Vec<Edit>, &[u8])> {
    let (mut p, payload) = Params::split(data, 9)?;
    let n = usize::from(p.byte() & 3) + 1;
    Some(((0..n).map(|_| edit(&mut p, payload)).collect(), payload))
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((edits, payload)) = decode(data) else {
        return;
    };
    let Ok(msg) = Message::parse(payload.to_vec()) else {
        return;
    };
    for fallback in [BannerFallback::Wrap, BannerFallback::Ignore] {
        if let Ok(out) = apply_edits(&msg, &edits, fallback) {
            check(&msg, &out, &edits, fallback);
        }
    }
}

fn check(msg: &Message, out: &[u8], edits: &[Edit], fallback: BannerFallback) {
    // The bytes Sluice read (bare CRs in header blocks as line breaks): what the edits apply to.
    let raw = msg.read_bytes();
    let what = format!("{edits:?} with {fallback:?}");
    let edited = Message::parse(out.to_vec())
        .unwrap_or_else(|e| panic!("{what}: the output does not parse: {e}"));
    if out == msg.raw() {
        // The edits changed nothing (a banner ignored, a header removed that was not there):
        // the message as received, bare CRs included, which no reading has to be checked for.
        check_header_counts(&what, msg, &edited, edits, false);
        return;
    }
    let before = mime::parse(raw).expect("mail-parser parses what Message::parse accepted");
    let after =
        mime::parse(out).unwrap_or_else(|| panic!("{what}: mail-parser refuses the output"));

    let banner = edits.iter().any(|e| matches!(e, Edit::AddBanner(_)));
    let wrapped = banner && fallback == BannerFallback::Wrap && is_wrap(raw, out, &after);
    if wrapped {
        assert!(
            !mime::may_change(&before).into_iter().any(|m| m),
            "{what}: the message has displayed text parts but was wrapped\nbefore: {:?}\nafter: {:?}",
            mime::shapes(&before),
            mime::shapes(&after)
        );
    } else if banner {
        mime::assert_same_tree_and_opaque_bodies(&what, raw, &before, out, &after);
    } else {
        let body = |raw: &'_ [u8], m: &mail_parser::Message<'_>| -> Vec<u8> {
            raw[(m.parts[0].offset_body as usize).min(raw.len())..].to_vec()
        };
        assert_eq!(
            mime::shapes(&before),
            mime::shapes(&after),
            "{what}: header edits changed the MIME part tree"
        );
        assert!(
            body(raw, &before) == body(out, &after),
            "{what}: header edits changed the body"
        );
    }
    check_header_counts(&what, msg, &edited, edits, wrapped);
    check_strict_reading(&what, msg, out, banner, wrapped);
}

/// A bare CR in a body: left as it is (it is the part's content); it only matters to the
/// structure when a delimiter follows it, which the strict reading reports separately.
fn harmless(a: &Ambiguity) -> bool {
    matches!(
        a,
        Ambiguity::BareCr {
            in_header: false,
            ..
        }
    )
}

/// The invariant by the strict splitter (see the module documentation).
fn check_strict_reading(what: &str, msg: &Message, out: &[u8], banner: bool, wrapped: bool) {
    let read = msg.read_bytes();
    let no_breaks = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect()
    };
    assert!(
        no_breaks(read) == no_breaks(msg.raw()),
        "{what}: the bytes read differ from the input in more than line breaks"
    );
    if !banner {
        // Header edits copy the body byte for byte (checked above); nothing to read again.
        return;
    }
    let (before, after) = (strict::split(read), strict::split(out));
    let open = |t: &StrictTree| {
        t.ambiguities
            .iter()
            .find(|a| !harmless(a))
            .map(ToString::to_string)
    };
    assert_eq!(
        open(&before),
        None,
        "{what}: an ambiguous message was edited"
    );
    assert_eq!(open(&after), None, "{what}: the output is ambiguous");
    let displayed = |t: &StrictTree| t.leaves().any(|(_, p)| p.is_displayed_text());
    if wrapped {
        assert!(
            !displayed(&before),
            "{what}: wrapped, but the strict reading shows text parts"
        );
        return;
    }
    let shape = |t: &StrictTree| -> Vec<(String, Option<Vec<usize>>)> {
        t.parts
            .iter()
            .map(|p| (p.content_type.clone(), p.children.clone()))
            .collect()
    };
    assert_eq!(
        shape(&before),
        shape(&after),
        "{what}: the strict part tree changed"
    );
    for (id, (b, a)) in before.parts.iter().zip(&after.parts).enumerate() {
        if b.children.is_some() {
            continue;
        }
        if b.is_displayed_text() {
            assert!(
                a.is_displayed_text(),
                "{what}: strict part {id} is no longer displayed text"
            );
        } else {
            assert!(
                read[b.body.clone()] == out[a.body.clone()],
                "{what}: strict part {id} ({}) is not displayed text but changed",
                b.content_type
            );
        }
    }
}

/// Whether `out` is the wrap fallback: `multipart/mixed` of [text/plain banner,
/// message/rfc822 original byte for byte]. (A message of that very shape that was not wrapped
/// fails the second condition unless its attached message is the whole input, which it cannot
/// be.)
fn is_wrap(raw: &[u8], out: &[u8], after: &mail_parser::Message<'_>) -> bool {
    let shapes = mime::shapes(after);
    // mail-parser ends a message/rfc822 part where its nested parse stopped, which can be
    // before the outer boundary, so look for the original at the start of the part's body.
    shapes.len() >= 3
        && shapes[0].content_type.as_deref() == Some("multipart/mixed")
        && shapes[0].children == [1, 2]
        && shapes[1].content_type.as_deref() == Some("text/plain")
        && shapes[2].content_type.as_deref() == Some("message/rfc822")
        && matches!(after.parts[2].body, PartType::Message(_))
        && {
            let start = after.parts[2].offset_body as usize;
            out.get(start..start + raw.len()) == Some(raw)
        }
}

/// Each header the edits name is there as often as they say (the Subject only without
/// prefix-subject, which may or may not change it).
fn check_header_counts(what: &str, msg: &Message, edited: &Message, edits: &[Edit], wrapped: bool) {
    let prefixes = edits.iter().any(|e| matches!(e, Edit::PrefixSubject(_)));
    for name in NAMES {
        if (prefixes && name.eq_ignore_ascii_case("Subject"))
            || (wrapped && name.eq_ignore_ascii_case("Content-Disposition"))
        {
            continue;
        }
        let mut expected = None;
        let mut count = msg.header(name).len();
        for e in edits {
            match e {
                Edit::AddHeader { name: n, .. } if n.eq_ignore_ascii_case(name) => count += 1,
                Edit::SetHeader { name: n, .. } if n.eq_ignore_ascii_case(name) => count = 1,
                Edit::RemoveHeader(n) if n.eq_ignore_ascii_case(name) => count = 0,
                _ => continue,
            }
            expected = Some(count);
        }
        if let Some(expected) = expected {
            let got = edited.header(name).len();
            assert_eq!(
                got, expected,
                "{what}: {name} is there {got} times, expected {expected}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The saved findings and the seeds hold without libFuzzer (`cargo test
    /// --no-default-features`), plus every ambiguity fixture of sluice-mail behind each edit
    /// action.
    #[test]
    fn saved_inputs_hold() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut inputs = Vec::new();
        for sub in ["regressions/mail_edit", "seeds/mail_edit"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
            }
        }
        let fixtures = dir.join("../host/mail/tests/fixtures/ambiguous");
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let message = std::fs::read(entry.unwrap().path()).unwrap();
            // One to four edits, each action (0..5) with a few parameter bytes.
            for action in 0..5u8 {
                for arg in [0u8, 1, 2, 0x21, 0x47] {
                    let mut input = vec![3, action, arg, 0, arg, 3, 1, 4, 0x10];
                    input.extend_from_slice(&message);
                    inputs.push(input);
                }
            }
        }
        assert!(inputs.len() > 100);
        for input in &inputs {
            super::run(input);
        }
    }
}
