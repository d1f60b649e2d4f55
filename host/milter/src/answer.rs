//! What the chains decided, said as milter modifications and an SMTP reply.
//!
//! The MTA delivers; Sluice only edits the transaction it is in. So the decision is mapped
//! onto the few things a milter can do at end of message:
//!
//! | decision | milter answer |
//! |---|---|
//! | a group's chain tempfailed | `SMFIR_REPLYCODE` 451 4.3.0 with the reason |
//! | every recipient bounced | `SMFIR_REPLYCODE` with the rule's code, status and text |
//! | nobody gets it, somebody bounced | the first bounce's reply (the rest were dropped) |
//! | every recipient dropped | `SMFIR_DISCARD` |
//! | header edits | `SMFIR_CHGHEADER` / `SMFIR_INSHEADER` / `SMFIR_ADDHEADER` from comparing the header lists |
//! | body edits (a banner) | `SMFIR_REPLBODY`, the new body in chunks |
//! | recipients changed (alias, redirect, forward) | `SMFIR_DELRCPT` / `SMFIR_ADDRCPT` |
//! | file-into a folder | a [`FOLDER_HEADER`] header on top, for the delivery side's Sieve |
//!
//! A recipient bounced while others are kept is removed (`SMFIR_DELRCPT`) and logged: after
//! DATA an SMTP server can only answer for the whole message, and a DSN would be the
//! backscatter this door exists to avoid.

use std::sync::Arc;

use sluice_chain::{Disposition, GroupOutcome, OutputMessage};
use sluice_deliver::DEFAULT_FOLDER;
use sluice_inbound::Decided;

use crate::codec::{actions, Response};

/// The header the milter adds for a rule's `file-into` (the one the SMTP store writes);
/// Dovecot's Sieve files on it (see `deploy/milter/sluice-folder.sieve`).
pub use sluice_deliver::FOLDER_HEADER;

/// One envelope recipient as the MTA gave it (`<b@example.com>`) and as an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The RCPT TO argument, as `SMFIR_DELRCPT` must name it.
    pub raw: String,
    /// The address without angle brackets.
    pub address: String,
}

/// The answer at end of message: modifications, then the final reply. `allowed`: the
/// `SMFIF_*` actions the MTA granted; an answer needing more is an error (the caller applies
/// its default action).
pub fn responses(
    mut decided: Decided,
    rcpts: &[Recipient],
    allowed: u32,
) -> Result<Vec<Response>, String> {
    let result = &decided.result;
    if let Some(reason) = result.groups.iter().find_map(|g| match &g.outcome {
        GroupOutcome::Tempfail { reason } => Some(reason),
        GroupOutcome::Done => None,
    }) {
        return Ok(vec![reply(
            451,
            "4.3.0",
            &format!("try again later: {reason}"),
        )]);
    }
    let dispositions: Vec<&Disposition> =
        result.groups.iter().flat_map(|g| &g.dispositions).collect();
    let kept: Vec<Disposition> = dispositions
        .iter()
        .filter(|d| matches!(d, Disposition::Deliver { .. } | Disposition::Relay { .. }))
        .map(|d| (*d).clone())
        .collect();
    let first_bounce = dispositions.iter().find_map(|d| match d {
        Disposition::Bounce {
            code, status, text, ..
        } => Some(reply(*code, status, text)),
        _ => None,
    });
    if kept.is_empty() {
        return Ok(vec![first_bounce.unwrap_or(Response::Discard)]);
    }
    for d in &dispositions {
        if let Disposition::Bounce { recipient, .. } = d {
            tracing::warn!(
                recipient = %recipient,
                "a rule bounced one recipient of several: removed from the message, no DSN"
            );
        }
    }
    // Content first: its insertion indexes count the fields the MTA holds before them.
    let mut out = content_edits(&mut decided, kept[0].recipient());
    out.extend(folder_headers(decided.message.raw(), &kept));
    out.extend(recipient_edits(rcpts, &kept));
    if let Some(missing) = out.iter().map(required_action).find(|a| a & allowed == 0) {
        return Err(format!(
            "the MTA did not allow the milter action 0x{missing:02x} the answer needs (see milter_protocol and the MTA's milter settings)"
        ));
    }
    out.push(Response::Continue);
    Ok(out)
}

