//! Sluice's mail path: a message at a door (an SES notification by Lambda invoke, SNS or SQS;
//! one message from an MTA's pipe), the message fetched, the rule chain run, and its
//! deliveries made: mailboxes, relayed copies, DSN bounces. Every door builds an [`Arrival`]
//! and calls the same [`Pipeline::handle`]; [`Answer::of`] turns the outcome into its answer.

pub mod deliver;
pub mod dispatch;
pub mod door;
pub mod event;
pub mod pipeline;

pub use dispatch::*;
pub use door::{Answer, Reply};
pub use event::*;
pub use pipeline::*;
pub use sluice_chain::ReloadOutcome;
