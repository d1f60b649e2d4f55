//! The one processing function behind every event source (Lambda, daemon).
//!
//! [`Pipeline::handle`] takes one [`SesNotice`], fetches the message, runs the chain of each
//! recipient group, and makes every delivery the chain decided: mailbox copies (S3 or a
//! directory), relayed copies and DSN bounces through SES. It answers `Ok` only when all of
//! them are done; an `Err` leaves the event to be retried (SQS visibility, Lambda retry, then
//! the DLQ), and every delivery is idempotent, so a retry redoes nothing that was done.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_aws::{AwsError, BlockingS3, S3ConfigSource, S3Url, Ses, S3};
use sluice_chain::{
    ConfigFile, ConfigSource, DirStore, Disposition, Envelope, FileConfigSource, GroupOutcome,
    GroupResult, LiveChains, LoadedChains, OutputMessage, PluginSources, ProcessResult,
    RelayTransport, ReloadOutcome, StoreConfig,
};
use sluice_deliver::{
    DeliveredLog, DirDeliveredLog, DirMailboxes, LmtpStore, MailboxCopy, MailboxStore, SmtpSender,
    SmtpStore, StoreRequest,
};
use sluice_engine::{EngineOptions, RuleEngine};
use sluice_mail::Message;

use crate::deliver::{
    BounceJob, BounceReport, Bouncer, DeliverError, Markers, Outbound, Refusal, RefusalKind, Relay,
    RelayJob, S3DeliveredLog, S3Mailboxes, Suppression, TraceMeta,
};
use crate::event::{MessageContent, SesNotice};

/// How to start a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The config: a path or `s3://bucket/key.toml`.
    pub config: String,
    /// How often to check the config's version (S3 ETag / file mtime) for a hot reload.
    pub reload_interval: Duration,
    /// Plugin and compiled-code cache (default: `/tmp/sluice` in Lambda, else the user cache).
    pub cache_dir: Option<PathBuf>,
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// SES message id.
    pub message_id: String,
    /// Every recipient was dropped or bounced: an SES receipt rule set can stop here
    /// (`STOP_RULE_SET`).
    pub all_refused: bool,
    /// One line for the log: counts per delivery kind.
    pub summary: String,
    /// Where each mailbox copy went (`s3://…` or a path).
    pub stored: Vec<String>,
    /// Every recipient a copy was to be relayed to, and what happened (sent, sent before,
    /// unconfirmed, refused and why).
    pub relayed: Vec<Relayed>,
    /// Every bounce decision: a DSN sent, sent before, unconfirmed, or suppressed and why
    /// (including Sluice's own relay refusals, which are never bounced).
    pub bounces: Vec<BounceOutcome>,
    /// Time spent parsing and running the chains, in µs.
    pub chain_micros: u64,
    /// Time for the whole message (fetch, chains, deliveries), in µs.
    pub total_micros: u64,
}

/// One relayed recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The recipient.
    pub recipient: String,
    /// What happened.
    pub status: RelayStatus,
}

/// What happened to one relayed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayStatus {
    /// SES accepted the copy in this attempt.
    Sent,
    /// An earlier attempt sent it.
    AlreadySent,
    /// Claimed by an attempt that never confirmed it (a crash in between): it may or may not
    /// have gone out, and is not sent again. Logged as an error; check SES's sending logs.
    Unconfirmed,
    /// Not relayed.
    Refused(RefusalKind),
}

/// One bounce decision for a set of refused recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceOutcome {
    /// The refused recipients it covers.
    pub recipients: Vec<String>,
    /// What was done.
    pub report: BounceReport,
}

impl Handled {
    /// Recipients whose bounce was suppressed, counted by reason.
    pub fn bounces_suppressed(&self) -> BTreeMap<Suppression, usize> {
        let mut counts = BTreeMap::new();
        for b in &self.bounces {
            if let BounceReport::Suppressed { reason } = b.report {
                *counts.entry(reason).or_default() += b.recipients.len();
            }
        }
        counts
    }

