//! End-to-end tests of parse + apply_edits on the fixtures in `tests/fixtures/`, checked with
//! both mail-parser and the independent mailparse crate.

use std::path::{Path, PathBuf};

use mail_parser::MessageParser;

use crate::banner::displayed_parts;
use crate::*;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> Message {
    Message::parse(std::fs::read(fixture_path(name)).unwrap()).unwrap()
}

fn apply(msg: &Message, edits: &[Edit]) -> Vec<u8> {
    apply_edits(msg, edits, BannerFallback::Wrap).unwrap()
}

fn s(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

fn add(name: &str, value: &str) -> Edit {
    Edit::AddHeader {
        name: name.into(),
        value: value.into(),
    }
}

fn set(name: &str, value: &str) -> Edit {
    Edit::SetHeader {
        name: name.into(),
        value: value.into(),
    }
}

fn banner(text: &str, html: Option<&str>, position: Position) -> Edit {
    Edit::AddBanner(Banner {
        text: text.into(),
        html: html.map(Into::into),
        position,
    })
}

/// Every leaf part of `input` that is not displayed text (attachments, attached messages, ...)
/// appears byte for byte in `output`.
fn assert_untouched_parts_kept(input: &Message, output: &[u8]) {
    let m = input.parsed();
    let displayed = displayed_parts(m).unwrap();
    for (id, part) in m.parts.iter().enumerate() {
        if id == 0 || displayed.contains(&id) || part.is_multipart() {
            continue;
        }
        let bytes = &input.read_bytes()[part.offset_header as usize..part.offset_end as usize];
        assert!(
            output.windows(bytes.len()).any(|w| w == bytes),
            "part {id} is not byte-identical in the output"
        );
    }
}

/// Decoded bodies of the leaf parts, in order, per mailparse.
fn mailparse_leaves(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    fn walk(p: &mailparse::ParsedMail<'_>, out: &mut Vec<(String, Vec<u8>)>) {
        if p.subparts.is_empty() {
            out.push((p.ctype.mimetype.clone(), p.get_body_raw().unwrap()));
        }
        for sp in &p.subparts {
            walk(sp, out);
        }
    }
    let mut out = Vec::new();
    walk(&mailparse::parse_mail(raw).unwrap(), &mut out);
    out
}

fn mailparse_text(raw: &[u8], mimetype: &str) -> Vec<String> {
    fn walk(p: &mailparse::ParsedMail<'_>, mimetype: &str, out: &mut Vec<String>) {
        if p.subparts.is_empty() && p.ctype.mimetype == mimetype {
            out.push(p.get_body().unwrap());
        }
        for sp in &p.subparts {
            walk(sp, mimetype, out);
        }
    }
    let mut out = Vec::new();
    walk(&mailparse::parse_mail(raw).unwrap(), mimetype, &mut out);
    out
}

// ---- header edits ----------------------------------------------------------------------

#[test]
fn no_edits_is_an_exact_copy() {
    let m = fixture("alternative-attachments.eml");
    assert_eq!(apply(&m, &[]), m.raw());
}

#[test]
fn add_header_goes_on_top() {
    for (name, le) in [("plain-lf.eml", "\n"), ("plain-crlf.eml", "\r\n")] {
        let m = fixture(name);
        let out = apply(&m, &[add("X-Sluice", "checked"), add("X-Second", "2")]);
        let expected = [
            format!("X-Second: 2{le}X-Sluice: checked{le}").as_bytes(),
            m.raw(),
        ]
        .concat();
        assert_eq!(s(&out), s(&expected));
    }
}

#[test]
fn set_header_replaces_first_in_place_and_drops_the_rest() {
    let m = fixture("plain-lf.eml");
    let out = apply(&m, &[set("X-TAG", "three")]);
    let expected = s(m.raw())
        .replace("X-Tag: one\n", "X-TAG: three\n")
        .replace("x-tag: two\n", "");
    assert_eq!(s(&out), expected);
    // Absent: added at the top.
    let out = apply(&m, &[set("X-New", "v")]);
    assert_eq!(s(&out), format!("X-New: v\n{}", s(m.raw())));
}

#[test]
fn remove_header_removes_every_field_with_its_folded_lines() {
    let m = fixture("plain-crlf.eml");
    let out = apply(
        &m,
        &[
            Edit::RemoveHeader("subject".into()),
            Edit::RemoveHeader("x-TAG".into()),
        ],
    );
    let expected = s(m.raw())
        .replace("Subject: Lunch\r\n  tomorrow?\r\n", "")
        .replace("X-Tag: one\r\n", "")
        .replace("x-tag: two\r\n", "");
    assert_eq!(s(&out), expected);
    // Removing something absent changes nothing.
    assert_eq!(apply(&m, &[Edit::RemoveHeader("X-Absent".into())]), m.raw());
}

#[test]
fn non_ascii_header_value_is_rfc2047_encoded() {
    let m = fixture("plain-crlf.eml");
    let value = "Geprüft von Sluice — 日本語 ✓";
    let out = apply(&m, &[add("X-Note", value)]);
    assert!(out.is_ascii());
    let parsed = mailparse::parse_mail(&out).unwrap();
    use mailparse::MailHeaderMap;
    assert_eq!(
        parsed.headers.get_first_value("X-Note").as_deref(),
        Some(value)
    );
    let again = Message::parse(out).unwrap();
    assert_eq!(again.header("x-note"), [value]);
}

#[test]
fn long_ascii_value_is_folded() {
    let m = fixture("plain-lf.eml");
    let value = "this value is long ".repeat(10);
    let out = apply(&m, &[add("X-Long", value.trim())]);
    let head = s(&out).split("\n\n").next().unwrap();
    assert!(head.lines().all(|l| l.len() <= 78), "{head}");
    assert_eq!(
        Message::parse(out).unwrap().header("X-Long"),
        [value.trim()]
    );
}

#[test]
fn injection_and_protected_headers_are_refused_before_anything_is_applied() {
    let m = fixture("plain-crlf.eml");
    for edits in [
        vec![
            add("X-A", "ok"),
            add("X-B", "evil\r\nBcc: victim@example.com"),
        ],
        vec![set("Subject", "a\nb")],
        vec![Edit::PrefixSubject("[x]\r\n".into())],
    ] {
        let err = apply_edits(&m, &edits, BannerFallback::Wrap).unwrap_err();
        assert!(
            matches!(
                err,
                EditError::InvalidHeaderValue { .. } | EditError::InvalidPrefix { .. }
            ),
            "{err}"
        );
    }
    for edit in [
        Edit::RemoveHeader("Received".into()),
        set("DKIM-Signature", "x"),
        add("ARC-Seal", "i=1"),
        Edit::RemoveHeader("Authentication-Results".into()),
        Edit::RemoveHeader(LOOP_HEADER.into()),
        set("x-sluice-loop", "example.com"),
        add("X-SLUICE-LOOP", "example.com"),
    ] {
        let err = apply_edits(&m, &[edit], BannerFallback::Wrap).unwrap_err();
        assert!(matches!(err, EditError::ProtectedHeader { .. }), "{err}");
    }
    let err = apply_edits(
        &m,
        &[Edit::RemoveHeader("Content-Type".into())],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(
        matches!(err, EditError::MimeStructureHeader { .. }),
        "{err}"
    );
}

#[test]
fn remove_received_takes_every_received_field_and_nothing_else() {
    let raw = "Received: from laptop ([10.0.0.7]) by submit.example.com\r\n\
               From: a@example.com\r\nReceived: from [192.168.1.2] by laptop\r\n\
               Subject: x\r\n\r\nhi\r\n";
    let m = Message::parse(raw.as_bytes().to_vec()).unwrap();
    let out = apply(&m, &[Edit::RemoveReceived]);
    assert_eq!(s(&out), "From: a@example.com\r\nSubject: x\r\n\r\nhi\r\n");
    // The general removal stays refused: only the dedicated edit (outbound chains) may.
    let err = apply_edits(
        &m,
        &[Edit::RemoveHeader("Received".into())],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(matches!(err, EditError::ProtectedHeader { .. }), "{err}");
}

#[test]
fn the_loop_header_survives_every_rule_edit() {
    let raw = format!("{LOOP_HEADER}: a.example\r\nFrom: a@b.example\r\nSubject: x\r\n\r\nhi\r\n");
    let m = Message::parse(raw.into_bytes()).unwrap();
    assert_eq!(hop_count(&m), 1);
    for edit in [
        Edit::RemoveHeader(LOOP_HEADER.into()),
        set(LOOP_HEADER, "b.example"),
        add(LOOP_HEADER, "b.example"),
    ] {
        let err = apply_edits(&m, &[add("X-Ok", "1"), edit], BannerFallback::Wrap).unwrap_err();
        assert!(matches!(err, EditError::ProtectedHeader { .. }), "{err}");
        assert!(err.to_string().contains(LOOP_HEADER), "{err}");
    }
    // The relay itself still adds it.
    let relayed = rewrite_for_relay(
        &m,
        &RelayRewrite {
            from: "f@relay.example",
            via_domain: "example.com",
            subject_prefix: None,
            hop_domain: "relay.example",
        },
    )
    .unwrap();
    assert_eq!(hop_count(&Message::parse(relayed).unwrap()), 2);
}

// ---- prefix-subject --------------------------------------------------------------------

#[test]
fn prefix_subject_prefixes_the_decoded_subject_once() {
    let m = fixture("plain-lf.eml");
    let edits = [
        Edit::PrefixSubject("[EXT]".into()),
        Edit::PrefixSubject("[EXT]".into()),
    ];
    let out = apply(&m, &edits);
    let expected = s(m.raw()).replace(
        "Subject: Lunch\n  tomorrow?\n",
        "Subject: [EXT] Lunch\n  tomorrow?\n",
    );
    assert_eq!(s(&out), expected);
    // Running the same edit over the result is a no-op (idempotent across passes too).
    let again = Message::parse(out.clone()).unwrap();
    assert_eq!(apply(&again, &[Edit::PrefixSubject("[EXT]".into())]), out);
    // A prefix ending with a space gets no second space.
    let out = apply(&m, &[Edit::PrefixSubject("EXT: ".into())]);
    assert_eq!(
        Message::parse(out).unwrap().subject().as_deref(),
        Some("EXT: Lunch tomorrow?")
    );
}

#[test]
fn prefix_subject_sees_earlier_edits_and_encodes_non_ascii() {
    let m = fixture("latin1-8bit-lf.eml");
    assert_eq!(m.subject().as_deref(), Some("Olá"));
    let out = apply(
        &m,
        &[
            set("Subject", "Grüße"),
            Edit::PrefixSubject("[Außen]".into()),
        ],
    );
    let again = Message::parse(out.clone()).unwrap();
    assert_eq!(again.subject().as_deref(), Some("[Außen] Grüße"));
    assert_eq!(again.header("subject").len(), 1);
    use mailparse::MailHeaderMap;
    let parsed = mailparse::parse_mail(&out).unwrap();
    assert_eq!(
        parsed.headers.get_first_value("Subject").as_deref(),
        Some("[Außen] Grüße")
    );
}

/// A message with `field` between a From and a To field.
fn with_field(field: &[u8]) -> Vec<u8> {
    [
        b"From: a@b.example\r\n",
        field,
        b"To: c@d.example\r\n\r\nbody\r\n",
    ]
    .concat()
}

fn has_replacement_char(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w == "\u{fffd}".as_bytes())
}

#[test]
fn prefix_subject_keeps_the_subject_bytes() {
    let cases: [(&[u8], &[u8]); 7] = [
        // Raw Latin-1 (not UTF-8).
        (
            b"Subject: Ol\xe1 se\xf1or\r\n",
            b"Subject: [EXT] Ol\xe1 se\xf1or\r\n",
        ),
        // Raw UTF-8 (RFC 6532).
        (
            "Subject: Olá señor\r\n".as_bytes(),
            "Subject: [EXT] Olá señor\r\n".as_bytes(),
        ),
        (
            b"Subject: =?iso-8859-1?q?Ol=E1?=\r\n",
            b"Subject: [EXT] =?iso-8859-1?q?Ol=E1?=\r\n",
        ),
        // Folded, with 8-bit bytes on the continuation line.
        (
            b"Subject: Lunch\r\n\ttomorrow \xe0 midi\r\n",
            b"Subject: [EXT] Lunch\r\n\ttomorrow \xe0 midi\r\n",
        ),
        // Folded right after the colon.
        (b"Subject:\r\n Ol\xe1\r\n", b"Subject: [EXT] Ol\xe1\r\n"),
        (b"subject:   x\r\n", b"subject: [EXT] x\r\n"),
        (b"Subject:\r\n", b"Subject: [EXT]\r\n"),
    ];
    for (field, expected) in cases {
        let m = Message::parse(with_field(field)).unwrap();
        let out = apply(&m, &[Edit::PrefixSubject("[EXT]".into())]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&with_field(expected))
        );
        assert_eq!(out, with_field(expected));
        // Once only, across passes too.
        let again = Message::parse(out.clone()).unwrap();
        assert_eq!(apply(&again, &[Edit::PrefixSubject("[EXT]".into())]), out);
    }
    // Two different prefixes in one chain: the second one also works on the bytes.
    let m = Message::parse(with_field(b"Subject: Ol\xe1\r\n")).unwrap();
    let out = apply(
        &m,
        &[
            Edit::PrefixSubject("[A]".into()),
            Edit::PrefixSubject("[B] ".into()),
        ],
    );
    assert_eq!(out, with_field(b"Subject: [B] [A] Ol\xe1\r\n"));
}

#[test]
fn a_non_ascii_prefix_is_an_encoded_word_before_the_original_bytes() {
    let cases: [(&[u8], &[u8], &str); 4] = [
        (b"Subject: Hello\r\n", b" Hello\r\n", "[Außen] Hello"),
        (
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n",
            b" =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n",
            "[Außen] Grüße",
        ),
        (b"Subject: Ol\xe1\r\n", b" Ol\xe1\r\n", ""),
        (
            "Subject: Olá\r\n".as_bytes(),
            " Olá\r\n".as_bytes(),
            "[Außen] Olá",
        ),
    ];
    for (field, kept, decoded) in cases {
        let m = Message::parse(with_field(field)).unwrap();
        let out = apply(&m, &[Edit::PrefixSubject("[Außen]".into())]);
        let start = b"From: a@b.example\r\nSubject: =?UTF-8?";
        assert!(out.starts_with(start), "{}", String::from_utf8_lossy(&out));
        let subject_end = out.windows(kept.len()).position(|w| w == kept);
        assert!(subject_end.is_some(), "{}", String::from_utf8_lossy(&out));
        assert!(!has_replacement_char(&out));
        if !decoded.is_empty() {
            let again = Message::parse(out.clone()).unwrap();
            assert_eq!(again.subject().as_deref(), Some(decoded));
            use mailparse::MailHeaderMap;
            let parsed = mailparse::parse_mail(&out).unwrap();
            assert_eq!(
                parsed.headers.get_first_value("Subject").as_deref(),
                Some(decoded)
            );
        }
    }
}

#[test]
fn a_prefixed_long_subject_is_folded_after_the_prefix() {
    let long = "word ".repeat(14) + "end";
    let m = Message::parse(with_field(format!("Subject: {long}\r\n").as_bytes())).unwrap();
    let out = apply(&m, &[Edit::PrefixSubject("[EXTERNAL]".into())]);
    let text = s(&out);
    assert!(
        text.contains(&format!("Subject: [EXTERNAL]\r\n {long}\r\n")),
        "{text}"
    );
    let again = Message::parse(out.clone()).unwrap();
    assert_eq!(again.subject(), Some(format!("[EXTERNAL] {long}")));
}

#[test]
fn prefix_subject_adds_a_missing_subject() {
    let m = Message::parse(b"From: a@b.example\r\n\r\nhi\r\n".to_vec()).unwrap();
    let edits = [
        Edit::PrefixSubject("[EXT] ".into()),
        Edit::PrefixSubject("[EXT] ".into()),
    ];
    let out = apply(&m, &edits);
    assert_eq!(s(&out), "Subject: [EXT]\r\nFrom: a@b.example\r\n\r\nhi\r\n");
}

// ---- banners: text/plain ---------------------------------------------------------------

#[test]
fn plain_banner_top_and_bottom_keep_the_line_ending() {
    let m = fixture("plain-lf.eml");
    let top = apply(&m, &[banner("EXTERNAL SENDER", None, Position::Top)]);
    let expected = s(m.raw()).replace("\n\nShall we", "\n\nEXTERNAL SENDER\n\nShall we");
    assert_eq!(s(&top), expected);
    assert!(!top.contains(&b'\r'));

    let m = fixture("plain-crlf.eml");
    let bottom = apply(&m, &[banner("Line 1\nLine 2", None, Position::Bottom)]);
    let expected = format!("{}\r\nLine 1\r\nLine 2\r\n", s(m.raw()));
    assert_eq!(s(&bottom), expected);
    assert!(bottom
        .windows(2)
        .filter(|w| w[1] == b'\n')
        .all(|w| w[0] == b'\r'));
}

#[test]
fn several_banners_apply_in_sequence() {
    let m = fixture("plain-lf.eml");
    let out = apply(
        &m,
        &[
            banner("FIRST", None, Position::Top),
            banner("SECOND", None, Position::Top),
            banner("LAST", None, Position::Bottom),
        ],
    );
    let body = s(&out).split_once("\n\n").unwrap().1;
    assert_eq!(
        body,
        "SECOND\n\nFIRST\n\nShall we have lunch tomorrow?\n-- \nBob\n\nLAST\n"
    );
}

#[test]
fn seven_bit_part_switches_to_qp_only_when_needed() {
    let m = fixture("plain-crlf.eml");
    // ASCII banner: still 7bit, no MIME fields added.
    let out = apply(&m, &[banner("ascii", None, Position::Top)]);
    assert!(!s(&out).contains("Content-Transfer-Encoding"));
    assert!(!s(&out).contains("MIME-Version"));
    // Non-ASCII banner: quoted-printable, utf-8, MIME-Version added.
    let out = apply(&m, &[banner("Extern — Vorsicht", None, Position::Top)]);
    assert!(out.is_ascii());
    let text = s(&out);
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
    assert!(text.contains("MIME-Version: 1.0\r\n"));
    let body = mailparse::parse_mail(&out).unwrap().get_body().unwrap();
    assert_eq!(
        body.replace("\r\n", "\n"),
        "Extern — Vorsicht\n\nShall we have lunch tomorrow?\n-- \nBob\n"
    );
}

#[test]
fn eight_bit_part_stays_eight_bit_in_utf8() {
    let m = fixture("latin1-8bit-lf.eml");
    let out = apply(&m, &[banner("Atenção", None, Position::Bottom)]);
    let text = s(&out);
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\n"),
        "{text}"
    );
    assert!(text.contains("Content-Transfer-Encoding: 8bit\n"));
    assert!(
        text.ends_with("\n\nOlá, como estás?\nAdiós\n\nAtenção\n"),
        "{text}"
    );
    let again = Message::parse(out).unwrap();
    assert_eq!(
        again.text_body(0).as_deref(),
        Some("Olá, como estás?\nAdiós\n\nAtenção\n")
    );
}

