//! `config`: `ConfigFile::parse` (TOML text to a checked config, no plugin loaded) on arbitrary
//! text.
//!
//! Invariants: no panic; an error names the file and a line inside it (1 to the number of
//! lines, or one past the end for an unterminated last line), since every error of `parse`
//! is about the text; an `Ok` config answers its accessors (limits, rule config JSON, plugin
//! locations, engine settings, the circuit breaker it configures) without a panic.

use std::path::PathBuf;

use std::time::{Duration, Instant};

use sluice_chain::{CircuitBreaker, ConfigFile};

const NAME: &str = "fuzz.toml";

/// A step's circuit breaker, as configured, through a few failures and its cool-down.
fn breaker(settings: sluice_chain::BreakerSettings) {
    let b = CircuitBreaker::new(settings);
    let t = Instant::now();
    for i in 0..settings.failures.min(8) + 1 {
        b.failure(t + Duration::from_millis(u64::from(i)));
    }
    let _ = b.open_for(t + Duration::from_secs(1));
    b.success();
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let lines = text.split('\n').count();
    match ConfigFile::parse(NAME, PathBuf::from("/nonexistent/fuzz"), text.clone()) {
        Ok(config) => {
            let _ = (config.engine.cache_max_bytes(), config.engine.pooling_choice());
            for domain in &config.domains {
                for step in &domain.get_ref().step {
                    let s = step.get_ref();
                    let _ = (s.limits(), s.config_json());
                    let _ = config.plugin_location(s.plugin.get_ref());
                    let _ = config.line_of(step.span());
                    breaker(s.breaker);
                }
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.file, NAME, "{shown}");
            assert!(
                (1..=lines).contains(&e.line),
                "error without a line in the file (line {}, the text has {lines}): {shown}\n--- text ---\n{text}",
                e.line
            );
            assert!(!e.message.trim().is_empty(), "error without a message: {shown}");
        }
    }
}
