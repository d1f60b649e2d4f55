//! Rule chains: loaded from a [`ConfigFile`], run per recipient group.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sluice_engine::{
    action_to_edit, Action, Bounce, Context, ForwardRequest, MessageSession, RecipientRequest,
    RuleEngine, RulePlugin, StepLimits, StepOutcome, Verdicts, WarmPool,
};
use sluice_mail::{BannerFallback, Edit, Message};

use crate::breaker::CircuitBreaker;
use crate::config::{
    BannerFallbackSetting, ConfigError, ConfigFile, OnError, PluginLocation, StepMode,
};
use crate::trace::{Disposition, GroupOutcome, GroupResult, ProcessResult, StepTrace};

/// The folder local recipients get when no rule files the message elsewhere.
pub const DEFAULT_FOLDER: &str = "INBOX";

/// One step of a chain, ready to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name for the trace and logs.
    pub name: String,
    /// The loaded component.
    pub plugin: RulePlugin,
    /// Deadline, memory cap, action limit.
    pub limits: StepLimits,
    /// Failure policy.
    pub on_error: OnError,
    /// Enforce or audit.
    pub mode: StepMode,
    /// The rule's config as JSON.
    pub config_json: String,
    /// Skips the step while it keeps failing; shared by every message.
    pub breaker: Arc<CircuitBreaker>,
    /// Warm instances of this step (`instances = "warm"`); `None`: fresh per message.
    pub warm: Option<Arc<WarmPool>>,
}

/// Reads remote plugin bytes (e.g. from S3). Implemented outside this crate so the chain
/// stays free of AWS.
pub trait PluginFetcher: Send + Sync {
    /// The object's bytes, or a one-line reason.
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// Where remote plugins come from, and where their verified bytes are kept so a restart
/// (or a warm Lambda) does not fetch them again.
pub struct PluginSources<'a> {
    /// The fetcher for `s3://` plugins; `None` refuses remote plugins.
    pub fetcher: Option<&'a dyn PluginFetcher>,
    /// Directory for fetched, hash-verified plugin bytes (`<sha256>.wasm`).
    pub cache_dir: Option<PathBuf>,
    /// Size bound of that directory (least recently used go first).
    pub max_bytes: u64,
}

impl Default for PluginSources<'_> {
    fn default() -> Self {
        PluginSources {
            fetcher: None,
            cache_dir: None,
            max_bytes: sluice_engine::DEFAULT_CACHE_BYTES,
        }
    }
}

impl PluginSources<'_> {
    /// The bytes of `url`, which must hash to `sha256`: from the cache when a verified copy
    /// is there, else fetched, verified and cached.
    fn fetch(&self, url: &str, sha256: &str) -> Result<Vec<u8>, String> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}.wasm")));
        if let Some(path) = &cached {
            if let Ok(bytes) = std::fs::read(path) {
                if hex::encode(Sha256::digest(&bytes)) == sha256 {
                    sluice_engine::touch(path);
                    return Ok(bytes);
                }
                let _ = std::fs::remove_file(path);
            }
        }
        let fetcher = self.fetcher.ok_or_else(|| {
            format!("{url}: remote plugins need S3 access, which this command has not set up")
        })?;
        let bytes = fetcher.fetch(url)?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(format!(
                "sha256 mismatch for {url}: expected {sha256}, the object has {actual}; refusing to load it"
            ));
        }
        if let Some(path) = &cached {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, path).is_ok() {
                if let Some(dir) = path.parent() {
                    sluice_engine::evict_lru(dir, self.max_bytes, Some(path));
                }
            }
        }
        Ok(bytes)
    }
}

/// The chain of one configured domain.
#[derive(Debug, Clone)]
pub struct DomainChain {
    /// Lower-case domain, or `*`.
    pub domain: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// What add-banner does without a displayed text part.
    pub banner_fallback: BannerFallback,
}

/// Every domain's chain, loaded and type-checked.
#[derive(Debug, Clone)]
pub struct RuleChains {
    chains: Vec<DomainChain>,
}

/// What SES (or the command line) says about a message besides its bytes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// SES message id, or a content-derived id.
    pub message_id: String,
    /// Envelope sender (empty for a null sender).
    pub mail_from: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// SES verdicts.
    pub verdicts: Verdicts,
    /// Receipt time, ms since the epoch.
    pub received_at: u64,
}

