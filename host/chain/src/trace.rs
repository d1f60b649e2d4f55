//! What happened to a message: per group, per step, per recipient. Serialized by
//! `sluice run --json`.

use std::sync::Arc;

use serde::Serialize;
use sluice_engine::{Action, LogLine, RecipientRequest, RulePlugin, StepOutcome, StepReport};
use sluice_mail::Edit;

use crate::config::{OnError, StepMode};

/// The message a group's deliveries carry.
#[derive(Debug, Clone)]
pub enum OutputMessage {
    /// No edits: the original bytes.
    Original,
    /// The original with the chain's edits applied, parsed once (by the edit check), so
    /// what comes after the chain reads it without parsing it again.
    Edited(Arc<sluice_mail::Message>),
}

/// The result of running a message through its chains.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessResult {
    /// The message id used for output names.
    pub message_id: String,
    /// Size of the original message in bytes.
    pub size: u64,
    /// One entry per recipient group.
    pub groups: Vec<GroupResult>,
}

impl ProcessResult {
    /// Whether any group must be retried later.
    pub fn tempfailed(&self) -> bool {
        self.groups
            .iter()
            .any(|g| matches!(g.outcome, GroupOutcome::Tempfail { .. }))
    }
}

/// How a group's chain ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GroupOutcome {
    /// The chain ran; see the dispositions.
    Done,
    /// A step failed under `on_error = "tempfail"`: nothing is delivered, retry later.
    Tempfail {
        /// Which step and why.
        reason: String,
    },
}

/// One recipient group's run.
#[derive(Debug, Clone, Serialize)]
pub struct GroupResult {
    /// The configured domain whose chain ran (`*` for the catch-all).
    pub domain: String,
    /// The group's envelope recipients.
    pub recipients: Vec<String>,
    /// Each step that ran, in order.
    pub steps: Vec<StepTrace>,
    /// The message edits collected from the steps, applied once after the chain.
    pub edits: Vec<Edit>,
    /// Set when the edits could not be applied (the original is delivered instead), e.g.
    /// "edits declined: the message can be read two ways (...)".
    pub edit_error: Option<String>,
    /// Set when the edited copy differs from the original in more than the edits: the input's
    /// bare CRs (CR without LF) in header blocks are line breaks in it, the one reading every
    /// parser shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_note: Option<String>,
    /// How the chain ended.
    pub outcome: GroupOutcome,
    /// What happens to each final recipient.
    pub dispositions: Vec<Disposition>,
    /// The message the deliveries carry.
    #[serde(skip)]
    pub output: Option<OutputMessage>,
    /// Recipients the chain added in another configured domain: they are handed to that
    /// domain's chain (a later group), not delivered by this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_off: Vec<String>,
    /// For a group of handed-off recipients: the domain whose chain added them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_from: Option<String>,
    /// The automatic replies the rules asked for (`reply.send`), each with why the host will
    /// not send it, if it will not. The dispatcher sends the others after the delivery.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<PlannedReply>,
}

/// An automatic reply a rule asked for, as the chain leaves it for the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedReply {
    /// The step that asked.
    pub step: Arc<str>,
    /// The recipient it answers for (the reply's `From:`).
    pub from: String,
    /// The envelope sender it goes to (empty for a null sender).
    pub to: String,
    /// What the rule asked (text, subject, interval; the interval already at least the
    /// grant's).
    #[serde(flatten)]
    pub request: sluice_engine::ReplyRequest,
    /// Why the host will not send it; `None`: it goes out after the delivery unless the
    /// sender was answered within the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<ReplySuppressed>,
}

/// Why a reply is not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplySuppressed {
    /// A short name: one of [`sluice_mail::NoAutoReply::as_str`], or `not-delivered`.
    pub kind: &'static str,
    /// In words.
    pub reason: String,
}

impl GroupResult {
    /// Recipients handed between domains' chains more than `MAX_HANDOFFS` (see `chain.rs`)
    /// times: bounced as a routing loop, no chain runs for them.
    pub(crate) fn routing_loop(
        domain: &str,
        recipients: Vec<String>,
        from: Option<String>,
    ) -> Self {
        GroupResult {
            domain: domain.to_string(),
            dispositions: recipients
                .iter()
                .map(|r| Disposition::Bounce {
                    recipient: r.clone(),
                    code: 554,
                    status: "5.4.6".into(),
                    text: "routing loop: recipients were handed between domains' rule chains too often".into(),
                })
                .collect(),
            recipients,
            steps: Vec::new(),
            edits: Vec::new(),
            edit_error: None,
            edit_note: None,
            outcome: GroupOutcome::Done,
            output: None,
            handed_off: Vec::new(),
            handed_from: from,
            replies: Vec::new(),
        }
    }
}