/// `SMFIR_REPLYCODE` for `code status text`.
pub fn reply(code: u16, status: &str, text: &str) -> Response {
    Response::ReplyCode(format!("{code} {status} {text}"))
}

fn required_action(r: &Response) -> u32 {
    match r {
        Response::AddHeader { .. } | Response::InsertHeader { .. } => actions::ADD_HEADERS,
        Response::ChangeHeader { .. } => actions::CHANGE_HEADERS,
        Response::ReplaceBody(_) => actions::CHANGE_BODY,
        Response::AddRcpt(_) => actions::ADD_RCPT,
        Response::DelRcpt(_) => actions::DELETE_RCPT,
        Response::ChangeFrom(_) => actions::CHANGE_FROM,
        _ => !0,
    }
}

/// Any [`FOLDER_HEADER`] the sender wrote is deleted (else a sender could file its own mail
/// anywhere), and the chain's folder, when not INBOX, is inserted on top. One message per
/// transaction: kept recipients filed into different folders all get the first one's.
fn folder_headers(original: &[u8], kept: &[Disposition]) -> Vec<Response> {
    let present = header_fields(original)
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(FOLDER_HEADER))
        .count() as u32;
    let mut out: Vec<Response> = (1..=present)
        .rev()
        .map(|index| Response::ChangeHeader {
            index,
            name: FOLDER_HEADER.into(),
            value: Vec::new(),
        })
        .collect();
    let folders: Vec<&str> = kept
        .iter()
        .filter_map(|d| match d {
            Disposition::Deliver { folder, .. } if folder != DEFAULT_FOLDER => Some(&folder[..]),
            _ => None,
        })
        .collect();
    if let Some(folder) = folders.first() {
        if folders.iter().any(|f| f != folder) {
            tracing::warn!(
                folder,
                "recipients filed into different folders: all get this one"
            );
        }
        let clean: String = folder.chars().filter(|c| !c.is_control()).collect();
        out.push(Response::InsertHeader {
            index: 0,
            name: FOLDER_HEADER.into(),
            value: clean.into_bytes(),
        });
    }
    out
}

/// The edits of the group that delivers `recipient` (the message the MTA will deliver): its
/// edited copy compared with the original. The copy is taken out of the result, so its body
/// becomes the new body without another copy of a large message.
fn content_edits(decided: &mut Decided, recipient: &str) -> Vec<Response> {
    let groups = &mut decided.result.groups;
    if groups.iter().filter(|g| g.output.is_some()).count() > 1 {
        tracing::warn!("several recipient groups deliver: the message carries one group's edits");
    }
    let delivering = |g: &&mut sluice_chain::GroupResult| {
        g.dispositions
            .iter()
            .any(|d| d.recipient() == recipient && !matches!(d, Disposition::Bounce { .. }))
    };
    let Some(group) = groups.iter_mut().find(delivering) else {
        return Vec::new();
    };
    let edited = match group.output.take() {
        Some(OutputMessage::Edited(edited)) => Arc::try_unwrap(edited)
            .map(sluice_mail::Message::into_raw)
            .unwrap_or_else(|shared| shared.raw().to_vec()),
        _ => return Vec::new(),
    };
    diff(decided.message.raw(), edited)
}