impl RuleChains {
    /// Loads every (local) plugin the config names, checks it implements the world and
    /// accepts its config. Errors name the file, line, domain and step.
    pub fn load(engine: &RuleEngine, config: &ConfigFile) -> Result<RuleChains, ConfigError> {
        RuleChains::load_with(engine, config, &PluginSources::default())
    }

    /// Like [`RuleChains::load`], fetching remote plugins through `sources`.
    pub fn load_with(
        engine: &RuleEngine,
        config: &ConfigFile,
        sources: &PluginSources<'_>,
    ) -> Result<RuleChains, ConfigError> {
        let mut loaded: BTreeMap<String, RulePlugin> = BTreeMap::new();
        let mut chains = Vec::new();
        for domain in &config.domains {
            let d = domain.get_ref();
            let mut steps = Vec::new();
            for (i, step) in d.step.iter().enumerate() {
                let s = step.get_ref();
                let location = config.plugin_location(s.plugin.get_ref());
                let (key, stem) = match &location {
                    PluginLocation::Local(path) => (
                        path.display().to_string(),
                        path.file_stem().map(|n| n.to_string_lossy().into_owned()),
                    ),
                    PluginLocation::Remote(url) | PluginLocation::Unsupported(url) => (
                        url.clone(),
                        url.rsplit('/')
                            .next()
                            .map(|f| f.trim_end_matches(".wasm").to_string()),
                    ),
                };
                let name = s
                    .name
                    .clone()
                    .or(stem.filter(|n| !n.is_empty()))
                    .unwrap_or_else(|| format!("step{}", i + 1));
                let at = |message: String| {
                    ConfigError::at(
                        &config.source,
                        Some(s.plugin.span()),
                        format!(
                            "domain {:?} step {} ({name}): {message}",
                            d.name.get_ref(),
                            i + 1
                        ),
                    )
                };
                let expected = s.sha256.as_ref().map(|h| h.get_ref().to_ascii_lowercase());
                let plugin = match loaded.get(&key) {
                    Some(p) => p.clone(),
                    None => {
                        let p = match &location {
                            PluginLocation::Local(path) => {
                                RulePlugin::load_file(engine, &name, path)
                                    .map_err(|e| at(e.to_string()))?
                            }
                            PluginLocation::Remote(url) => {
                                let bytes = sources
                                    .fetch(url, expected.as_deref().unwrap_or_default())
                                    .map_err(at)?;
                                RulePlugin::load_bytes(engine, &name, &bytes)
                                    .map_err(|e| at(e.to_string()))?
                            }
                            PluginLocation::Unsupported(scheme) => {
                                return Err(at(format!("{scheme}:// is not supported")))
                            }
                        };
                        loaded.insert(key.clone(), p.clone());
                        p
                    }
                };
                if let Some(expected) = &expected {
                    if *expected != plugin.sha256() {
                        return Err(at(format!(
                            "sha256 mismatch for {key}: expected {expected}, the file has {}",
                            plugin.sha256()
                        )));
                    }
                }
                let config_json = s.config_json();
                let limits = s.limits_for(plugin.runtime());
                plugin
                    .validate_config(engine, &config_json, &limits)
                    .map_err(|e| at(e.to_string()))?;
                steps.push(Step {
                    name,
                    plugin,
                    limits,
                    on_error: s.on_error,
                    mode: s.mode,
                    config_json,
                    breaker: Arc::new(CircuitBreaker::new(s.breaker)),
                    warm: s.warm_settings().map(|w| Arc::new(WarmPool::new(w))),
                });
            }
            chains.push(DomainChain {
                domain: d.name.get_ref().to_ascii_lowercase(),
                steps,
                banner_fallback: match d.banner_fallback {
                    BannerFallbackSetting::Wrap => BannerFallback::Wrap,
                    BannerFallbackSetting::Ignore => BannerFallback::Ignore,
                },
            });
        }
        Ok(RuleChains { chains })
    }

    /// The chains, in config order.
    pub fn chains(&self) -> &[DomainChain] {
        &self.chains
    }

    fn chain_for(&self, domain: &str) -> Option<&DomainChain> {
        self.chains
            .iter()
            .find(|c| c.domain == domain)
            .or_else(|| self.chains.iter().find(|c| c.domain == "*"))
    }

    fn is_local(&self, domain: &str) -> bool {
        self.chains
            .iter()
            .any(|c| c.domain != "*" && c.domain == domain)
    }

