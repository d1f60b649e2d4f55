//! One message through a chain: one `Store`, a fresh instance per step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_mail::Message;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use crate::bindings::sluice::rules::types::Context;
use crate::bindings::{Answered, MessageRef, RuleInstance};
use crate::engine::{EngineError, RuleEngine};
use crate::flow::Flow;
use crate::http::HttpClient;
use crate::lookup::{LookupTables, StepGrants};
use crate::plugin::{RulePlugin, TrackPre};
use crate::state::{preview, StoreState, MAX_LOG_BYTES, MAX_LOG_LINES, MAX_REASON};
use crate::step::{StepFailure, StepLimits, StepOutcome, StepReport};
use crate::validate::validate_action_in;
use crate::warm::{WarmInstance, WarmPool};

/// One message's run through a chain. Fresh steps share one store (made on the first fresh
/// step); each gets a new instance in it. Warm steps run in their pool's stores.
pub struct MessageSession<'e> {
    engine: &'e RuleEngine,
    /// `None` until a fresh step runs, and after a trap: wasmtime refuses to enter any
    /// component instance of a store whose call trapped, so the next step gets a new store.
    store: Option<Store<StoreState>>,
    message: Arc<Message>,
    /// The tables steps may read, when granted.
    tables: Option<Arc<dyn LookupTables>>,
    /// Sends the HTTP requests of steps granted HTTP.
    http: Option<Arc<dyn HttpClient>>,
    /// The message's direction and authenticated sender, for the `flow` interface.
    flow: Flow,
}

fn new_store(engine: &RuleEngine) -> Store<StoreState> {
    let mut store = Store::new(&engine.engine, StoreState::new());
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    store
}

impl<'e> MessageSession<'e> {
    /// Starts a session for one message.
    pub fn new(engine: &'e RuleEngine, message: Arc<Message>) -> MessageSession<'e> {
        MessageSession {
            engine,
            store: None,
            message,
            tables: None,
            http: None,
            flow: Flow::default(),
        }
    }

    /// Answers the `flow` interface with `flow` (received mail when not called), and lets an
    /// outbound chain's steps remove `Received` (see [`crate::removes_received`]).
    pub fn with_flow(mut self, flow: Flow) -> MessageSession<'e> {
        self.flow = flow;
        self
    }

    /// Serves `tables` to the steps granted them (`lookup.get`).
    pub fn with_tables(mut self, tables: Arc<dyn LookupTables>) -> MessageSession<'e> {
        self.tables = Some(tables);
        self
    }

    /// Sends the HTTP requests of the steps granted HTTP (`http.send`) through `client`.
    pub fn with_http(mut self, client: Arc<dyn HttpClient>) -> MessageSession<'e> {
        self.http = Some(client);
        self
    }

    /// The message.
    pub fn message(&self) -> &Arc<Message> {
        &self.message
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities {
            tables: &self.tables,
            http: &self.http,
            flow: &self.flow,
        }
    }

    /// Runs one step: instantiate `plugin` (fresh), call `evaluate`, validate the answer.
    pub fn run_step(
        &mut self,
        step: &str,
        plugin: &RulePlugin,
        limits: &StepLimits,
        grants: &StepGrants,
        ctx: &Arc<Context>,
    ) -> StepReport {
        let engine = self.engine;
        let capabilities = Capabilities {
            tables: &self.tables,
            http: &self.http,
            flow: &self.flow,
        };
        let store = self.store.get_or_insert_with(|| new_store(engine));
        let started = Instant::now();
        begin(store, engine, step, limits, grants, capabilities, started);
        let (outcome, poisoned) = match plugin.instantiate(store) {
            Ok(rule) => call_rule(store, &rule, &self.message, limits, ctx),
            Err(err) => (instantiate_failed(store, err, limits), true),
        };
        let report = finish(store, step, outcome, started);
        if poisoned {
            self.store = None;
        }
        report
    }

    /// Runs one step on a warm instance from `pool` (made when none is idle), and returns the
    /// instance to the pool unless the step failed (see [`crate::WarmPool`]).
    pub fn run_step_warm(
        &mut self,
        step: &str,
        plugin: &RulePlugin,
        limits: &StepLimits,
        grants: &StepGrants,
        ctx: &Arc<Context>,
        pool: &WarmPool,
    ) -> StepReport {
        let started = Instant::now();
        let mut instance = match pool.take(started) {
            Some(instance) => instance,
            None => {
                let mut store = new_store(self.engine);
                begin(
                    &mut store,
                    self.engine,
                    step,
                    limits,
                    grants,
                    self.capabilities(),
                    started,
                );
                match plugin.instantiate(&mut store) {
                    Ok(rule) => {
                        pool.created();
                        WarmInstance::new(store, rule)
                    }
                    Err(err) => {
                        let outcome = instantiate_failed(&store, err, limits);
                        return finish(&mut store, step, outcome, started);
                    }
                }
            }
        };
        begin(
            &mut instance.store,
            self.engine,
            step,
            limits,
            grants,
            self.capabilities(),
            started,
        );
        let (outcome, _) = call_rule(
            &mut instance.store,
            &instance.rule,
            &self.message,
            limits,
            ctx,
        );
        let failed = matches!(outcome, StepOutcome::Failed { .. });
        let report = finish(&mut instance.store, step, outcome, started);
        if failed {
            pool.discarded();
        } else {
            pool.give_back(instance, started);
        }
        report
    }
}