    /// Recipients of sends (relayed copies and bounces) that were claimed earlier and never
    /// confirmed, so were not sent again: each may be missing its copy.
    pub fn unconfirmed(&self) -> Vec<String> {
        let relays = self
            .relayed
            .iter()
            .filter(|r| r.status == RelayStatus::Unconfirmed)
            .map(|r| r.recipient.clone());
        let bounces = self
            .bounces
            .iter()
            .filter(|b| b.report == BounceReport::Unconfirmed)
            .flat_map(|b| b.recipients.iter().cloned());
        relays.chain(bounces).collect()
    }
}

/// Why a message could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {message_id}: {message}")]
pub struct HandleError {
    /// SES message id (or the SQS record id when the notice itself was unreadable).
    pub message_id: String,
    /// What went wrong and what to fix.
    pub message: String,
    /// A retry cannot help (e.g. the S3 object is gone). The event is still reported as
    /// failed, so SQS moves it to the DLQ rather than deleting it.
    pub permanent: bool,
}

impl HandleError {
    fn new(message_id: &str, message: impl Into<String>, permanent: bool) -> HandleError {
        HandleError {
            message_id: message_id.to_string(),
            message: message.into(),
            permanent,
        }
    }
}

/// The loaded config, chains and AWS clients. One per process: the engine and the live
/// chains live as long as the process (they are leaked on purpose, so the blocking threads
/// that run rules can borrow them without reference counting every step).
pub struct Pipeline {
    engine: &'static RuleEngine,
    live: &'static LiveChains<'static>,
    s3: S3,
    ses: Ses,
    /// This process's id in send claims (see [`Markers`]).
    owner: String,
    /// One lock per message id being handled: two copies of one notification (SQS delivers
    /// at least once) handled at the same time in this process would both find no marker
    /// and both send; the second now waits and then finds the first one's markers.
    in_flight: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The delivery targets of the config last used, built once per config version (a
    /// store keeps its connections open across messages).
    targets: std::sync::Mutex<Option<(Arc<LoadedChains>, Arc<Targets>)>>,
}

/// The mailbox store and its delivered-copies log, built from one config.
struct Targets {
    /// `Err`: there is no `[store]`, or it could not be built (what to fix).
    store: Result<Arc<dyn MailboxStore>, String>,
    /// For stores that do not overwrite a copy (LMTP, SMTP).
    delivered: Option<Arc<dyn DeliveredLog>>,
    /// How relayed copies and DSNs leave; `Err` when `[relay]` names a smarthost that
    /// cannot be set up (what to fix). `None` without `[relay]`.
    outbound: Option<Result<Outbound, String>>,
}

/// The engine and live chains, built on a blocking thread (the blocking S3 client that reads
/// the config and fetches plugins owns a runtime). The config is read once, here, and sizes
/// the engine before the chains load from it.
fn start_blocking(
    options: &PipelineOptions,
) -> Result<(&'static RuleEngine, &'static LiveChains<'static>), String> {
    let s3: &'static BlockingS3 =
        Box::leak(Box::new(BlockingS3::from_env().map_err(|e| e.to_string())?));
    let source: Box<dyn ConfigSource> = if options.config.starts_with("s3://") {
        Box::new(S3ConfigSource::new(s3, &options.config).map_err(|e| e.to_string())?)
    } else {
        Box::new(FileConfigSource::new(&options.config))
    };
    let source: &'static dyn ConfigSource = Box::leak(source);
    let (config, version) = source.read().map_err(|e| e.to_string())?;
    let cache_dir = options
        .cache_dir
        .clone()
        .or_else(|| {
            config
                .engine
                .cache_dir
                .as_deref()
                .map(|d| config.resolve(d))
        })
        .or_else(sluice_engine::default_cache_dir);
    let max_bytes = config.engine.cache_max_bytes();
    let engine: &'static RuleEngine = Box::leak(Box::new(
        RuleEngine::new(EngineOptions {
            cache_dir: cache_dir.as_ref().map(|d| d.join("compiled")),
            cache_max_bytes: max_bytes,
            pooling: config.engine.pooling_choice(),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?,
    ));
    let plugins = PluginSources {
        fetcher: Some(s3),
        cache_dir: cache_dir.map(|d| d.join("plugins")),
        max_bytes,
    };
    let live = LiveChains::load_from(
        engine,
        source,
        plugins,
        options.reload_interval,
        config,
        version,
    )
    .map_err(|e| e.to_string())?;
    Ok((engine, Box::leak(Box::new(live))))
}

impl Pipeline {
    /// Loads the config and its chains, and sets up the AWS clients from the standard chain
    /// (`AWS_ENDPOINT_URL` points them at an emulator).
    pub async fn start(options: PipelineOptions) -> Result<Pipeline, HandleError> {
        let (s3, ses) = (S3::from_env().await, Ses::from_env().await);
        Pipeline::start_with_clients(options, s3, ses).await
    }

