//! `dsn_forward`: the DSN bounce builder (`build_dsn`) and the forward rewrite
//! (`rewrite_for_relay`) on an arbitrary parsed message.
//!
//! Input: 4 parameter bytes, then the message. Byte 0 picks the refused recipients (one to
//! three, with valid and invalid SMTP codes and status codes), byte 1 the DSN's Message-ID
//! and reporting MTA, byte 2 the relay parameters (valid, and invalid ones the rewrite must
//! refuse), byte 3 the subject prefix.
//!
//! Invariants: no panic; a DSN parses, is `multipart/report` with its three parts
//! (text/plain, message/delivery-status, text/rfc822-headers); a rewritten copy parses, is
//! From the relay address, has one more `X-Sluice-Loop` field, the same MIME part tree and a
//! byte-identical body.

use sluice_inbound::deliver::{build_dsn, BounceJob};
use sluice_mail::{hop_count, rewrite_for_relay, Message, RelayRewrite};

use crate::input::{text_from, Params};
use crate::mime;

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((mut p, payload)) = Params::split(data, 4) else {
        return;
    };
    let (jobs_byte, id_byte, relay_byte, prefix_byte) = (p.byte(), p.byte(), p.byte(), p.byte());
    let Ok(msg) = Message::parse(payload.to_vec()) else {
        return;
    };
    dsn(&msg, payload, jobs_byte, id_byte);
    forward(&msg, payload, relay_byte, prefix_byte);
}

fn dsn(msg: &Message, payload: &[u8], jobs_byte: u8, id_byte: u8) {
    let tail = text_from(payload, payload.len().saturating_sub(48), 48);
    let job = |i: u8| BounceJob {
        recipient: match i % 4 {
            0 => "bob@example.com".into(),
            1 => "j\u{f6}rg@b\u{fc}cher.example".into(),
            2 => "bad\r\nBcc: evil@example.com".into(),
            _ => tail.clone(),
        },
        code: [550, 450, 200, 0, 599, 65535][usize::from(i >> 2) % 6],
        status: ["5.1.1", "4.2.2", "5.1", "x.y.z", "5.1234.1", ""][usize::from(i >> 3) % 6].into(),
        text: match i >> 5 {
            0 => "mailbox unavailable".into(),
            1 => "Postfach voll \u{2709}".into(),
            2 => "line\r\nbreak\0nul".into(),
            3 => "z".repeat(2000),
            _ => tail.clone(),
        },
    };
    let jobs: Vec<BounceJob> = (0..=(jobs_byte % 3))
        .map(|k| job(jobs_byte.rotate_left(u32::from(k) * 3)))
        .collect();
    let message_id = ["0001-ses-id", "", "id with spaces\r\n", &tail][usize::from(id_byte & 3)];
    let mta = ["mx.example.com", "", "m\u{fc}x.example\tx", &tail][usize::from(id_byte >> 2 & 3)];
    let dsn = build_dsn(
        message_id,
        "mailer-daemon@example.com",
        "alice@outside.example",
        mta,
        msg,
        &jobs,
    )
    .expect("build_dsn writes to memory");
    let what = format!("DSN for {jobs:?}, id {message_id:?}, mta {mta:?}");
    Message::parse(dsn.clone()).unwrap_or_else(|e| panic!("{what}: the DSN does not parse: {e}"));
    let parsed = mime::parse(&dsn).unwrap_or_else(|| panic!("{what}: mail-parser refuses the DSN"));
    let shapes = mime::shapes(&parsed);
    let types: Vec<Option<&str>> = shapes.iter().map(|s| s.content_type.as_deref()).collect();
    assert!(
        types.len() == 4
            && types[0] == Some("multipart/report")
            && shapes[0].children == [1, 2, 3]
            && types[1] == Some("text/plain")
            && types[2] == Some("message/delivery-status")
            && types[3] == Some("text/rfc822-headers"),
        "{what}: the DSN has the wrong shape: {shapes:?}"
    );
}

fn forward(msg: &Message, payload: &[u8], relay_byte: u8, prefix_byte: u8) {
    let tail = text_from(payload, payload.len().saturating_sub(32), 32);
    let from = ["forwarder@relay.example", "Name <f@x.example>", "", "f@x@y"][usize::from(relay_byte & 3)];
    let via = ["example.com", "b\u{fc}cher.example", "a\r\nBcc: x@evil", &tail][usize::from(relay_byte >> 2 & 3)];
    let hop = ["relay.example", "", "a\nb", &tail][usize::from(relay_byte >> 4 & 3)];
    let prefix = match prefix_byte % 6 {
        0 => None,
        1 => Some("[FWD]"),
        2 => Some("[FWD] "),
        3 => Some("\u{27a1} Weitergeleitet:"),
        4 => Some(" "),
        _ => Some(tail.as_str()),
    };
    let rw = RelayRewrite {
        from,
        via_domain: via,
        subject_prefix: prefix,
        hop_domain: hop,
    };
    let Ok(out) = rewrite_for_relay(msg, &rw) else {
        return;
    };
    let what = format!("{rw:?}");
    let copy = Message::parse(out.clone())
        .unwrap_or_else(|e| panic!("{what}: the relayed copy does not parse: {e}"));
    assert_eq!(copy.from_address().as_deref(), Some(from), "{what}: From is not the relay address");
    assert_eq!(hop_count(&copy), hop_count(msg) + 1, "{what}: X-Sluice-Loop not added once");
    // The relay rewrites the bytes Sluice read (bare CRs in header blocks as line breaks).
    let (before, after) = (
        mime::parse(msg.read_bytes()).expect("mail-parser parses what Message::parse accepted"),
        mime::parse(&out).unwrap_or_else(|| panic!("{what}: mail-parser refuses the copy")),
    );
    assert_eq!(mime::shapes(&before), mime::shapes(&after), "{what}: the MIME part tree changed");
    let body = |raw: &'_ [u8], m: &mail_parser::Message<'_>| -> Vec<u8> {
        raw[(m.parts[0].offset_body as usize).min(raw.len())..].to_vec()
    };
    assert!(
        body(msg.read_bytes(), &before) == body(&out, &after),
        "{what}: the body changed"
    );
}