#[test]
fn base64_text_part_stays_base64() {
    let m = fixture("base64-text.eml");
    let out = apply(&m, &[banner("Hinweis", None, Position::Top)]);
    let text = s(&out);
    assert!(text.contains("Content-Transfer-Encoding: base64\r\n"));
    let body = mailparse::parse_mail(&out).unwrap().get_body().unwrap();
    assert_eq!(body, "Hinweis\r\n\r\nGrüße aus Köln\r\nZweite Zeile\r\n");
    let body_lines = text.split_once("\r\n\r\n").unwrap().1;
    assert!(body_lines.split("\r\n").all(|l| l.len() <= 76));
}

#[test]
fn headers_only_message_gets_a_body() {
    for raw in [
        "From: a@b.example\nSubject: x\n",
        "From: a@b.example\nSubject: x",
    ] {
        let m = Message::parse(raw.as_bytes().to_vec()).unwrap();
        let out = apply(&m, &[banner("B", None, Position::Top)]);
        assert_eq!(s(&out), "From: a@b.example\nSubject: x\n\nB\n");
    }
}

#[test]
fn headers_only_message_without_final_line_break_gets_valid_mime_fields() {
    let m = Message::parse(b"From: a@b.example\nSubject: x".to_vec()).unwrap();
    let out = apply(&m, &[banner("Übersicht", None, Position::Top)]);
    assert_eq!(
        s(&out),
        "From: a@b.example\nSubject: x\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\nMIME-Version: 1.0\n\n=C3=9Cbersicht\n"
    );
    let body = mailparse::parse_mail(&out).unwrap().get_body().unwrap();
    assert_eq!(body.replace("\r\n", "\n"), "Übersicht\n");
}

