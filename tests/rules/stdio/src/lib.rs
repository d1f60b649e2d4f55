//! `rule-stdio`: built for `wasm32-wasip2` (see `[package.metadata.sluice]` in Cargo.toml),
//! so it imports WASI. Writes one line to stdout and one to stderr and returns no actions.
//! Tests the host's WASI wiring and where guest stdio ends up.

use sluice_sdk::prelude::*;

/// The rule.
pub struct Stdio;

impl Rule for Stdio {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        println!("stdio rule stdout line");
        eprintln!("stdio rule stderr line");
        Ok(Vec::new())
    }
}

sluice_sdk::export_rule!(Stdio);
