//! `milter`: the milter door's packet framing, command decoder and session state machine
//! (`sluice_milter::{codec, session}`) on arbitrary bytes from the MTA's side, and the
//! header/body comparison that turns a chain's edits into modifications (`answer::diff`).
//!
//! Input: 1 byte choosing the message size limit (`byte * 64` bytes), then a stream of
//! packets as an MTA sends them.
//!
//! Invariants: no panic; framing stops at the first error or incomplete packet; every command
//! that wants an answer gets at least one packet, and every answer encodes to a frame whose
//! length field matches its size; an arrival handed to the chains carries only recipients
//! the session accepted and the null sender or an address; `diff` of the input's two halves
//! (as an original and an edited message) changes header occurrences from 1, inserts within
//! the new header list, and replaces the body in chunks of at most 65535 bytes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use sluice_inbound::door::MessageContent;
use sluice_milter::answer::{diff, header_fields};
use sluice_milter::codec::{split_packet, Command, Response, DEFAULT_MAX_PACKET, MAX_BODY_CHUNK};
use sluice_milter::session::{BufferBudget, DefaultAction, Session, SessionSettings, Step};

fn check_frame(response: &Response) {
    // Every packet's length field matches what follows it, to the end.
    let frames = response.encode();
    let mut rest = &frames[..];
    while !rest.is_empty() {
        match split_packet(rest, usize::MAX) {
            Ok(Some((_, _, after))) => rest = after,
            other => panic!("{response:?} frames badly: {other:?}"),
        }
    }
}

fn m_encoded(body: &[u8]) -> Vec<u8> {
    Response::ReplaceBody(body.to_vec()).encode()
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    let settings = Arc::new(SessionSettings {
        max_message_bytes: usize::from(limit) * 64,
        default_action: DefaultAction::Tempfail,
        trusted_authserv_id: None,
        group_key: Arc::new(|a: &str| {
            a.rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default()
        }),
        stopping: Arc::new(AtomicBool::new(false)),
        budget: Arc::new(BufferBudget::new(usize::from(limit) * 256)),
        outbound_daemon_names: Vec::new(),
        // A trusted scanner header, so hostile header values reach its reading too.
        scanners: vec![sluice_milter::ScannerHeader {
            name: "spamassassin".into(),
            verdict: sluice_milter::ScannerVerdict::Spam,
            header: "X-Spam-Status".into(),
            fail: vec!["Yes".into()],
            pass: vec!["No".into()],
        }],
    });
    let mut session = Session::new(settings, false);
    let mut accepted: Vec<String> = Vec::new();
    while let Ok(Some((code, body, after))) = split_packet(rest, DEFAULT_MAX_PACKET) {
        rest = after;
        let Ok(command) = Command::decode(code, body) else {
            break;
        };
        let wants = command.wants_reply();
        let rcpt = match &command {
            Command::Rcpt(args) => Some(args[0].clone()),
            Command::Mail(_) | Command::Abort | Command::QuitNewConnection => {
                accepted.clear();
                None
            }
            _ => None,
        };
        match session.command(command) {
            Step::Reply(responses) => {
                assert!(!responses.is_empty());
                responses.iter().for_each(check_frame);
                if let (Some(r), [Response::Continue]) = (rcpt, &responses[..]) {
                    accepted.push(r);
                }
            }
            Step::Silent => assert!(!wants),
            Step::Close => break,
            Step::Decide(arrival) => {
                assert!(matches!(arrival.content, MessageContent::Inline(_)));
                for r in &arrival.recipients {
                    assert!(accepted.iter().any(|a| a.contains(r.as_str())), "{r}");
                }
                accepted.clear();
            }
        }
    }
    let (original, edited) = data.split_at(data.len() / 2);
    let new_fields = header_fields(edited).len() as u32;
    for m in diff(original, edited.to_vec()) {
        match m {
            Response::ChangeHeader { index, .. } => assert!(index >= 1),
            Response::InsertHeader { index, .. } => assert!(index < new_fields),
            Response::ReplaceBody(body) => {
                // Framed into packets of at most MAX_BODY_CHUNK bytes, which concatenate to it.
                let mut rest = &m_encoded(&body)[..];
                let mut joined = Vec::new();
                while let Ok(Some((code, chunk, after))) = split_packet(rest, DEFAULT_MAX_PACKET) {
                    assert!(code == b'b' && chunk.len() <= MAX_BODY_CHUNK);
                    joined.extend_from_slice(chunk);
                    rest = after;
                }
                assert!(rest.is_empty() && joined == body);
            }
            Response::AddHeader { .. } => {}
            other => panic!("diff made {other:?}"),
        }
    }
}
