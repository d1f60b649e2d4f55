//! `rule-trap`: panics with "rule-trap: deliberate panic". The SDK's panic hook logs the
//! message at level error, then the instance traps (`unreachable`).

use sluice_sdk::prelude::*;

/// The rule.
pub struct Trap;

impl Rule for Trap {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        panic!("rule-trap: deliberate panic");
    }
}

sluice_sdk::export_rule!(Trap);
