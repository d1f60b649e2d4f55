//! Read-only tables the step is granted (`sluice:rules/lookup`, WIT 0.1.3).
//!
//! A step reads only the tables its config grants (`lookups = ["aliases"]`); anything else
//! answers `Err`. Pass a temporary error on (`?`): the host then retries the message rather
//! than routing it without the data.
//!
//! ```no_run
//! use sluice_sdk::lookup;
//! # fn f() -> Result<(), sluice_sdk::RuleError> {
//! if let Some(json) = lookup::get("aliases", "info@example.com")? {
//!     // {"status":"active","to":["alice@example.com"]}
//! }
//! # Ok(()) }
//! ```
//!
//! Outside wasm32 (native unit tests) the tables are a thread-local test double: fill it with
//! [`set`], make a table fail with [`fail`], and see what was asked with [`take_asked`].

use crate::RuleError;

/// The value under `key` in `table`, or `None` when there is no entry.
pub fn get(table: &str, key: &str) -> Result<Option<String>, RuleError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::sluice::rules::lookup::get(table, key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        double::get(table, key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use double::{clear, fail, set, take_asked};

#[cfg(not(target_arch = "wasm32"))]
mod double {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::RuleError;

    #[derive(Default)]
    struct Tables {
        values: BTreeMap<(String, String), String>,
        /// Tables that answer with this error.
        failing: BTreeMap<String, RuleError>,
        /// Tables that exist (were `set` or `fail`ed): any other is "not granted".
        known: std::collections::BTreeSet<String>,
        asked: Vec<(String, String)>,
    }

    thread_local! {
        static TABLES: RefCell<Tables> = RefCell::new(Tables::default());
    }

    pub(super) fn get(table: &str, key: &str) -> Result<Option<String>, RuleError> {
        TABLES.with(|t| {
            let mut t = t.borrow_mut();
            t.asked.push((table.to_string(), key.to_string()));
            if let Some(e) = t.failing.get(table) {
                return Err(e.clone());
            }
            if !t.known.contains(table) {
                return Err(RuleError {
                    message: format!("table {table:?} is not granted to this step (test double: call lookup::set first)"),
                    temporary: false,
                });
            }
            Ok(t.values.get(&(table.to_string(), key.to_string())).cloned())
        })
    }

    /// Puts `value` under `key` in `table` (and grants the table) for this thread's tests.
    pub fn set(table: &str, key: &str, value: &str) {
        TABLES.with(|t| {
            let mut t = t.borrow_mut();
            t.known.insert(table.to_string());
            t.values
                .insert((table.to_string(), key.to_string()), value.to_string());
        });
    }

    /// Makes every lookup in `table` answer `Err(error)` (e.g. a directory that is down).
    pub fn fail(table: &str, error: RuleError) {
        TABLES.with(|t| {
            let mut t = t.borrow_mut();
            t.known.insert(table.to_string());
            t.failing.insert(table.to_string(), error);
        });
    }

    /// Empties the double (tables, failures and the record of what was asked).
    pub fn clear() {
        TABLES.with(|t| *t.borrow_mut() = Tables::default());
    }

    /// The (table, key) pairs asked since the last call.
    pub fn take_asked() -> Vec<(String, String)> {
        TABLES.with(|t| std::mem::take(&mut t.borrow_mut().asked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_double_answers_what_was_set_and_refuses_other_tables() {
        clear();
        set("aliases", "info@example.com", "{}");
        assert_eq!(
            get("aliases", "info@example.com").unwrap().as_deref(),
            Some("{}")
        );
        assert_eq!(get("aliases", "x@example.com").unwrap(), None);
        assert!(!get("other", "k").unwrap_err().temporary);
        fail("aliases", RuleError::temporary("down"));
        assert!(get("aliases", "info@example.com").unwrap_err().temporary);
        assert_eq!(take_asked().len(), 4);
    }
}