#[test]
fn truncated_and_damaged_input_never_panics() {
    for name in [
        "alternative-attachments.eml",
        "image-only.eml",
        "latin1-8bit-lf.eml",
        "forwarded.eml",
    ] {
        let raw = std::fs::read(fixture_path(name)).unwrap();
        let edits = [
            banner("B ü", Some("<b>B</b>"), Position::Bottom),
            set("Subject", "x"),
            Edit::PrefixSubject("[EXT]".into()),
        ];
        let mut inputs: Vec<Vec<u8>> = (1..raw.len())
            .step_by(5)
            .map(|n| raw[..n].to_vec())
            .collect();
        // Flip bytes into structure characters at a spread of positions.
        for (i, pos) in (0..raw.len()).step_by(11).enumerate() {
            let mut damaged = raw.clone();
            damaged[pos] = [b'\n', b'-', b':', b'=', b'"', 0xff, b'<'][i % 7];
            inputs.push(damaged);
        }
        for input in inputs {
            let Ok(m) = Message::parse(input.clone()) else {
                continue;
            };
            let _ = (
                m.headers(),
                m.text_body(10),
                m.html_body(0),
                m.attachments(),
            );
            for fallback in [BannerFallback::Wrap, BannerFallback::Ignore] {
                if let Ok(out) = apply_edits(&m, &edits, fallback) {
                    // Output must parse wherever the input did.
                    let input_parses = mailparse::parse_mail(&input).is_ok();
                    if let (true, Err(e)) = (input_parses, mailparse::parse_mail(&out)) {
                        panic!(
                            "{e}\ninput:\n{}\noutput:\n{}",
                            String::from_utf8_lossy(&input),
                            String::from_utf8_lossy(&out)
                        );
                    }
                    assert_untouched_parts_kept(&m, &out);
                    let again = Message::parse(out.clone()).unwrap();
                    assert_eq!(
                        again.subject().as_deref(),
                        Some("[EXT] x"),
                        "input:\n{}\noutput:\n{}",
                        String::from_utf8_lossy(&input),
                        String::from_utf8_lossy(&out)
                    );
                }
            }
        }
    }
}

// ---- banners: MIME trees ---------------------------------------------------------------

#[test]
fn alternative_gets_the_banner_on_both_sides_and_attachments_stay_identical() {
    let m = fixture("alternative-attachments.eml");
    let edits = [
        banner("External <sender> & co", None, Position::Top),
        add("X-Sluice", "1"),
    ];
    let out = apply(&m, &edits);
    assert_untouched_parts_kept(&m, &out);

    // The plain side: QP, charset utf-8, format=flowed and the extra field kept.
    let text = s(&out);
    assert!(text.contains(
        "Content-Type: text/plain; charset=utf-8; format=flowed\r\n\
         Content-Transfer-Encoding: quoted-printable\r\nX-Part-Note: keep me\r\n\r\n"
    ));
    let plain = mailparse_text(&out, "text/plain");
    assert_eq!(plain.len(), 1);
    assert!(
        plain[0].starts_with("External <sender> & co\r\n\r\nHello team,\r\n"),
        "{}",
        plain[0]
    );
    assert!(plain[0]
        .contains("Café budget is € 12. This line is long enough that it needs a soft line break"));
    // The re-encoded quoted-printable lines stay within 76 characters.
    let qp = text.split_once("X-Part-Note: keep me\r\n\r\n").unwrap().1;
    let qp = qp.split_once("\r\n--alt-boundary").unwrap().0;
    assert!(qp.split("\r\n").all(|l| l.len() <= 76), "{qp}");
    // The HTML side: still base64, banner escaped right after <BODY ...>.
    let html = mailparse_text(&out, "text/html");
    assert_eq!(html.len(), 1);
    assert!(html[0].contains(
        "<BODY style=\"margin:0\" class='x'><div>External &lt;sender&gt; &amp; co</div>\r\n<p>Hello team,</p>"
    ), "{}", html[0]);

    // Attachments decode to the same bytes with both parsers.
    let before = mailparse_leaves(m.raw());
    let after = mailparse_leaves(&out);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0);
        if !b.0.starts_with("text/") {
            assert_eq!(b.1, a.1, "{} changed", b.0);
        }
    }
    let parser = MessageParser::default();
    let mp_before = parser.parse(m.raw()).unwrap();
    let mp_after = parser.parse(&out).unwrap();
    let bins = |msg: &mail_parser::Message<'_>| -> Vec<Vec<u8>> {
        msg.attachments()
            .filter(|p| p.is_binary())
            .map(|p| p.contents().to_vec())
            .collect()
    };
    assert_eq!(bins(&mp_before).len(), 2);
    assert_eq!(bins(&mp_before), bins(&mp_after));
    assert_eq!(mp_after.header_values("X-Sluice").count(), 1);
    // The preamble, the epilogue and the trace fields are where they were.
    assert!(text
        .contains("\r\n\r\nThis is a multi-part message in MIME format.\r\n--outer-boundary\r\n"));
    assert!(text.ends_with("--outer-boundary--\r\nepilogue text\r\n"));
    assert!(text.starts_with("X-Sluice: 1\r\nReceived: from mx.example.net"));
}

