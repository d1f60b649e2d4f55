//! `rule-unprotect`: asks to remove the protected `Received` header; the host must refuse.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Unprotect;

impl Rule for Unprotect {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        Ok(vec![Action::remove_header("Received")])
    }
}

sluice_sdk::export_rule!(Unprotect);
