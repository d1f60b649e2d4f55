//! Logging through the host's `log` import (tagged with the step by the host).
//!
//! ```no_run
//! # use sluice_sdk::prelude::*;
//! # let subject = "hi";
//! log::info!("saw subject={subject}");
//! log::write(Level::Warn, "plain text");
//! ```
//!
//! Outside wasm32 (native unit tests) the messages go to stderr instead, or to the function
//! given to `set_native_sink`.

use crate::Level;

/// Writes one log line at `level`.
pub fn write(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::rules::host::log(level, msg);
    #[cfg(not(target_arch = "wasm32"))]
    match NATIVE_SINK.get() {
        Some(sink) => sink(level, msg),
        None => eprintln!("[{}] {msg}", level_name(level)),
    }
}

#[cfg(not(target_arch = "wasm32"))]
static NATIVE_SINK: std::sync::OnceLock<fn(Level, &str)> = std::sync::OnceLock::new();

/// Outside wasm32 only: sends every log line of this process to `sink` instead of stderr
/// (a native test that collects a rule's lines, a bench that must not time terminal
/// writes, which a Wasm step does not pay: the host buffers its lines). Set once; `false`
/// when a sink was set already.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_native_sink(sink: fn(Level, &str)) -> bool {
    NATIVE_SINK.set(sink).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static LINES: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

    #[test]
    fn a_native_sink_gets_every_line_instead_of_stderr() {
        // The sink is process-wide and set once: other tests' lines land here too.
        assert!(set_native_sink(|level, line| {
            LINES
                .lock()
                .unwrap()
                .push((level_name(level), line.to_owned()));
        }));
        assert!(!set_native_sink(|_, _| {}), "a second sink is refused");
        info!("routed {} to {}", "info@example.com", "bob@example.com");
        write(Level::Warn, "plain text");
        let lines = LINES.lock().unwrap();
        assert!(lines.contains(&("info", "routed info@example.com to bob@example.com".into())));
        assert!(lines.contains(&("warn", "plain text".into())));
    }
}
