//! `rule-empty`: returns no actions. Measures the host's per-step overhead.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Empty;

impl Rule for Empty {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        Ok(Vec::new())
    }
}

sluice_sdk::export_rule!(Empty);
