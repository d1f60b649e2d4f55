//! `sluice quarantine`: the copies `[quarantine]` kept out of the mailboxes (see
//! `sluice_deliver::quarantine`): list, show, release into the config's `[store]`, delete,
//! and purge those older than `days`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use sluice_deliver::{MailboxCopy, QuarantineRecord, Release, StoreRequest, TraceMeta};

/// `sluice quarantine`.
#[derive(Args)]
pub struct QuarantineArgs {
    /// The config whose `[quarantine]` to use: a file, or `s3://bucket/key.toml`.
    #[arg(long, global = true)]
    config: Option<String>,
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// One line per entry, oldest first: id, time, domain, sender, step, subject.
    List {
        /// Only entries quarantined by this domain's chain.
        #[arg(long)]
        domain: Option<String>,
        /// Only entries from this day (UTC, yyyy-mm-dd) on.
        #[arg(long, value_parser = sluice_deliver::archive::parse_day)]
        since: Option<time::Date>,
        /// The records as JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// The entry's record (why, which step, verdicts, trace, releases) as JSON; with
    /// `--message`, the quarantined message itself.
    Show {
        /// The entry id.
        id: String,
        /// Print the message instead of the record.
        #[arg(long)]
        message: bool,
    },
    /// Deliver the message: to its recipients, the message as received runs through the
    /// domain's chain again without the step that quarantined it, and goes wherever the chain
    /// sends it (`[store]`, relay, bounces); with `--to` or `--as-kept`, the quarantined copy
    /// goes into INBOX through `[store]`. The release is added to the record.
    Release {
        /// The entry id.
        id: String,
        /// Deliver the quarantined copy to this address instead (repeatable).
        #[arg(long, value_name = "ADDR")]
        to: Vec<String>,
        /// Deliver the quarantined copy (what the chain made) into INBOX without running the
        /// chain again.
        #[arg(long)]
        as_kept: bool,
        /// Print an EMF `Released` count on stdout (CloudWatch Embedded Metric Format).
        #[arg(long)]
        emf: bool,
    },
    /// Remove the entry (message and record).
    Delete {
        /// The entry id.
        id: String,
    },
    /// Remove every entry older than `[quarantine] days`.
    Purge,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `sluice quarantine ...`.
pub fn run(args: QuarantineArgs) -> Result<ExitCode> {
    let Some(config_arg) = args.config else {
        bail!("sluice quarantine needs --config FILE");
    };
    let config = crate::remote::load_config(&config_arg, &crate::remote::Remote::default())?;
    let Some(settings) = config.quarantine.clone() else {
        bail!("{} has no [quarantine] section", config.source.name);
    };
    // Two workers: a release runs the pipeline (rules on blocking threads, deliveries).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let s3 = sluice_aws::S3::from_env().await;
        let quarantine = settings.build(&s3);
        match args.command {
            QuarantineCommand::List {
                domain,
                since,
                json,
            } => {
                let since_ms = since.map(|d| {
                    (d.midnight().assume_utc().unix_timestamp().max(0) as u64) * 1000
                });
                for r in quarantine.list().await? {
                    if domain.as_ref().is_some_and(|d| !d.eq_ignore_ascii_case(&r.domain))
                        || since_ms.is_some_and(|s| r.quarantined_at < s)
                    {
                        continue;
                    }
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}{}",
                            r.id,
                            sluice_deliver::archive::day_of(r.quarantined_at),
                            r.domain,
                            if r.from.is_empty() { "<>" } else { &r.from },
                            r.step,
                            r.subject,
                            if r.released.is_empty() { "" } else { "\t(released)" }
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            QuarantineCommand::Show { id, message } => {
                if message {
                    use std::io::Write as _;
                    std::io::stdout()
                        .lock()
                        .write_all(&quarantine.message(&id).await?)?;
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&quarantine.record(&id).await?)?
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            QuarantineCommand::Release {
                id,
                to,
                emf,
                as_kept,
            } => {
                let mut record = quarantine.record(&id).await?;
                let run_again = to.is_empty() && !as_kept;
                let to = if to.is_empty() {
                    record.recipients.clone()
                } else {
                    to
                };
                if let Some(earlier) = record
                    .released
                    .iter()
                    .find(|r| r.to.iter().any(|a| to.contains(a)))
                {
                    bail!(
                        "{id} was released to {} already (at {} ms); `--to ADDR` sends a copy elsewhere",
                        earlier.to.join(", "),
                        earlier.at
                    );
                }
                let received = if run_again {
                    quarantine.received(&record).await?
                } else {
                    None
                };
                let stored = match received {
                    // A run that quarantines it again fails before anything is recorded.
                    Some(raw) => run_chain_again(&config_arg, &record, raw).await?,
                    None => {
                        if run_again {
                            println!(
                                "{id} was quarantined before Sluice kept the message as received: delivering the quarantined copy"
                            );
                        }
                        let bytes = quarantine.message(&id).await?;
                        release(&config, &s3, &record, &to, &bytes).await?
                    }
                };
                for at in &stored {
                    println!("released {id} -> {at}");
                }
                record.released.push(Release {
                    at: now_ms(),
                    to: to.clone(),
                    stored,
                });
                quarantine.save(&record).await?;
                tracing::info!(entry = %id, copies = to.len(), "released from quarantine");
                if emf {
                    println!(
                        "{}",
                        sluice_telemetry::metrics::quarantine_line(0, to.len() as u64)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            QuarantineCommand::Delete { id } => {
                quarantine.delete(&id).await?;
                println!("deleted {id}");
                Ok(ExitCode::SUCCESS)
            }
            QuarantineCommand::Purge => {
                let cutoff = now_ms().saturating_sub(u64::from(settings.days) * 86_400_000);
                let mut purged = 0;
                for r in quarantine.list().await? {
                    if r.quarantined_at < cutoff {
                        quarantine.delete(&r.id).await?;
                        purged += 1;
                    }
                }
                println!(
                    "purged {purged} entr{} older than {} days from {}",
                    if purged == 1 { "y" } else { "ies" },
                    settings.days,
                    quarantine.describe()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Runs the message as received through the config's pipeline again, as the door that took
/// it in would have (its envelope and verdicts from the record), without the step that
/// quarantined it; delivers wherever the chain says. Returns where copies went (stored
/// copies and relayed sends); an error when the chain tempfailed, could not deliver, or
/// quarantined the message again (another step did).
async fn run_chain_again(
    config: &str,
    record: &QuarantineRecord,
    raw: Vec<u8>,
) -> Result<Vec<String>> {
    use sluice_inbound::door::{Arrival, MessageContent, RefuseBy};
    let pipeline = sluice_inbound::Pipeline::start(sluice_inbound::PipelineOptions {
        config: config.to_string(),
        // One message: never reloaded.
        reload_interval: std::time::Duration::from_secs(3600),
        cache_dir: None,
        metrics: false,
        precompiled_dirs: Vec::new(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let arrival = Arrival {
        message_id: record.message_id.clone(),
        mail_from: record.from.clone(),
        recipients: record.recipients.clone(),
        verdicts: verdicts_of(record)?,
        received_at: record.quarantined_at,
        content: MessageContent::Inline(raw),
        refuse_by: RefuseBy::Dsn,
        trusted_authserv_id: None,
        flow: sluice_engine::Flow::default(),
        skip_step: Some(record.step.clone()),
    };
    let (outcome, trace) = pipeline.handle_traced(arrival).await;
    if let Some(trace) = &trace {
        for group in &trace.groups {
            for step in &group.steps {
                println!(
                    "  step {} ({}): {}{}",
                    step.step,
                    group.domain,
                    step.outcome,
                    step.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    let handled = outcome.map_err(|e| {
        anyhow::anyhow!("running {} through the chain again failed: {e}", record.id)
    })?;
    crate::deliver::report_kept(&handled);
    if let Some((_, entry)) = handled.quarantined.first() {
        bail!(
            "the chain quarantined {} again without step {:?} (another step filed it into the quarantine folder): see `sluice quarantine show {entry}`; `--as-kept` delivers the copy anyway",
            record.id,
            record.step
        );
    }
    let mut went: Vec<String> = handled.stored.iter().map(|s| s.at.clone()).collect();
    went.extend(handled.relayed.iter().map(|r| {
        format!(
            "relay {} ({:?}{})",
            r.recipient,
            r.status,
            r.id.as_deref()
                .map(|i| format!(", {i}"))
                .unwrap_or_default()
        )
    }));
    went.extend(
        handled
            .bounces
            .iter()
            .map(|b| format!("bounce to the sender for {}", b.recipients.join(", "))),
    );
    Ok(went)
}

/// The verdicts a record keeps (lower-case words of `sluice_engine::Verdict`), back.
fn verdicts_of(record: &QuarantineRecord) -> Result<sluice_engine::Verdicts> {
    let list: Vec<String> = ["spf", "dkim", "dmarc", "spam", "virus"]
        .iter()
        .filter_map(|k| {
            let word = record.verdicts.get(*k)?;
            let word = if word == "processingfailed" {
                "processing-failed"
            } else {
                word
            };
            Some(format!("{k}={word}"))
        })
        .collect();
    crate::run::parse_verdicts(&list, record.verdicts.get("dmarc_policy").cloned())
        .with_context(|| format!("the verdicts of quarantine entry {}", record.id))
}

/// Stores the quarantined copy into each recipient's INBOX through `[store]`, as it was kept
/// (the chain does not run again: the copy is what the chain made, the quarantining step's
/// `file-into` aside). Returns where each copy went.
async fn release(
    config: &sluice_chain::ConfigFile,
    s3: &sluice_aws::S3,
    record: &QuarantineRecord,
    to: &[String],
    bytes: &[u8],
) -> Result<Vec<String>> {
    let Some(store) = &config.store else {
        bail!("{} has no [store] to release into", config.source.name);
    };
    let clients = sluice_deliver::TargetClients {
        s3: s3.clone(),
        ses: sluice_aws::Ses::from_env().await,
    };
    let store = store
        .build(&clients)
        .with_context(|| format!("[store] kind = {:?}", store.kind()))?;
    let copies: Vec<MailboxCopy> = to
        .iter()
        .map(|r| MailboxCopy {
            recipient: r.clone(),
            folder: sluice_deliver::DEFAULT_FOLDER.to_string(),
        })
        .collect();
    let mut steps = record.trace.clone();
    steps.push(("quarantine-release".into(), "ok".into()));
    let trace = TraceMeta { steps };
    let outcomes = store
        .store(StoreRequest {
            message_id: &record.message_id,
            mail_from: &record.from,
            bytes,
            copies: &copies,
            trace: &trace,
        })
        .await;
    let mut stored = Vec::new();
    for outcome in outcomes {
        match outcome.result {
            Ok(at) => stored.push(at),
            Err(e) => bail!(
                "release to {} failed: {e} (copies made: {})",
                outcome.copy.recipient,
                stored.join(", ")
            ),
        }
    }
    Ok(stored)
}
