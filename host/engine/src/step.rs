//! What a step is given and what it answers: its limits, the runtime its component carries,
//! its outcome and report. Plain values shared by the session (which produces them), the
//! store state and the validation (which fill them), and the chain (which reads them).

use std::time::Duration;

use crate::bindings::sluice::rules::recipients::ForwardRequest;
use crate::bindings::sluice::rules::types::{Action, Bounce, Level, RuleError};

/// Per-step limits, from the step's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Wall-clock deadline for instantiate + evaluate (default 100 ms).
    pub timeout: Duration,
    /// Linear memory cap per instance (default 64 MiB).
    pub memory_bytes: usize,
    /// The most actions one step may return (default 256).
    pub max_actions: usize,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            timeout: Duration::from_millis(100),
            memory_bytes: 64 * 1024 * 1024,
            max_actions: 256,
        }
    }
}

impl StepLimits {
    /// The defaults for a rule of this runtime. A JavaScript or Python component carries its
    /// interpreter: instantiating it takes about a millisecond and tens of MiB before the rule
    /// runs, so 100 ms / 64 MiB would fail rules that work. The larger defaults still bound a
    /// runaway script.
    pub fn defaults_for(runtime: RuleRuntime) -> StepLimits {
        match runtime {
            RuleRuntime::Native => StepLimits::default(),
            RuleRuntime::JavaScript | RuleRuntime::Python => StepLimits {
                timeout: Duration::from_millis(1000),
                memory_bytes: 256 * 1024 * 1024,
                ..StepLimits::default()
            },
        }
    }
}

/// What a rule component runs on, from its `producers` section (`language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleRuntime {
    /// Compiled to Wasm (Rust, C, Go ...): microseconds per message.
    Native,
    /// A JavaScript engine in the component (componentize-js): milliseconds, megabytes.
    JavaScript,
    /// A Python interpreter in the component (componentize-py): milliseconds, megabytes.
    Python,
}

impl RuleRuntime {
    /// Reads the component's `producers` sections (a `language` of `JavaScript` or `Python`)
    /// and its core modules' imports (CPython as `libpython3.N.so`); anything else is native.
    pub fn detect(bytes: &[u8]) -> RuleRuntime {
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            // componentize-py writes no `language`; its CPython is a core module imported
            // by the others as `libpython3.N.so`.
            if let Ok(wasmparser::Payload::ImportSection(reader)) = &payload {
                if reader
                    .clone()
                    .into_imports()
                    .flatten()
                    .any(|i| i.module.starts_with("libpython"))
                {
                    return RuleRuntime::Python;
                }
                continue;
            }
            let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
                continue;
            };
            let wasmparser::KnownCustom::Producers(reader) = section.as_known() else {
                continue;
            };
            for field in reader.into_iter().flatten() {
                if field.name != "language" {
                    continue;
                }
                for value in field.values.into_iter().flatten() {
                    if value.name.eq_ignore_ascii_case("javascript") {
                        return RuleRuntime::JavaScript;
                    }
                    if value.name.eq_ignore_ascii_case("python") {
                        return RuleRuntime::Python;
                    }
                }
            }
        }
        RuleRuntime::Native
    }
}