    /// The group key of a recipient's domain: the configured domain whose chain handles it,
    /// `*` for the catch-all, or the domain itself when nothing is configured for it.
    fn group_key(&self, domain: String) -> String {
        match self.chain_for(&domain) {
            Some(chain) if chain.domain != "*" => chain.domain.clone(),
            Some(_) => "*".to_string(),
            None => domain,
        }
    }

    /// Runs the message through the chain of each recipient group and decides, per final
    /// recipient, what happens to it. Nothing is delivered here (see [`crate::DirStore`]).
    ///
    /// A recipient that a rule adds in another configured domain is not delivered by the
    /// chain that added it: it is handed to its own domain's chain, as if it had been an
    /// envelope recipient (that chain sees the message as received; the adding chain's edits
    /// do not apply to it). So every configured domain's rules see every message its
    /// mailboxes get, whoever addressed it. A recipient that a domain's chain already handled
    /// for this message is not handed to it again, and hand-offs stop after
    /// [`MAX_HANDOFFS`] rounds (the rest bounce with 5.4.6, a routing loop).
    pub fn process(
        &self,
        engine: &RuleEngine,
        message: Arc<Message>,
        envelope: &Envelope,
    ) -> ProcessResult {
        let mut groups: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
        for rcpt in &envelope.recipients {
            let key = self.group_key(domain_of(rcpt));
            add_to_group(&mut groups, key, rcpt, None);
        }
        // (group key, recipient) pairs a chain has already run for.
        let mut handled: Vec<(String, String)> = Vec::new();
        let mut session = MessageSession::new(engine, message.clone());
        let mut results = Vec::new();
        let mut round = 0;
        while !groups.is_empty() {
            let mut handoffs: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
            for (key, recipients, from) in std::mem::take(&mut groups) {
                handled.extend(
                    recipients
                        .iter()
                        .map(|r| (key.clone(), r.to_ascii_lowercase())),
                );
                let chain = self.chain_for(&key);
                let mut result = self.run_group(&mut session, chain, &key, recipients, envelope);
                result.handed_from = from;
                for rcpt in &result.handed_off {
                    add_to_group(
                        &mut handoffs,
                        self.group_key(domain_of(rcpt)),
                        rcpt,
                        Some(key.clone()),
                    );
                }
                results.push(result);
            }
            round += 1;
            for (key, recipients, from) in handoffs {
                let fresh: Vec<String> = recipients
                    .into_iter()
                    .filter(|r| !handled.contains(&(key.clone(), r.to_ascii_lowercase())))
                    .collect();
                if fresh.is_empty() {
                    continue;
                }
                if round > MAX_HANDOFFS {
                    tracing::warn!(domain = %key, recipients = ?fresh, "routing loop: recipients handed between domains' chains too often");
                    results.push(GroupResult::routing_loop(&key, fresh, from));
                    continue;
                }
                groups.push((key, fresh, from));
            }
        }
        ProcessResult {
            message_id: envelope.message_id.clone(),
            size: message.size(),
            groups: results,
        }
    }

