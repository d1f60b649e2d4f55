//! Read-only tables a step may consult (`sluice:rules/lookup`, WIT 0.1.3).
//!
//! Nothing is granted by default: a step names the tables it may read (`lookups = [...]` in
//! its config), and a call to any other table fails inside the rule. The tables themselves
//! (a DynamoDB alias directory, a file) are served outside the engine, behind
//! [`LookupTables`], so the sandbox stays free of AWS.

use std::sync::Arc;
use std::time::Instant;

/// Why a table gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LookupError {
    /// What went wrong, for the rule and the trace.
    pub message: String,
    /// The table may answer later (a timeout, throttling, a network error): the rule passes
    /// it on as a temporary error and the message is retried, never routed on a guess.
    pub temporary: bool,
}

impl LookupError {
    /// A failure that a retry may cure.
    pub fn temporary(message: impl Into<String>) -> LookupError {
        LookupError {
            message: message.into(),
            temporary: true,
        }
    }

    /// A failure that a retry will not cure (a malformed record, an unknown table).
    pub fn permanent(message: impl Into<String>) -> LookupError {
        LookupError {
            message: message.into(),
            temporary: false,
        }
    }
}

/// The tables this process serves (the config's `[directory.NAME]` sections).
pub trait LookupTables: Send + Sync {
    /// The value under `key` in `table`, or `None` when there is no entry. Must answer by
    /// `deadline` (the calling step's): a lookup counts against the step's time.
    fn get(&self, table: &str, key: &str, deadline: Instant)
        -> Result<Option<String>, LookupError>;
}

/// What a step may use besides the message: its capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepGrants {
    /// Tables the step may read through `lookup.get`.
    pub lookups: Arc<[String]>,
    /// What the step may call through `http.send` (nothing when `None`).
    pub http: Option<Arc<crate::http::HttpGrant>>,
    /// Whether, and how often, the step may answer senders through `reply.send`.
    pub reply: Option<crate::reply::ReplyGrant>,
}

impl StepGrants {
    /// Grants for these tables.
    pub fn lookups<I, S>(tables: I) -> StepGrants
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StepGrants {
            lookups: tables.into_iter().map(Into::into).collect(),
            http: None,
            reply: None,
        }
    }

    /// These grants, plus HTTP as `grant` says.
    pub fn with_http(mut self, grant: crate::http::HttpGrant) -> StepGrants {
        self.http = Some(Arc::new(grant));
        self
    }

    /// These grants, plus `reply` as `grant` says.
    pub fn with_reply(mut self, grant: crate::reply::ReplyGrant) -> StepGrants {
        self.reply = Some(grant);
        self
    }

    /// Whether the step may read `table`.
    pub fn may_read(&self, table: &str) -> bool {
        self.lookups.iter().any(|t| t == table)
    }
}

/// How one lookup ended, for the trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum LookupResult {
    /// The table has an entry.
    Found,
    /// The table has no entry.
    Missing,
    /// The step was not granted the table.
    Denied,
    /// The table failed.
    Failed {
        /// Why.
        error: String,
        /// Whether a retry may cure it.
        temporary: bool,
    },
}

/// One `lookup.get` call of a step, in the step's report (and the trace).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LookupCall {
    /// The table asked.
    pub table: String,
    /// The key asked.
    pub key: String,
    /// How it ended.
    #[serde(flatten)]
    pub result: LookupResult,
    /// Time the host spent answering, in microseconds.
    pub micros: u64,
}
