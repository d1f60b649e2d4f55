//! Per-recipient decisions and forwarded copies (`sluice:rules/recipients`, WIT 0.1.2).
//!
//! The `bounce` and `drop` actions refuse the whole recipient group; these calls refuse or
//! discard one address, or ask the host to relay a re-originated copy. Like actions, they take
//! effect only when `evaluate` returns `Ok` and the step is enforced.
//!
//! ```no_run
//! use sluice_sdk::recipients::{self, Forward};
//! recipients::refuse("old@example.com", 550, "5.1.1", "mailbox unavailable");
//! recipients::discard("noreply@example.com");
//! recipients::forward(&Forward::copy_to(["me@gmail.example"]).subject_prefix("[fwd] "));
//! ```
//!
//! Outside wasm32 (native unit tests) the requests are kept in a thread-local list that
//! [`take_recorded`] returns, so a rule's logic can be tested without the host.

use crate::Bounce;

/// One request, as recorded for native tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// [`refuse`].
    Refuse(String, Bounce),
    /// [`discard`].
    Discard(String),
    /// [`forward`].
    Forward(Forward),
}

/// A forwarded copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// External addresses; always relayed, never delivered locally.
    pub to: Vec<String>,
    /// Verified `From:` for the copy (None: the host's `[relay] from`).
    pub from: Option<String>,
    /// Subject prefix for the copy only.
    pub subject_prefix: Option<String>,
    /// The group's recipients lose the message (redirect) instead of keeping it (copy).
    pub redirect: bool,
}

impl Forward {
    /// A copy to `to`; the group's recipients keep the message.
    pub fn copy_to<I, S>(to: I) -> Forward
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Forward {
            to: to.into_iter().map(Into::into).collect(),
            ..Forward::default()
        }
    }

    /// The message goes to `to` instead of the group's recipients.
    pub fn redirect_to<I, S>(to: I) -> Forward
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Forward {
            redirect: true,
            ..Forward::copy_to(to)
        }
    }

    /// Sets the verified sender address.
    pub fn from(mut self, from: impl Into<String>) -> Forward {
        self.from = Some(from.into());
        self
    }

    /// Sets the copy's subject prefix.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Forward {
        self.subject_prefix = Some(prefix.into());
        self
    }
}

/// Refuses `recipient` with a bounce (`code` 4xx/5xx and a matching enhanced `status`).
pub fn refuse(recipient: &str, code: u16, status: &str, text: &str) {
    let bounce = Bounce {
        code,
        status: status.into(),
        text: text.into(),
    };
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::rules::recipients::refuse(recipient, &bounce);
    #[cfg(not(target_arch = "wasm32"))]
    record(Request::Refuse(recipient.into(), bounce));
}

/// Discards the message for `recipient`, silently.
pub fn discard(recipient: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::rules::recipients::discard(recipient);
    #[cfg(not(target_arch = "wasm32"))]
    record(Request::Discard(recipient.into()));
}

/// Asks the host to relay a copy (or to redirect the message).
pub fn forward(request: &Forward) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::rules::recipients::forward(
        &crate::bindings::sluice::rules::recipients::ForwardRequest {
            to: request.to.clone(),
            from: request.from.clone(),
            subject_prefix: request.subject_prefix.clone(),
            redirect: request.redirect,
        },
    );
    #[cfg(not(target_arch = "wasm32"))]
    record(Request::Forward(request.clone()));
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static RECORDED: std::cell::RefCell<Vec<Request>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
fn record(request: Request) {
    RECORDED.with(|r| r.borrow_mut().push(request));
}

/// The requests made on this thread since the last call (native builds only, for tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn take_recorded() -> Vec<Request> {
    RECORDED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}
