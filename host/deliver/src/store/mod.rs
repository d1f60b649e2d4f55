//! `[store]` kinds: where local mailboxes live. One module per kind, each with its section,
//! checks, constructor and implementation of [`crate::MailboxStore`].

pub mod dir;
pub mod lmtp;
pub mod s3;
pub mod smtp;
