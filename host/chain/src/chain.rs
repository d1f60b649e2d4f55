//! Rule chains: loaded from a [`ConfigFile`], run per recipient group.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sluice_engine::{
    action_to_edit_in, Action, Bounce, Context, Direction, Flow, ForwardRequest, HttpClient,
    LookupResult, LookupTables, MessageSession, RecipientRequest, ReplyRequest, RuleEngine,
    RulePlugin, StepGrants, StepLimits, StepOutcome, StepReport, Verdicts, WarmPool,
};
use sluice_mail::{BannerFallback, Edit, Edited, Message};

use crate::breaker::CircuitBreaker;
use crate::config::{
    BannerFallbackSetting, ConfigError, ConfigFile, DomainSection, OnError, PluginLocation,
    StepMode,
};
use crate::trace::{
    Disposition, GroupOutcome, GroupResult, OutputMessage, PlannedReply, ProcessResult,
    ReplySuppressed, StepTrace,
};

use sluice_deliver::DEFAULT_FOLDER;

/// One step of a chain, ready to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name for the trace and logs (shared with every message's trace).
    pub name: Arc<str>,
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
    /// What the step may use besides the message (`lookups = [...]`).
    pub grants: StepGrants,
}

/// The error of a [`PluginFetcher`] or a [`ConfigSource`](crate::ConfigSource), boxed: they
/// are implemented outside this crate, which stays free of AWS types. Its `Display` is the
/// one-line reason shown to the operator.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Reads remote plugin bytes (e.g. from S3). Implemented outside this crate so the chain
/// stays free of AWS.
pub trait PluginFetcher: Send + Sync {
    /// The object's bytes, or why not.
    fn fetch(&self, url: &str) -> Result<Vec<u8>, SourceError>;
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
        let bytes = fetcher.fetch(url).map_err(|e| e.to_string())?;
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
    /// The `[[outbound]]` chains, for mail local users send (by sending domain).
    outbound: Vec<DomainChain>,
    /// The config's `[directory.*]` tables, opened, for the steps granted them.
    tables: Option<Arc<sluice_directory::Tables>>,
    /// Sends the requests of the steps granted `http` (made only when one is).
    http: Option<Arc<sluice_http::HttpService>>,
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
    /// Received mail, or mail a local user sends (and their SMTP AUTH login).
    pub flow: Flow,
    /// A step (by name) that does not run for this message: the one that quarantined it, when
    /// `sluice quarantine release` runs it through the chain again. Its trace says so; its
    /// `on_error` does not apply.
    pub skip_step: Option<String>,
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
            chains.push(load_chain(
                engine,
                config,
                sources,
                &mut loaded,
                "domain",
                domain.get_ref(),
            )?);
        }
        let mut outbound = Vec::new();
        for domain in &config.outbound {
            outbound.push(load_chain(
                engine,
                config,
                sources,
                &mut loaded,
                "outbound",
                domain.get_ref(),
            )?);
        }
        Ok(RuleChains {
            http: chains
                .iter()
                .chain(&outbound)
                .flat_map(|c| &c.steps)
                .any(|s| s.grants.http.is_some())
                .then(|| Arc::new(sluice_http::HttpService::new())),
            chains,
            outbound,
            tables: open_tables(config)?,
        })
    }

    /// The opened `[directory.*]` tables (to count alias uses after delivery).
    pub fn tables(&self) -> Option<&Arc<sluice_directory::Tables>> {
        self.tables.as_ref()
    }

    /// The chains, in config order.
    pub fn chains(&self) -> &[DomainChain] {
        &self.chains
    }

    /// The `[[outbound]]` chains, in config order.
    pub fn outbound_chains(&self) -> &[DomainChain] {
        &self.outbound
    }

    /// The outbound chain for mail sent from `domain`: its own, else `*`'s, else none (the
    /// mail leaves unchanged).
    fn outbound_chain_for(&self, domain: &str) -> Option<&DomainChain> {
        self.outbound
            .iter()
            .find(|c| c.domain == domain)
            .or_else(|| self.outbound.iter().find(|c| c.domain == "*"))
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
    /// recipient, what happens to it. Nothing is delivered here (see `sluice-deliver`).
    ///
    /// A recipient that a rule adds in another configured domain is not delivered by the
    /// chain that added it: it is handed to its own domain's chain, as if it had been an
    /// envelope recipient (that chain sees the message as received; the adding chain's edits
    /// do not apply to it). So every configured domain's rules see every message its
    /// mailboxes get, whoever addressed it. A recipient that a domain's chain already handled
    /// for this message is not handed to it again, and hand-offs stop after
    /// [`MAX_HANDOFFS`] rounds (the rest bounce with 5.4.6, a routing loop).
    ///
    /// Mail a local user sends (`envelope.flow` outbound) runs one `[[outbound]]` chain
    /// instead: see [`RuleChains::process_outbound`].
    pub fn process(
        &self,
        engine: &RuleEngine,
        message: Arc<Message>,
        envelope: &Envelope,
    ) -> ProcessResult {
        if envelope.flow.is_outbound() {
            return self.process_outbound(engine, message, envelope);
        }
        let mut groups: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
        for rcpt in &envelope.recipients {
            let key = self.group_key(domain_of(rcpt));
            add_to_group(&mut groups, key, rcpt, None);
        }
        // (group key, recipient) pairs a chain has already run for.
        let mut handled: Vec<(String, String)> = Vec::new();
        let mut session = self.session(engine, message.clone(), &envelope.flow);
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
                    tracing::warn!(domain = %key, recipients = %sluice_telemetry::Addresses(&fresh), "routing loop: recipients handed between domains' chains too often");
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

    /// Mail a local user sends: the chain is picked by the sending domain (the domain of the
    /// SMTP AUTH login when it is an address, else of MAIL FROM), and every recipient, local
    /// or not, is one group (the rules see the whole message as it leaves). Each final
    /// recipient is a `relay` disposition: the MTA sends them all; there are no hand-offs to
    /// `[[domain]]` chains (local recipients' copies come back in through the MTA as received
    /// mail, and those chains see them then).
    pub fn process_outbound(
        &self,
        engine: &RuleEngine,
        message: Arc<Message>,
        envelope: &Envelope,
    ) -> ProcessResult {
        let domain = domain_of(sending_address(envelope));
        let chain = self.outbound_chain_for(&domain);
        let key = match chain {
            Some(c) if c.domain == "*" => "*".to_string(),
            _ => domain,
        };
        let mut session = self.session(engine, message.clone(), &envelope.flow);
        let result = self.run_group(
            &mut session,
            chain,
            &key,
            envelope.recipients.clone(),
            envelope,
        );
        ProcessResult {
            message_id: envelope.message_id.clone(),
            size: message.size(),
            groups: vec![result],
        }
    }

    /// A session for one message, serving the tables, HTTP and flow its steps may use.
    fn session<'e>(
        &self,
        engine: &'e RuleEngine,
        message: Arc<Message>,
        flow: &Flow,
    ) -> MessageSession<'e> {
        let mut session = MessageSession::new(engine, message).with_flow(flow.clone());
        if let Some(tables) = &self.tables {
            session = session.with_tables(tables.clone() as Arc<dyn LookupTables>);
        }
        if let Some(http) = &self.http {
            session = session.with_http(http.clone() as Arc<dyn HttpClient>);
        }
        session
    }

    /// Runs one recipient group through `chain` and decides each recipient's disposition.
    fn run_group(
        &self,
        session: &mut MessageSession<'_>,
        chain: Option<&DomainChain>,
        domain: &str,
        original: Vec<String>,
        envelope: &Envelope,
    ) -> GroupResult {
        let mut run = GroupRun::new(original.clone(), envelope.flow.direction);
        let mut ctx = Arc::new(group_context(domain, envelope));
        for step in chain.map(|c| c.steps.as_slice()).unwrap_or_default() {
            // `clone_from` reuses the buffers of the previous step's context: a warm step
            // costs about a microsecond, and seven fresh strings per step were a tenth of it.
            // The session hands a 0.2 rule a clone of the `Arc` and drops it when the step
            // returns, so `make_mut` never copies.
            if envelope.skip_step.as_deref() == Some(&*step.name) {
                run.pass_over(
                    step,
                    "released from quarantine: this step quarantined it".into(),
                );
                continue;
            }
            let step_ctx = Arc::make_mut(&mut ctx);
            step_ctx.recipients.clone_from(&run.recipients);
            step_ctx.config.clone_from(&step.config_json);
            match run_with_breaker(session, step, &ctx) {
                Ok(report) => run.record(step, report),
                Err(reason) => run.skip(step, reason),
            }
            if run.ended() {
                break;
            }
        }
        if let Some(reason) = run.tempfail.take() {
            return GroupResult {
                domain: domain.to_string(),
                recipients: original,
                steps: run.steps,
                edits: run.edits,
                edit_error: None,
                edit_note: None,
                outcome: GroupOutcome::Tempfail { reason },
                dispositions: Vec::new(),
                output: None,
                handed_off: Vec::new(),
                handed_from: None,
                replies: Vec::new(),
            };
        }
        let (dispositions, handed_off) = self.dispositions(domain, &original, &run);
        let replies = plan_replies(session.message(), envelope, &run.replies, &dispositions);
        let fallback = chain
            .map(|c| c.banner_fallback)
            .unwrap_or(BannerFallback::Wrap);
        let (output, edit_error, edit_note) = render_output(
            session.message(),
            &run.edits,
            fallback,
            &dispositions,
            domain,
        );
        GroupResult {
            domain: domain.to_string(),
            recipients: original,
            steps: run.steps,
            edits: run.edits,
            edit_error,
            edit_note,
            outcome: GroupOutcome::Done,
            dispositions,
            output,
            handed_off,
            handed_from: None,
            replies,
        }
    }

    /// The dispositions of a group whose chain did not tempfail, and the recipients handed to
    /// another configured domain's chain.
    fn dispositions(
        &self,
        domain: &str,
        original: &[String],
        run: &GroupRun,
    ) -> (Vec<Disposition>, Vec<String>) {
        match &run.terminal {
            Some(Terminal::Bounce(b)) => {
                let all = original.iter().map(|r| bounce_of(r, b)).collect();
                return (all, Vec::new());
            }
            Some(Terminal::Drop) => {
                let all = original
                    .iter()
                    .map(|r| Disposition::Drop {
                        recipient: r.clone(),
                    })
                    .collect();
                return (all, Vec::new());
            }
            None => {}
        }
        let mut list = Vec::new();
        let mut handed_off = Vec::new();
        for r in &run.recipients {
            let route = match run.direction {
                Direction::Outbound => Route::Relay,
                Direction::Inbound => self.route_added(domain, original, r),
            };
            match route {
                Route::Deliver => list.push(Disposition::Deliver {
                    recipient: r.clone(),
                    folder: run.folder.clone().unwrap_or_else(|| DEFAULT_FOLDER.into()),
                }),
                Route::HandOff => handed_off.push(r.clone()),
                Route::Relay => list.push(Disposition::Relay {
                    recipient: r.clone(),
                    from: None,
                    subject_prefix: None,
                }),
            }
        }
        list.extend(run.requested_dispositions());
        (list, handed_off)
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

/// Loads one `[[domain]]` or `[[outbound]]` (`table`) chain: its plugins (each file once,
/// through `loaded`), hashes, limits and configs. Errors name the file, line, chain and step.
fn load_chain(
    engine: &RuleEngine,
    config: &ConfigFile,
    sources: &PluginSources<'_>,
    loaded: &mut BTreeMap<String, RulePlugin>,
    table: &str,
    d: &DomainSection,
) -> Result<DomainChain, ConfigError> {
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
                    "{table} {:?} step {} ({name}): {message}",
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
                        RulePlugin::load_file(engine, &name, path).map_err(|e| at(e.to_string()))?
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
            name: name.into(),
            plugin,
            limits,
            on_error: s.on_error,
            mode: s.mode,
            config_json,
            breaker: Arc::new(CircuitBreaker::new(s.breaker)),
            warm: s.warm_settings().map(|w| Arc::new(WarmPool::new(w))),
            grants: s.grants(&limits),
        });
    }
    Ok(DomainChain {
        domain: d.name.get_ref().to_ascii_lowercase(),
        steps,
        banner_fallback: match d.banner_fallback {
            BannerFallbackSetting::Wrap => BannerFallback::Wrap,
            BannerFallbackSetting::Ignore => BannerFallback::Ignore,
        },
    })
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