/// What the session serves to granted steps.
#[derive(Clone, Copy)]
struct Capabilities<'a> {
    tables: &'a Option<Arc<dyn LookupTables>>,
    http: &'a Option<Arc<dyn HttpClient>>,
    flow: &'a Flow,
}

/// Prepares `store` for one step: clears what the previous step left, sets the memory cap,
/// the deadline (counted from `now`, the step's start) and the step's grants.
fn begin(
    store: &mut Store<StoreState>,
    engine: &RuleEngine,
    step: &str,
    limits: &StepLimits,
    grants: &StepGrants,
    capabilities: Capabilities<'_>,
    now: Instant,
) {
    let data = store.data_mut();
    data.begin_step(step);
    data.grants = grants.clone();
    data.tables = capabilities.tables.clone();
    data.http = capabilities.http.clone();
    if data.flow != *capabilities.flow {
        data.flow.clone_from(capabilities.flow);
    }
    data.deadline = now + limits.timeout;
    data.limiter.memory_cap = limits.memory_bytes.min(engine.max_memory_bytes);
    data.limiter.memory_cap_hit = None;
    let ticks = engine.deadline_ticks(limits.timeout, now);
    store.set_epoch_deadline(ticks);
}

/// Forwards stdio to the log and makes the step's report.
fn finish(
    store: &mut Store<StoreState>,
    step: &str,
    outcome: StepOutcome,
    started: Instant,
) -> StepReport {
    let micros = started.elapsed().as_micros() as u64;
    let data = store.data_mut();
    data.drain_stdio();
    if data.dropped_logs > 0 {
        tracing::warn!(
            step,
            dropped = data.dropped_logs,
            "the rule logged more than its budget ({MAX_LOG_LINES} lines, {} KiB); the rest was dropped",
            MAX_LOG_BYTES / 1024
        );
    }
    StepReport {
        outcome,
        micros,
        logs: std::mem::take(&mut data.logs),
        dropped_logs: data.dropped_logs,
        lookups: std::mem::take(&mut data.lookups),
        http: std::mem::take(&mut data.http_calls),
        context_reads: data.context_reads,
    }
}

/// Names a failure precisely: the memory cap, the deadline, or a trap.
fn classify(store: &Store<StoreState>, err: wasmtime::Error, limits: &StepLimits) -> StepFailure {
    let data = store.data();
    if let Some(wanted) = data.limiter.memory_cap_hit {
        return StepFailure::MemoryCap {
            cap_bytes: data.limiter.memory_cap,
            wanted_bytes: wanted,
        };
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return StepFailure::Timeout {
            timeout_ms: limits.timeout.as_millis() as u64,
        };
    }
    StepFailure::Trap {
        message: preview(&format!("{err:#}"), 4 * MAX_REASON),
    }
}

fn instantiate_failed(
    store: &Store<StoreState>,
    err: wasmtime::Error,
    limits: &StepLimits,
) -> StepOutcome {
    let failure = match classify(store, err, limits) {
        StepFailure::Trap { message } => StepFailure::Instantiate { message },
        other => other,
    };
    StepOutcome::Failed { failure }
}

