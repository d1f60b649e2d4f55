//! The one processing function behind every event source (Lambda, daemon).
//!
//! [`Pipeline::handle`] takes one [`Arrival`], fetches the message, runs the chain of each
//! recipient group, and makes every delivery the chain decided: mailbox copies (S3 or a
//! directory), relayed copies and DSN bounces through SES. It answers `Ok` only when all of
//! them are done; an `Err` leaves the event to be retried (SQS visibility, Lambda retry, then
//! the DLQ), and every delivery is idempotent, so a retry redoes nothing that was done.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_aws::{AwsError, BlockingS3, S3Url, Ses, S3};
use sluice_chain::{
    ConfigError, ConfigFile, ConfigSource, Disposition, Envelope, FileConfigSource, GroupOutcome,
    LiveChains, LoadedChains, PluginSources, ProcessResult, ReloadOutcome, S3ConfigSource,
    S3Plugins,
};
use sluice_deliver::{DeliveredLog, DirDeliveredLog, MailboxStore, RecordsAt, TargetClients};
use sluice_engine::{EngineError, EngineOptions, RuleEngine};
use sluice_mail::Message;

use crate::deliver::{ClaimsAt, Markers, S3DeliveredLog, TargetError};
use crate::dispatch::{Dispatcher, HandleError, HandleFailure, Handled};
use crate::door::{verdicts_from_authentication_results, Arrival, MessageContent, RefuseBy, Reply};

/// Why a [`Pipeline`] could not start (what to fix). `config` is the config as given (a path
/// or `s3://` URL).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS client that reads plugins and an `s3://` config could not be set up.
    #[error("cannot start with {config}: {source}")]
    Aws {
        /// The config.
        config: String,
        /// What failed.
        #[source]
        source: AwsError,
    },
    /// The config's `s3://` URL names no object.
    #[error("cannot start with {config}: {source}")]
    ConfigUrl {
        /// The config.
        config: String,
        /// What is wrong with the URL.
        #[source]
        source: AwsError,
    },
    /// The config could not be read or parsed.
    #[error("cannot start with {config}: {source}")]
    ConfigRead {
        /// The config.
        config: String,
        /// What is wrong, where.
        #[source]
        source: ConfigError,
    },
    /// The rule engine could not be built from `[engine]`.
    #[error("cannot start with {config}: {source}")]
    Engine {
        /// The config.
        config: String,
        /// What failed.
        #[source]
        source: EngineError,
    },
    /// A plugin or a domain's chain could not be loaded.
    #[error("cannot start with {config}: {source}")]
    Chains {
        /// The config.
        config: String,
        /// Which plugin or chain, and why.
        #[source]
        source: ConfigError,
    },
    /// Loading panicked.
    #[error("start-up panicked: {0}")]
    Panicked(#[source] tokio::task::JoinError),
    /// The config delivers to a store or relays without saying where delivered copies and
    /// sends are recorded: a retried message would be delivered or sent twice.
    #[error("cannot deliver with {config}: {missing}")]
    MarkersMissing {
        /// The config's name.
        config: String,
        /// What is missing, and where to set it.
        missing: String,
    },
    /// `[store]` names a server that cannot be set up (unreadable credentials or CA file).
    #[error(transparent)]
    Store(Arc<TargetError>),
    /// `[relay]` names a smarthost that cannot be set up.
    #[error(transparent)]
    Relay(Arc<TargetError>),
    /// The relay markers bucket does not exist or cannot be reached: it answers HEAD with
    /// 404 like an absent marker, so every retry would send again.
    #[error(
        "the bucket for relay markers, {bucket:?}, cannot be reached ({}); it records what was sent so a retry does not send twice",
        aws_sdk_s3::error::DisplayErrorContext(source.as_ref())
    )]
    MarkersBucket {
        /// The bucket.
        bucket: String,
        /// What S3 said.
        #[source]
        source: Box<
            aws_sdk_s3::error::SdkError<
                aws_sdk_s3::operation::head_bucket::HeadBucketError,
                aws_sdk_s3::config::http::HttpResponse,
            >,
        >,
    },
}

