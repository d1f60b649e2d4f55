//! The Sluice sandbox: runs rule components against messages.
//!
//! Lifecycle, from the longest-lived object to the shortest:
//! - [`RuleEngine`]: one per process. Owns the wasmtime `Engine` (pooling allocator where the
//!   address space allows), the `Linker` with the host imports, the epoch ticker that enforces
//!   deadlines, and the on-disk cache of compiled components.
//! - [`RulePlugin`]: one per loaded component: compiled (or read back from the cache) once and
//!   pre-linked (`InstancePre`), so each message only instantiates.
//! - [`MessageSession`]: one per message. Holds the one `Store` the whole chain shares; every
//!   step gets a fresh instance in it, so nothing a rule saw survives into the next message.
//! - [`WarmPool`]: for a step with `instances = "warm"`, instances (each in its own store)
//!   that serve many messages, so an interpreter starts once, not per message.
//!
//! Modules depend in one direction: `bindings` <- `step` (limits, outcomes, reports) <-
//! `validate` <- `state` <- `cache`, `precompiled`, `engine` <- `plugin`, `warm` <- `session`.
//!
//! The host never trusts what a plugin returns: every outcome of [`MessageSession::run_step`] is
//! a [`StepOutcome`] value (actions, a rule error, or a [`StepFailure`]), never a panic.

mod bindings;
mod cache;
mod engine;
mod flow;
mod http;
mod lookup;
mod plugin;
mod precompiled;
mod reply;
mod session;
mod state;
mod step;
mod track02;
mod validate;
mod warm;

pub use bindings::sluice::rules::recipients::ForwardRequest;
pub use bindings::sluice::rules::types::{
    Action, AttachmentInfo, Banner, Bounce, Context, Header, Level, Position, RuleError, Verdict,
    Verdicts,
};
pub use bindings::WitTrack;
pub use cache::{default_cache_dir, evict_lru, touch, CompiledCache, DEFAULT_CACHE_BYTES};
pub use engine::{
    process_memory_limit, EngineError, EngineOptions, PoolingChoice, RuleEngine, WARM_SLOTS,
};
pub use flow::{Direction, Flow};
pub use http::{
    AllowedUrl, HttpCall, HttpClient, HttpError, HttpGrant, HttpRequest, HttpResponse, HttpResult,
    DEFAULT_MAX_RESPONSE_BYTES, MAX_HTTP_CALLS,
};
pub use lookup::{LookupCall, LookupError, LookupResult, LookupTables, StepGrants};
pub use plugin::{LoadSource, RulePlugin};
pub use precompiled::{
    check_not_writable, host_target, Artifact, PrecompileError, Precompiler, ARTIFACT_EXTENSION,
};
pub use reply::{ReplyGrant, ReplyRequest, MAX_ONCE_PER_DAYS, MAX_REPLY_SUBJECT, MAX_REPLY_TEXT};
pub use session::MessageSession;
pub use step::{
    ContextReads, LogLine, RecipientRequest, RuleRuntime, StepFailure, StepLimits, StepOutcome,
    StepReport,
};
pub use validate::{
    action_to_edit, action_to_edit_in, removes_received, MAX_BANNER_BYTES,
    MAX_RECIPIENTS_PER_ACTION,
};
pub use warm::{WarmPool, WarmSettings, WarmStats};