/// Calls `evaluate` of an instantiated rule and validates the answer. The `bool` is true when
/// the call trapped: wasmtime refuses to enter any instance of that store again.
fn call_rule(
    store: &mut Store<StoreState>,
    rule: &RuleInstance,
    message: &Arc<Message>,
    limits: &StepLimits,
    ctx: &Arc<Context>,
) -> (StepOutcome, bool) {
    let handle = match store.data_mut().table.push(MessageRef(message.clone())) {
        Ok(h) => h,
        Err(e) => {
            let failure = StepFailure::Instantiate {
                message: format!("resource table: {e}"),
            };
            return (StepOutcome::Failed { failure }, false);
        }
    };
    let borrowed = Resource::<MessageRef>::new_borrow(handle.rep());
    if store.data().grants.reply.is_some() {
        store.data_mut().reply_context = Some(Arc::clone(ctx));
    }
    let answer = rule.call_evaluate(&mut *store, borrowed, ctx);
    store.data_mut().reply_context = None;
    let _ = store.data_mut().table.delete(handle);
    if let Some((index, reason)) = store.data_mut().request_error.take() {
        let failure = StepFailure::InvalidRequest { index, reason };
        return (StepOutcome::Failed { failure }, answer.is_err());
    }
    let answered = match answer {
        Err(err) => {
            let failure = classify(store, err, limits);
            return (StepOutcome::Failed { failure }, true);
        }
        Ok(Err(mut error)) => {
            error.message = preview(&error.message, MAX_REASON);
            return (StepOutcome::RuleError { error }, false);
        }
        Ok(Ok(answered)) => answered,
    };
    let Answered {
        actions,
        replacements,
    } = answered;
    let count = actions.len() + replacements.len();
    if count > limits.max_actions {
        let failure = StepFailure::TooManyActions {
            count,
            limit: limits.max_actions,
        };
        return (StepOutcome::Failed { failure }, false);
    }
    let direction = store.data().flow.direction;
    // Indexes as in the rule's list, which had the replacements among the actions.
    let positions = replacements.iter().map(|(at, _)| *at).collect::<Vec<_>>();
    let mut index_of = (0..count).filter(|i| !positions.contains(i));
    for action in &actions {
        let index = index_of.next().unwrap_or(count);
        if let Err(reason) = validate_action_in(action, direction) {
            let failure = StepFailure::InvalidAction {
                index,
                reason: preview(&reason, MAX_REASON),
            };
            return (StepOutcome::Failed { failure }, false);
        }
    }
    let mut parts = Vec::with_capacity(replacements.len());
    for (index, replacement) in replacements {
        let edit = sluice_mail::Edit::ReplacePart(replacement);
        if let Err(reason) = validate_part_edit(&edit, message) {
            let failure = StepFailure::InvalidAction {
                index,
                reason: preview(&reason, MAX_REASON),
            };
            return (StepOutcome::Failed { failure }, false);
        }
        if let sluice_mail::Edit::ReplacePart(r) = edit {
            parts.push(r);
        }
    }
    // Each request was validated when it was made (StoreState::request).
    let requests = std::mem::take(&mut store.data_mut().requests);
    let outcome = StepOutcome::Actions {
        actions,
        requests,
        replacements: parts,
    };
    (outcome, false)
}

/// Checks a `replace-part` when the step returns: the note, and that the id is a leaf part of
/// this message other than the message itself, so a wrong id fails the step that made it
/// (with its `on_error`) rather than every edit of the chain later.
fn validate_part_edit(edit: &sluice_mail::Edit, message: &Message) -> Result<(), String> {
    sluice_mail::validate_edit(edit).map_err(|e| format!("replace-part: {e}"))?;
    let sluice_mail::Edit::ReplacePart(r) = edit else {
        return Ok(());
    };
    let leaf = message.is_leaf_part(r.id);
    match (r.id, leaf) {
        (0, _) => {
            Err("replace-part: part 0 is the whole message; refuse or quarantine it instead".into())
        }
        (_, true) => Ok(()),
        (id, false) => Err(format!(
            "replace-part: the message has no leaf part {id}; use an id from message.parts"
        )),
    }
}

impl RulePlugin {
    /// Calls the rule's `validate-config` with the step's config JSON, in a throwaway store.
    pub fn validate_config(
        &self,
        engine: &RuleEngine,
        config_json: &str,
        limits: &StepLimits,
    ) -> Result<(), EngineError> {
        let mut store = Store::new(&engine.engine, StoreState::new());
        store.data_mut().step = Arc::from(self.name());
        store.data_mut().limiter.memory_cap = limits.memory_bytes.min(engine.max_memory_bytes);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(
            engine.deadline_ticks(limits.timeout.max(Duration::from_secs(1)), Instant::now()),
        );
        let failed = |e: wasmtime::Error| EngineError::ValidateFailed {
            plugin: self.name().to_string(),
            reason: format!("{e:#}"),
        };
        let answer = match self.pre() {
            TrackPre::V0_1(pre) => pre
                .instantiate(&mut store)
                .and_then(|rule| rule.call_validate_config(&mut store, config_json)),
            TrackPre::V0_2(pre) => pre
                .instantiate(&mut store)
                .and_then(|rule| rule.call_validate_config(&mut store, config_json)),
            TrackPre::V0_2_0(pre) => pre
                .instantiate(&mut store)
                .and_then(|rule| rule.call_validate_config(&mut store, config_json)),
        };
        match answer {
            Err(e) => Err(failed(e)),
            Ok(Err(reason)) => Err(EngineError::ConfigRefused {
                plugin: self.name().to_string(),
                reason,
            }),
            Ok(Ok(())) => Ok(()),
        }
    }
}