/// How to start a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The config: a path or `s3://bucket/key.toml`.
    pub config: String,
    /// How often to check the config's version (S3 ETag / file mtime) for a hot reload.
    pub reload_interval: Duration,
    /// Plugin and compiled-code cache (default: `/tmp/sluice` in Lambda, else the user cache).
    pub cache_dir: Option<PathBuf>,
    /// Print per-message and per-step metrics in CloudWatch Embedded Metric Format on stdout
    /// (see `sluice_telemetry::metrics`).
    pub metrics: bool,
    /// Directories of precompiled rule artifacts shipped with the host (the Lambda's package
    /// or a layer; see `sluice_engine::Precompiler`), searched before the cache. Refused when
    /// inside the cache directory.
    pub precompiled_dirs: Vec<PathBuf>,
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
    targets: std::sync::Mutex<Option<(Arc<LoadedChains>, Arc<Dispatcher>)>>,
    /// When alias uses were last written to the directory (see [`Pipeline::flush_uses`]).
    uses_flushed: std::sync::Mutex<std::time::Instant>,
    /// Every directory (one per config version) that uses were counted in and not all written
    /// yet: a reload must not drop the counts of the tables it retires.
    counted_in: std::sync::Mutex<Vec<Arc<sluice_directory::Tables>>>,
    /// Whether to print EMF metrics.
    metrics: bool,
}

/// What the chains decided for one message, nothing delivered ([`Pipeline::decide`]).
#[derive(Debug, Clone)]
pub struct Decided {
    /// The parsed message as received.
    pub message: Arc<Message>,
    /// Per recipient group: the steps, the edits, the edited copy and each recipient's fate.
    pub result: ProcessResult,
    /// The envelope the chains saw (verdicts read from a trusted header included).
    pub envelope: Envelope,
}

/// How often counted alias uses are written to the directory: a burst of mail to one alias
/// is one write, not one per message.
pub const USES_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// The engine and live chains, built on a blocking thread (the blocking S3 client that reads
/// the config and fetches plugins owns a runtime). The config is read once, here, and sizes
/// the engine before the chains load from it.
fn start_blocking(
    options: &PipelineOptions,
) -> Result<(&'static RuleEngine, &'static LiveChains<'static>), StartError> {
    let name = || options.config.clone();
    let s3: &'static BlockingS3 =
        Box::leak(Box::new(BlockingS3::from_env().map_err(|source| {
            StartError::Aws {
                config: name(),
                source,
            }
        })?));
    let source: Box<dyn ConfigSource> = if options.config.starts_with("s3://") {
        Box::new(S3ConfigSource::new(s3, &options.config).map_err(|source| {
            StartError::ConfigUrl {
                config: name(),
                source,
            }
        })?)
    } else {
        Box::new(FileConfigSource::new(&options.config))
    };
    let source: &'static dyn ConfigSource = Box::leak(source);
    let (config, version) = source.read().map_err(|source| StartError::ConfigRead {
        config: name(),
        source,
    })?;
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
    if let Some(cache) = &cache_dir {
        // The whole cache (fetched plugin bytes too), not only its compiled part.
        for dir in &options.precompiled_dirs {
            sluice_engine::check_not_writable(dir, cache).map_err(|reason| StartError::Engine {
                config: name(),
                source: EngineError::Config(reason),
            })?;
        }
    }
    let engine: &'static RuleEngine = Box::leak(Box::new(
        RuleEngine::new(
            EngineOptions {
                cache_dir: cache_dir.as_ref().map(|d| d.join("compiled")),
                cache_max_bytes: max_bytes,
                pooling: config.engine.pooling_choice(),
                precompiled_dirs: options.precompiled_dirs.clone(),
                ..Default::default()
            }
            .within_memory(sluice_engine::process_memory_limit()),
        )
        .map_err(|source| StartError::Engine {
            config: name(),
            source,
        })?,
    ));
    let plugins = PluginSources {
        fetcher: Some(Box::leak(Box::new(S3Plugins(s3)))),
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
    .map_err(|source| StartError::Chains {
        config: name(),
        source,
    })?;
    Ok((engine, Box::leak(Box::new(live))))
}

