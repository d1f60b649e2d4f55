//! The step's context: what the host knows about the message and the step.
//!
//! Since WIT 0.2 the host hands a rule a `context` *resource* rather than a record, so a rule
//! copies into its memory only the fields it reads (the step's config, which can be hundreds
//! of kilobytes, not at all once the instance has parsed it). [`Context`] wraps that handle:
//! each getter asks the host on first use and keeps the answer for the rest of the call, so
//! calling `ctx.recipients()` twice costs one host call.
//!
//! Native unit tests build one from plain values: `Context::from(ContextData { .. })`.

use std::cell::OnceCell;

use crate::bindings::sluice::rules::types as wit;
use crate::Verdicts;

/// The step's context for one `evaluate` call. Read fields through the getters
/// (`ctx.domain()`, `ctx.recipients()`, `ctx.verdicts().spf`, ...).
pub struct Context<'a> {
    handle: Option<&'a wit::Context>,
    domain: OnceCell<String>,
    recipients: OnceCell<Vec<String>>,
    mail_from: OnceCell<String>,
    verdicts: OnceCell<Verdicts>,
    received_at: OnceCell<u64>,
    message_id: OnceCell<String>,
    config: OnceCell<String>,
}

/// A context's fields as plain values, to build a [`Context`] in native tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextData {
    /// The configured domain whose chain is running (`*` for the catch-all chain).
    pub domain: String,
    /// The group's current recipients, bare `local@domain`.
    pub recipients: Vec<String>,
    /// The envelope sender; empty for a null sender.
    pub mail_from: String,
    /// SES verdicts.
    pub verdicts: Verdicts,
    /// Receipt time, milliseconds since the Unix epoch.
    pub received_at: u64,
    /// The message id.
    pub message_id: String,
    /// The step's config as JSON.
    pub config: String,
}

impl From<ContextData> for Context<'static> {
    fn from(data: ContextData) -> Context<'static> {
        Context {
            handle: None,
            domain: OnceCell::from(data.domain),
            recipients: OnceCell::from(data.recipients),
            mail_from: OnceCell::from(data.mail_from),
            verdicts: OnceCell::from(data.verdicts),
            received_at: OnceCell::from(data.received_at),
            message_id: OnceCell::from(data.message_id),
            config: OnceCell::from(data.config),
        }
    }
}

impl<'a> Context<'a> {
    /// Wraps the host's handle; nothing is read yet.
    #[doc(hidden)]
    pub fn from_host(handle: &'a wit::Context) -> Context<'a> {
        Context {
            handle: Some(handle),
            domain: OnceCell::new(),
            recipients: OnceCell::new(),
            mail_from: OnceCell::new(),
            verdicts: OnceCell::new(),
            received_at: OnceCell::new(),
            message_id: OnceCell::new(),
            config: OnceCell::new(),
        }
    }

    /// The kept answer, else the host's (`ask`), kept. A context built from [`ContextData`]
    /// has every field, so `ask` is only reached with a handle.
    fn read<'s, T>(&'s self, cell: &'s OnceCell<T>, ask: impl FnOnce(&wit::Context) -> T) -> &'s T
    where
        T: Default,
    {
        cell.get_or_init(|| self.handle.map(ask).unwrap_or_default())
    }

    /// The configured domain whose chain is running (`*` for the catch-all chain).
    pub fn domain(&self) -> &str {
        self.read(&self.domain, |h| h.domain()).as_str()
    }

    /// The group's current recipients (after earlier steps' `set-recipients` /
    /// `add-recipients`), as bare addresses `local@domain`.
    pub fn recipients(&self) -> &[String] {
        self.read(&self.recipients, |h| h.recipients()).as_slice()
    }

    /// The envelope sender (MAIL FROM); empty for a null sender (bounces).
    pub fn mail_from(&self) -> &str {
        self.read(&self.mail_from, |h| h.mail_from()).as_str()
    }

    /// The SES verdicts.
    pub fn verdicts(&self) -> &Verdicts {
        self.verdicts.get_or_init(|| match self.handle {
            Some(h) => h.verdicts(),
            None => Verdicts::unknown(),
        })
    }

    /// Receipt time, milliseconds since the Unix epoch.
    pub fn received_at(&self) -> u64 {
        *self.read(&self.received_at, |h| h.received_at())
    }

    /// The SES message id (or the host's id for a message read from a file).
    pub fn message_id(&self) -> &str {
        self.read(&self.message_id, |h| h.message_id()).as_str()
    }

    /// The step's config as JSON text. [`crate::Rule::evaluate`] already gets it parsed;
    /// this is for rules that want the text itself.
    pub fn config_json(&self) -> &str {
        self.read(&self.config, |h| h.config()).as_str()
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("domain", &self.domain.get())
            .field("recipients", &self.recipients.get())
            .field("mail_from", &self.mail_from.get())
            .field("verdicts", &self.verdicts.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_from_values_answers_them() {
        let ctx = Context::from(ContextData {
            domain: "example.com".into(),
            recipients: vec!["a@example.com".into()],
            mail_from: "s@x.test".into(),
            verdicts: Verdicts::unknown(),
            received_at: 7,
            message_id: "m1".into(),
            config: "{}".into(),
        });
        assert_eq!(ctx.domain(), "example.com");
        assert_eq!(ctx.recipients(), ["a@example.com"]);
        assert_eq!(ctx.mail_from(), "s@x.test");
        assert_eq!(ctx.received_at(), 7);
        assert_eq!(ctx.message_id(), "m1");
        assert_eq!(ctx.config_json(), "{}");
        assert!(ctx.verdicts().spf == crate::Verdict::Unknown);
    }
}
