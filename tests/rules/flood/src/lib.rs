//! `rule-flood`: returns 10,000 `add-header` actions (`X-Flood: 0` ... `X-Flood: 9999`), to
//! test the host's limits on rule output.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Flood;

/// How many actions the rule returns.
pub const COUNT: usize = 10_000;

impl Rule for Flood {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        Ok((0..COUNT)
            .map(|i| Action::add_header("X-Flood", i.to_string()))
            .collect())
    }
}

sluice_sdk::export_rule!(Flood);
