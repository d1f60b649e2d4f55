//! Test rule: counts its calls in a static and reports the count as `X-Count`. With fresh
//! instances (the default) the count is always 1; a warm instance counts up.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_sdk::prelude::*;

/// Calls seen by this instance.
pub static CALLS: AtomicU32 = AtomicU32::new(0);

/// The rule.
pub struct Counter;

impl Rule for Counter {
    type Config = NoConfig;

    fn evaluate(_msg: &Message, _ctx: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![Action::add_header("X-Count", n.to_string())])
    }
}

sluice_sdk::export_rule!(Counter);
