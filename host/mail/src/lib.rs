//! Sluice's message model: parse an inbound message once, serve the rule interface's lazy
//! `message` accessors from that one parse, and apply the edits rules ask for to the original
//! bytes.
//!
//! Everything a rule did not ask to change stays byte-identical: header edits re-emit the top
//! header block from pieces of the original (untouched fields are copied verbatim), and a
//! banner replaces only the displayed text parts, located by mail-parser's offsets. Nothing is
//! re-serialized from the parse. Every spliced output is parsed once more and refused unless it
//! keeps the input's MIME part tree and untouched bytes, so an edit can lose a banner but never
//! an attachment.
//!
//! Before any of that the message is read a second time, by [`strict`] (RFC 2046 by the
//! letter, no mail-parser): a recipient's client must see the parts Sluice edited. A bare CR
//! in a header block is read as a line break before the parse (the reading every parser can
//! share); anything else two readers can read differently is declined
//! ([`EditError::Ambiguous`]) and the original delivered.
//!
//! ```
//! use sluice_mail::{apply_edits, BannerFallback, Edit, Message};
//!
//! let msg = Message::parse(b"From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\n".to_vec()).unwrap();
//! assert_eq!(msg.subject().as_deref(), Some("hi"));
//! let out = apply_edits(&msg, &[Edit::PrefixSubject("[EXT]".into())], BannerFallback::Wrap).unwrap();
//! assert_eq!(out, b"From: a@example.com\r\nSubject: [EXT] hi\r\n\r\nHello\r\n");
//! ```

mod apply;
mod banner;
mod edit;
mod encoding;
mod forward;
mod header;
mod message;
mod parts;
mod reading;
mod reply;
pub mod strict;
mod structure;

pub use apply::{apply_edits, edit_message, Edited};
pub use edit::{
    validate_address, validate_edit, validate_folder, Banner, BannerFallback, Edit, EditError,
    PartReplacement, Position, MAX_ADDRESS, MAX_BANNER, MAX_FOLDER, MAX_HEADER_NAME,
    MAX_HEADER_VALUE, MAX_NOTE,
};
pub use forward::{hop_count, rewrite_for_relay, RelayRewrite, LOOP_HEADER};
pub use message::{AttachmentInfo, Message, ParseError};
pub use parts::{
    list_zip, sniff, ArchiveInfo, PartInfo, MAX_ZIP_DEPTH, MAX_ZIP_ENTRIES, MAX_ZIP_INFLATE,
    MAX_ZIP_NAME_BYTES,
};
pub use reply::{build_auto_reply, no_auto_reply, AutoReply, NoAutoReply, ReplyError};

#[cfg(test)]
mod tests;
