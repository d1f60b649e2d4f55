//! Logging through the host's `log` import (tagged with the step by the host).
//!
//! ```no_run
//! # use sluice_sdk::prelude::*;
//! # let subject = "hi";
//! log::info!("saw subject={subject}");
//! log::write(Level::Warn, "plain text");
//! ```
//!
//! Outside wasm32 (native unit tests) the messages go to stderr instead.

use crate::Level;

/// Writes one log line at `level`.
pub fn write(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::rules::host::log(level, msg);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{}] {msg}", level_name(level));
}

/// The WIT name of a level (`trace` ... `error`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write($crate::Level::$level, &::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_trace {
    ($($arg:tt)+) => { $crate::__sluice_log!(Trace, $($arg)+) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_debug {
    ($($arg:tt)+) => { $crate::__sluice_log!(Debug, $($arg)+) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_info {
    ($($arg:tt)+) => { $crate::__sluice_log!(Info, $($arg)+) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_warn {
    ($($arg:tt)+) => { $crate::__sluice_log!(Warn, $($arg)+) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_error {
    ($($arg:tt)+) => { $crate::__sluice_log!(Error, $($arg)+) };
}

/// `log::debug!("fmt", args..)`: `format!` then [`write`] at level debug.
pub use crate::__sluice_debug as debug;
/// `log::error!("fmt", args..)`: `format!` then [`write`] at level error.
pub use crate::__sluice_error as error;
/// `log::info!("fmt", args..)`: `format!` then [`write`] at level info.
pub use crate::__sluice_info as info;
/// `log::trace!("fmt", args..)`: `format!` then [`write`] at level trace.
pub use crate::__sluice_trace as trace;
/// `log::warn!("fmt", args..)`: `format!` then [`write`] at level warn.
pub use crate::__sluice_warn as warn;