enum Terminal {
    Bounce(Bounce),
    Drop,
}

/// The address whose domain picks an outbound chain: the SMTP AUTH login when it is an
/// address (`alice@example.com`), else MAIL FROM (a bare login such as `alice` names no
/// domain).
fn sending_address(envelope: &Envelope) -> &str {
    match envelope.flow.authenticated_sender.as_deref() {
        Some(login) if login.contains('@') => login,
        _ => &envelope.mail_from,
    }
}

/// The part of a step's context that is the same for every step of a group's chain; each
/// step fills in its current recipients and its config.
fn group_context(domain: &str, envelope: &Envelope) -> Context {
    Context {
        domain: domain.to_string(),
        recipients: Vec::new(),
        mail_from: envelope.mail_from.clone(),
        verdicts: envelope.verdicts.clone(),
        received_at: envelope.received_at,
        message_id: envelope.message_id.clone(),
        config: String::new(),
    }
}

/// Runs `step` unless its circuit breaker is open (`Err` says why it was skipped), and tells
/// the breaker how it went.
fn run_with_breaker(
    session: &mut MessageSession<'_>,
    step: &Step,
    ctx: &Arc<Context>,
) -> Result<StepReport, String> {
    if let Some(left) = step.breaker.open_now() {
        return Err(format!(
            "skipped: circuit breaker open after repeated failures ({} s of cool-down left)",
            left.as_secs() + 1
        ));
    }
    let report = match &step.warm {
        Some(pool) => session.run_step_warm(
            &step.name,
            &step.plugin,
            &step.limits,
            &step.grants,
            ctx,
            pool,
        ),
        None => session.run_step(&step.name, &step.plugin, &step.limits, &step.grants, ctx),
    };
    match &report.outcome {
        StepOutcome::Actions { .. } => step.breaker.success(),
        StepOutcome::RuleError { .. } | StepOutcome::Failed { .. } => {
            if step.breaker.failure(Instant::now()) {
                tracing::warn!(step = %step.name, "circuit breaker opened: the step is skipped during its cool-down");
            }
        }
    }
    Ok(report)
}

