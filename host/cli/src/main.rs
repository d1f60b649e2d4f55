//! `sluice`: run, check and build mail transport rules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use sluice_chain::{ConfigFile, Envelope, StoreConfig};
use sluice_engine::{EngineOptions, RuleEngine, Verdict, Verdicts};
use sluice_inbound::Dispatcher;
use sluice_mail::Message;

mod daemon;
mod fixtures;
mod remote;
mod report;

/// Exit code when a chain asked for a retry (EX_TEMPFAIL).
const EXIT_TEMPFAIL: u8 = 75;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Programmable mail transport rules as sandboxed WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level for the host's own log on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "warn")]
    log: String,
}

#[derive(Args)]
struct EngineArgs {
    /// Directory for compiled plugins [default: [engine] cache_dir, else $SLUICE_CACHE_DIR,
    /// else ~/.cache/sluice].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile plugins every time, without the disk cache.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a message through the configured chains and write the results.
    Run {
        /// The config: a file, or `s3://bucket/key.toml`.
        #[arg(long)]
        config: String,
        /// An envelope recipient (repeatable) [default: the To and Cc addresses].
        #[arg(long = "rcpt")]
        rcpt: Vec<String>,
        /// The envelope sender [default: the From address].
        #[arg(long)]
        mail_from: Option<String>,
        /// An SES verdict, e.g. `spf=pass`, `spam=fail` (repeatable; others are `unknown`).
        #[arg(long = "verdict", value_name = "NAME=VALUE")]
        verdicts: Vec<String>,
        /// The sender's DMARC policy as SES reports it (none, quarantine, reject).
        #[arg(long)]
        dmarc_policy: Option<String>,
        /// Message id for output names [default: derived from the message's sha256].
        #[arg(long)]
        message_id: Option<String>,
        /// Write deliveries under this directory (overrides the config's [store]).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the result as JSON instead of a readable trace.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// The message (RFC 5322 file).
        message: PathBuf,
    },
    /// Validate a config: parse it, load and type-check every plugin, check each step's
    /// config with the rule, and print the chains.
    Check {
        /// The config: a file, or `s3://bucket/key.toml`.
        #[arg(long)]
        config: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run rule fixtures (a message plus a TOML file of expectations) and report like a
    /// test runner: `ok`/`FAIL` per fixture, then `N passed, M failed`.
    Test {
        /// Fixture directories (every `*.toml` fixture in them) or fixture `.toml` files.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Consume an SQS queue of SES notifications (SES -> S3 + SNS -> SQS): run each message
    /// through its chains, store, relay and bounce; delete it from the queue only when all
    /// of that succeeded. Stops cleanly on SIGTERM/SIGINT.
    Daemon {
        /// The config: a file, or `s3://bucket/key.toml` (checked for changes while running).
        #[arg(long)]
        config: String,
        /// The SQS queue URL.
        #[arg(long)]
        queue: String,
        /// Messages handled at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Visibility timeout in seconds while a message is handled (extended as needed).
        #[arg(long, default_value_t = 60)]
        visibility: i32,
        /// SQS long-poll wait in seconds (0-20).
        #[arg(long, default_value_t = 20)]
        wait: i32,
        /// Check the config for changes this often, in seconds.
        #[arg(long, default_value_t = 30)]
        reload_seconds: u64,
        /// Exit after handling this many messages (for batch runs and tests).
        #[arg(long)]
        max_messages: Option<u64>,
        /// Directory for fetched and compiled plugins [default: $SLUICE_CACHE_DIR, else
        /// ~/.cache/sluice].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Build rules into components: Rust crates (Cargo.toml), JavaScript (package.json) and
    /// Python (pyproject.toml) rule directories.
    Build {
        /// Rule crate directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write `<name>.wasm`.
        #[arg(long)]
        out: PathBuf,
        /// Cargo target directory [default: cargo's].
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Upload a component to S3 after checking it implements the rule world, and print the
    /// `plugin` and `sha256` lines to paste into a step.
    Push {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where to put it: `s3://bucket/key.wasm`.
        url: String,
    },
    /// Create a new rule project from a template (`--lang rust`).
    New {
        /// The template's language: rust, js or python.
        #[arg(long)]
        lang: String,
        /// The rule's name: the crate name and the directory created.
        name: String,
        /// Create the project in this directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK to depend on [default: $SLUICE_SDK, else the checkout sluice was built
        /// from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Daemon {
            config,
            queue,
            concurrency,
            visibility,
            wait,
            reload_seconds,
            max_messages,
            cache_dir,
        } => {
            daemon::run(daemon::DaemonOptions {
                config,
                queue,
                concurrency,
                visibility_seconds: visibility,
                wait_seconds: wait,
                reload_seconds,
                cache_dir,
                max_messages,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            rcpt,
            mail_from,
            verdicts,
            dmarc_policy,
            message_id,
            out,
            json,
            engine,
            message,
        } => {
            let remote = remote::Remote::default();
            let config = remote::load_config(&config, &remote)?;
            let cache = cache_dir(&config, &engine);
            let engine = build_engine(&config, &engine)?;
            let chains = remote::load_chains(&engine, &config, &remote, cache.as_deref())?;
            let raw = std::fs::read(&message)
                .with_context(|| format!("cannot read {}", message.display()))?;
            let message_id = message_id.unwrap_or_else(|| content_id(&raw));
            let parsed = Message::parse(raw).with_context(|| format!("{}", message.display()))?;
            let parsed = Arc::new(parsed);
            let recipients = if rcpt.is_empty() {
                let r = header_recipients(parsed.raw());
                if r.is_empty() {
                    bail!(
                        "{}: no --rcpt given and no To/Cc addresses in the message",
                        message.display()
                    );
                }
                r
            } else {
                rcpt
            };
            for r in &recipients {
                sluice_mail::validate_address(r).with_context(|| format!("--rcpt {r:?}"))?;
            }
            let envelope = Envelope {
                message_id,
                mail_from: mail_from
                    .or_else(|| parsed.from_address())
                    .unwrap_or_default(),
                recipients,
                verdicts: parse_verdicts(&verdicts, dmarc_policy)?,
                received_at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            };
            let result = chains.process(&engine, parsed.clone(), &envelope);
            let root = match (&out, &config.store) {
                (Some(dir), _) => dir.clone(),
                (None, Some(StoreConfig::Dir { path })) => config.resolve(path),
                (None, Some(store)) => bail!(
                    "{}: [store] kind = {:?} is for the daemon and the Lambda; `sluice run` writes locally: pass --out DIR",
                    config.source.name,
                    store.kind()
                ),
                (None, None) => PathBuf::from("sluice-out"),
            };
            // The daemon's dispatcher, with local targets: the same allow list, loop guard and
            // DSN rules, and the sends written to DIR/outbox instead of going out. Claims in
            // a fresh directory, so running a message again writes its sends again.
            let claims = tempfile::tempdir().context("cannot create a temporary directory")?;
            let dispatcher = Dispatcher::local(&config, &root, claims.path());
            let handled = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(dispatcher.deliver(&config, &envelope, &parsed, &result))
                .map_err(|e| anyhow::anyhow!("{}", e.failure))?;
            let deliveries = report::deliveries(&result, &handled);
            if json {
                println!("{}", report::json(&result, &deliveries));
            } else {
                print!("{}", report::text(&result, &deliveries, &envelope));
            }
            Ok(if handled.retry.is_some() {
                ExitCode::from(EXIT_TEMPFAIL)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { config, engine } => {
            let remote = remote::Remote::default();
            let config = remote::load_config(&config, &remote)?;
            let cache = cache_dir(&config, &engine);
            let engine = build_engine(&config, &engine)?;
            let chains = remote::load_chains(&engine, &config, &remote, cache.as_deref())?;
            print!("{}", report::chains(&config, &chains, &engine));
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { dirs, engine } => fixtures::run(&dirs, &engine),
        Command::Plugin(PluginCommand::Build {
            dirs,
            out,
            target_dir,
        }) => {
            let opts = sluice_build::BuildOptions {
                out_dir: out,
                target_dir,
                ..Default::default()
            };
            for built in sluice_build::build_rules(&dirs, &opts)? {
                println!(
                    "built {} ({}, {} bytes) -> {}",
                    built.name,
                    built.target,
                    built.size,
                    built.path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Push { file, url }) => {
            let engine = RuleEngine::new(EngineOptions::default())?;
            let remote = remote::Remote::default();
            print!("{}", remote::push(&engine, &file, &url, &remote)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::New {
            lang,
            name,
            dir,
            sdk,
        }) => {
            let created = sluice_build::scaffold::new_rule(&sluice_build::scaffold::NewOptions {
                lang,
                name: name.clone(),
                parent: dir,
                sdk,
            })?;
            println!(
                "created {} rule `{name}` in {}:",
                created.lang,
                created.dir.display()
            );
            for file in &created.files {
                println!("  {}", file.display());
            }
            println!(
                "SDK: {} (from {})",
                created.sdk.display(),
                created.sdk_source
            );
            println!("\nnext:\n  cd {}", created.dir.display());
            for step in &created.next_steps {
                println!("  {step}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The cache directory: `--cache-dir`, else `[engine] cache_dir`, else the default; none
/// with `--no-cache`.
fn cache_dir(config: &ConfigFile, args: &EngineArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    args.cache_dir
        .clone()
        .or_else(|| {
            config
                .engine
                .cache_dir
                .as_deref()
                .map(|d| config.resolve(d))
        })
        .or_else(sluice_engine::default_cache_dir)
}

fn build_engine(config: &ConfigFile, args: &EngineArgs) -> Result<RuleEngine> {
    let cache_dir = cache_dir(config, args).map(|d| d.join("compiled"));
    Ok(RuleEngine::new(EngineOptions {
        cache_dir,
        cache_max_bytes: config.engine.cache_max_bytes(),
        pooling: config.engine.pooling_choice(),
        ..Default::default()
    })?)
}

/// The bare addresses of the To and Cc headers (for `run` without `--rcpt`).
fn header_recipients(raw: &[u8]) -> Vec<String> {
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    [msg.to(), msg.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_string))
        .collect()
}

fn content_id(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(raw)[..16])
}

fn parse_verdict(value: &str) -> Result<Verdict> {
    Ok(match value.to_ascii_lowercase().replace('_', "-").as_str() {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail,
        "gray" => Verdict::Gray,
        "processing-failed" => Verdict::ProcessingFailed,
        "disabled" => Verdict::Disabled,
        "unknown" => Verdict::Unknown,
        other => bail!(
            "verdict value {other:?}: expected pass, fail, gray, processing-failed, disabled or unknown"
        ),
    })
}

fn parse_verdicts(list: &[String], dmarc_policy: Option<String>) -> Result<Verdicts> {
    let mut v = Verdicts {
        spf: Verdict::Unknown,
        dkim: Verdict::Unknown,
        dmarc: Verdict::Unknown,
        spam: Verdict::Unknown,
        virus: Verdict::Unknown,
        dmarc_policy: dmarc_policy.map(|p| p.to_ascii_lowercase()),
    };
    for item in list {
        let Some((name, value)) = item.split_once('=') else {
            bail!("--verdict {item:?}: expected NAME=VALUE, e.g. spf=pass");
        };
        let verdict = parse_verdict(value).with_context(|| format!("--verdict {item:?}"))?;
        match name.to_ascii_lowercase().as_str() {
            "spf" => v.spf = verdict,
            "dkim" => v.dkim = verdict,
            "dmarc" => v.dmarc = verdict,
            "spam" => v.spam = verdict,
            "virus" => v.virus = verdict,
            other => bail!("--verdict {item:?}: unknown verdict {other:?}; expected spf, dkim, dmarc, spam or virus"),
        }
    }
    Ok(v)
}
