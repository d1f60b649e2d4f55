//! What the host accepts from a rule. Everything a rule returns passes through here before
//! the chain looks at it.

use sluice_mail::{validate_address, validate_edit, validate_folder, Edit};

use crate::bindings::sluice::rules::types::{Action, Position};
use crate::flow::Direction;
use crate::step::RecipientRequest;

pub use sluice_facts::{MAX_BANNER_BYTES, MAX_RECIPIENTS_PER_ACTION};

/// The message edit an action stands for in a chain of this direction: an outbound chain's
/// `remove-header("Received")` is the dedicated [`Edit::RemoveReceived`] (see
/// [`removes_received`]); everything else as [`action_to_edit`] says.
pub fn action_to_edit_in(action: &Action, direction: Direction) -> Option<Edit> {
    if removes_received(action, direction) {
        return Some(Edit::RemoveReceived);
    }
    action_to_edit(action)
}

/// Whether `action` is an outbound chain removing `Received`: the one protected header a rule
/// may touch, and only there. On mail a local user sends, the `Received` fields are internal
/// hops (the client's address, the submission server) that leak the inside; on received mail
/// they are the trace and stay protected.
pub fn removes_received(action: &Action, direction: Direction) -> bool {
    direction == Direction::Outbound
        && matches!(action, Action::RemoveHeader(name) if name.eq_ignore_ascii_case("received"))
}

/// The message edit an action stands for, if it is an edit (header, subject, banner).
pub fn action_to_edit(action: &Action) -> Option<Edit> {
    Some(match action {
        Action::AddHeader(h) => Edit::AddHeader {
            name: h.name.clone(),
            value: h.value.clone(),
        },
        Action::SetHeader(h) => Edit::SetHeader {
            name: h.name.clone(),
            value: h.value.clone(),
        },
        Action::RemoveHeader(name) => Edit::RemoveHeader(name.clone()),
        Action::PrefixSubject(prefix) => Edit::PrefixSubject(prefix.clone()),
        Action::AddBanner(b) => Edit::AddBanner(sluice_mail::Banner {
            text: b.text.clone(),
            html: b.html.clone(),
            position: match b.position {
                Position::Top => sluice_mail::Position::Top,
                Position::Bottom => sluice_mail::Position::Bottom,
            },
        }),
        // Not message edits: routing and dispositions, applied by the chain. Listed so a
        // new action must be placed on one side or the other.
        Action::SetRecipients(_)
        | Action::AddRecipients(_)
        | Action::FileInto(_)
        | Action::Bounce(_)
        | Action::Drop
        | Action::Stop => return None,
    })
}

/// Checks one `recipients` request, like an action.
pub(crate) fn validate_request(request: &RecipientRequest) -> Result<(), String> {
    match request {
        RecipientRequest::Refuse { recipient, bounce } => {
            validate_address(recipient).map_err(|e| format!("refuse: {e}"))?;
            validate_action(&Action::Bounce(bounce.clone())).map_err(|e| format!("refuse: {e}"))
        }
        RecipientRequest::Discard { recipient } => {
            validate_address(recipient).map_err(|e| format!("discard: {e}"))
        }
        RecipientRequest::Forward(f) => {
            if f.to.is_empty() {
                return Err("forward: no addresses in `to`".into());
            }
            validate_action(&Action::AddRecipients(f.to.clone()))
                .map_err(|e| e.replacen("add-recipients", "forward", 1))?;
            if let Some(from) = &f.from {
                validate_address(from).map_err(|e| format!("forward: from: {e}"))?;
            }
            if let Some(prefix) = &f.subject_prefix {
                validate_edit(&Edit::PrefixSubject(prefix.clone()))
                    .map_err(|e| format!("forward: subject-prefix: {e}"))?;
            }
            Ok(())
        }
        // Checked against the grant and the group when it was made (`reply::check_reply`).
        RecipientRequest::Reply(_) => Ok(()),
    }
}

/// Checks one action of a step of a chain in `direction`; the error says what is wrong in
/// words a rule author can act on.
pub(crate) fn validate_action_in(action: &Action, direction: Direction) -> Result<(), String> {
    if removes_received(action, direction) {
        return Ok(());
    }
    validate_action(action)
}

