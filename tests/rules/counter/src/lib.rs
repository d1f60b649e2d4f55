//! Test rule: counts its calls in a static and reports the count as `X-Count`. The host
//! gives every message a fresh instance, so the count must always be 1.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_sdk::prelude::*;

/// Calls seen by this instance.
pub static CALLS: AtomicU32 = AtomicU32::new(0);

/// The rule.
pub struct Counter;

impl Rule for Counter {
    type Config = NoConfig;

    fn evaluate(_msg: &Message, _ctx: &Context, _: NoConfig) -> Result<Vec<Action>, RuleError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![Action::add_header("X-Count", n.to_string())])
    }
}

sluice_sdk::export_rule!(Counter);