    fn run_group(
        &self,
        session: &mut MessageSession<'_>,
        chain: Option<&DomainChain>,
        domain: &str,
        original: Vec<String>,
        envelope: &Envelope,
    ) -> GroupResult {
        let mut recipients = original.clone();
        let mut folder: Option<String> = None;
        let mut edits: Vec<Edit> = Vec::new();
        let mut terminal: Option<Terminal> = None;
        let mut tempfail: Option<String> = None;
        let mut steps = Vec::new();
        // Per-recipient outcomes asked through the `recipients` interface.
        let mut refused: Vec<(String, Bounce)> = Vec::new();
        let mut discarded: Vec<String> = Vec::new();
        let mut forwards: Vec<ForwardRequest> = Vec::new();

        let empty = Vec::new();
        for step in chain.map(|c| &c.steps).unwrap_or(&empty) {
            let ctx = Context {
                domain: domain.to_string(),
                recipients: recipients.clone(),
                mail_from: envelope.mail_from.clone(),
                verdicts: envelope.verdicts.clone(),
                received_at: envelope.received_at,
                message_id: envelope.message_id.clone(),
                config: step.config_json.clone(),
            };
            if let Some(left) = step.breaker.open_for(Instant::now()) {
                let reason = format!(
                    "skipped: circuit breaker open after repeated failures ({} s of cool-down left)",
                    left.as_secs() + 1
                );
                let mut trace = StepTrace::skipped(step, reason.clone());
                trace.policy = Some(step.on_error);
                apply_policy(step.on_error, step, &mut terminal, &mut tempfail, &reason);
                steps.push(trace);
                if terminal.is_some() || tempfail.is_some() {
                    break;
                }
                continue;
            }
            let report = match &step.warm {
                Some(pool) => {
                    session.run_step_warm(&step.name, &step.plugin, &step.limits, &ctx, pool)
                }
                None => session.run_step(&step.name, &step.plugin, &step.limits, &ctx),
            };
            match &report.outcome {
                StepOutcome::Actions { .. } => step.breaker.success(),
                StepOutcome::RuleError { .. } | StepOutcome::Failed { .. } => {
                    if step.breaker.failure(Instant::now()) {
                        tracing::warn!(step = %step.name, "circuit breaker opened: the step is skipped during its cool-down");
                    }
                }
            }
            let mut trace = StepTrace::new(step, &report);
            let mut stop = false;
            match &report.outcome {
                StepOutcome::Actions { actions, requests } => {
                    if step.mode == StepMode::Enforce {
                        for request in requests {
                            match request {
                                RecipientRequest::Refuse { recipient, bounce } => {
                                    recipients.retain(|r| !r.eq_ignore_ascii_case(recipient));
                                    refused.push((recipient.clone(), bounce.clone()));
                                }
                                RecipientRequest::Discard { recipient } => {
                                    recipients.retain(|r| !r.eq_ignore_ascii_case(recipient));
                                    discarded.push(recipient.clone());
                                }
                                RecipientRequest::Forward(f) => {
                                    if f.redirect {
                                        recipients.clear();
                                    }
                                    forwards.push(f.clone());
                                }
                            }
                        }
                        for action in actions {
                            match action {
                                Action::SetRecipients(list) => {
                                    recipients.clear();
                                    push_unique(&mut recipients, list);
                                }
                                Action::AddRecipients(list) => push_unique(&mut recipients, list),
                                Action::FileInto(f) => folder = Some(f.clone()),
                                Action::Bounce(b) => terminal = Some(Terminal::Bounce(b.clone())),
                                Action::Drop => terminal = Some(Terminal::Drop),
                                Action::Stop => stop = true,
                                other => edits.extend(action_to_edit(other)),
                            }
                        }
                    }
                }
                StepOutcome::RuleError { error } => {
                    let policy = if error.temporary && step.on_error == OnError::Bounce {
                        OnError::Tempfail
                    } else {
                        step.on_error
                    };
                    trace.policy = Some(policy);
                    apply_policy(policy, step, &mut terminal, &mut tempfail, &error.message);
                }
                StepOutcome::Failed { failure } => {
                    trace.policy = Some(step.on_error);
                    apply_policy(
                        step.on_error,
                        step,
                        &mut terminal,
                        &mut tempfail,
                        &failure.to_string(),
                    );
                }
            }
            steps.push(trace);
            if stop || terminal.is_some() || tempfail.is_some() {
                break;
            }
        }

        if let Some(reason) = tempfail {
            return GroupResult {
                domain: domain.to_string(),
                recipients: original,
                steps,
                edits,
                edit_error: None,
                outcome: GroupOutcome::Tempfail { reason },
                dispositions: Vec::new(),
                output: None,
                handed_off: Vec::new(),
                handed_from: None,
            };
        }

        let mut handed_off: Vec<String> = Vec::new();
        let dispositions: Vec<Disposition> = match &terminal {
            Some(Terminal::Bounce(b)) => original
                .iter()
                .map(|r| Disposition::Bounce {
                    recipient: r.clone(),
                    code: b.code,
                    status: b.status.clone(),
                    text: b.text.clone(),
                })
                .collect(),
            Some(Terminal::Drop) => original
                .iter()
                .map(|r| Disposition::Drop {
                    recipient: r.clone(),
                })
                .collect(),
            None => {
                let mut list: Vec<Disposition> = Vec::new();
                for r in &recipients {
                    match self.route_added(domain, &original, r) {
                        Route::Deliver => list.push(Disposition::Deliver {
                            recipient: r.clone(),
                            folder: folder.clone().unwrap_or_else(|| DEFAULT_FOLDER.into()),
                        }),
                        Route::HandOff => handed_off.push(r.clone()),
                        Route::Relay => list.push(Disposition::Relay {
                            recipient: r.clone(),
                            from: None,
                            subject_prefix: None,
                        }),
                    }
                }
                let mut seen: Vec<String> = Vec::new();
                for f in &forwards {
                    for to in &f.to {
                        if seen.iter().any(|s| s.eq_ignore_ascii_case(to)) {
                            continue;
                        }
                        seen.push(to.clone());
                        list.push(Disposition::Relay {
                            recipient: to.clone(),
                            from: f.from.clone(),
                            subject_prefix: f.subject_prefix.clone(),
                        });
                    }
                }
                for (r, b) in &refused {
                    list.push(Disposition::Bounce {
                        recipient: r.clone(),
                        code: b.code,
                        status: b.status.clone(),
                        text: b.text.clone(),
                    });
                }
                for r in &discarded {
                    list.push(Disposition::Drop {
                        recipient: r.clone(),
                    });
                }
                list
            }
        };

        let needs_output = dispositions
            .iter()
            .any(|d| matches!(d, Disposition::Deliver { .. } | Disposition::Relay { .. }));
        let (output, edit_error) = if !needs_output {
            (None, None)
        } else if edits.is_empty() {
            (Some(OutputMessage::Original), None)
        } else {
            let fallback = chain
                .map(|c| c.banner_fallback)
                .unwrap_or(BannerFallback::Wrap);
            match sluice_mail::apply_edits(session.message(), &edits, fallback) {
                Ok(bytes) => (Some(OutputMessage::Edited(Arc::new(bytes))), None),
                Err(e) => {
                    // The message is delivered unchanged rather than lost; the trace says why.
                    tracing::warn!(domain, "edits not applied, delivering the original: {e}");
                    (Some(OutputMessage::Original), Some(e.to_string()))
                }
            }
        };
        GroupResult {
            domain: domain.to_string(),
            recipients: original,
            steps,
            edits,
            edit_error,
            outcome: GroupOutcome::Done,
            dispositions,
            output,
            handed_off,
            handed_from: None,
        }
    }

