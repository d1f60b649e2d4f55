//! `rule-spin`: never returns. The host's wall-clock deadline (epoch interruption) must stop it.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Spin;

impl Rule for Spin {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        // `black_box` keeps the optimizer from proving the loop has no effect and removing it.
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

sluice_sdk::export_rule!(Spin);