/// Why a step produced no usable answer. The chain applies the step's `on_error` policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum StepFailure {
    /// The deadline passed (infinite loop, or just too slow).
    Timeout {
        /// The deadline in milliseconds.
        timeout_ms: u64,
    },
    /// The rule asked for more memory than its cap.
    MemoryCap {
        /// The cap in bytes.
        cap_bytes: usize,
        /// What it asked for.
        wanted_bytes: usize,
    },
    /// The rule trapped (a panic, `unreachable`, an out-of-bounds access ...).
    Trap {
        /// wasmtime's description, with the guest backtrace when there is one.
        message: String,
    },
    /// The component could not be instantiated (e.g. the instance pool is exhausted).
    Instantiate {
        /// wasmtime's description.
        message: String,
    },
    /// The rule returned an action the host refuses. None of its actions are applied.
    InvalidAction {
        /// Position of the first invalid action.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The rule made a `recipients` request the host refuses. Nothing of the step applies.
    InvalidRequest {
        /// Position of the first invalid request.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The rule returned more actions than allowed. None are applied.
    TooManyActions {
        /// How many it returned.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFailure::Timeout { timeout_ms } => {
                write!(f, "timed out after its {timeout_ms} ms deadline")
            }
            StepFailure::MemoryCap {
                cap_bytes,
                wanted_bytes,
            } => write!(
                f,
                "exceeded its memory cap of {} MiB (asked for {} MiB)",
                cap_bytes >> 20,
                wanted_bytes >> 20
            ),
            StepFailure::Trap { message } => write!(f, "trapped: {message}"),
            StepFailure::Instantiate { message } => write!(f, "could not start: {message}"),
            StepFailure::InvalidAction { index, reason } => {
                write!(f, "returned an invalid action #{index}: {reason}")
            }
            StepFailure::InvalidRequest { index, reason } => {
                write!(f, "made an invalid recipients request #{index}: {reason}")
            }
            StepFailure::TooManyActions { count, limit } => {
                write!(f, "returned {count} actions; the limit is {limit}")
            }
        }
    }
}

/// What a step answered.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum StepOutcome {
    /// Valid actions (possibly none).
    Actions {
        /// The actions, in order.
        actions: Vec<Action>,
        /// Per-recipient requests made through the `recipients` interface (0.1.2), in order.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        requests: Vec<RecipientRequest>,
        /// The parts to replace by notes (`replace-part`, 0.2.1), in order; validated.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        replacements: Vec<sluice_mail::PartReplacement>,
    },
    /// The rule returned its own error.
    RuleError {
        /// The rule's error.
        error: RuleError,
    },
    /// The sandbox stopped the rule or refused its answer.
    Failed {
        /// Why.
        failure: StepFailure,
    },
}

/// A per-recipient request a rule made through the `recipients` interface.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "request")]
pub enum RecipientRequest {
    /// Bounce this recipient only.
    Refuse {
        /// The recipient.
        recipient: String,
        /// The bounce.
        bounce: Bounce,
    },
    /// Drop the message for this recipient only.
    Discard {
        /// The recipient.
        recipient: String,
    },
    /// Relay a re-originated copy.
    Forward(ForwardRequest),
    /// Answer the envelope sender on behalf of one recipient (`reply.send`, 0.2.1).
    Reply(crate::reply::ReplyRequest),
}

/// One log line a rule wrote (through `host.log`, or stdout/stderr for WASI rules).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// `log`, `stdout` or `stderr`.
    pub source: &'static str,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// The level as a word (`info`), for traces people read; `Level`'s `Debug` is `Level::Info`.
    pub fn level_name(&self) -> &'static str {
        match self.level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A step's outcome plus what it cost and what it logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// The answer.
    pub outcome: StepOutcome,
    /// Wall time for instantiate + evaluate + validation, in microseconds.
    pub micros: u64,
    /// What the rule logged (at most 100 lines).
    pub logs: Vec<LogLine>,
    /// Log lines beyond the limit that were counted but not kept.
    pub dropped_logs: usize,
    /// The tables the step read (`lookup.get`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lookups: Vec<crate::lookup::LookupCall>,
    /// The HTTP calls the step made (`http.send`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub http: Vec<crate::http::HttpCall>,
    /// How often a 0.2 rule read each `context` field (all zero for a 0.1 rule, which gets
    /// the whole record): shows what a step pays for, e.g. `config` once per warm instance.
    #[serde(skip_serializing_if = "ContextReads::is_empty", default)]
    pub context_reads: ContextReads,
}

/// How many times a step called each getter of the 0.2 `context` resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContextReads {
    /// `domain()`.
    pub domain: u32,
    /// `recipients()`.
    pub recipients: u32,
    /// `mail-from()`.
    pub mail_from: u32,
    /// `verdicts()`.
    pub verdicts: u32,
    /// `received-at()`.
    pub received_at: u32,
    /// `message-id()`.
    pub message_id: u32,
    /// `config()`.
    pub config: u32,
}

impl ContextReads {
    /// No getter was called.
    pub fn is_empty(&self) -> bool {
        *self == ContextReads::default()
    }
}