    /// Where a final recipient of `group` goes: its own mailbox when it was an original
    /// recipient of the group or is in the group's own configured domain; another configured
    /// domain's chain when it is in one; else a relay.
    fn route_added(&self, group: &str, original: &[String], rcpt: &str) -> Route {
        if original.iter().any(|o| o.eq_ignore_ascii_case(rcpt)) {
            return Route::Deliver;
        }
        let domain = domain_of(rcpt);
        if !self.is_local(&domain) {
            return Route::Relay;
        }
        if self.group_key(domain) == group {
            Route::Deliver
        } else {
            Route::HandOff
        }
    }
}

/// How many rounds of hand-offs between domains' chains one message may take.
pub const MAX_HANDOFFS: usize = 4;

/// Where a recipient a chain ended with goes.
enum Route {
    Deliver,
    HandOff,
    Relay,
}

fn add_to_group(
    groups: &mut Vec<(String, Vec<String>, Option<String>)>,
    key: String,
    rcpt: &str,
    from: Option<String>,
) {
    match groups.iter_mut().find(|(k, _, _)| *k == key) {
        Some((_, list, _)) => {
            if !list.iter().any(|r| r.eq_ignore_ascii_case(rcpt)) {
                list.push(rcpt.to_string())
            }
        }
        None => groups.push((key, vec![rcpt.to_string()], from)),
    }
}

/// The message a group's deliveries carry.
#[derive(Debug, Clone)]
pub enum OutputMessage {
    /// No edits: the original bytes.
    Original,
    /// The original with the chain's edits applied.
    Edited(Arc<Vec<u8>>),
}

enum Terminal {
    Bounce(Bounce),
    Drop,
}

fn apply_policy(
    policy: OnError,
    step: &Step,
    terminal: &mut Option<Terminal>,
    tempfail: &mut Option<String>,
    reason: &str,
) {
    match policy {
        OnError::Continue => {
            tracing::warn!(step = %step.name, "step failed, continuing: {reason}")
        }
        OnError::Tempfail => {
            tracing::warn!(step = %step.name, "step failed, tempfail: {reason}");
            *tempfail = Some(format!("step {} failed: {reason}", step.name));
        }
        OnError::Bounce => {
            tracing::warn!(step = %step.name, "step failed, bouncing: {reason}");
            *terminal = Some(Terminal::Bounce(Bounce {
                code: 554,
                status: "5.3.0".into(),
                text: format!("message refused: rule {} failed", step.name),
            }));
        }
    }
}

fn push_unique(list: &mut Vec<String>, add: &[String]) {
    for a in add {
        if !list.iter().any(|r| r.eq_ignore_ascii_case(a)) {
            list.push(a.clone());
        }
    }
}

/// The lower-case domain of an address (empty when it has none).
pub fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
        .unwrap_or_default()
}
