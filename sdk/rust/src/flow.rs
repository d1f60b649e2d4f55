//! Which way the message goes (`sluice:rules/flow`, WIT 0.1.5): received mail, or mail a local
//! user sends out through the MTA. One rule can serve both, e.g. a banner that warns readers
//! of received mail and adds a disclaimer to sent mail.
//!
//! ```no_run
//! use sluice_sdk::flow::{self, Direction};
//! if flow::direction() == Direction::Outbound {
//!     // mail a local user sends: `ctx.domain()` is the sending domain
//! }
//! ```
//!
//! A rule that never calls these functions does not import the interface, so it also loads
//! on hosts older than 0.1.5. Outside wasm32 (native unit tests) the answers are a
//! thread-local test double: set them with [`set`] (received mail until then).

pub use crate::bindings::sluice::rules::flow::Direction;

/// The direction of the message being evaluated.
pub fn direction() -> Direction {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::sluice::rules::flow::message_direction()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        double::get().0
    }
}

/// Whether the message is mail a local user sends.
pub fn is_outbound() -> bool {
    direction() == Direction::Outbound
}

/// The login the sender authenticated with (SMTP AUTH), when the MTA said.
pub fn authenticated_sender() -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::sluice::rules::flow::authenticated_sender()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        double::get().1
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use double::set;

#[cfg(not(target_arch = "wasm32"))]
mod double {
    use std::cell::RefCell;

    use super::Direction;

    thread_local! {
        static FLOW: RefCell<(Direction, Option<String>)> = const { RefCell::new((Direction::Inbound, None)) };
    }

    /// What [`super::direction`] and [`super::authenticated_sender`] answer on this thread.
    pub fn set(direction: Direction, authenticated_sender: Option<&str>) {
        FLOW.with(|f| *f.borrow_mut() = (direction, authenticated_sender.map(str::to_string)));
    }

    pub(super) fn get() -> (Direction, Option<String>) {
        FLOW.with(|f| f.borrow().clone())
    }
}