/// One step's line in the trace.
#[derive(Debug, Clone, Serialize)]
pub struct StepTrace {
    /// The step's name.
    pub step: Arc<str>,
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// The plugin's sha256.
    pub sha256: Arc<str>,
    /// `enforce` or `audit` (audit: actions recorded, not applied).
    pub mode: StepMode,
    /// How the step ended.
    pub outcome: StepStatus,
    /// Wall time of the step in microseconds.
    pub micros: u64,
    /// The actions it returned.
    pub actions: Vec<Action>,
    /// Its per-recipient requests (`recipients` interface).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RecipientRequest>,
    /// The parts it replaced by notes (`replace-part`, WIT 0.2.1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<sluice_mail::PartReplacement>,
    /// The rule error or failure, in words.
    pub error: Option<String>,
    /// The `on_error` policy that was applied, if the step failed.
    pub policy: Option<OnError>,
    /// What the rule logged, within the step's log budget.
    pub logs: Vec<LogLine>,
    /// Log lines past the budget: counted, neither kept nor printed.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_logs: usize,
    /// The tables it read (`lookup.get`): table, key, result, time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lookups: Vec<sluice_engine::LookupCall>,
    /// The HTTP calls it made (`http.send`): method, URL without query, status or error, time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<sluice_engine::HttpCall>,
}

/// How one step ended (the trace's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// It answered with valid actions (possibly none).
    Ok,
    /// It returned its own error.
    RuleError,
    /// The sandbox stopped it (deadline, memory, trap) or refused its answer.
    Failed,
    /// Not run: its circuit breaker is open.
    Skipped,
}

impl StepStatus {
    /// `ok`, `rule-error`, `failed` or `skipped`: the trace's and the fixtures' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::RuleError => "rule-error",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl StepTrace {
    /// A step the circuit breaker did not run.
    pub(crate) fn skipped(
        step: &Arc<str>,
        plugin: &RulePlugin,
        mode: StepMode,
        reason: String,
    ) -> StepTrace {
        StepTrace {
            step: Arc::clone(step),
            plugin: plugin.shared_name(),
            sha256: plugin.shared_sha256(),
            mode,
            outcome: StepStatus::Skipped,
            micros: 0,
            actions: Vec::new(),
            requests: Vec::new(),
            replacements: Vec::new(),
            error: Some(reason),
            policy: None,
            logs: Vec::new(),
            dropped_logs: 0,
            lookups: Vec::new(),
            http: Vec::new(),
        }
    }

    /// A step that ran, from its report.
    pub(crate) fn new(
        step: &Arc<str>,
        plugin: &RulePlugin,
        mode: StepMode,
        report: StepReport,
    ) -> StepTrace {
        let mut replacements = Vec::new();
        let (outcome, actions, requests, error) = match report.outcome {
            StepOutcome::Actions {
                actions,
                requests,
                replacements: parts,
            } => {
                replacements = parts;
                (StepStatus::Ok, actions, requests, None)
            }
            StepOutcome::RuleError { error } => (
                StepStatus::RuleError,
                Vec::new(),
                Vec::new(),
                Some(format!(
                    "{}{}",
                    error.message,
                    if error.temporary { " (temporary)" } else { "" }
                )),
            ),
            StepOutcome::Failed { failure } => (
                StepStatus::Failed,
                Vec::new(),
                Vec::new(),
                Some(failure.to_string()),
            ),
        };
        StepTrace {
            step: Arc::clone(step),
            plugin: plugin.shared_name(),
            sha256: plugin.shared_sha256(),
            mode,
            outcome,
            micros: report.micros,
            actions,
            requests,
            replacements,
            error,
            policy: None,
            logs: report.logs,
            dropped_logs: report.dropped_logs,
            lookups: report.lookups,
            http: report.http,
        }
    }
}

/// What happens to one final recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Disposition {
    /// Store in the recipient's mailbox, in this folder.
    Deliver {
        /// The recipient.
        recipient: String,
        /// The folder (`INBOX` unless a rule filed it).
        folder: String,
    },
    /// Send on to a non-local recipient (through `[relay]`, re-originated from a verified
    /// sender).
    Relay {
        /// The recipient.
        recipient: String,
        /// The verified `From:` a forward asked for (else `[relay] from`).
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// A Subject prefix for this copy only.
        #[serde(skip_serializing_if = "Option::is_none")]
        subject_prefix: Option<String>,
    },
    /// Refuse with a delivery status notification to the envelope sender.
    Bounce {
        /// The recipient.
        recipient: String,
        /// SMTP code.
        code: u16,
        /// Enhanced status.
        status: String,
        /// Reason.
        text: String,
    },
    /// Discard silently.
    Drop {
        /// The recipient.
        recipient: String,
    },
}

impl Disposition {
    /// The recipient this is about.
    pub fn recipient(&self) -> &str {
        match self {
            Disposition::Deliver { recipient, .. }
            | Disposition::Relay { recipient, .. }
            | Disposition::Bounce { recipient, .. }
            | Disposition::Drop { recipient } => recipient,
        }
    }

    /// `deliver`, `relay`, `bounce` or `drop`.
    pub fn kind(&self) -> &'static str {
        match self {
            Disposition::Deliver { .. } => "deliver",
            Disposition::Relay { .. } => "relay",
            Disposition::Bounce { .. } => "bounce",
            Disposition::Drop { .. } => "drop",
        }
    }
}