/// Checks one action; the error says what is wrong in words a rule author can act on.
pub(crate) fn validate_action(action: &Action) -> Result<(), String> {
    match action {
        Action::AddBanner(b) => {
            if b.text.len() > MAX_BANNER_BYTES
                || b.html.as_ref().is_some_and(|h| h.len() > MAX_BANNER_BYTES)
            {
                return Err(format!(
                    "add-banner: banner larger than {MAX_BANNER_BYTES} bytes"
                ));
            }
            if b.text.trim().is_empty() && b.html.as_deref().is_none_or(|h| h.trim().is_empty()) {
                return Err("add-banner: empty banner".into());
            }
        }
        Action::SetRecipients(list) | Action::AddRecipients(list) => {
            let what = if matches!(action, Action::SetRecipients(_)) {
                "set-recipients"
            } else {
                "add-recipients"
            };
            if list.len() > MAX_RECIPIENTS_PER_ACTION {
                return Err(format!(
                    "{what}: {} recipients; at most {MAX_RECIPIENTS_PER_ACTION}",
                    list.len()
                ));
            }
            if matches!(action, Action::SetRecipients(_)) && list.is_empty() {
                return Err("set-recipients: empty list (use `drop` to discard)".into());
            }
            for addr in list {
                validate_address(addr).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        Action::FileInto(folder) => {
            validate_folder(folder).map_err(|e| format!("file-into: {e}"))?;
        }
        Action::Bounce(b) => {
            if !(400..=599).contains(&b.code) {
                return Err(format!("bounce: code {} is not 4xx or 5xx", b.code));
            }
            let class = b.status.split('.').next().unwrap_or("");
            let well_formed = b.status.split('.').count() == 3
                && b.status.split('.').all(|p| {
                    !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit())
                });
            if !well_formed || class != (b.code / 100).to_string() {
                return Err(format!(
                    "bounce: enhanced status {:?} must look like {}.x.y to match code {}",
                    b.status,
                    b.code / 100,
                    b.code
                ));
            }
            if b.text.len() > 512 || b.text.contains(['\r', '\n']) {
                return Err("bounce: text must be one line of at most 512 bytes".into());
            }
        }
        Action::Drop | Action::Stop => {}
        Action::AddHeader(_)
        | Action::SetHeader(_)
        | Action::RemoveHeader(_)
        | Action::PrefixSubject(_) => {
            if let Some(edit) = action_to_edit(action) {
                validate_edit(&edit).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::sluice::rules::types::{Bounce, Header};

    #[test]
    fn only_an_outbound_chain_may_remove_received() {
        let remove = Action::RemoveHeader("RECEIVED".into());
        assert!(validate_action_in(&remove, Direction::Inbound).is_err());
        assert!(validate_action_in(&remove, Direction::Outbound).is_ok());
        assert_eq!(
            action_to_edit_in(&remove, Direction::Outbound),
            Some(Edit::RemoveReceived)
        );
        assert_eq!(
            action_to_edit_in(&remove, Direction::Inbound),
            Some(Edit::RemoveHeader("RECEIVED".into()))
        );
        // The other protected fields stay protected outbound too.
        let dkim = Action::RemoveHeader("DKIM-Signature".into());
        assert!(validate_action_in(&dkim, Direction::Outbound).is_err());
    }

    #[test]
    fn bounce_status_must_match_code() {
        let b = |code, status: &str| {
            Action::Bounce(Bounce {
                code,
                status: status.into(),
                text: "no".into(),
            })
        };
        assert!(validate_action(&b(550, "5.7.1")).is_ok());
        assert!(validate_action(&b(450, "4.2.0")).is_ok());
        assert!(validate_action(&b(550, "4.7.1")).is_err());
        assert!(validate_action(&b(250, "2.0.0")).is_err());
        assert!(validate_action(&b(550, "5.7")).is_err());
    }

    #[test]
    fn header_injection_is_refused() {
        let a = Action::AddHeader(Header {
            name: "X-Ok".into(),
            value: "ok\r\nBcc: victim@example.net".into(),
        });
        assert!(validate_action(&a).is_err());
    }

    #[test]
    fn recipients_are_checked() {
        assert!(validate_action(&Action::AddRecipients(vec!["a@b.example".into()])).is_ok());
        assert!(validate_action(&Action::AddRecipients(vec!["a b@c".into()])).is_err());
        assert!(validate_action(&Action::SetRecipients(vec![])).is_err());
    }
}