    /// [`Pipeline::start`] with the mailbox/marker S3 client and the SES client given (tests
    /// run several pipelines, each against its own emulator, in one process). Plugins and an
    /// `s3://` config are still read with the standard chain's client.
    pub async fn start_with_clients(
        options: PipelineOptions,
        s3: S3,
        ses: Ses,
    ) -> Result<Pipeline, HandleError> {
        let opts = options.clone();
        let (engine, live) = tokio::task::spawn_blocking(move || start_blocking(&opts))
            .await
            .map_err(|e| HandleError::new("-", format!("start-up panicked: {e}"), true))?
            .map_err(|e| {
                HandleError::new(
                    "-",
                    format!("cannot start with {}: {e}", options.config),
                    true,
                )
            })?;
        let pipeline = Pipeline {
            engine,
            live,
            s3,
            ses,
            owner: Markers::new_owner_id(),
            in_flight: Default::default(),
            targets: Default::default(),
        };
        let loaded = pipeline.live.current();
        // A store or smarthost that cannot be set up (unreadable credentials or CA file) is a
        // start-up error.
        let targets = pipeline.targets(&loaded);
        if let (Err(e), Some(_)) = (&targets.store, &loaded.config.store) {
            return Err(HandleError::new("-", e.clone(), true));
        }
        if let Some(Err(e)) = &targets.outbound {
            return Err(HandleError::new("-", e.clone(), true));
        }
        // A markers bucket that does not exist answers HEAD with 404 like an absent marker,
        // so every retry would send again: refuse to start instead.
        if let Some(markers) = pipeline.markers(&loaded.config) {
            if let Err(e) = pipeline
                .s3
                .client()
                .head_bucket()
                .bucket(&markers.bucket)
                .send()
                .await
            {
                return Err(HandleError::new(
                    "-",
                    format!(
                        "the bucket for relay markers, {:?}, cannot be reached ({}); it records what was sent so a retry does not send twice",
                        markers.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ),
                    true,
                ));
            }
        }
        tracing::info!(
            config = %options.config,
            domains = loaded.chains.chains().len(),
            "sluice pipeline ready"
        );
        Ok(pipeline)
    }

    /// The loaded config and chains (what the next message will use).
    pub fn current(&self) -> Arc<LoadedChains> {
        self.live.current()
    }

    /// Reloads the config if its version changed and the check is due; a bad new config is
    /// logged and the old one keeps serving.
    pub async fn reload_if_due(&self) -> ReloadOutcome {
        let live = self.live;
        tokio::task::spawn_blocking(move || live.reload_if_due())
            .await
            .unwrap_or_else(|e| ReloadOutcome::Refused {
                error: format!("reload panicked: {e}"),
            })
    }

