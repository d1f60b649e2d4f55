//! `rule-legacy`: built against the released `sluice:rules@0.1.0` snapshot
//! (`wit/released/sluice-rules-0.1.0.wit`) with plain wit-bindgen, as a rule compiled before
//! the interface grew would be. It reads the subject and returns one header, so the test can
//! see that it ran against today's host.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/released/sluice-rules-0.1.0.wit",
        world: "rule",
    });
}

use bindings::sluice::rules::types::{Action, Context, Header, Message, RuleError};

/// The rule.
pub struct Legacy;

impl bindings::Guest for Legacy {
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn evaluate(msg: &Message, _ctx: Context) -> Result<Vec<Action>, RuleError> {
        let subject = msg.subject().unwrap_or_default();
        Ok(vec![Action::AddHeader(Header {
            name: "X-Legacy-Rule".into(),
            value: format!("0.1.0 saw {subject}"),
        })])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy with_types_in bindings);
