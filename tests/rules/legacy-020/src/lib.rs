//! `rule-legacy-020`: built against the released `sluice:rules@0.2.0` snapshot
//! (`wit/released/sluice-rules-0.2.0.wit`) with plain wit-bindgen, so it imports
//! `sluice:rules/*@0.2.0` and knows nothing of 0.2.1's `reply`. It adds `X-Legacy-020` with
//! the domain and recipients its `context` handle gave.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/released/sluice-rules-0.2.0.wit",
        world: "rule",
    });
}

use bindings::sluice::rules::types::{Action, Context, Header, Message, RuleError};

/// The rule.
pub struct Legacy020;

impl bindings::Guest for Legacy020 {
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn evaluate(_msg: &Message, ctx: &Context) -> Result<Vec<Action>, RuleError> {
        Ok(vec![Action::AddHeader(Header {
            name: "X-Legacy-020".into(),
            value: format!("0.2.0 saw {} {}", ctx.domain(), ctx.recipients().join(",")),
        })])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy020 with_types_in bindings);