/// The policy for a rule's own error: a temporary error never bounces, it tempfails; and a
/// temporary error from a step whose lookup failed tempfails whatever `on_error` says: going
/// on would route the message without the data the rule needed (an alias directory that is
/// down must not make its aliases unknown users, or skip them).
fn policy_for_rule_error(on_error: OnError, temporary: bool, lookup_failed: bool) -> OnError {
    if temporary && (on_error == OnError::Bounce || lookup_failed) {
        OnError::Tempfail
    } else {
        on_error
    }
}

/// Whether one of the step's lookups failed in a way a retry may cure.
fn lookup_failed_temporarily(report: &StepReport) -> bool {
    failed_lookup(report).is_some()
}

/// The error of the step's first lookup that failed in a way a retry may cure.
fn failed_lookup(report: &StepReport) -> Option<&str> {
    report.lookups.iter().find_map(|l| match &l.result {
        LookupResult::Failed {
            temporary: true,
            error,
        } => Some(error.as_str()),
        _ => None,
    })
}

/// Opens the config's `[directory.*]` sections (none: no tables).
fn open_tables(config: &ConfigFile) -> Result<Option<Arc<sluice_directory::Tables>>, ConfigError> {
    if config.directories.is_empty() {
        return Ok(None);
    }
    sluice_directory::Tables::open(&config.directories, &config.source.base_dir)
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| ConfigError {
            file: config.source.name.clone(),
            line: 0,
            message: format!("cannot open a directory: {e}"),
        })
}