#[test]
fn html_banner_goes_before_closing_body() {
    let m = fixture("html-only-lf.eml");
    let out = apply(
        &m,
        &[banner(
            "text",
            Some("<p class=\"b\">Banner</p>"),
            Position::Bottom,
        )],
    );
    let expected = s(m.raw())
        .replace("charset=us-ascii", "charset=utf-8")
        .replace(
            "<p>News of the week.</p>\n</BODY>",
            "<p>News of the week.</p>\n<p class=\"b\">Banner</p></BODY>",
        );
    assert_eq!(s(&out), expected);
    let out = apply(&m, &[banner("text", Some("<p>Top</p>"), Position::Top)]);
    assert!(s(&out).contains("<body bgcolor=\"#ffffff\"><p>Top</p>\n<p>News"));
}

#[test]
fn attached_messages_are_not_touched() {
    let m = fixture("forwarded.eml");
    let out = apply(&m, &[banner("BANNER", None, Position::Bottom)]);
    assert_untouched_parts_kept(&m, &out);
    let text = s(&out);
    assert!(
        text.contains("See below.\r\n\r\nBANNER\r\n--fwd\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\n\r\nInner body must stay untouched.\r\n--fwd--\r\n"));
    assert_eq!(text.matches("BANNER").count(), 1);
}

#[test]
fn image_only_message_is_wrapped_or_left_alone() {
    let m = fixture("image-only.eml");
    let edits = [
        banner("Scanned document", None, Position::Top),
        add("X-Sluice", "wrapped"),
    ];
    let out = apply(&m, &edits);
    let parsed = mailparse::parse_mail(&out).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
    assert_eq!(parsed.subparts.len(), 2);
    assert_eq!(parsed.subparts[0].ctype.mimetype, "text/plain");
    assert_eq!(
        parsed.subparts[0].get_body().unwrap().trim_end(),
        "Scanned document"
    );
    assert_eq!(parsed.subparts[1].ctype.mimetype, "message/rfc822");
    assert_eq!(parsed.subparts[1].get_body_raw().unwrap(), m.raw());
    // mail-parser sees the inner message and its bytes are the original ones.
    let wrapped = Message::parse(out.clone()).unwrap();
    let inner = wrapped
        .parsed()
        .parts
        .iter()
        .find_map(|p| p.message())
        .unwrap();
    assert_eq!(inner.raw_message(), m.raw());
    // The wrapper keeps the top-level fields (minus MIME ones) and the header edits.
    assert_eq!(wrapped.header("X-Sluice"), ["wrapped"]);
    assert_eq!(wrapped.subject().as_deref(), Some("Scan"));
    assert_eq!(wrapped.header("Content-Type").len(), 1);
    assert_eq!(wrapped.header("MIME-Version"), ["1.0"]);
    assert_eq!(wrapped.attachments().len(), 1);

    let ignored = apply_edits(&m, &edits[..1], BannerFallback::Ignore).unwrap();
    assert_eq!(ignored, m.raw());
    let ignored = apply_edits(&m, &edits, BannerFallback::Ignore).unwrap();
    assert_eq!(s(&ignored), format!("X-Sluice: wrapped\r\n{}", s(m.raw())));
}

#[test]
fn unknown_transfer_encoding_is_not_displayed_text() {
    // RFC 2045 section 6.4 says opaque data, but mail clients (and Python's email) show it as
    // the message text: two readings, so edits are declined and the original delivered.
    let raw = b"From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
    let m = Message::parse(raw.to_vec()).unwrap();
    let err = apply_edits(
        &m,
        &[banner("B", None, Position::Top)],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EditError::Ambiguous(why) if why.contains("unknown Content-Transfer-Encoding")),
        "{err}"
    );
}

#[test]
fn undecodable_text_is_refused_not_corrupted() {
    // Broken base64 (mail-parser falls back to the raw text) and an unsupported charset.
    for raw in [
        &b"From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n"[..],
        b"From: a@b.example\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n\xff\xfe\r\n",
    ] {
        let m = Message::parse(raw.to_vec()).unwrap();
        let err = apply_edits(&m, &[banner("B", None, Position::Top)], BannerFallback::Wrap).unwrap_err();
        assert!(matches!(err, EditError::UndecodablePart { .. }), "{err}");
    }
}

#[test]
fn text_body_truncates_on_a_char_boundary() {
    let m = fixture("base64-text.eml");
    let full = m.text_body(0).unwrap();
    assert_eq!(full, "Grüße aus Köln\r\nZweite Zeile\r\n");
    // "Gr" + "ü" (2 bytes): cutting at 3 must not split the ü.
    assert_eq!(m.text_body(3).as_deref(), Some("Gr"));
    assert_eq!(m.text_body(4).as_deref(), Some("Grü"));
    assert_eq!(m.text_body(10_000).as_deref(), Some(full.as_str()));
}

#[test]
fn accessors_on_a_multipart_fixture() {
    let m = fixture("alternative-attachments.eml");
    assert_eq!(m.from_address().as_deref(), Some("renee@example.net"));
    assert_eq!(m.from_name().as_deref(), Some("Renée"));
    assert_eq!(m.header("received").len(), 1);
    assert!(m.text_body(0).unwrap().contains("Café budget"));
    assert!(m.html_body(0).unwrap().contains("<p>Hello team,</p>"));
    let att = m.attachments();
    let names: Vec<_> = att
        .iter()
        .map(|a| (a.name.clone().unwrap(), a.content_type.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("report.pdf".to_owned(), "application/pdf".to_owned()),
            ("chart.png".to_owned(), "image/png".to_owned())
        ]
    );
    assert!(att.iter().all(|a| a.size > 700));
}

// ---- the shared corpus -----------------------------------------------------------------

#[test]
fn corpus_never_panics_and_parses_back() {
    let Some(corpus) = sluice_corpus::corpus_dir("the corpus parse checks") else {
        return;
    };
    let paths = sluice_corpus::corpus_files(&corpus, "eml", "eml");
    let edits = [
        banner(
            "External sender: be careful with links.",
            Some("<p>External sender</p>"),
            Position::Top,
        ),
        add("X-Sluice", "checked ✓"),
        Edit::PrefixSubject("[EXT]".into()),
    ];
    let (mut ok, mut refused_parse, mut refused_edit) = (0, 0, 0);
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy();
        let msg = match Message::parse(std::fs::read(path).unwrap()) {
            Ok(m) => m,
            Err(e) => {
                println!("{name}: parse refused: {e}");
                refused_parse += 1;
                continue;
            }
        };
        // The accessors never panic either.
        let _ = (
            msg.headers(),
            msg.subject(),
            msg.from_address(),
            msg.text_body(100),
            msg.html_body(7),
        );
        let _ = msg.attachments();
        match apply_edits(&msg, &edits, BannerFallback::Wrap) {
            Ok(out) => {
                // Set SLUICE_CORPUS_OUT=dir to look at the results.
                if let Some(dir) = std::env::var_os("SLUICE_CORPUS_OUT") {
                    std::fs::write(Path::new(&dir).join(&*name), &out).unwrap();
                }
                mailparse::parse_mail(&out)
                    .unwrap_or_else(|e| panic!("{name}: output does not parse: {e}"));
                let again = Message::parse(out.clone())
                    .unwrap_or_else(|e| panic!("{name}: output does not parse: {e}"));
                assert_eq!(again.header("X-Sluice"), ["checked ✓"], "{name}");
                assert!(
                    again.subject().is_some_and(|s| s.starts_with("[EXT]")),
                    "{name}: {:?}",
                    again.subject()
                );
                assert_untouched_parts_kept(&msg, &out);
                ok += 1;
            }
            Err(e) => {
                println!("{name}: edit refused: {e}");
                refused_edit += 1;
            }
        }
    }
    println!(
        "corpus: {} messages, {ok} edited, {refused_parse} refused at parse, {refused_edit} refused at edit",
        paths.len()
    );
    assert!(ok > 0 || paths.is_empty());
}

