//! Sluice integration tests: real rule components built from source, real messages.
//! One binary, one file per concern.

mod actions;
mod arc;
mod auto_reply;
mod cache;
mod catalogue;
mod corpus;
mod deploy;
mod docs;
mod hostile;
mod http;
mod languages;
mod lookups;
mod mail_rules;
mod reference_rules;
mod reload;
mod routing;
mod sandbox;
mod stack;
mod wit_tracks;