/// The message the group's deliveries carry: none when nothing is delivered or relayed, the
/// original without edits, else the edited bytes (or the original, with the reason, when the
/// edits cannot be applied safely: delivered unchanged rather than lost); and the note for an
/// edited copy whose bare CRs in header blocks became line breaks.
fn render_output(
    message: &Message,
    edits: &[Edit],
    fallback: BannerFallback,
    dispositions: &[Disposition],
    domain: &str,
) -> (Option<OutputMessage>, Option<String>, Option<String>) {
    let needs_output = dispositions
        .iter()
        .any(|d| matches!(d, Disposition::Deliver { .. } | Disposition::Relay { .. }));
    if !needs_output {
        return (None, None, None);
    }
    if edits.is_empty() {
        return (Some(OutputMessage::Original), None, None);
    }
    match sluice_mail::edit_message(message, edits, fallback) {
        // Edits that change nothing (a banner the message shows already, a subject that has
        // the prefix) leave the original: "modified" in the trace means modified.
        Ok(Edited::Unchanged) => (Some(OutputMessage::Original), None, None),
        Ok(Edited::Changed(edited)) => {
            let note = match message.normalised_bare_crs() {
                0 => None,
                n => Some(format!(
                    "{n} bare CR(s) (CR without LF) in header blocks are line breaks in the edited copy, as every mail reader reads them"
                )),
            };
            (Some(OutputMessage::Edited(Arc::new(edited))), None, note)
        }
        Err(e) => {
            tracing::warn!(domain, "edits not applied, delivering the original: {e}");
            (Some(OutputMessage::Original), Some(e.to_string()), None)
        }
    }
}

fn bounce_of(recipient: &str, b: &Bounce) -> Disposition {
    Disposition::Bounce {
        recipient: recipient.to_string(),
        code: b.code,
        status: b.status.clone(),
        text: b.text.clone(),
    }
}

/// What one group's chain has decided so far, threaded through its steps.
struct GroupRun {
    /// The group's current recipients (what the next step sees).
    recipients: Vec<String>,
    folder: Option<String>,
    edits: Vec<Edit>,
    /// A bounce or drop of the whole group: ends the chain.
    terminal: Option<Terminal>,
    /// Why the message must be retried: ends the chain, nothing is delivered.
    tempfail: Option<String>,
    /// A `stop` action: ends the chain.
    stopped: bool,
    /// Per-recipient outcomes asked through the `recipients` interface.
    refused: Vec<(String, Bounce)>,
    discarded: Vec<String>,
    forwards: Vec<ForwardRequest>,
    /// Automatic replies asked for (`reply.send`), with the step that asked; one per
    /// recipient (the first step's).
    replies: Vec<(Arc<str>, ReplyRequest)>,
    steps: Vec<StepTrace>,
    /// The chain's direction: an outbound chain may remove `Received`.
    direction: Direction,
}

