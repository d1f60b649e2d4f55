//! `rule-noisy`: makes the host keep or print as much as its config asks, to test that every
//! byte a rule can push at the host is bounded.
//!
//! # Config
//! `{ "log_lines": 0, "log_bytes": 0, "prefix_bytes": 0, "error_bytes": 0, "forwards": 0,
//!    "forward_bytes": 0, "forward_to": 1 }`: log `log_lines` lines of `log_bytes` bytes each; return one
//! `prefix-subject` of `prefix_bytes` bytes (invalid past 8 KiB); fail with a rule error of
//! `error_bytes` bytes; make `forwards` forward requests, each to one address whose local
//! part is `forward_bytes` long (invalid past 254 bytes), `forward_to` addresses per request.

use sluice_sdk::prelude::*;

/// The rule's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log lines to write.
    pub log_lines: usize,
    /// Bytes per log line.
    pub log_bytes: usize,
    /// Length of the subject prefix to return (0: none).
    pub prefix_bytes: usize,
    /// Length of the rule error to return (0: none).
    pub error_bytes: usize,
    /// Forward requests to make.
    pub forwards: usize,
    /// Length of each forward's local part (default 1).
    pub forward_bytes: usize,
    /// Addresses per forward request (default 1).
    pub forward_to: usize,
}

/// The rule.
pub struct Noisy;

impl Rule for Noisy {
    type Config = Config;

    fn evaluate(_: &Message, _: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let line = "x".repeat(config.log_bytes);
        for _ in 0..config.log_lines {
            log::info!("{line}");
        }
        let local = "f".repeat(config.forward_bytes.max(1));
        for i in 0..config.forwards {
            recipients::forward(&recipients::Forward::copy_to(
                (0..config.forward_to.max(1)).map(|j| format!("{local}{i}.{j}@elsewhere.example")),
            ));
        }
        if config.error_bytes > 0 {
            return Err(RuleError::permanent("e".repeat(config.error_bytes)));
        }
        let mut actions = Vec::new();
        if config.prefix_bytes > 0 {
            actions.push(Action::prefix_subject("p".repeat(config.prefix_bytes)));
        }
        Ok(actions)
    }
}

sluice_sdk::export_rule!(Noisy);
