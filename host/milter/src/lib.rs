//! The milter door: Sluice's rule chains inside a Postfix or Sendmail SMTP transaction.
//!
//! The MTA connects to `sluice milter` and streams each SMTP transaction's envelope,
//! headers and body as milter commands ([`codec`]). A [`session`] collects them; at end of
//! message it builds an [`Arrival`](sluice_inbound::Arrival) with
//! [`RefuseBy::Reply`](sluice_inbound::door::RefuseBy) and asks the pipeline to decide,
//! delivering nothing: the MTA delivers. The decision goes back ([`answer`]) as milter
//! modifications (headers, body, recipients) or as an SMTP reply, so a refused message is
//! refused in the SMTP dialogue and no DSN is ever sent (no backscatter). [`server`] accepts
//! connections on TCP or a Unix socket, with limits. [`verdicts`] gives the message its SPF,
//! DKIM, DMARC, spam and virus verdicts, which no SES hands over on this path.

pub mod answer;
pub mod codec;
pub mod server;
pub mod session;
pub mod verdicts;

pub use codec::{Command, ProtocolError, Response};
pub use server::{serve, DefaultAction, Listen, Listener, MilterOptions};
pub use verdicts::{AuthVerdicts, Authenticator, ScannerHeader, ScannerVerdict};
