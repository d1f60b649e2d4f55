//! `rule-legacy-015`: built against the released `sluice:rules@0.1.5` snapshot
//! (`wit/released/sluice-rules-0.1.5.wit`) with plain wit-bindgen, as every rule was before
//! the context became a resource in 0.2. It adds `X-Context-015` with what its `context`
//! record and the `flow` interface said, so a test can compare it with a 0.2 rule's view.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/released/sluice-rules-0.1.5.wit",
        world: "rule",
    });
}

use bindings::sluice::rules::flow::{self, Direction};
use bindings::sluice::rules::types::{Action, Context, Header, Message, RuleError, Verdict};

/// The rule.
pub struct Legacy015;

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Gray => "gray",
        Verdict::ProcessingFailed => "processing-failed",
        Verdict::Disabled => "disabled",
        Verdict::Unknown => "unknown",
    }
}

/// One line of the facts a rule gets, in a fixed order.
pub fn describe(ctx: &Context, direction: &str) -> String {
    format!(
        "domain={} recipients={} mail-from={} spf={} dmarc-policy={} received-at={} message-id={} config={} direction={}",
        ctx.domain,
        ctx.recipients.join(","),
        ctx.mail_from,
        verdict(ctx.verdicts.spf),
        ctx.verdicts.dmarc_policy.as_deref().unwrap_or("-"),
        ctx.received_at,
        ctx.message_id,
        ctx.config,
        direction,
    )
}

impl bindings::Guest for Legacy015 {
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn evaluate(_msg: &Message, ctx: Context) -> Result<Vec<Action>, RuleError> {
        let direction = match flow::message_direction() {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        Ok(vec![Action::AddHeader(Header {
            name: "X-Context-015".into(),
            value: describe(&ctx, direction),
        })])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy015 with_types_in bindings);