/// Modifications that turn `original` into `edited`: header changes by name and occurrence,
/// then insertions at their place, then the body when it differs.
pub fn diff(original: &[u8], edited: Vec<u8>) -> Vec<Response> {
    let (old, new) = (header_fields(original), header_fields(&edited));
    let mut out = Vec::new();
    let mut names: Vec<String> = old.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let count = |fields: &[(String, Vec<u8>)], name: &str| {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    // A new field past the number its name had before is an insertion, placed below.
    let added: Vec<bool> = new
        .iter()
        .enumerate()
        .map(|(i, (name, _))| count(&new[..i], name) >= count(&old, name))
        .collect();
    for name in &names {
        let was: Vec<&(String, Vec<u8>)> = old
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .collect();
        let now: Vec<&(String, Vec<u8>)> = new
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .collect();
        for (i, (field, value)) in now.iter().enumerate().take(was.len()) {
            if *value != was[i].1 {
                out.push(Response::ChangeHeader {
                    index: i as u32 + 1,
                    name: field.clone(),
                    value: value.clone(),
                });
            }
        }
        // Deleted from the last occurrence up, so the indexes stay right.
        for index in (now.len() + 1..=was.len()).rev() {
            out.push(Response::ChangeHeader {
                index: index as u32,
                name: was[index - 1].0.clone(),
                value: Vec::new(),
            });
        }
    }
    // After the changes the MTA holds `new` without the added fields, in order: inserting
    // each at its position in `new`, top to bottom, gives `new`.
    let trailing = added.iter().rev().take_while(|a| **a).count();
    for (i, (name, value)) in new.iter().enumerate() {
        if !added[i] {
            continue;
        }
        out.push(if i >= new.len() - trailing {
            Response::AddHeader {
                name: name.clone(),
                value: value.clone(),
            }
        } else {
            Response::InsertHeader {
                index: i as u32,
                name: name.clone(),
                value: value.clone(),
            }
        });
    }
    if body(original) != body(&edited) {
        let start = edited.len() - body(&edited).len();
        let mut new_body = edited;
        new_body.drain(..start);
        out.push(Response::ReplaceBody(new_body));
    }
    out
}

/// Recipients the MTA has that no kept disposition names are deleted; kept ones it does not
/// have are added.
fn recipient_edits(rcpts: &[Recipient], kept: &[Disposition]) -> Vec<Response> {
    let mut out = Vec::new();
    for r in rcpts {
        if !kept
            .iter()
            .any(|d| d.recipient().eq_ignore_ascii_case(&r.address))
        {
            out.push(Response::DelRcpt(r.raw.clone()));
        }
    }
    let mut added: Vec<&str> = Vec::new();
    for d in kept {
        let a = d.recipient();
        let known = rcpts.iter().any(|r| r.address.eq_ignore_ascii_case(a))
            || added.iter().any(|x| x.eq_ignore_ascii_case(a));
        if !known {
            added.push(a);
            out.push(Response::AddRcpt(format!("<{a}>")));
        }
    }
    out
}

/// The header block's fields: name, and value as an MTA passes it (leading blanks of the
/// first line dropped, folded lines joined with `\n` as libmilter's callers write them).
pub fn header_fields(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let head = &raw[..header_end(raw)];
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b'\n');
                value.extend_from_slice(line);
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        let value = &line[colon + 1..];
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        fields.push((name, value[start..].to_vec()));
    }
    fields
}

/// Where the header block ends (the blank line's start), or the whole input.
fn header_end(raw: &[u8]) -> usize {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 1);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    }
}

