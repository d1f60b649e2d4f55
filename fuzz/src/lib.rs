//! The checks behind Sluice's fuzz targets, one module per target. Each `fuzz_targets/*.rs`
//! binary only hands libFuzzer's input to the `run` function here, so the same checks can be
//! replayed from a unit test or a debugger without libFuzzer.
//!
//! Every check panics (which libFuzzer reports as a crash) when an invariant does not hold;
//! returning normally means the input was fine or uninteresting.

#[cfg(feature = "chain")]
pub mod config;
#[cfg(feature = "inbound")]
pub mod dsn_forward;
#[cfg(feature = "inbound")]
pub mod events;
pub mod input;
pub mod mail_edit;
#[cfg(feature = "milter")]
pub mod milter;
pub mod mime;