#[test]
fn a_part_with_two_content_types_is_declined() {
    // mail-parser takes the last Content-Type (text/plain), Python's email and others the
    // first (a multipart/alternative without parts): a banner would change a part one reader
    // does not see as text, so the edits are declined.
    let raw = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=\"x\"\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nPlain Text\r\n--b--\r\n".to_vec();
    let msg = Message::parse(raw).unwrap();
    let err = apply_edits(
        &msg,
        &[banner("BANNER", None, Position::Top)],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EditError::Ambiguous(why) if why.contains("two different Content-Type")),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("edits declined: the message can be read two ways"));
}

#[test]
fn a_header_block_starting_with_a_continuation_line_is_declined() {
    // Every reader skips the orphan continuation line, but a field written before it (an
    // added header, a part's new Content-Transfer-Encoding) would take it as its own.
    let raw = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=\"1\"\n\n--1\n message/rfc822\n\nhi\n--1--\n";
    let msg = Message::parse(raw.to_vec()).unwrap();
    let err = apply_edits(
        &msg,
        &[banner("B", None, Position::Top)],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EditError::Ambiguous(why) if why.contains("continuation")),
        "{err}"
    );
    // In a part's block it does not stop header edits, which copy the body byte for byte; at
    // the top it does.
    assert!(apply_edits(&msg, &[add("X-A", "1")], BannerFallback::Wrap).is_ok());
    let top = Message::parse(b" folded\nFrom: a@example.com\n\nhi\n".to_vec()).unwrap();
    let err = apply_edits(&top, &[add("X-A", "1")], BannerFallback::Wrap).unwrap_err();
    assert!(matches!(err, EditError::Ambiguous(_)), "{err}");
}

#[test]
fn forgiving_transfer_encoding_spellings() {
    let raw = b"From: a@b.example\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8 bit\r\n\r\nHello\r\n".to_vec();
    let m = Message::parse(raw).unwrap();
    let out = apply(&m, &[banner("B", None, Position::Top)]);
    let text = s(&out);
    assert!(
        text.contains("Content-Transfer-Encoding: 8bit\r\n"),
        "{text}"
    );
    assert!(text.ends_with("B\r\n\r\nHello\r\n"), "{text}");
}

// ---- banners never break the MIME structure --------------------------------------------

/// The leaf content types per mailparse, which (like mail clients) recognizes a delimiter only
/// at the start of a line.
fn mailparse_types(raw: &[u8]) -> Vec<String> {
    mailparse_leaves(raw).into_iter().map(|(t, _)| t).collect()
}

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// A multipart/mixed with a preamble, `first` as its first part, an image and an epilogue.
fn with_image(first: &str, le: &str) -> String {
    format!(
        "From: a@example.com{le}Subject: scan{le}MIME-Version: 1.0{le}\
         Content-Type: multipart/mixed; boundary=\"b\"{le}{le}preamble{le}--b{le}{first}\
         --b{le}Content-Type: image/png{le}Content-Transfer-Encoding: base64{le}\
         Content-Disposition: attachment; filename=\"a.png\"{le}{le}{PNG_B64}{le}--b--{le}epilogue{le}"
    )
}

#[test]
fn a_banner_in_an_empty_or_unterminated_text_part_keeps_the_next_delimiter() {
    for le in ["\r\n", "\n"] {
        let firsts = [
            // Image-only mail from clients: the empty text part's empty line is the
            // delimiter's line break.
            format!("Content-Type: text/plain{le}{le}"),
            format!("Content-Type: text/html; charset=utf-8{le}{le}"),
            format!("Content-Type: text/plain{le}Content-Transfer-Encoding: base64{le}{le}"),
            format!(
                "Content-Type: text/plain{le}Content-Transfer-Encoding: quoted-printable{le}{le}"
            ),
            format!("Content-Type: text/plain; charset=iso-8859-1{le}Content-Transfer-Encoding: 8bit{le}{le}"),
            // No Content-Type: text/plain by default.
            le.to_owned(),
        ];
        for first in &firsts {
            let raw = with_image(first, le);
            let m = Message::parse(raw.clone().into_bytes()).unwrap();
            // What mail-parser sees; mailparse agrees on the output even where the input's
            // `text--b` hid the delimiter from it.
            let subtype = if first.contains("text/html") {
                "html"
            } else {
                "plain"
            };
            let before = [format!("text/{subtype}"), "image/png".to_owned()];
            assert_eq!(m.parsed().parts.len(), 3, "{raw}");
            for position in [Position::Top, Position::Bottom] {
                let out = apply(&m, &[banner("BANNER ü", Some("<b>B</b>"), position)]);
                let text = String::from_utf8_lossy(&out);
                assert_eq!(mailparse_types(&out), before, "{text}");
                assert!(
                    text.contains(&format!("{le}--b{le}Content-Type: image/png")),
                    "{text}"
                );
                assert_untouched_parts_kept(&m, &out);
                let png = mailparse_leaves(&out).pop().unwrap().1;
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD.decode(PNG_B64);
                assert_eq!(png, decoded.unwrap());
                assert!(
                    text.ends_with(&format!("{le}--b--{le}epilogue{le}")),
                    "{text}"
                );
                assert!(
                    text.contains(&format!("{le}{le}preamble{le}--b{le}")),
                    "{text}"
                );
            }
        }
        // No line break at all between the text and the delimiter (`text--b`): mail-parser
        // ends the part there, RFC 2046 and Python's email do not. Declined.
        let m = Message::parse(
            with_image(&format!("Content-Type: text/plain{le}{le}text"), le).into_bytes(),
        )
        .unwrap();
        let err = apply_edits(
            &m,
            &[banner("B", None, Position::Top)],
            BannerFallback::Wrap,
        )
        .unwrap_err();
        assert!(
            matches!(&err, EditError::Ambiguous(why) if why.contains("middle of a line")),
            "{err}"
        );
    }
}

#[test]
fn empty_parts_in_nested_alternative_keep_their_delimiters() {
    let raw = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n\
               --out\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
               --alt\r\nContent-Type: text/plain\r\n\r\n\
               --alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
               --alt--\r\n\
               --out\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--out--";
    let m = Message::parse(raw.as_bytes().to_vec()).unwrap();
    let out = apply(&m, &[banner("B", None, Position::Bottom)]);
    assert_eq!(
        mailparse_types(&out),
        ["text/plain", "text/html", "application/pdf"],
        "{}",
        s(&out)
    );
    assert!(
        s(&out).contains("\r\n--alt\r\nContent-Type: text/html"),
        "{}",
        s(&out)
    );
    assert!(s(&out).contains("\r\n--alt--\r\n--out\r\n"), "{}", s(&out));
    assert_untouched_parts_kept(&m, &out);
}

#[test]
fn a_header_block_running_into_the_delimiter_loses_no_part() {
    // No empty line at all: mail-parser reads the delimiter as a stray header line and the
    // image's fields as the same part's; whatever it makes of that, the image survives.
    for le in ["\r\n", "\n"] {
        let raw = with_image(&format!("Content-Type: text/plain{le}"), le);
        let m = Message::parse(raw.into_bytes()).unwrap();
        for fallback in [BannerFallback::Wrap, BannerFallback::Ignore] {
            // mail-parser and a strict reader see different parts: declined, so the original
            // (image included) is delivered.
            let out = match apply_edits(&m, &[banner("B", None, Position::Top)], fallback) {
                Err(EditError::Ambiguous(_)) => continue,
                other => other.unwrap(),
            };
            let parsed = mailparse::parse_mail(&out).unwrap();
            let png = mailparse_leaves(m.raw()).pop().unwrap();
            let mut found = false;
            fn walk(p: &mailparse::ParsedMail<'_>, want: &(String, Vec<u8>), found: &mut bool) {
                if p.ctype.mimetype == "message/rfc822" {
                    let inner = p.get_body_raw().unwrap();
                    walk(&mailparse::parse_mail(&inner).unwrap(), want, found);
                }
                *found |= p.subparts.is_empty()
                    && (p.ctype.mimetype.clone(), p.get_body_raw().unwrap()) == *want;
                for sp in &p.subparts {
                    walk(sp, want, found);
                }
            }
            walk(&parsed, &png, &mut found);
            assert!(found, "{}", String::from_utf8_lossy(&out));
        }
    }
}