impl Pipeline {
    /// Loads the config and its chains, and sets up the AWS clients from the standard chain
    /// (`AWS_ENDPOINT_URL` points them at an emulator).
    pub async fn start(options: PipelineOptions) -> Result<Pipeline, StartError> {
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
    ) -> Result<Pipeline, StartError> {
        let opts = options.clone();
        let (engine, live) = tokio::task::spawn_blocking(move || start_blocking(&opts))
            .await
            .map_err(StartError::Panicked)??;
        let pipeline = Pipeline {
            engine,
            live,
            s3,
            ses,
            owner: Markers::new_owner_id(),
            in_flight: Default::default(),
            targets: Default::default(),
            uses_flushed: std::sync::Mutex::new(std::time::Instant::now()),
            counted_in: std::sync::Mutex::new(Vec::new()),
            metrics: options.metrics,
        };
        let loaded = pipeline.live.current();
        // Without a record of what was delivered and sent, a retried message would be
        // delivered or sent twice: refuse (a preview, `sluice run`, needs none).
        if let Some(missing) = loaded.config.missing_markers().first() {
            return Err(StartError::MarkersMissing {
                config: loaded.config.source.name.clone(),
                missing: missing.clone(),
            });
        }
        // A store or smarthost that cannot be set up (unreadable credentials or CA file) is a
        // start-up error.
        let targets = pipeline.targets(&loaded);
        if let (Err(e), Some(_)) = (&targets.store, &loaded.config.store) {
            return Err(StartError::Store(e.clone()));
        }
        if let Some(Err(e)) = &targets.outbound {
            return Err(StartError::Relay(e.clone()));
        }
        // A markers bucket that does not exist answers HEAD with 404 like an absent marker,
        // so every retry would send again: refuse to start instead.
        if let Some(ClaimsAt::S3 { bucket, .. }) = targets.markers.as_ref().map(|m| &m.at) {
            if let Err(source) = pipeline
                .s3
                .client()
                .head_bucket()
                .bucket(bucket)
                .send()
                .await
            {
                return Err(StartError::MarkersBucket {
                    bucket: bucket.clone(),
                    source: Box::new(source),
                });
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
    /// attempt); otherwise nothing that was done is done again on retry. [`Answer::of`] turns
    /// the outcome into the door's answer.
    ///
    /// [`Answer::of`]: crate::Answer::of
    pub async fn handle(&self, arrival: Arrival) -> Result<Handled, HandleError> {
        self.handle_locked(arrival, false).await.0
    }

    /// [`Pipeline::handle`], also returning what the chains decided (`None` when they did
    /// not run: the message could not be fetched or parsed), for a door that shows the trace
    /// (`sluice run --deliver`).
    pub async fn handle_traced(
        &self,
        arrival: Arrival,
    ) -> (Result<Handled, HandleError>, Option<ProcessResult>) {
        self.handle_locked(arrival, true).await
    }

    /// One message id at a time: two copies of one notification (SQS delivers at least once)
    /// handled at once would both find no marker and both send.
    async fn handle_locked(
        &self,
        arrival: Arrival,
        want_trace: bool,
    ) -> (Result<Handled, HandleError>, Option<ProcessResult>) {
        let lock = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(arrival.message_id.clone()).or_default().clone()
        };
        let id = arrival.message_id.clone();
        let mut trace = None;
        let result = {
            let _guard = lock.lock().await;
            self.handle_exclusive(arrival, &mut trace, want_trace).await
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Only this call and the map hold it: nobody else is waiting for this id.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&id);
        }
        (result, trace)
    }

    /// The checks every door's arrival gets before anything is fetched.
    fn check_arrival(arrival: &Arrival) -> Result<(), HandleError> {
        let id = &arrival.message_id;
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(HandleError::new(
                id,
                HandleFailure::BadNotice("the notice has no usable mail.messageId".into()),
            ));
        }
        if arrival.recipients.is_empty() {
            return Err(HandleError::new(
                id,
                HandleFailure::BadNotice(
                    "the notice lists no recipients (receipt.recipients)".into(),
                ),
            ));
        }
        let sender = (!arrival.mail_from.is_empty()).then_some(("sender", &arrival.mail_from));
        let recipients = arrival.recipients.iter().map(|r| ("recipient", r));
        for (role, address) in recipients.chain(sender) {
            if let Err(e) = sluice_mail::validate_address(address) {
                let reason = match e {
                    sluice_mail::EditError::InvalidAddress { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(HandleError::new(
                    id,
                    HandleFailure::BadAddress {
                        role,
                        address: address.clone(),
                        reason,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Runs the chains for one message and decides what happens to each recipient, without
    /// delivering anything: for a door whose answer is the decision itself (the milter hands
    /// the edits and refusals back to its MTA). [`Pipeline::handle`] is this plus deliveries.
    pub async fn decide(&self, arrival: Arrival) -> Result<Decided, HandleError> {
        Self::check_arrival(&arrival)?;
        let loaded = self.live.current();
        let (message, result, _, envelope) = self.run_chains(arrival, &loaded).await?;
        Ok(Decided {
            message,
            result,
            envelope,
        })
    }

    /// Fetches and parses the message, reads trusted verdicts, and runs the chains: what
    /// [`Pipeline::handle`] and [`Pipeline::decide`] share. Also returns the chain's time in
    /// microseconds and the envelope the chains saw.
    async fn run_chains(
        &self,
        arrival: Arrival,
        loaded: &Arc<LoadedChains>,
    ) -> Result<(Arc<Message>, ProcessResult, u64, Envelope), HandleError> {
        let id = arrival.message_id.clone();
        // Bytes in hand are moved, not copied: a door's large message is held once.
        let mut arrival = arrival;
        let raw = match std::mem::replace(&mut arrival.content, MessageContent::Stored) {
            MessageContent::Inline(bytes) => bytes,
            content => {
                arrival.content = content;
                self.fetch(&arrival, &loaded.config).await?
            }
        };
        let engine = self.engine;
        let envelope = Envelope {
            message_id: id.clone(),
            mail_from: arrival.mail_from.clone(),
            recipients: arrival.recipients.clone(),
            verdicts: arrival.verdicts.clone(),
            received_at: if arrival.received_at > 0 {
                arrival.received_at
            } else {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0)
            },
            flow: arrival.flow.clone(),
            skip_step: arrival.skip_step.clone(),
        };
        let chains = loaded.clone();
        let trusted = arrival.trusted_authserv_id.clone();
        let (message, result, chain_micros, envelope) = tokio::task::spawn_blocking(move || {
            let chain_started = std::time::Instant::now();
            let message = Message::parse(raw).map(Arc::new)?;
            let mut envelope = envelope;
            if let Some(id) = &trusted {
                match verdicts_from_authentication_results(&message, id) {
                    // SPF, DKIM and DMARC only: spam and virus come from elsewhere (the
                    // milter's trusted scanner headers) and stay.
                    Some(read) => {
                        envelope.verdicts = sluice_engine::Verdicts {
                            spam: envelope.verdicts.spam,
                            virus: envelope.verdicts.virus,
                            ..read
                        }
                    }
                    None => tracing::warn!(
                        authserv_id = %id,
                        "no Authentication-Results header with this authserv-id; verdicts as given"
                    ),
                }
            }
            let result = chains.chains.process(engine, message.clone(), &envelope);
            let micros = chain_started.elapsed().as_micros() as u64;
            Ok::<_, sluice_mail::ParseError>((message, result, micros, envelope))
        })
        .await
        .map_err(|e| HandleError::new(&id, HandleFailure::ChainPanicked(Arc::new(e))))?
        .map_err(|e| HandleError::new(&id, HandleFailure::Parse(e)))?;
        Ok((message, result, chain_micros, envelope))
    }

    async fn handle_exclusive(
        &self,
        arrival: Arrival,
        trace: &mut Option<ProcessResult>,
        want_trace: bool,
    ) -> Result<Handled, HandleError> {
        let started = std::time::Instant::now();
        let id = arrival.message_id.clone();
        Self::check_arrival(&arrival)?;
        let loaded = self.live.current();
        let refuse_by = arrival.refuse_by;
        let (message, result, chain_micros, envelope) = self.run_chains(arrival, &loaded).await?;
        let refusal = match refuse_by {
            RefuseBy::Reply => refusal_of_every_recipient(&result),
            RefuseBy::Dsn => None,
        };
        let mut archive_failed = false;
        let mut archived_as_delivered = false;
        let mut handled = match refusal {
            // The sender's server hears the refusal: nothing to deliver, no DSN to send.
            Some(reply) => Handled {
                summary: format!("refused: {reply}"),
                refused: Some(reply),
                ..Handled::nothing_yet(&id)
            },
            None => {
                let archived = self.archive(&loaded.config, &envelope, &message).await?;
                archive_failed = archived.failed;
                let handled = self
                    .dispatcher_for(&loaded.config)
                    .deliver(&loaded.config, &envelope, &message, &result)
                    .await?;
                archived_as_delivered = self
                    .archive_delivered(&loaded.config, &envelope, &result, archived)
                    .await;
                handled
            }
        };
        if self.metrics {
            let mut lines = metric_lines(&result, &envelope, handled.retry.is_some(), chain_micros);
            let delivery = sluice_telemetry::metrics::DeliveryMetrics {
                resent: handled.resent().len() as u64,
                unconfirmed: handled.unconfirmed().len() as u64,
                undeliverable: handled.kept.iter().map(|k| k.refused.len() as u64).sum(),
            };
            if !delivery.is_zero() {
                lines.push(sluice_telemetry::metrics::delivery_line(&delivery));
            }
            if !handled.quarantined.is_empty() {
                lines.push(sluice_telemetry::metrics::quarantine_line(
                    handled.quarantined.len() as u64,
                    0,
                ));
            }
            if archive_failed || archived_as_delivered {
                lines.push(sluice_telemetry::metrics::archive_failed_line(1));
            }
            if !handled.replies.is_empty() {
                let (sent, suppressed) = handled.reply_counts();
                lines.push(sluice_telemetry::metrics::reply_line(sent, suppressed));
            }
            sluice_telemetry::metrics::emit(&lines);
        }
        if want_trace {
            *trace = Some(result.clone());
        }
        if let Some(reason) = handled.retry.take() {
            return Err(HandleError::new(
                &id,
                HandleFailure::Tempfail {
                    reason,
                    done: handled.summary,
                },
            ));
        }
        handled.chain_micros = chain_micros;
        handled.total_micros = started.elapsed().as_micros() as u64;
        if let Some(tables) = loaded.chains.tables() {
            count_uses(tables, &result);
            {
                let mut counted = self.counted_in.lock().unwrap_or_else(|e| e.into_inner());
                if !counted.iter().any(|t| Arc::ptr_eq(t, tables)) {
                    counted.push(tables.clone());
                }
            }
            let due = {
                let mut last = self.uses_flushed.lock().unwrap_or_else(|e| e.into_inner());
                let due = last.elapsed() >= USES_FLUSH_INTERVAL;
                if due {
                    *last = std::time::Instant::now();
                }
                due
            };
            if due {
                self.flush_uses().await;
            }
        }
        Ok(handled)
    }

    /// With `[archive] as_delivered`: keeps each copy the chain changed and a group
    /// delivered to a mailbox, as `<id>.delivered-<hex>` (after the deliveries; a failure is
    /// logged and counted, never a tempfail: the mail is delivered already). `true`: failed.
    async fn archive_delivered(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        result: &ProcessResult,
        archived: Archived,
    ) -> bool {
        let (Some(settings), Some((target, mut records))) = (&config.archive, archived.records)
        else {
            return false;
        };
        if !settings.as_delivered {
            return false;
        }
        for group in &result.groups {
            let Some(sluice_chain::OutputMessage::Edited(edited)) = &group.output else {
                continue;
            };
            // A copy filed into the quarantine folder reached no mailbox.
            let quarantine = config.quarantine.as_ref().map(|q| q.folder.as_str());
            if !group.dispositions.iter().any(|d| {
                matches!(d, Disposition::Deliver { folder, .. } if Some(folder.as_str()) != quarantine)
            }) {
                continue;
            }
            let name = format!(
                "{}.delivered-{}",
                envelope.message_id,
                sluice_deliver::quarantine::group_digest(&group.domain, &group.recipients)
            );
            for record in records.iter_mut() {
                if !record.delivered.contains(&name) {
                    record.delivered.push(name.clone());
                }
            }
            if let Err(e) = target.put_delivered(&name, edited.raw(), &records).await {
                tracing::warn!(
                    message_id = %envelope.message_id,
                    archive = %target.describe(),
                    error = %e,
                    "ARCHIVE FAILED: the copy as delivered was not archived"
                );
                return true;
            }
        }
        false
    }

    /// Archives the message as received, before any delivery, when `[archive]` takes its
    /// domains. `failed`: the write failed and `required = false` let the message go on
    /// (logged, and counted as `ArchiveFailed`); with `required = true` it is an `Err`, and
    /// nothing is delivered.
    async fn archive(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        message: &Message,
    ) -> Result<Archived, HandleError> {
        let Some(archive) = &config.archive else {
            return Ok(Archived::default());
        };
        let outbound = envelope.flow.is_outbound();
        let domains = archive.domains_of(&envelope.mail_from, &envelope.recipients, outbound);
        if domains.is_empty() {
            return Ok(Archived::default());
        }
        let date = sluice_deliver::archive::day_of(envelope.received_at);
        let mut records: Vec<sluice_deliver::ArchiveRecord> = domains
            .into_iter()
            .map(|domain| sluice_deliver::ArchiveRecord {
                id: envelope.message_id.clone(),
                date: date.clone(),
                received_at: envelope.received_at,
                from: envelope.mail_from.clone(),
                // A domain's record names its own recipients only: on a host serving
                // several domains, one domain's search shows nothing of another's mail.
                to: if outbound {
                    envelope.recipients.clone()
                } else {
                    envelope
                        .recipients
                        .iter()
                        .filter(|r| {
                            r.rsplit_once('@').is_some_and(|(_, d)| {
                                d.trim_end_matches('.').eq_ignore_ascii_case(&domain)
                            })
                        })
                        .cloned()
                        .collect()
                },
                domain,
                subject: message.subject().unwrap_or_default(),
                size: message.size(),
                location: String::new(),
                delivered: Vec::new(),
            })
            .collect();
        let target = archive.build(&self.s3);
        match target.put(message.raw(), &mut records).await {
            Ok(location) => {
                tracing::info!(message_id = %envelope.message_id, %location, "archived");
                Ok(Archived {
                    failed: false,
                    records: Some((target, records)),
                })
            }
            Err(e) if archive.required => Err(HandleError::new(
                &envelope.message_id,
                HandleFailure::Archive(e),
            )),
            Err(e) => {
                tracing::warn!(
                    message_id = %envelope.message_id,
                    archive = %target.describe(),
                    error = %e,
                    "ARCHIVE FAILED: delivering anyway ([archive] required = false)"
                );
                Ok(Archived {
                    failed: true,
                    records: None,
                })
            }
        }
    }

    /// Writes the alias uses counted since the last write to the directory (the daemon does
    /// it every [`USES_FLUSH_INTERVAL`] and when it stops, the Lambda after each batch). A
    /// failed write keeps the counts for the next one and is logged: counts never hold up
    /// mail.
    pub async fn flush_uses(&self) {
        // The current config's tables and any that a reload retired with counts pending.
        let all: Vec<Arc<sluice_directory::Tables>> = {
            let current = self.live.current();
            let mut counted = self.counted_in.lock().unwrap_or_else(|e| e.into_inner());
            counted.retain(|t| {
                t.pending_uses() > 0 || current.chains.tables().is_some_and(|c| Arc::ptr_eq(c, t))
            });
            counted.clone()
        };
        for tables in all {
            if tables.pending_uses() == 0 {
                continue;
            }
            match tokio::task::spawn_blocking(move || tables.flush_uses()).await {
                Ok(Ok(written)) => tracing::debug!(written, "alias uses written to the directory"),
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "alias uses not written to the directory; kept for the next try"
                ),
                Err(e) => tracing::warn!(error = %e, "writing alias uses panicked"),
            }
        }
    }

    async fn fetch(&self, notice: &Arrival, config: &ConfigFile) -> Result<Vec<u8>, HandleError> {
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
                        HandleFailure::NoInbound {
                            config: config.source.name.clone(),
                        },
                    ));
                };
                S3Url {
                    bucket: inbound.bucket.clone(),
                    key: format!("{}{}", inbound.prefix, id),
                }
            }
        };
        self.s3
            .get(&url)
            .await
            .map(|obj| obj.bytes)
            .map_err(|e| HandleError::new(id, HandleFailure::Fetch(e)))
    }

    /// Claims and records at `at`.
    fn markers_at(&self, at: &RecordsAt) -> Markers {
        Markers::at(at, &self.s3, self.owner.clone())
    }

    /// The targets for this loaded config, built on first use.
    fn targets(&self, loaded: &Arc<LoadedChains>) -> Arc<Dispatcher> {
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
    fn dispatcher_for(&self, config: &ConfigFile) -> Arc<Dispatcher> {
        let loaded = self.live.current();
        if std::ptr::eq(&loaded.config, config) {
            return self.targets(&loaded);
        }
        // A reload happened while this message was in the chain: build for its config.
        Arc::new(self.build_targets(config))
    }

    fn build_targets(&self, config: &ConfigFile) -> Dispatcher {
        let clients = TargetClients {
            s3: self.s3.clone(),
            ses: self.ses.clone(),
        };
        let store: Result<Arc<dyn MailboxStore>, Arc<TargetError>> = match &config.store {
            None => Err(Arc::new(TargetError::NoStore {
                config: config.source.name.clone(),
            })),
            Some(store) => store.build(&clients).map_err(|source| {
                Arc::new(TargetError::Store {
                    kind: store.kind(),
                    source,
                })
            }),
        };
        let delivered: Option<Arc<dyn DeliveredLog>> = config
            .store
            .as_ref()
            .and_then(|s| s.delivered_at())
            .map(|at| match self.markers_at(at) {
                markers @ Markers {
                    at: ClaimsAt::S3 { .. },
                    ..
                } => Arc::new(S3DeliveredLog { markers }) as Arc<dyn DeliveredLog>,
                Markers {
                    at: ClaimsAt::Dir(dir),
                    ..
                } => Arc::new(DirDeliveredLog::new(dir)),
            });
        let outbound = config.relay.as_ref().map(|r| {
            r.transport.build(&clients).map_err(|source| {
                Arc::new(TargetError::Relay {
                    kind: r.transport.kind(),
                    source,
                })
            })
        });
        let markers = config.relay.as_ref().and_then(|relay| {
            let at = relay.sends_recorded_at(config.store.as_deref())?;
            Some(Markers {
                sends: relay.sends,
                ..self.markers_at(&at)
            })
        });
        let store_config = config.store.as_deref();
        let kept = markers.clone().or_else(|| {
            let at = store_config?
                .home()
                .or_else(|| store_config?.delivered_at().cloned())?;
            Some(self.markers_at(&at))
        });
        Dispatcher {
            store,
            delivered,
            outbound,
            markers,
            kept,
            quarantine: config
                .quarantine
                .as_ref()
                .map(|q| (q.build(&self.s3), q.folder.clone())),
        }
    }
}

/// What [`Pipeline::archive`] did: whether the write failed (`required = false`), and the
/// archive and its index records when it succeeded (for the copies as delivered).
#[derive(Default)]
struct Archived {
    failed: bool,
    records: Option<(sluice_deliver::Archive, Vec<sluice_deliver::ArchiveRecord>)>,
}

/// The reply for a message whose rules bounced every recipient (the first bounce's code,
/// status and text); `None` when any recipient gets anything else, or a chain tempfailed.
fn refusal_of_every_recipient(result: &ProcessResult) -> Option<Reply> {
    let mut first = None;
    for group in &result.groups {
        if group.outcome != GroupOutcome::Done {
            return None;
        }
        for d in &group.dispositions {
            let Disposition::Bounce {
                code, status, text, ..
            } = d
            else {
                return None;
            };
            first.get_or_insert_with(|| Reply {
                code: *code,
                status: status.clone(),
                text: text.clone(),
            });
        }
    }
    first
}

/// Counts, once per message, every directory record a rule found (the aliases it went
/// through, paused and ignored ones too: a paused alias that still gets mail is worth
/// knowing about).
fn count_uses(tables: &sluice_directory::Tables, result: &sluice_chain::ProcessResult) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for group in &result.groups {
        for step in &group.steps {
            for call in &step.lookups {
                if call.result == sluice_engine::LookupResult::Found
                    && !seen.contains(&(call.table.as_str(), call.key.as_str()))
                {
                    seen.push((&call.table, &call.key));
                    tables.count_use(&call.table, &call.key);
                }
            }
        }
    }
}

/// The EMF lines of one handled message: one per recipient group (dimension `Domain`) and one
/// per step that ran or was skipped (`Domain`, `Step`). `retry`: a delivery was deferred, so
/// the message's recipients count as tempfailed.
fn metric_lines(
    result: &sluice_chain::ProcessResult,
    envelope: &Envelope,
    retry: bool,
    chain_us: u64,
) -> Vec<String> {
    use sluice_chain::StepStatus;
    use sluice_telemetry::metrics::{
        message_line, step_line, MessageMetrics, StepEnd, StepMetrics,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let age_ms = (envelope.received_at > 0).then(|| now_ms.saturating_sub(envelope.received_at));
    let mut lines = Vec::new();
    for group in &result.groups {
        let mut m = MessageMetrics {
            domain: group.domain.clone(),
            received: group.recipients.len() as u64,
            bytes: result.size,
            age_ms,
            chain_us,
            ..MessageMetrics::default()
        };
        if retry || matches!(group.outcome, GroupOutcome::Tempfail { .. }) {
            m.tempfailed = m.received;
        } else {
            for d in &group.dispositions {
                match d {
                    Disposition::Deliver { .. } => m.delivered += 1,
                    Disposition::Relay { .. } => m.relayed += 1,
                    Disposition::Bounce { .. } => m.bounced += 1,
                    Disposition::Drop { .. } => m.dropped += 1,
                }
            }
        }
        lines.push(message_line(&m));
        for step in &group.steps {
            lines.push(step_line(&StepMetrics {
                domain: group.domain.clone(),
                step: step.step.to_string(),
                outcome: match step.outcome {
                    StepStatus::Ok => StepEnd::Ok,
                    StepStatus::RuleError => StepEnd::RuleError,
                    StepStatus::Failed => StepEnd::Failed,
                    StepStatus::Skipped => StepEnd::Skipped,
                },
                micros: step.micros,
            }));
        }
    }
    lines
}