impl GroupRun {
    fn new(recipients: Vec<String>, direction: Direction) -> GroupRun {
        GroupRun {
            recipients,
            folder: None,
            edits: Vec::new(),
            terminal: None,
            tempfail: None,
            stopped: false,
            refused: Vec::new(),
            discarded: Vec::new(),
            forwards: Vec::new(),
            replies: Vec::new(),
            steps: Vec::new(),
            direction,
        }
    }

    /// Whether the chain ends here.
    fn ended(&self) -> bool {
        self.stopped || self.terminal.is_some() || self.tempfail.is_some()
    }

    /// Records a step the circuit breaker did not run: its `on_error` policy applies.
    fn skip(&mut self, step: &Step, reason: String) {
        let mut trace = StepTrace::skipped(&step.name, &step.plugin, step.mode, reason.clone());
        trace.policy = Some(step.on_error);
        self.apply_policy(step.on_error, &step.name, &reason);
        self.steps.push(trace);
    }

    /// Records a step that was not asked (a quarantine release skips the step that
    /// quarantined the message): no policy applies, nothing else changes.
    fn pass_over(&mut self, step: &Step, reason: String) {
        self.steps.push(StepTrace::skipped(
            &step.name,
            &step.plugin,
            step.mode,
            reason,
        ));
    }

    /// Records a step's answer: its actions and requests when enforced, its policy when it
    /// failed.
    fn record(&mut self, step: &Step, report: StepReport) {
        let policy = match &report.outcome {
            StepOutcome::Actions {
                actions,
                requests,
                replacements,
            } => {
                if step.mode == StepMode::Enforce {
                    self.apply_requests_of(&step.name, requests);
                    self.apply_actions(actions);
                    let parts = replacements.iter().cloned().map(Edit::ReplacePart);
                    self.edits.extend(parts);
                }
                None
            }
            StepOutcome::RuleError { error } => {
                let policy = policy_for_rule_error(
                    step.on_error,
                    error.temporary,
                    lookup_failed_temporarily(&report),
                );
                self.apply_policy(policy, &step.name, &error.message);
                Some(policy)
            }
            StepOutcome::Failed { failure } => {
                // Cut short (its deadline, a trap) after a lookup failed: the rule never got
                // the data it needed, as when it reports the lookup's error itself, so the
                // message waits for the directory rather than go on without it.
                let (policy, reason) = match failed_lookup(&report) {
                    Some(lookup) => (OnError::Tempfail, format!("{failure}, after {lookup}")),
                    None => (step.on_error, failure.to_string()),
                };
                self.apply_policy(policy, &step.name, &reason);
                Some(policy)
            }
        };
        // The report moves into the trace: its actions and logs are not copied.
        let mut trace = StepTrace::new(&step.name, &step.plugin, step.mode, report);
        trace.policy = policy;
        self.steps.push(trace);
    }

    #[cfg(test)]
    fn apply_requests(&mut self, requests: &[RecipientRequest]) {
        self.apply_requests_of(&Arc::from("test"), requests)
    }

    fn apply_requests_of(&mut self, step: &Arc<str>, requests: &[RecipientRequest]) {
        for request in requests {
            match request {
                RecipientRequest::Refuse { recipient, bounce } => {
                    self.recipients
                        .retain(|r| !r.eq_ignore_ascii_case(recipient));
                    self.refused.push((recipient.clone(), bounce.clone()));
                }
                RecipientRequest::Discard { recipient } => {
                    self.recipients
                        .retain(|r| !r.eq_ignore_ascii_case(recipient));
                    self.discarded.push(recipient.clone());
                }
                RecipientRequest::Forward(f) => {
                    if f.redirect {
                        self.recipients.clear();
                    }
                    self.forwards.push(f.clone());
                }
                RecipientRequest::Reply(r) => {
                    let same = |(_, e): &(Arc<str>, ReplyRequest)| {
                        e.recipient.eq_ignore_ascii_case(&r.recipient)
                    };
                    if !self.replies.iter().any(same) {
                        self.replies.push((Arc::clone(step), r.clone()));
                    }
                }
            }
        }
    }

