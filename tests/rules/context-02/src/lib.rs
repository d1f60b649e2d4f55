//! `rule-context-02`: the WIT 0.2 twin of `rule-legacy-015`: adds `X-Context-02` with every
//! field of its `context` (read through the SDK's getters) and the direction, in the same
//! format, so a test can see that both tracks get the same facts.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Context02;

impl Rule for Context02 {
    type Config = sluice_sdk::serde_json::Value;

    fn evaluate(_: &Message, ctx: &Context, _: &Self::Config) -> Result<Vec<Action>, RuleError> {
        let v = ctx.verdicts();
        let line = format!(
            "domain={} recipients={} mail-from={} spf={} dmarc-policy={} received-at={} message-id={} config={} direction={}",
            ctx.domain(),
            ctx.recipients().join(","),
            ctx.mail_from(),
            v.spf.as_str(),
            v.dmarc_policy.as_deref().unwrap_or("-"),
            ctx.received_at(),
            ctx.message_id(),
            ctx.config_json(),
            if flow::is_outbound() { "outbound" } else { "inbound" },
        );
        Ok(vec![Action::add_header("X-Context-02", line)])
    }
}

sluice_sdk::export_rule!(Context02);
