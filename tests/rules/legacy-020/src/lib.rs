//! `rule-legacy-020`: built against the released `sluice:rules@0.2.0` snapshot
//! (`wit/released/sluice-rules-0.2.0.wit`) with plain wit-bindgen, as every 0.2 rule was
//! before 0.2.1 appended `replace-part` to `action` and added the `reply` import (so it imports
//! `sluice:rules/*@0.2.0` only). It adds `X-Legacy-020` with the domain, the recipients and
//! the number of attachments its handles gave, and prefixes the subject, so a test sees its
//! actions land.

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

    fn evaluate(msg: &Message, ctx: &Context) -> Result<Vec<Action>, RuleError> {
        Ok(vec![
            Action::AddHeader(Header {
                name: "X-Legacy-020".into(),
                value: format!(
                    "0.2.0 saw {} {} attachments={}",
                    ctx.domain(),
                    ctx.recipients().join(","),
                    msg.attachments().len()
                ),
            }),
            Action::PrefixSubject("[020]".into()),
        ])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy020 with_types_in bindings);
