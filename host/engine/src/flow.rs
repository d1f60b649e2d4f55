//! Which way a message goes (`sluice:rules/flow`, WIT 0.1.5): received mail, or mail a local
//! user submitted that leaves through the MTA. The same for every step of a message, so it
//! is set once per [`crate::MessageSession`], not per step.

use crate::bindings::sluice::rules::flow;
use crate::state::StoreState;

pub use crate::bindings::sluice::rules::flow::Direction;

/// What the `flow` interface answers for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Inbound (a `[[domain]]` chain) or outbound (an `[[outbound]]` chain).
    pub direction: Direction,
    /// The SMTP AUTH login, when the MTA said (the milter's `{auth_authen}` macro).
    pub authenticated_sender: Option<String>,
}

impl Default for Flow {
    /// Received mail: what every door but an outbound milter transaction hands in.
    fn default() -> Flow {
        Flow::inbound()
    }
}

impl Flow {
    /// Received mail.
    pub fn inbound() -> Flow {
        Flow {
            direction: Direction::Inbound,
            authenticated_sender: None,
        }
    }

    /// Mail a local user sends, with the login they authenticated with, if any.
    pub fn outbound(authenticated_sender: Option<String>) -> Flow {
        Flow {
            direction: Direction::Outbound,
            authenticated_sender,
        }
    }

    /// Whether this is mail a local user sends.
    pub fn is_outbound(&self) -> bool {
        self.direction == Direction::Outbound
    }
}

impl Direction {
    /// `inbound` or `outbound`, as the config, the trace and the WIT spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl flow::Host for StoreState {
    fn message_direction(&mut self) -> wasmtime::Result<Direction> {
        Ok(self.flow.direction)
    }

    fn authenticated_sender(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.flow.authenticated_sender.clone())
    }
}