/// The body: after the blank line.
pub fn body(raw: &[u8]) -> &[u8] {
    let end = header_end(raw);
    let rest = &raw[end..];
    rest.strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
        .unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nX-Tag: two\r\nFrom: a@b.test\r\n\r\nbody\r\n";

    #[test]
    fn header_edits_become_changes_insertions_and_deletions_with_occurrence_indexes() {
        let edited = b"X-Top: 1\r\nReceived: from a\r\n\tby b\r\nSubject: [EXT] hello\r\nX-Tag: one\r\nFrom: a@b.test\r\nX-End: 2\r\n\r\nbody\r\n";
        let got = diff(ORIGINAL, edited.to_vec());
        assert_eq!(
            got,
            vec![
                Response::ChangeHeader {
                    index: 1,
                    name: "Subject".into(),
                    value: b"[EXT] hello".to_vec()
                },
                Response::ChangeHeader {
                    index: 2,
                    name: "X-Tag".into(),
                    value: Vec::new()
                },
                Response::InsertHeader {
                    index: 0,
                    name: "X-Top".into(),
                    value: b"1".to_vec()
                },
                Response::AddHeader {
                    name: "X-End".into(),
                    value: b"2".to_vec()
                },
            ]
        );
        assert_eq!(header_fields(ORIGINAL)[0].1, b"from a\n\tby b");
    }

    #[test]
    fn a_changed_body_is_replaced_and_an_unchanged_one_is_not() {
        let banner = b"Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nX-Tag: two\r\nFrom: a@b.test\r\n\r\nBANNER\r\nbody\r\n";
        assert_eq!(
            diff(ORIGINAL, banner.to_vec()),
            vec![Response::ReplaceBody(b"BANNER\r\nbody\r\n".to_vec())]
        );
        assert!(diff(ORIGINAL, ORIGINAL.to_vec()).is_empty());
    }

    /// A group's dispositions, edited copy (none: the original) and outcome.
    type Group<'a> = (Vec<Disposition>, Option<&'a [u8]>, GroupOutcome);

    fn decided(groups: Vec<Group<'_>>) -> Decided {
        let raw = ORIGINAL.to_vec();
        let message = Arc::new(sluice_mail::Message::parse(raw).unwrap());
        let groups = groups
            .into_iter()
            .map(
                |(dispositions, edited, outcome)| sluice_chain::GroupResult {
                    domain: "example.com".into(),
                    recipients: Vec::new(),
                    steps: Vec::new(),
                    edits: Vec::new(),
                    edit_error: None,
                    edit_note: None,
                    outcome,
                    dispositions,
                    output: Some(match edited {
                        Some(bytes) => OutputMessage::Edited(Arc::new(
                            sluice_mail::Message::parse(bytes.to_vec()).unwrap(),
                        )),
                        None => OutputMessage::Original,
                    }),
                    handed_off: Vec::new(),
                    handed_from: None,
                    replies: Vec::new(),
                },
            )
            .collect();
        Decided {
            message,
            result: sluice_chain::ProcessResult {
                message_id: "m".into(),
                size: ORIGINAL.len() as u64,
                groups,
            },
            envelope: sluice_chain::Envelope {
                message_id: "m".into(),
                mail_from: String::new(),
                recipients: Vec::new(),
                verdicts: sluice_inbound::door::unknown_verdicts(),
                received_at: 0,
                flow: sluice_engine::Flow::default(),
                skip_step: None,
            },
        }
    }

    fn bounce(r: &str, code: u16) -> Disposition {
        Disposition::Bounce {
            recipient: r.into(),
            code,
            status: format!("{}.7.1", code / 100),
            text: "refused by a rule".into(),
        }
    }

    fn deliver(r: &str) -> Disposition {
        Disposition::Deliver {
            recipient: r.into(),
            folder: "INBOX".into(),
        }
    }

    fn drop_(r: &str) -> Disposition {
        Disposition::Drop {
            recipient: r.into(),
        }
    }

    const ALL: u32 = !0;

    #[test]
    fn decisions_map_onto_replies_discard_and_modifications() {
        let done = GroupOutcome::Done;
        let answer = |groups, allowed| {
            responses(
                decided(groups),
                &[rcpt("a@example.com"), rcpt("b@example.com")],
                allowed,
            )
        };
        // Every recipient bounced: the first bounce is the reply.
        let got = answer(
            vec![(
                vec![bounce("a@example.com", 550), bounce("b@example.com", 554)],
                None,
                done.clone(),
            )],
            ALL,
        );
        assert_eq!(got.unwrap(), [reply(550, "5.7.1", "refused by a rule")]);
        // Nobody kept, one dropped, one bounced: the bounce; all dropped: discard.
        let got = answer(
            vec![(
                vec![drop_("a@example.com"), bounce("b@example.com", 550)],
                None,
                done.clone(),
            )],
            ALL,
        );
        assert!(matches!(&got.unwrap()[..], [Response::ReplyCode(r)] if r.starts_with("550 ")));
        let got = answer(
            vec![(
                vec![drop_("a@example.com"), drop_("b@example.com")],
                None,
                done.clone(),
            )],
            ALL,
        );
        assert_eq!(got.unwrap(), [Response::Discard]);
        // A tempfail wins over everything.
        let tempfail = GroupOutcome::Tempfail {
            reason: "step x timed out".into(),
        };
        let got = answer(vec![(vec![deliver("a@example.com")], None, tempfail)], ALL);
        assert!(
            matches!(&got.unwrap()[..], [Response::ReplyCode(r)] if r.starts_with("451 4.3.0 ") && r.contains("step x"))
        );
        // One kept, one bounced: the bounced one is removed, the message goes on unchanged.
        let got = answer(
            vec![(
                vec![deliver("a@example.com"), bounce("b@example.com", 550)],
                None,
                done.clone(),
            )],
            ALL,
        );
        assert_eq!(
            got.unwrap(),
            [
                Response::DelRcpt("<b@example.com>".into()),
                Response::Continue
            ]
        );
        // Edits the MTA did not allow: an error (the session answers its default action).
        let edited = b"Received: from a\r\n\tby b\r\nSubject: [EXT] hello\r\nX-Tag: one\r\nX-Tag: two\r\nFrom: a@b.test\r\n\r\nbody\r\n";
        let groups = || {
            vec![(
                vec![deliver("a@example.com"), deliver("b@example.com")],
                Some(&edited[..]),
                done.clone(),
            )]
        };
        assert!(answer(groups(), actions::ADD_HEADERS)
            .unwrap_err()
            .contains("0x10"));
        assert_eq!(
            answer(groups(), ALL).unwrap(),
            [
                Response::ChangeHeader {
                    index: 1,
                    name: "Subject".into(),
                    value: b"[EXT] hello".to_vec()
                },
                Response::Continue
            ]
        );
    }

    fn rcpt(a: &str) -> Recipient {
        Recipient {
            raw: format!("<{a}>"),
            address: a.into(),
        }
    }

    #[test]
    fn recipients_the_chain_replaced_are_deleted_and_its_new_ones_added() {
        let kept = [
            Disposition::Deliver {
                recipient: "alice@example.com".into(),
                folder: "INBOX".into(),
            },
            Disposition::Relay {
                recipient: "bob@elsewhere.test".into(),
                from: None,
                subject_prefix: None,
            },
        ];
        let got = recipient_edits(
            &[rcpt("Alice@example.com"), rcpt("info@example.com")],
            &kept,
        );
        assert_eq!(
            got,
            vec![
                Response::DelRcpt("<info@example.com>".into()),
                Response::AddRcpt("<bob@elsewhere.test>".into())
            ]
        );
    }

    #[test]
    fn a_folder_becomes_a_header_on_top_and_a_forged_one_is_deleted() {
        let raw = b"X-Sluice-Folder: Inbox/../x\r\nSubject: s\r\n\r\nb";
        let junk = Disposition::Deliver {
            recipient: "a@example.com".into(),
            folder: "Junk".into(),
        };
        assert_eq!(
            folder_headers(raw, &[junk]),
            vec![
                Response::ChangeHeader {
                    index: 1,
                    name: FOLDER_HEADER.into(),
                    value: Vec::new()
                },
                Response::InsertHeader {
                    index: 0,
                    name: FOLDER_HEADER.into(),
                    value: b"Junk".to_vec()
                }
            ]
        );
    }
}
