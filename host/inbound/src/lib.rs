//! Sluice's mail path: an SES notification in (Lambda invoke, SNS, SQS), the message fetched,
//! the rule chain run, and its deliveries made: S3 mailboxes, SES relay, DSN bounces.
//! Every event source calls the same [`Pipeline::handle`].

pub mod deliver;
pub mod dispatch;
pub mod event;
pub mod pipeline;

pub use dispatch::*;
pub use event::*;
pub use pipeline::*;
pub use sluice_chain::ReloadOutcome;