#[test]
fn a_banner_containing_a_boundary_is_written_in_base64() {
    let m = fixture("alternative-attachments.eml");
    for text in ["--alt-boundary", "x --outer-boundary-- y"] {
        let out = apply(
            &m,
            &[banner(text, Some(&format!("<p>{text}</p>")), Position::Top)],
        );
        let before = mailparse_leaves(m.raw());
        let after = mailparse_leaves(&out);
        assert_eq!(
            before.iter().map(|l| &l.0).collect::<Vec<_>>(),
            after.iter().map(|l| &l.0).collect::<Vec<_>>()
        );
        assert_untouched_parts_kept(&m, &out);
        let plain = mailparse_text(&out, "text/plain");
        assert!(plain[0].starts_with(text), "{plain:?}");
        let html = mailparse_text(&out, "text/html");
        assert!(html[0].contains(&format!("<p>{text}</p>")), "{html:?}");
    }
}

#[test]
fn the_structure_check_refuses_what_the_splice_used_to_write() {
    let raw = with_image("Content-Type: text/plain\r\n\r\n", "\r\n");
    let m = Message::parse(raw.clone().into_bytes()).unwrap();
    let check = |out: &str, change| {
        crate::structure::check(m.parsed(), m.raw(), out.as_bytes().to_vec(), change).map(drop)
    };
    assert!(check(&raw, crate::structure::BodyChange::Parts(&[])).is_ok());
    // The old splice: the banner glued to the delimiter, which then starts no line.
    let glued = raw.replace(
        "\r\n\r\n--b\r\nContent-Type: image",
        "\r\n\r\nBANNER--b\r\nContent-Type: image",
    );
    assert_ne!(glued, raw);
    for (out, change) in [
        (glued.as_str(), crate::structure::BodyChange::Parts(&[1])),
        // An attachment byte changed.
        (
            &raw.replace("iVBOR", "iVBOQ"),
            crate::structure::BodyChange::Parts(&[1]),
        ),
        // A part lost.
        (
            &raw.replace("--b\r\nContent-Type: image", "Content-Type: image"),
            crate::structure::BodyChange::Parts(&[1]),
        ),
        // The epilogue changed.
        (
            &raw.replace("epilogue", "epilog"),
            crate::structure::BodyChange::Parts(&[]),
        ),
        // Not a wrap of the original.
        (&raw, crate::structure::BodyChange::Wrapped),
    ] {
        let err = check(out, change).unwrap_err();
        assert!(matches!(err, EditError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("MIME structure"), "{err}");
    }
}

#[test]
fn eight_bit_text_outside_its_charset_keeps_its_characters() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"Ol\xe1 se\xf1or\r\n");
    let cases: [(Vec<u8>, &str); 4] = [
        // Latin-1 bytes, no charset: read as Windows-1252, not replaced by U+FFFD.
        (
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nOl\xe1 se\xf1or\r\n".to_vec(),
            "Olá señor",
        ),
        // Declared UTF-8, mostly valid: the valid characters stay, the stray byte is read.
        (
            [
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße ".as_bytes(),
                b"caf\xe9\r\n",
            ]
            .concat(),
            "Grüße café",
        ),
        (
            format!("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n").into_bytes(),
            "Olá señor",
        ),
        // A real U+FFFD in UTF-8 text is text like any other.
        (
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nsee \u{fffd} here\r\n".as_bytes().to_vec(),
            "see \u{fffd} here",
        ),
    ];
    for (part, text) in cases {
        let raw = [
            b"From: a@b.example\r\nMIME-Version: 1.0\r\n".as_slice(),
            &part,
        ]
        .concat();
        let m = Message::parse(raw).unwrap();
        let out = apply(&m, &[banner("BANNER", None, Position::Top)]);
        let again = Message::parse(out.clone()).unwrap();
        let body = again.text_body(0).unwrap();
        assert_eq!(
            body.replace("\r\n", "\n"),
            format!("BANNER\n\n{text}\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    // Another declared charset that cannot decode the bytes: refused, not replaced.
    let raw = b"From: a@b.example\r\nContent-Type: text/plain; charset=utf-16le\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\x00\xd8\x41\x00\r\n";
    let m = Message::parse(raw.to_vec()).unwrap();
    assert!(
        m.text_body(0).unwrap().contains('\u{fffd}'),
        "{:?}",
        m.text_body(0)
    );
    let err = apply_edits(
        &m,
        &[banner("B", None, Position::Top)],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(matches!(err, EditError::UndecodablePart { .. }), "{err}");
}

#[test]
fn a_text_part_of_a_multipart_that_is_never_closed_stays_decodable() {
    // mail-parser decodes no quoted-printable or base64 in a part its delimiter never ends.
    let raw = "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
               --b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
               --b\r\nContent-Type: text/plain\r\n\r\nHello\r\n";
    let m = Message::parse(raw.as_bytes().to_vec()).unwrap();
    let out = apply(&m, &[banner("Achtung — extern", None, Position::Top)]);
    let text = s(&out);
    assert!(
        text.contains("Content-Transfer-Encoding: 8bit\r\n"),
        "{text}"
    );
    let again = Message::parse(out.clone()).unwrap();
    // (Not in text_body: mail-parser does not count an unterminated part as inline.)
    let decoded = again.parsed().parts[2].text_contents().unwrap();
    assert_eq!(decoded.replace("\r\n", "\n"), "Achtung — extern\n\nHello\n");
    assert_untouched_parts_kept(&m, &out);
    // A banner quoting that boundary has no safe encoding there: refused, not spliced.
    let err = apply_edits(
        &m,
        &[banner("see --b", None, Position::Top)],
        BannerFallback::Wrap,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EditError::Malformed(why) if why.contains("never closed")),
        "{err}"
    );
    // Closed, the same banner goes in, in base64.
    let closed = Message::parse(format!("{raw}--b--\r\n").into_bytes()).unwrap();
    let out = apply(&closed, &[banner("see --b", None, Position::Top)]);
    assert!(
        s(&out).contains("Content-Transfer-Encoding: base64\r\n"),
        "{}",
        s(&out)
    );
    assert!(mailparse_text(&out, "text/plain")[0].starts_with("see --b"));
}

/// Fuzz findings (fuzz/regressions/): an edit or a relay rewrite never returns a message that
/// does not parse or that a reader sees as from someone else.
#[test]
fn fuzz_findings_stay_fixed() {
    let banner = Edit::AddBanner(Banner {
        text: "CAUTION: external sender".into(),
        html: None,
        position: Position::Top,
    });
    // mail_edit: a message of one colon-less line (or one NUL) parses, but the banner output
    // did not (no header fields left).
    for raw in [&b"#"[..], b"\0", b"#\r\n", b"no colon here\n"] {
        let Ok(msg) = Message::parse(raw.to_vec()) else {
            continue;
        };
        for fallback in [BannerFallback::Wrap, BannerFallback::Ignore] {
            if let Ok(out) = apply_edits(&msg, std::slice::from_ref(&banner), fallback) {
                assert!(
                    Message::parse(out.clone()).is_ok(),
                    "{raw:?} -> {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
    // dsn_forward: `Fr\rom:` is a second From to parsers but not to the header block, so the
    // copy kept it and was read as from evil@x.example.
    for raw in [
        &b"From: alice@a.example\nFr\rom: evil@x.example\n\nbody\n"[..],
        b"From:\nFr\rom:\n\nbody\n",
    ] {
        let Ok(msg) = Message::parse(raw.to_vec()) else {
            continue;
        };
        let rewrite = RelayRewrite {
            from: "forwarder@relay.example",
            via_domain: "example.com",
            subject_prefix: None,
            hop_domain: "example.com",
        };
        if let Ok(out) = rewrite_for_relay(&msg, &rewrite) {
            let copy = Message::parse(out).unwrap();
            assert_eq!(
                copy.from_address().as_deref(),
                Some("forwarder@relay.example")
            );
        }
    }
}

/// Fuzz finding (fuzz/regressions/mail_edit/bare-cr-before-a-field): a field line that starts
/// with a bare CR after an LF-ended line. Replacing that field left the CR behind, the spliced
/// field followed a blank line, and the header the rule set ended up in the body.
#[test]
fn a_header_edit_that_would_land_in_the_body_is_refused() {
    let raw = b"From: a@example.com\n\rTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
    let msg = Message::parse(raw.clone()).unwrap();
    for edits in [
        vec![set("To", "c@example.com")],
        vec![Edit::RemoveHeader("To".into()), add("To", "c@example.com")],
    ] {
        match apply_edits(&msg, &edits, BannerFallback::Wrap) {
            Err(EditError::Malformed(_)) => {}
            Ok(out) => {
                // Applied after all: then the header must really be in the header block.
                let edited = Message::parse(out.clone()).unwrap();
                assert_eq!(edited.header("To").len(), 1, "{:?}", s(&out));
            }
            Err(other) => panic!("{other}"),
        }
    }
    // The input the fuzzer found (a multipart body, so the part check alone let it pass): the
    // header count check refuses it.
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions/mail_edit/bare-cr-before-a-field"),
    )
    .unwrap();
    let found = Message::parse(input[9..].to_vec()).unwrap();
    let edits = [
        banner(
            "line one\nline two\r\nline three\r",
            Some("</body></html><body>"),
            Position::Top,
        ),
        add("X-Sluice", ""),
        set("To", "Grüße aus Köln ✉"),
        Edit::PrefixSubject("[EXT]".into()),
    ];
    // Its bare CR is now read as a line break before the parse (the header block ends
    // there for every reader), so the edit applies to the header block all readers see.
    match apply_edits(&found, &edits, BannerFallback::Wrap) {
        Err(EditError::Malformed(why)) => assert!(why.contains("To field"), "{why}"),
        Ok(out) => {
            assert_eq!(crate::strict::bare_crs(&out).count(), 0);
            let edited = Message::parse(out.clone()).unwrap();
            assert_eq!(
                edited.header("To").len(),
                1,
                "{:?}",
                String::from_utf8_lossy(&out)
            );
        }
        Err(other) => panic!("{other}"),
    }
    // Whatever the edit, it is applied for real or refused, never half done.
    match apply_edits(&msg, &[add("X-A", "1")], BannerFallback::Wrap) {
        Ok(out) => assert_eq!(Message::parse(out).unwrap().header("X-A"), ["1"]),
        Err(e) => assert!(matches!(e, EditError::Malformed(_)), "{e}"),
    }
}

#[test]
fn a_banner_is_added_once_however_often_it_is_asked_for() {
    let text_banner = banner("External sender: <be careful>", None, Position::Top);
    let html_banner = banner(
        "EXT",
        Some("<div class=\"ext\">External</div>"),
        Position::Bottom,
    );
    for name in [
        "plain-lf.eml",
        "plain-crlf.eml",
        "alternative-attachments.eml",
        "base64-text.eml",
        "html-only-lf.eml",
        "image-only.eml",
        "latin1-8bit-lf.eml",
        "forwarded.eml",
    ] {
        for edit in [&text_banner, &html_banner] {
            let m = fixture(name);
            let once = apply(&m, std::slice::from_ref(edit));
            assert_ne!(
                once,
                m.raw(),
                "{name}: the first banner changes the message"
            );
            // Two steps asking for the same banner in one pass: one banner.
            assert_eq!(apply(&m, &[edit.clone(), edit.clone()]), once, "{name}");
            // The bannered message through the chain again: unchanged, byte for byte.
            let again = Message::parse(once.clone()).unwrap();
            assert_eq!(apply(&again, std::slice::from_ref(edit)), once, "{name}");
        }
    }
}

#[test]
fn a_part_that_shows_the_banner_is_left_while_the_others_get_it() {
    // A reply whose HTML side quotes the banner but whose text side lost it.
    let raw = "From: a@example.org\r\nTo: b@example.com\r\nSubject: Re\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nthanks\r\n--b\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>thanks</p>\
<blockquote><div>EXT</div>earlier</blockquote></body></html>\r\n--b--\r\n";
    let m = Message::parse(raw.as_bytes().to_vec()).unwrap();
    let out = apply(&m, &[banner("EXT", None, Position::Top)]);
    let out = Message::parse(out).unwrap();
    let text = out.parsed().body_text(0).unwrap().into_owned();
    assert!(text.starts_with("EXT\r\n\r\nthanks"), "{text:?}");
    let html = out.parsed().body_html(0).unwrap().into_owned();
    assert_eq!(html.matches("EXT").count(), 1, "{html}");
}

// ---- replace-part ----------------------------------------------------------------------

fn replace(id: u32, text: &str) -> Edit {
    Edit::ReplacePart(PartReplacement {
        id,
        text: text.into(),
    })
}

/// The independent checks of a stripped message: mail-parser, mailparse and the strict reader
/// all read it; it has the input's part tree; every part but the replaced ones is byte for
/// byte the input's (by the strict reader's ranges); each replaced part is a text/plain note
/// whose decoded text is `note`, and the bytes of its original body are gone.
pub(crate) fn assert_stripped(input: &Message, out: &[u8], ids: &[u32], note: &str) {
    let raw = input.read_bytes();
    let (before, after) = (strict::split(raw), strict::split(out));
    assert!(after.ambiguities.is_empty(), "{:?}", after.ambiguities);
    assert_eq!(before.parts.len(), after.parts.len(), "{}", s(out));
    let again = Message::parse(out.to_vec()).unwrap();
    assert_eq!(again.parsed().parts.len(), input.parsed().parts.len());
    let before_leaves = mailparse_leaves(raw);
    let after_leaves = mailparse_leaves(out);
    assert_eq!(before_leaves.len(), after_leaves.len());
    let mut leaf = 0;
    for (k, (was, is)) in before.parts.iter().zip(&after.parts).enumerate() {
        assert_eq!(was.children, is.children, "part {k}");
        if was.children.is_some() {
            continue;
        }
        if ids.contains(&(k as u32)) {
            assert_eq!(is.content_type, "text/plain");
            assert_eq!(after_leaves[leaf].0, "text/plain");
            let text = String::from_utf8(after_leaves[leaf].1.clone()).unwrap();
            assert_eq!(text.replace("\r\n", "\n").trim_end(), note.trim_end());
            assert_eq!(again.parsed().parts[k].text_contents(), Some(text.as_str()));
            let body = &raw[was.body.clone()];
            if body.len() >= 16 {
                assert!(
                    !out.windows(body.len()).any(|w| w == body),
                    "the body of part {k} is still in the output"
                );
            }
        } else {
            assert_eq!(
                raw[was.header.start..was.body.end],
                out[is.header.start..is.body.end]
            );
            assert_eq!(before_leaves[leaf], after_leaves[leaf], "leaf {leaf}");
        }
        leaf += 1;
    }
}

#[test]
fn replace_part_strips_one_attachment_and_keeps_every_other_byte() {
    let m = fixture("alternative-attachments.eml");
    let parts = m.parts();
    let pdf = parts
        .iter()
        .find(|p| p.name.as_deref() == Some("report.pdf"))
        .unwrap();
    assert_eq!(pdf.sniffed, Some("document/pdf"));
    assert_eq!(pdf.disposition.as_deref(), Some("attachment"));
    let note = "The attachment report.pdf was removed by policy: PDF file type.";
    let out = apply(&m, &[replace(pdf.id, note)]);
    assert_stripped(&m, &out, &[pdf.id], note);
    // The top header block and the multipart preamble are the input's.
    let body_start = m.parsed().parts[0].offset_body as usize;
    assert_eq!(out[..body_start], m.read_bytes()[..body_start]);
    // Stripping twice (two steps) replaces once, with the first note.
    let twice = apply(&m, &[replace(pdf.id, note), replace(pdf.id, "other")]);
    assert_eq!(twice, out);
}

#[test]
fn replace_part_with_header_edits_and_a_banner() {
    let m = fixture("alternative-attachments.eml");
    let png = m
        .parts()
        .into_iter()
        .find(|p| p.content_type == "image/png")
        .unwrap();
    let note = "Ein Bild wurde entfernt: chart.png\nSecond line.";
    let out = apply(
        &m,
        &[
            add("X-Stripped", "1"),
            replace(png.id, note),
            banner("CAUTION", None, Position::Top),
        ],
    );
    let again = Message::parse(out.clone()).unwrap();
    assert_eq!(again.header("X-Stripped"), ["1"]);
    // Non-ASCII: base64, decoded back by both parsers.
    let texts = mailparse_text(&out, "text/plain");
    assert!(
        texts.iter().any(|t| t.replace("\r\n", "\n").contains(note)),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("CAUTION")));
    // The note is the host's text: no banner in it.
    let note_text = texts.iter().find(|t| t.contains("Second line.")).unwrap();
    assert!(!note_text.contains("CAUTION"), "{note_text}");
    assert!(!s(&out).contains("chart@example.net"));
}

#[test]
fn replace_part_is_refused_precisely() {
    let m = fixture("alternative-attachments.eml");
    let err = |edit: Edit| apply_edits(&m, &[edit], BannerFallback::Wrap).unwrap_err();
    let n = m.parsed().parts.len() as u32;
    assert!(matches!(err(replace(n, "x")), EditError::NoSuchPart { id, .. } if id == n));
    assert!(err(replace(0, "x"))
        .to_string()
        .contains("the whole message"));
    assert!(err(replace(1, "x"))
        .to_string()
        .contains("multipart container"));
    assert!(matches!(err(replace(3, " \n")), EditError::InvalidNote(_)));
    assert!(matches!(
        err(replace(3, &"a".repeat(MAX_NOTE + 1))),
        EditError::InvalidNote(_)
    ));
    assert!(matches!(err(replace(3, "a\0b")), EditError::InvalidNote(_)));
    // A single-part message has no part to strip but itself.
    let single = Message::parse(b"From: a@b\r\n\r\nhi\r\n".to_vec()).unwrap();
    assert!(apply_edits(&single, &[replace(0, "x")], BannerFallback::Wrap).is_err());
}

#[test]
fn a_note_containing_a_boundary_is_written_in_base64() {
    let m = fixture("alternative-attachments.eml");
    let pdf = m.parts().into_iter().find(|p| p.name.is_some()).unwrap();
    let note = "removed\n--outer-boundary--\nreally";
    let out = apply(&m, &[replace(pdf.id, note)]);
    assert_stripped(&m, &out, &[pdf.id], note);
}

#[test]
fn every_leaf_of_every_fixture_can_be_stripped() {
    for entry in std::fs::read_dir(fixture_path("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let m = Message::parse(std::fs::read(&path).unwrap()).unwrap();
        for part in m.parts().into_iter().filter(|p| p.id != 0) {
            let note = format!("part {} removed", part.id);
            let out = apply(&m, &[replace(part.id, &note)]);
            assert_stripped(&m, &out, &[part.id], &note);
        }
    }
}

#[test]
fn sniffing_reads_magic_bytes_not_names() {
    assert_eq!(sniff(b"MZ\x90\x00"), Some("executable/pe"));
    assert_eq!(sniff(b"\x7fELF\x02"), Some("executable/elf"));
    assert_eq!(sniff(b"\xcf\xfa\xed\xfe"), Some("executable/mach-o"));
    assert_eq!(sniff(b"Rar!\x1a\x07\x01\x00"), Some("archive/rar"));
    assert_eq!(sniff(b"7z\xbc\xaf\x27\x1c"), Some("archive/7z"));
    assert_eq!(sniff(b"\x1f\x8b\x08"), Some("archive/gzip"));
    assert_eq!(sniff(b"MSCF\0\0"), Some("archive/cab"));
    assert_eq!(
        sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
        Some("document/ole")
    );
    assert_eq!(sniff(b"%PDF-1.7"), Some("document/pdf"));
    let mut iso = vec![0u8; 0x8010];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    assert_eq!(sniff(&iso), Some("archive/iso"));
    assert_eq!(sniff(b"hello"), None);
    assert_eq!(sniff(b""), None);
}

/// A zip archive of `entries` (name, stored data, encrypted flag), method 0, built by hand.
pub(crate) fn zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let (mut out, mut dir) = (Vec::new(), Vec::new());
    for (name, data, encrypted) in entries {
        let offset = out.len() as u32;
        let flags: u16 = u16::from(*encrypted);
        let len = data.len() as u32;
        out.extend_from_slice(b"PK\x03\x04\x14\x00");
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&[0; 10]); // method 0, time, date, crc (unchecked)
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        dir.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00");
        dir.extend_from_slice(&flags.to_le_bytes());
        dir.extend_from_slice(&[0; 10]);
        dir.extend_from_slice(&len.to_le_bytes());
        dir.extend_from_slice(&len.to_le_bytes());
        dir.extend_from_slice(&(name.len() as u16).to_le_bytes());
        dir.extend_from_slice(&[0; 12]);
        dir.extend_from_slice(&offset.to_le_bytes());
        dir.extend_from_slice(name.as_bytes());
    }
    let (count, at) = (entries.len() as u16, out.len() as u32);
    let size = dir.len() as u32;
    out.extend_from_slice(&dir);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn zip_names_nested_and_encrypted() {
    let inner = zip(&[("tool.exe", b"MZ", false)]);
    let outer = zip(&[("a.txt", b"hi", false), ("inner.zip", &inner, false)]);
    let info = list_zip(&outer);
    assert_eq!(info.names, ["a.txt", "inner.zip", "inner.zip/tool.exe"]);
    assert!(info.complete && !info.encrypted);
    let locked = list_zip(&zip(&[("secret.docx", b"xx", true)]));
    assert_eq!(locked.names, ["secret.docx"]);
    assert!(locked.encrypted && locked.complete);
    // Nested past the depth bound: listed down to it, then incomplete.
    let mut z = zip(&[("x.exe", b"MZ", false)]);
    for _ in 0..MAX_ZIP_DEPTH {
        z = zip(&[("n.zip", &z, false)]);
    }
    let deep = list_zip(&z);
    assert!(!deep.complete);
    assert_eq!(deep.names.len(), MAX_ZIP_DEPTH);
    // Not a zip at all, or cut short.
    assert!(!list_zip(b"PK\x03\x04 not really").complete);
    assert!(!list_zip(&outer[..outer.len() - 30]).complete);
}

#[test]
fn a_zip_with_100000_entries_costs_bounded_time() {
    let names: Vec<String> = (0..100_000).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8], bool)> = names
        .iter()
        .map(|n| (n.as_str(), &b""[..], false))
        .collect();
    // 100,000 entries overflow the u16 count: a real one says 0xffff (Zip64) or wraps. Either
    // way the listing stops at the cap.
    let z = zip(&entries[..65_000]);
    let started = std::time::Instant::now();
    let info = list_zip(&z);
    let took = started.elapsed();
    println!("65,000-entry zip ({} bytes) listed in {took:?}", z.len());
    assert!(!info.complete);
    assert_eq!(info.names.len(), MAX_ZIP_ENTRIES);
    assert!(took < std::time::Duration::from_millis(200));
}

#[test]
fn a_deflated_zip_bomb_stops_at_the_inflate_budget() {
    // A nested zip that inflates to 12 MiB of zeros: only MAX_ZIP_INFLATE is ever inflated.
    let zeros = vec![0u8; 12 * 1024 * 1024];
    let packed = miniz_oxide::deflate::compress_to_vec(&zeros, 6);
    let mut z = zip(&[("bomb.zip", &packed, false)]);
    // Method 8 (deflate) in the local header and the central directory entry.
    z[8] = 8;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 10] = 8;
    let started = std::time::Instant::now();
    let info = list_zip(&z);
    let took = started.elapsed();
    println!(
        "deflate bomb ({} bytes packed) refused in {took:?}",
        z.len()
    );
    assert_eq!(info.names, ["bomb.zip"]);
    assert!(!info.complete);
    assert!(took < std::time::Duration::from_secs(2));

    // The budget is the message's: after a bomb, a second attachment's harmless deflated
    // nested zip is not opened either (a hundred bombs cost what one does).
    let inner = zip(&[("tool.exe", b"MZ", false)]);
    let mut benign = zip(&[(
        "inner.zip",
        &miniz_oxide::deflate::compress_to_vec(&inner, 6),
        false,
    )]);
    benign[8] = 8;
    let cd = benign.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    benign[cd + 10] = 8;
    assert_eq!(list_zip(&benign).names, ["inner.zip", "inner.zip/tool.exe"]);
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let raw = format!(
        "From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\
         Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --x\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --x--\r\n",
        b64(&z),
        b64(&benign)
    );
    let m = Message::parse(raw.into_bytes()).unwrap();
    let archives: Vec<ArchiveInfo> = m.parts().into_iter().filter_map(|p| p.archive).collect();
    assert_eq!(archives.len(), 2);
    assert_eq!(archives[1].names, ["inner.zip"]);
    assert!(!archives[1].complete);
}
