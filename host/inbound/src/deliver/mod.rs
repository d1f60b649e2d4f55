//! Deliveries: S3 mailboxes, SES relay (with the forward rewrite and the loop guard), DSN
//! bounces, and the markers that make each of them happen once per message and recipient.
//!
//! CONTRACT (owned by the deliveries helper).
