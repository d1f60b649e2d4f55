//! Per-step circuit breaker: a step that keeps failing is skipped for a while.
//!
//! A rule that traps on every message costs its full deadline each time and fills the log.
//! After `failures` failures in a row, each within `window_ms` of the first, the breaker
//! opens: for `cooldown_ms` the step is not run and its `on_error` policy applies directly
//! (shown as `skipped` in the trace). Then one message is let through; a success closes the
//! breaker, a failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `breaker = { ... }` on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (default 5; 0 disables it).
    pub failures: u32,
    /// The failures must fall within this many milliseconds of the first (default 60000).
    pub window_ms: u64,
    /// How long an open breaker skips the step, in milliseconds (default 60000).
    pub cooldown_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            window_ms: 60_000,
            cooldown_ms: 60_000,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    first_failure: Option<Instant>,
    open_until: Option<Instant>,
}

/// One step's breaker, shared by every message that runs the step.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> CircuitBreaker {
        CircuitBreaker {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(time left)` when the step must be skipped at `now`.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        self.open_at(|| now)
    }

    /// `Some(time left)` when the step must be skipped now. Reads the clock only when the
    /// breaker has opened: a closed breaker is every healthy message's case.
    pub fn open_now(&self) -> Option<Duration> {
        self.open_at(Instant::now)
    }

    fn open_at(&self, now: impl FnOnce() -> Instant) -> Option<Duration> {
        let mut state = self.state();
        let until = state.open_until?;
        let now = now();
        if until > now {
            return Some(until - now);
        }
        // Cool-down over: let one message through; one more failure reopens.
        state.open_until = None;
        None
    }

    /// Records a success: the breaker closes.
    pub fn success(&self) {
        let mut state = self.state();
        state.consecutive = 0;
        state.first_failure = None;
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn failure(&self, now: Instant) -> bool {
        if self.settings.failures == 0 {
            return false;
        }
        let mut state = self.state();
        let window = Duration::from_millis(self.settings.window_ms);
        let half_open = state.consecutive >= self.settings.failures;
        match state.first_failure {
            Some(first) if half_open || now.duration_since(first) <= window => {
                state.consecutive += 1
            }
            _ => {
                state.consecutive = 1;
                state.first_failure = Some(now);
            }
        }
        if state.consecutive >= self.settings.failures {
            state.open_until = Some(now + Duration::from_millis(self.settings.cooldown_ms));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            failures,
            window_ms: 1_000,
            cooldown_ms: 5_000,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_cooldown() {
        let b = breaker(3);
        let t = Instant::now();
        assert!(!b.failure(t));
        assert!(!b.failure(t + Duration::from_millis(10)));
        assert!(b.open_for(t).is_none());
        assert!(b.failure(t + Duration::from_millis(20)));
        assert!(b.open_for(t + Duration::from_secs(1)).is_some());
        // After the cool-down one message runs; its failure reopens at once.
        assert!(b.open_for(t + Duration::from_secs(6)).is_none());
        assert!(b.failure(t + Duration::from_secs(6)));
        assert!(b.open_for(t + Duration::from_secs(7)).is_some());
    }

    #[test]
    fn a_success_or_a_slow_failure_resets() {
        let b = breaker(2);
        let t = Instant::now();
        b.failure(t);
        b.success();
        assert!(!b.failure(t + Duration::from_millis(1)));
        // Outside the window: counting starts again.
        assert!(!b.failure(t + Duration::from_secs(5)));
        assert!(b.open_for(t + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn zero_disables() {
        let b = breaker(0);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(!b.failure(t));
        }
        assert!(b.open_for(t).is_none());
    }
}