    fn apply_actions(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::SetRecipients(list) => {
                    self.recipients.clear();
                    push_unique(&mut self.recipients, list);
                }
                Action::AddRecipients(list) => push_unique(&mut self.recipients, list),
                Action::FileInto(f) => self.folder = Some(f.clone()),
                Action::Bounce(b) => self.terminal = Some(Terminal::Bounce(b.clone())),
                Action::Drop => self.terminal = Some(Terminal::Drop),
                Action::Stop => self.stopped = true,
                Action::AddHeader(_)
                | Action::SetHeader(_)
                | Action::RemoveHeader(_)
                | Action::PrefixSubject(_)
                | Action::AddBanner(_) => {
                    self.edits.extend(action_to_edit_in(action, self.direction))
                }
            }
        }
    }

    fn apply_policy(&mut self, policy: OnError, step: &str, reason: &str) {
        match policy {
            OnError::Continue => {
                tracing::warn!(step, "step failed, continuing: {reason}")
            }
            OnError::Tempfail => {
                tracing::warn!(step, "step failed, tempfail: {reason}");
                self.tempfail = Some(format!("step {step} failed: {reason}"));
            }
            OnError::Bounce => {
                tracing::warn!(step, "step failed, bouncing: {reason}");
                self.terminal = Some(Terminal::Bounce(Bounce {
                    code: 554,
                    status: "5.3.0".into(),
                    text: format!("message refused: rule {step} failed"),
                }));
            }
        }
    }

    /// Relayed copies the rules asked for (each address once), then the recipients they
    /// refused or discarded one by one.
    fn requested_dispositions(&self) -> Vec<Disposition> {
        let mut list = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for f in &self.forwards {
            for to in &f.to {
                if seen.iter().any(|s| s.eq_ignore_ascii_case(to)) {
                    continue;
                }
                seen.push(to);
                list.push(Disposition::Relay {
                    recipient: to.clone(),
                    from: f.from.clone(),
                    subject_prefix: f.subject_prefix.clone(),
                });
            }
        }
        list.extend(self.refused.iter().map(|(r, b)| bounce_of(r, b)));
        list.extend(self.discarded.iter().map(|r| Disposition::Drop {
            recipient: r.clone(),
        }));
        list
    }
}

fn push_unique(list: &mut Vec<String>, add: &[String]) {
    for a in add {
        if !list.iter().any(|r| r.eq_ignore_ascii_case(a)) {
            list.push(a.clone());
        }
    }
}

/// The replies the rules asked for, each marked with why it is not sent: the recipient's copy
/// is not delivered to its mailbox (bounced, dropped, relayed, filed nowhere), or the message
/// is one RFC 3834 says never to answer (checked by the host whatever the rule checked).
fn plan_replies(
    message: &Message,
    envelope: &Envelope,
    asked: &[(Arc<str>, ReplyRequest)],
    dispositions: &[Disposition],
) -> Vec<PlannedReply> {
    asked
        .iter()
        .map(|(step, r)| {
            let delivered = dispositions.iter().any(|d| {
                matches!(d, Disposition::Deliver { recipient, .. } if recipient.eq_ignore_ascii_case(&r.recipient))
            });
            let suppressed = if !delivered {
                Some(ReplySuppressed {
                    kind: "not-delivered",
                    reason: format!(
                        "the message is not delivered to {}'s mailbox",
                        r.recipient
                    ),
                })
            } else {
                sluice_mail::no_auto_reply(message, &envelope.mail_from, &r.recipient).map(|why| {
                    ReplySuppressed {
                        kind: why.as_str(),
                        reason: why.to_string(),
                    }
                })
            };
            PlannedReply {
                step: Arc::clone(step),
                from: r.recipient.clone(),
                to: envelope.mail_from.clone(),
                request: r.clone(),
                suppressed,
            }
        })
        .collect()
}