    /// Fetches the message, runs the chain of each recipient's domain and makes every
    /// delivery. `Ok` only when every delivery is done (or was already done by an earlier
    /// attempt); otherwise nothing that was done is done again on retry.
    pub async fn handle(&self, notice: SesNotice) -> Result<Handled, HandleError> {
        let lock = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(notice.message_id.clone()).or_default().clone()
        };
        let id = notice.message_id.clone();
        let result = {
            let _guard = lock.lock().await;
            self.handle_exclusive(notice).await
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Only this call and the map hold it: nobody else is waiting for this id.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&id);
        }
        result
    }

    async fn handle_exclusive(&self, notice: SesNotice) -> Result<Handled, HandleError> {
        let started = std::time::Instant::now();
        let id = notice.message_id.clone();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(HandleError::new(
                &id,
                "the notice has no usable mail.messageId",
                true,
            ));
        }
        if notice.recipients.is_empty() {
            return Err(HandleError::new(
                &id,
                "the notice lists no recipients (receipt.recipients)",
                true,
            ));
        }
        let loaded = self.live.current();
        let raw = self.fetch(&notice, &loaded.config).await?;
        let engine = self.engine;
        let envelope = Envelope {
            message_id: id.clone(),
            mail_from: notice.mail_from.clone(),
            recipients: notice.recipients.clone(),
            verdicts: notice.verdicts.clone(),
            received_at: if notice.received_at > 0 {
                notice.received_at
            } else {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0)
            },
        };
        let chains = loaded.clone();
        let env = envelope.clone();
        let (message, result, chain_micros) = tokio::task::spawn_blocking(move || {
            let chain_started = std::time::Instant::now();
            let message = Message::parse(raw).map(Arc::new)?;
            let result = chains.chains.process(engine, message.clone(), &env);
            let micros = chain_started.elapsed().as_micros() as u64;
            Ok::<_, sluice_mail::ParseError>((message, result, micros))
        })
        .await
        .map_err(|e| HandleError::new(&id, format!("the chain panicked: {e}"), false))?
        .map_err(|e| HandleError::new(&id, format!("cannot parse the message: {e}"), true))?;
        let mut handled = self
            .deliver(&loaded.config, &envelope, &message, &result)
            .await?;
        handled.chain_micros = chain_micros;
        handled.total_micros = started.elapsed().as_micros() as u64;
        Ok(handled)
    }

    async fn fetch(&self, notice: &SesNotice, config: &ConfigFile) -> Result<Vec<u8>, HandleError> {
        let id = &notice.message_id;
        let url = match &notice.content {
            MessageContent::Inline(bytes) => return Ok(bytes.clone()),
            MessageContent::S3 { bucket, key } => S3Url {
                bucket: bucket.clone(),
                key: key.clone(),
            },
            MessageContent::Stored => {
                let Some(inbound) = &config.inbound else {
                    return Err(HandleError::new(
                        id,
                        format!(
                            "SES invoked Sluice directly (Lambda action), which carries no message; \
                             set [inbound] bucket and prefix in {} to where the receipt rule's S3 action stores it",
                            config.source.name
                        ),
                        true,
                    ));
                };
                S3Url {
                    bucket: inbound.bucket.clone(),
                    key: format!("{}{}", inbound.prefix, id),
                }
            }
        };
        match self.s3.get(&url).await {
            Ok(obj) => Ok(obj.bytes),
            Err(e) => {
                let gone = matches!(&e, AwsError::S3NotFound { .. });
                Err(HandleError::new(
                    id,
                    format!("cannot read the message: {e}"),
                    gone,
                ))
            }
        }
    }

    async fn deliver(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        original: &Arc<Message>,
        result: &ProcessResult,
    ) -> Result<Handled, HandleError> {
        let id = &envelope.message_id;
        let fail = |e: DeliverError| HandleError::new(id, e.to_string(), e.is_permanent());
        let hops_received = sluice_mail::hop_count(original);
        let mut handled = Handled {
            message_id: id.clone(),
            all_refused: true,
            summary: String::new(),
            stored: Vec::new(),
            relayed: Vec::new(),
            bounces: Vec::new(),
            chain_micros: 0,
            total_micros: 0,
        };
        let markers = self.markers(config);
        let targets = &*self.targets_for(config);
        let mut tempfail: Option<String> = None;
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut bounce_jobs: Vec<BounceJob> = Vec::new();
        let mut refused_copies: Vec<BounceJob> = Vec::new();
        for group in &result.groups {
            if let GroupOutcome::Tempfail { reason } = &group.outcome {
                handled.all_refused = false;
                tempfail.get_or_insert(format!("domain {}: {reason}", group.domain));
                continue;
            }
            // The bytes every delivery of this group carries; parsed again only if a relay
            // needs the edited message as a `Message` (below).
            let output_raw: &[u8] = match &group.output {
                Some(OutputMessage::Edited(bytes)) => bytes,
                _ => original.raw(),
            };
            let trace = TraceMeta {
                steps: group
                    .steps
                    .iter()
                    .map(|s| (s.step.clone(), s.outcome.to_string()))
                    .collect(),
            };
            let mut relays: Vec<RelayJob> = Vec::new();
            let mut copies: Vec<MailboxCopy> = Vec::new();
            for d in &group.dispositions {
                *counts.entry(d.kind()).or_default() += 1;
                match d {
                    Disposition::Deliver { recipient, folder } => {
                        handled.all_refused = false;
                        copies.push(MailboxCopy {
                            recipient: recipient.clone(),
                            folder: folder.clone(),
                        });
                    }
                    Disposition::Relay {
                        recipient,
                        from,
                        subject_prefix,
                    } => {
                        handled.all_refused = false;
                        match relays
                            .iter_mut()
                            .find(|j| j.from == *from && j.subject_prefix == *subject_prefix)
                        {
                            Some(job) => job.recipients.push(recipient.clone()),
                            None => relays.push(RelayJob {
                                recipients: vec![recipient.clone()],
                                from: from.clone(),
                                subject_prefix: subject_prefix.clone(),
                                // Counted on the message as received: a rule's edits cannot
                                // remove hops.
                                hops_received,
                            }),
                        }
                    }
                    Disposition::Bounce {
                        recipient,
                        code,
                        status,
                        text,
                    } => bounce_jobs.push(BounceJob {
                        recipient: recipient.clone(),
                        code: *code,
                        status: status.clone(),
                        text: text.clone(),
                    }),
                    Disposition::Drop { recipient } => {
                        tracing::info!(message_id = %id, recipient, domain = %group.domain, "dropped by the chain");
                    }
                }
            }
            if !copies.is_empty() {
                let request = StoreRequest {
                    message_id: id,
                    mail_from: &envelope.mail_from,
                    bytes: output_raw,
                    copies: &copies,
                    trace: &trace,
                };
                if let Err(reason) = self
                    .store_copies(targets, request, &mut handled, &mut refused_copies)
                    .await
                {
                    tempfail.get_or_insert(format!("domain {}: {reason}", group.domain));
                }
            }
            let edited;
            let output: &Message = match &group.output {
                Some(OutputMessage::Edited(bytes)) if !relays.is_empty() => {
                    edited = Message::parse(bytes.to_vec()).map_err(|e| {
                        HandleError::new(
                            id,
                            format!("the edited message does not parse: {e}"),
                            false,
                        )
                    })?;
                    &edited
                }
                _ => original,
            };
            for job in &relays {
                let refused = self
                    .relay(config, &markers, group, job, output, id, &mut handled)
                    .await?;
                let mut policy = Vec::new();
                for Refusal {
                    recipient,
                    kind,
                    reason,
                } in refused
                {
                    if kind.is_policy() {
                        // Sluice's own refusal (no open relay, a loop): the sender of such a
                        // message is forged or a looping forwarder, so a DSN would be
                        // backscatter. Logged and counted instead.
                        tracing::warn!(
                            message_id = %id,
                            recipient,
                            refusal = kind.as_str(),
                            reason,
                            "not relayed and not bounced (policy refusal)"
                        );
                        policy.push(recipient);
                    } else {
                        // Too large for SES, or refused by the smarthost: a real failure the
                        // sender can act on; bounced under the same rule as every DSN.
                        let (code, status) = match kind {
                            RefusalKind::TooLarge => (552, "5.3.4"),
                            RefusalKind::Rejected
                            | RefusalKind::NotAllowed
                            | RefusalKind::Loop
                            | RefusalKind::NoRelay => (550, "5.0.0"),
                        };
                        bounce_jobs.push(BounceJob {
                            recipient,
                            code,
                            status: status.into(),
                            text: format!("not relayed: {reason}"),
                        });
                    }
                }
                if !policy.is_empty() {
                    handled.bounces.push(BounceOutcome {
                        recipients: policy,
                        report: BounceReport::Suppressed {
                            reason: Suppression::Policy,
                        },
                    });
                }
            }
        }
        if !bounce_jobs.is_empty() {
            let report = self
                .bounce(config, &markers, envelope, original, &bounce_jobs)
                .await
                .map_err(fail)?;
            handled.bounces.push(BounceOutcome {
                recipients: bounce_jobs.iter().map(|j| j.recipient.clone()).collect(),
                report,
            });
        }
        // One DSN per copy a mailbox refused: a recipient deferred in one attempt may be
        // refused in the next, and a DSN per recipient is claimed per recipient, so none is
        // sent twice however the refusals spread over attempts.
        for job in &refused_copies {
            let report = self
                .bounce(
                    config,
                    &markers,
                    envelope,
                    original,
                    std::slice::from_ref(job),
                )
                .await
                .map_err(fail)?;
            handled.bounces.push(BounceOutcome {
                recipients: vec![job.recipient.clone()],
                report,
            });
        }
        let mut summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let suppressed = handled.bounces_suppressed();
        if !suppressed.is_empty() {
            let total: usize = suppressed.values().sum();
            let by: Vec<String> = suppressed
                .iter()
                .map(|(r, n)| format!("{}={n}", r.as_str()))
                .collect();
            summary.push(format!("bounce_suppressed={total}({})", by.join(",")));
        }
        let unconfirmed = handled.unconfirmed();
        if !unconfirmed.is_empty() {
            summary.push(format!("unconfirmed={}", unconfirmed.len()));
        }
        handled.summary = summary.join(" ");
        if let Some(reason) = tempfail {
            return Err(HandleError::new(
                id,
                format!(
                    "tempfail, will be retried ({reason}); done so far: {}",
                    handled.summary
                ),
                false,
            ));
        }
        Ok(handled)
    }

    fn markers(&self, config: &ConfigFile) -> Option<Markers> {
        let relay = config.relay.as_ref()?;
        if let Some(url) = &relay.markers {
            let url = S3Url::parse(url).ok()?;
            return Some(Markers::new(
                self.s3.clone(),
                url.bucket,
                url.key.trim_end_matches('/').to_string(),
                self.owner.clone(),
            ));
        }
        let Some(StoreConfig::S3 { bucket, prefix }) = config.store.as_ref() else {
            return None;
        };
        Some(Markers::new(
            self.s3.clone(),
            bucket.clone(),
            if prefix.is_empty() {
                "_sent".into()
            } else {
                format!("{prefix}/_sent")
            },
            self.owner.clone(),
        ))
    }

    /// The relay's way out for `config` (SES unless it names a smarthost).
    fn outbound(&self, config: &ConfigFile) -> Result<Outbound, String> {
        match &self.targets_for(config).outbound {
            Some(Ok(via)) => Ok(via.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(Outbound::Ses(self.ses.clone())),
        }
    }

    /// The targets for this loaded config, built on first use.
    fn targets(&self, loaded: &Arc<LoadedChains>) -> Arc<Targets> {
        let mut cached = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((for_config, targets)) = cached.as_ref() {
            if Arc::ptr_eq(for_config, loaded) {
                return targets.clone();
            }
        }
        let targets = Arc::new(self.build_targets(&loaded.config));
        *cached = Some((loaded.clone(), targets.clone()));
        targets
    }

    /// The targets of the config `handle` is using (the one it took from `self.live`).
    fn targets_for(&self, config: &ConfigFile) -> Arc<Targets> {
        let loaded = self.live.current();
        if std::ptr::eq(&loaded.config, config) {
            return self.targets(&loaded);
        }
        // A reload happened while this message was in the chain: build for its config.
        Arc::new(self.build_targets(config))
    }

    fn build_targets(&self, config: &ConfigFile) -> Targets {
        let store: Result<Arc<dyn MailboxStore>, String> = match &config.store {
            None => Err(format!(
                "{} has no [store] (kind = \"s3\", \"dir\", \"lmtp\" or \"smtp\")",
                config.source.name
            )),
            Some(StoreConfig::Dir { path }) => Ok(Arc::new(DirMailboxes::new(DirStore::new(
                config.resolve(path),
            )))),
            Some(StoreConfig::S3 { bucket, prefix }) => Ok(Arc::new(S3Mailboxes {
                s3: self.s3.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            })),
            Some(StoreConfig::Lmtp(lmtp)) => LmtpStore::new(lmtp)
                .map(|s| Arc::new(s) as Arc<dyn MailboxStore>)
                .map_err(|e| format!("[store] kind = \"lmtp\": {e}")),
            Some(StoreConfig::Smtp(smtp)) => SmtpStore::new(smtp)
                .map(|s| Arc::new(s) as Arc<dyn MailboxStore>)
                .map_err(|e| format!("[store] kind = \"smtp\": {e}")),
        };
        let delivered: Option<Arc<dyn DeliveredLog>> = config
            .store
            .as_ref()
            .and_then(|s| s.markers())
            .map(|at| match S3Url::parse(at) {
                Ok(url) if at.starts_with("s3://") => Arc::new(S3DeliveredLog {
                    markers: Markers::new(
                        self.s3.clone(),
                        url.bucket,
                        url.key.trim_end_matches('/').to_string(),
                        self.owner.clone(),
                    ),
                }) as Arc<dyn DeliveredLog>,
                _ => Arc::new(DirDeliveredLog::new(config.resolve(at))),
            });
        let outbound = config.relay.as_ref().map(|r| match &r.transport {
            RelayTransport::Ses => Ok(Outbound::Ses(self.ses.clone())),
            RelayTransport::Smtp(server) => SmtpSender::new(server)
                .map(|s| Outbound::Smtp(Arc::new(s)))
                .map_err(|e| format!("[relay] kind = \"smtp\": {e}")),
        });
        Targets {
            store,
            delivered,
            outbound,
        }
    }

    /// Stores the copies of one group. Done copies go to `handled.stored`, refused ones
    /// (permanent failures) become bounce jobs; `Err` when some copy must be retried (it
    /// says why). Copies a store cannot overwrite are skipped when recorded as delivered by
    /// an earlier attempt, and recorded once the server accepts them.
    async fn store_copies(
        &self,
        targets: &Targets,
        request: StoreRequest<'_>,
        handled: &mut Handled,
        bounce_jobs: &mut Vec<BounceJob>,
    ) -> Result<(), String> {
        let id = request.message_id;
        let store = targets.store.as_ref().map_err(|e| {
            format!(
                "{} is local, but {e}",
                request
                    .copies
                    .first()
                    .map(|c| c.recipient.as_str())
                    .unwrap_or("a recipient")
            )
        })?;
        let log = targets.delivered.as_ref().filter(|_| !store.overwrites());
        let mut todo = Vec::with_capacity(request.copies.len());
        for copy in request.copies {
            if let Some(log) = log {
                match log.was_delivered(id, copy).await {
                    Ok(true) => {
                        handled.stored.push(format!(
                            "{} {} in {} (delivered by an earlier attempt)",
                            store.describe(),
                            copy.recipient,
                            copy.folder
                        ));
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            todo.push(copy.clone());
        }
        if todo.is_empty() {
            return Ok(());
        }
        let outcomes = store
            .store(StoreRequest {
                copies: &todo,
                ..request
            })
            .await;
        let mut retry: Option<String> = None;
        for outcome in outcomes {
            match outcome.result {
                Ok(at) => {
                    if let Some(log) = log {
                        if let Err(e) = log.record(id, &outcome.copy, &at).await {
                            // Delivered: not an error of this message. A retry may deliver
                            // this copy again (at least once).
                            tracing::warn!(message_id = id, recipient = %outcome.copy.recipient, error = %e, "delivered, but the delivery record could not be written");
                        }
                    }
                    handled.stored.push(at);
                }
                Err(e) if e.is_permanent() => {
                    tracing::warn!(message_id = id, recipient = %outcome.copy.recipient, error = %e, "mailbox refused the copy");
                    let (code, status) = e.bounce_status();
                    bounce_jobs.push(BounceJob {
                        recipient: outcome.copy.recipient.clone(),
                        code,
                        status,
                        text: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(message_id = id, recipient = %outcome.copy.recipient, error = %e, "copy not stored, will be retried");
                    retry.get_or_insert(e.to_string());
                }
            }
        }
        retry.map_or(Ok(()), Err)
    }

    /// Relays one job (outcomes into `handled.relayed`); returns the recipients refused.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        config: &ConfigFile,
        markers: &Option<Markers>,
        group: &GroupResult,
        job: &RelayJob,
        output: &Message,
        id: &str,
        handled: &mut Handled,
    ) -> Result<Vec<Refusal>, HandleError> {
        let (Some(relay), Some(markers)) = (&config.relay, markers) else {
            tracing::warn!(message_id = id, recipients = ?job.recipients, "not relayed: the config has no [relay]");
            handled
                .relayed
                .extend(job.recipients.iter().map(|r| Relayed {
                    recipient: r.clone(),
                    status: RelayStatus::Refused(RefusalKind::NoRelay),
                }));
            return Ok(job
                .recipients
                .iter()
                .map(|r| Refusal {
                    recipient: r.clone(),
                    kind: RefusalKind::NoRelay,
                    reason: "this server does not relay mail".to_string(),
                })
                .collect());
        };
        let via = self
            .outbound(config)
            .map_err(|e| HandleError::new(id, e, false))?;
        let ses_relay = Relay {
            via,
            from: relay.from.clone(),
            allow_domains: relay.allow_domains.clone(),
            max_hops: relay.max_hops,
        };
        let via = if group.domain == "*" {
            relay.domain()
        } else {
            group.domain.clone()
        };
        let report = ses_relay
            .relay(id, &via, job, output, markers)
            .await
            .map_err(|e| HandleError::new(id, e.to_string(), e.is_permanent()))?;
        let outcome = |list: &[String], status: RelayStatus| {
            list.iter()
                .map(|r| Relayed {
                    recipient: r.clone(),
                    status: status.clone(),
                })
                .collect::<Vec<_>>()
        };
        handled
            .relayed
            .extend(outcome(&report.sent, RelayStatus::Sent));
        handled
            .relayed
            .extend(outcome(&report.already_sent, RelayStatus::AlreadySent));
        handled
            .relayed
            .extend(outcome(&report.unconfirmed, RelayStatus::Unconfirmed));
        handled
            .relayed
            .extend(report.refused.iter().map(|r| Relayed {
                recipient: r.recipient.clone(),
                status: RelayStatus::Refused(r.kind),
            }));
        Ok(report.refused)
    }

    async fn bounce(
        &self,
        config: &ConfigFile,
        markers: &Option<Markers>,
        envelope: &Envelope,
        original: &Message,
        jobs: &[BounceJob],
    ) -> Result<BounceReport, DeliverError> {
        let (Some(relay), Some(markers)) = (&config.relay, markers) else {
            tracing::warn!(
                message_id = %envelope.message_id,
                "bounce not sent: the config has no [relay] to send it through"
            );
            return Ok(BounceReport::Suppressed {
                reason: Suppression::NoRelay,
            });
        };
        let bouncer = Bouncer {
            via: self.outbound(config).map_err(DeliverError::Setup)?,
            from: relay.bounce_from.clone(),
            reporting_mta: relay.domain(),
        };
        bouncer
            .bounce(
                &envelope.message_id,
                original,
                &envelope.mail_from,
                &envelope.verdicts,
                jobs,
                markers,
            )
            .await
    }
}
