//! The `sluice` command's integration tests: one binary (one link instead of twelve), a file
//! per concern. They run the built `sluice` against real servers (moto, Dovecot, aiosmtpd)
//! on loopback.
//!
//! Files take turns: the tests of one file run together (in parallel, as when each file was
//! a binary of its own), and a test of another file waits until they are done
//! ([`turn`]), so the daemon, crash and fault tests never share a small CI machine's cores
//! with another file's servers and their timing stays what it was tuned for (their fault and
//! kill counts are exact).

mod common;
mod scaffold;

mod alias;
mod alias_api;
mod archive;
mod cli;
mod crash;
mod daemon;
mod deliver;
mod faults;
mod fixtures;
mod list;
mod lmtp;
mod mailbox;
mod milter;
mod milter_verdicts;
mod package;
mod plugin_new;
mod plugin_new_js;
mod plugin_new_python;
mod precompile;
mod quarantine;
mod remote;

use std::sync::{Condvar, Mutex};

/// Which file's tests are running, and how many.
struct Running {
    file: Option<&'static str>,
    tests: usize,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    file: None,
    tests: 0,
});
static CHANGED: Condvar = Condvar::new();

/// A test's turn: held for the test's whole run (dropped on panic too).
pub struct Turn;

/// Waits until no other file's tests run, then counts this one in (`file`:
/// `module_path!()`).
pub fn turn(file: &'static str) -> Turn {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    while running.file.is_some_and(|f| f != file) {
        running = CHANGED.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    running.file = Some(file);
    running.tests += 1;
    Turn
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.tests -= 1;
        if running.tests == 0 {
            running.file = None;
        }
        CHANGED.notify_all();
    }
}