/// The lower-case domain of an address (empty when it has none).
pub fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::Header;

    fn chains(domains: &[&str]) -> RuleChains {
        RuleChains {
            chains: domains
                .iter()
                .map(|d| DomainChain {
                    domain: d.to_string(),
                    steps: Vec::new(),
                    banner_fallback: BannerFallback::Wrap,
                })
                .collect(),
            outbound: Vec::new(),
            tables: None,
            http: None,
        }
    }

    /// What the trace says for input two readers read differently: declined with the reason,
    /// or, for a bare CR in a header block, edited with a note.
    #[test]
    fn ambiguous_input_is_declined_or_noted_in_the_trace() {
        let deliver = [Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into(),
        }];
        let banner = [Edit::AddBanner(sluice_mail::Banner {
            text: "CAUTION".into(),
            html: None,
            position: sluice_mail::Position::Top,
        })];
        let fixture = |name: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../mail/tests/fixtures/ambiguous");
            Message::parse(std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        let mid_line = fixture("mid-line-close.eml");
        let (output, error, note) = render_output(
            &mid_line,
            &banner,
            BannerFallback::Wrap,
            &deliver,
            "example.com",
        );
        assert!(matches!(output, Some(OutputMessage::Original)));
        assert_eq!(
            error.as_deref(),
            Some("edits declined: the message can be read two ways (the boundary of multipart part 0 in the middle of a line, byte 200)")
        );
        assert_eq!(note, None);
        let bare_cr = fixture("bare-cr-part-header.eml");
        let (output, error, note) = render_output(
            &bare_cr,
            &banner,
            BannerFallback::Wrap,
            &deliver,
            "example.com",
        );
        assert!(matches!(output, Some(OutputMessage::Edited(_))));
        assert_eq!(error, None);
        assert!(note.is_some_and(|n| n.starts_with("1 bare CR(s)")));
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn bounce(code: u16, status: &str) -> Bounce {
        Bounce {
            code,
            status: status.into(),
            text: "no".into(),
        }
    }

    #[test]
    fn actions_change_recipients_folder_and_edits_in_order() {
        let mut run = GroupRun::new(strings(&["a@x.test"]), Direction::Inbound);
        run.apply_actions(&[
            Action::AddRecipients(strings(&["B@x.test", "a@X.test", "b@x.test"])),
            Action::FileInto("Junk".into()),
            Action::PrefixSubject("[ext] ".into()),
            Action::AddHeader(Header {
                name: "X-A".into(),
                value: "1".into(),
            }),
            Action::FileInto("Archive".into()),
        ]);
        assert_eq!(
            run.recipients,
            strings(&["a@x.test", "B@x.test"]),
            "case-insensitive, first kept"
        );
        assert_eq!(
            run.folder.as_deref(),
            Some("Archive"),
            "the last file-into wins"
        );
        assert_eq!(run.edits.len(), 2);
        assert!(!run.ended());
        run.apply_actions(&[Action::SetRecipients(strings(&["c@y.test", "C@y.test"]))]);
        assert_eq!(run.recipients, strings(&["c@y.test"]));
        run.apply_actions(&[Action::Stop]);
        assert!(run.ended() && run.terminal.is_none());
    }

    #[test]
    fn bounce_and_drop_end_the_chain_for_the_original_recipients() {
        let rc = chains(&["x.test"]);
        let original = strings(&["a@x.test", "b@x.test"]);
        let mut run = GroupRun::new(original.clone(), Direction::Inbound);
        run.apply_actions(&[
            Action::SetRecipients(strings(&["c@x.test"])),
            Action::Bounce(bounce(550, "5.7.1")),
        ]);
        assert!(run.ended());
        let (dispositions, handed) = rc.dispositions("x.test", &original, &run);
        assert!(handed.is_empty());
        let bounced: Vec<&str> = dispositions
            .iter()
            .map(|d| match d {
                Disposition::Bounce {
                    recipient, code, ..
                } if *code == 550 => recipient.as_str(),
                other => panic!("not a 550 bounce: {other:?}"),
            })
            .collect();
        assert_eq!(bounced, ["a@x.test", "b@x.test"]);

        let mut run = GroupRun::new(original.clone(), Direction::Inbound);
        run.apply_actions(&[Action::Drop]);
        let (dispositions, _) = rc.dispositions("x.test", &original, &run);
        assert!(dispositions
            .iter()
            .all(|d| matches!(d, Disposition::Drop { .. })));
        assert_eq!(dispositions.len(), 2);
    }

    #[test]
    fn recipients_route_to_mailboxes_other_chains_or_the_relay() {
        let rc = chains(&["x.test", "y.test"]);
        let original = strings(&["a@x.test"]);
        let mut run = GroupRun::new(original.clone(), Direction::Inbound);
        run.apply_actions(&[
            Action::AddRecipients(strings(&["n@x.test", "m@y.test", "o@gmail.test"])),
            Action::FileInto("Junk".into()),
        ]);
        let (dispositions, handed) = rc.dispositions("x.test", &original, &run);
        assert_eq!(
            handed,
            strings(&["m@y.test"]),
            "another configured domain's chain"
        );
        assert_eq!(
            dispositions,
            vec![
                Disposition::Deliver {
                    recipient: "a@x.test".into(),
                    folder: "Junk".into()
                },
                Disposition::Deliver {
                    recipient: "n@x.test".into(),
                    folder: "Junk".into()
                },
                Disposition::Relay {
                    recipient: "o@gmail.test".into(),
                    from: None,
                    subject_prefix: None
                },
            ]
        );
        // An original recipient is delivered even when its domain is not configured (the
        // catch-all group).
        let rc = chains(&["*"]);
        let run = GroupRun::new(strings(&["z@any.test"]), Direction::Inbound);
        let (dispositions, _) = rc.dispositions("*", &strings(&["z@any.test"]), &run);
        assert!(matches!(&dispositions[..], [Disposition::Deliver { .. }]));
    }

    #[test]
    fn requests_refuse_discard_and_forward_single_recipients() {
        let rc = chains(&["x.test"]);
        let original = strings(&["a@x.test", "b@x.test", "c@x.test"]);
        let mut run = GroupRun::new(original.clone(), Direction::Inbound);
        let forward = |to: &[&str], redirect| {
            RecipientRequest::Forward(ForwardRequest {
                to: strings(to),
                from: None,
                subject_prefix: Some("[fwd] ".into()),
                redirect,
            })
        };
        run.apply_requests(&[
            RecipientRequest::Refuse {
                recipient: "A@x.test".into(),
                bounce: bounce(550, "5.1.1"),
            },
            RecipientRequest::Discard {
                recipient: "b@x.test".into(),
            },
            forward(&["me@gmail.test", "ME@gmail.test"], false),
            forward(&["me@gmail.test"], false),
        ]);
        assert_eq!(run.recipients, strings(&["c@x.test"]));
        let (dispositions, _) = rc.dispositions("x.test", &original, &run);
        let kinds: Vec<String> = dispositions
            .iter()
            .map(|d| match d {
                Disposition::Deliver { recipient, .. } => format!("deliver {recipient}"),
                Disposition::Relay { recipient, .. } => format!("relay {recipient}"),
                Disposition::Bounce { recipient, .. } => format!("bounce {recipient}"),
                Disposition::Drop { recipient } => format!("drop {recipient}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "deliver c@x.test",
                "relay me@gmail.test",
                "bounce A@x.test",
                "drop b@x.test"
            ],
            "each forward address once"
        );
        run.apply_requests(&[forward(&["you@gmail.test"], true)]);
        assert!(
            run.recipients.is_empty(),
            "a redirect takes the group's recipients"
        );
    }

    #[test]
    fn policies_for_failed_steps() {
        let mut run = GroupRun::new(strings(&["a@x.test"]), Direction::Inbound);
        run.apply_policy(OnError::Continue, "s", "why");
        assert!(!run.ended());
        run.apply_policy(OnError::Bounce, "s", "why");
        assert!(
            matches!(&run.terminal, Some(Terminal::Bounce(b)) if b.code == 554 && b.status == "5.3.0")
        );
        let mut run = GroupRun::new(strings(&["a@x.test"]), Direction::Inbound);
        run.apply_policy(OnError::Tempfail, "s", "why");
        assert_eq!(run.tempfail.as_deref(), Some("step s failed: why"));
        assert!(run.ended());

        assert_eq!(
            policy_for_rule_error(OnError::Bounce, true, false),
            OnError::Tempfail
        );
        assert_eq!(
            policy_for_rule_error(OnError::Bounce, false, false),
            OnError::Bounce
        );
        assert_eq!(
            policy_for_rule_error(OnError::Continue, true, false),
            OnError::Continue
        );
        // A directory that is down: retried, never skipped.
        assert_eq!(
            policy_for_rule_error(OnError::Continue, true, true),
            OnError::Tempfail
        );
        assert_eq!(
            policy_for_rule_error(OnError::Continue, false, true),
            OnError::Continue
        );
    }

    #[test]
    fn output_only_when_something_is_delivered_and_the_original_when_edits_fail() {
        let message = Message::parse(
            b"From: a@x.test\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n".to_vec(),
        )
        .unwrap();
        let deliver = [Disposition::Deliver {
            recipient: "a@x.test".into(),
            folder: "INBOX".into(),
        }];
        let drop = [Disposition::Drop {
            recipient: "a@x.test".into(),
        }];
        let prefix = [Edit::PrefixSubject("[ext] ".into())];
        let fallback = BannerFallback::Wrap;
        assert!(matches!(
            render_output(&message, &prefix, fallback, &drop, "x.test"),
            (None, None, None)
        ));
        assert!(matches!(
            render_output(&message, &[], fallback, &deliver, "x.test"),
            (Some(OutputMessage::Original), None, None)
        ));
        match render_output(&message, &prefix, fallback, &deliver, "x.test") {
            (Some(OutputMessage::Edited(edited)), None, None) => {
                assert!(edited.raw().windows(17).any(|w| w == b"Subject: [ext] hi"))
            }
            other => panic!("{other:?}"),
        }
        // An edit the message cannot take (a protected header) leaves it as received.
        let protected = [Edit::RemoveHeader("Received".into())];
        match render_output(&message, &protected, fallback, &deliver, "x.test") {
            (Some(OutputMessage::Original), Some(reason), None) => {
                assert!(reason.contains("protected"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_merge_case_insensitively_and_domains_are_lower_case() {
        let mut groups = Vec::new();
        add_to_group(&mut groups, "x.test".into(), "a@x.test", None);
        add_to_group(&mut groups, "x.test".into(), "A@x.test", None);
        add_to_group(
            &mut groups,
            "y.test".into(),
            "b@y.test",
            Some("x.test".into()),
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, strings(&["a@x.test"]));
        assert_eq!(groups[1].2.as_deref(), Some("x.test"));
        assert_eq!(domain_of("<Bob@Example.COM>"), "example.com");
        assert_eq!(domain_of("nobody"), "");
        let rc = chains(&["x.test", "*"]);
        assert_eq!(rc.group_key("x.test".into()), "x.test");
        assert_eq!(rc.group_key("other.test".into()), "*");
        assert_eq!(
            chains(&["x.test"]).group_key("other.test".into()),
            "other.test"
        );
    }
}
