//! Warm instances (`instances = "warm"`): a rule instance that serves many messages.
//!
//! A fresh instance per message is the default and the strongest isolation: nothing a rule saw
//! survives into the next message. A JavaScript or Python rule pays for it with a new
//! interpreter per message (about a millisecond). A warm instance keeps its store and its
//! instance between messages, so the interpreter (and anything the rule cached, such as its
//! parsed config) is reused. What it may carry over is whatever the rule keeps in its own
//! memory: globals, caches, counters. The host state that belongs to a message (the message
//! handle, logs, recipient requests, the deadline and memory cap) is reset for every message.
//!
//! An instance is thrown away after any failure of its step (trap, deadline, memory cap,
//! an invalid answer), after `max_messages` messages, when older than `max_age`, or when
//! its captured stdout/stderr is half full. Pools belong to one step of one domain's chain of
//! one loaded config, so an instance never sees two domains' or two configs' mail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::bindings::RuleInstance;
use crate::state::{StoreState, STDIO_CAPACITY};

/// How long a warm instance lives and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmSettings {
    /// Messages one instance serves before it is replaced (default 1000).
    pub max_messages: u32,
    /// Age after which an instance is replaced (default 5 minutes).
    pub max_age: Duration,
    /// Idle instances kept per step (default 16, about the messages a daemon or Lambda runs
    /// at once); more in flight at a time are made and dropped after use.
    pub max_idle: usize,
}

impl Default for WarmSettings {
    fn default() -> Self {
        WarmSettings {
            max_messages: 1000,
            max_age: Duration::from_secs(300),
            max_idle: 16,
        }
    }
}

/// One warm instance: its own store and the instantiated rule.
pub(crate) struct WarmInstance {
    pub(crate) store: Store<StoreState>,
    pub(crate) rule: RuleInstance,
    served: u32,
    born: Instant,
}

impl WarmInstance {
    pub(crate) fn new(store: Store<StoreState>, rule: RuleInstance) -> WarmInstance {
        WarmInstance {
            store,
            rule,
            served: 0,
            born: Instant::now(),
        }
    }

    /// Whether it may serve another message under `settings`, at `now`.
    fn fit(&self, settings: &WarmSettings, now: Instant) -> bool {
        let stdio_full = self
            .store
            .data()
            .wasi
            .as_ref()
            .is_some_and(|w| w.stdout_seen.max(w.stderr_seen) > STDIO_CAPACITY / 2);
        self.served < settings.max_messages
            && now.saturating_duration_since(self.born) < settings.max_age
            && !stdio_full
    }
}

/// The idle warm instances of one step. The lock is held only to take or return one, never
/// while a message runs.
pub struct WarmPool {
    settings: WarmSettings,
    idle: Mutex<Vec<WarmInstance>>,
    created: AtomicU64,
    reused: AtomicU64,
    discarded: AtomicU64,
}

/// What a pool did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WarmStats {
    /// Instances made.
    pub created: u64,
    /// Messages served by an instance that had served one before.
    pub reused: u64,
    /// Instances thrown away after a failure.
    pub discarded: u64,
    /// Instances idle now.
    pub idle: usize,
}

impl WarmPool {
    /// An empty pool.
    pub fn new(settings: WarmSettings) -> WarmPool {
        WarmPool {
            settings,
            idle: Mutex::new(Vec::new()),
            created: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &WarmSettings {
        &self.settings
    }

    /// An idle instance fit to serve at `now`, if there is one (unfit ones are dropped).
    pub(crate) fn take(&self, now: Instant) -> Option<WarmInstance> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(instance) = idle.pop() {
            if instance.fit(&self.settings, now) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Some(instance);
            }
        }
        None
    }

    /// Counts an instance made for this pool.
    pub(crate) fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns an instance after a message it served without failing; `now` is the
    /// message's start (an instance that ages out during it goes at the next `take`).
    pub(crate) fn give_back(&self, mut instance: WarmInstance, now: Instant) {
        instance.served += 1;
        if !instance.fit(&self.settings, now) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.max_idle {
            idle.push(instance);
        }
    }

    /// Counts an instance thrown away after a failure.
    pub(crate) fn discarded(&self) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// What the pool did so far.
    pub fn stats(&self) -> WarmStats {
        WarmStats {
            created: self.created.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            idle: self.idle.lock().map(|i| i.len()).unwrap_or(0),
        }
    }
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("settings", &self.settings)
            .field("stats", &self.stats())
            .finish()
    }
}
