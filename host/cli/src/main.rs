//! `sluice`: run, check and build mail transport rules.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sluice_chain::ConfigFile;
use sluice_engine::{EngineOptions, RuleEngine};

mod alias;
mod alias_api;
mod archive;
mod daemon;
mod deliver;
mod fixtures;
mod list;
mod mailbox;
mod milter;
mod precompile;
mod quarantine;
mod remote;
mod report;
mod run;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Programmable mail transport rules as sandboxed WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level for the host's own log on stderr (error, warn, info, debug, trace, or
    /// directives such as `info,sluice_inbound=debug`) [default: info for `daemon`, warn
    /// otherwise].
    #[arg(long, global = true, env = "SLUICE_LOG")]
    log: Option<String>,
    /// How the log is written: `text` for a terminal, `json` (one object per line, the SES
    /// message id, domain, step, outcome and timings as fields) for CloudWatch Logs Insights.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: sluice_telemetry::LogFormat,
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
    Run(run::RunArgs),
    /// Deliver one message read from stdin: run the chains and hand the result to the
    /// config's [store] and [relay], as an MTA's `pipe` transport or `mailbox_command`.
    /// Exit code per sysexits (0 delivered, 75 try later, 65/67/69 refused) with the
    /// enhanced status code and reason as the first line on stderr.
    Deliver(deliver::DeliverArgs),
    /// Serve the milter protocol (v6) to Postfix or Sendmail: run the chains at end of each
    /// message and answer with milter modifications (headers, body, recipients) or an SMTP
    /// reply (a rule's bounce is a 5xx, a tempfail a 4xx, a drop a discard). Delivers
    /// nothing itself. Stops cleanly on SIGTERM/SIGINT.
    Milter(milter::MilterArgs),
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
    /// of that succeeded. With `[milter] listen` in the config, also serves the milter there
    /// on the same chains (and reloads). Stops cleanly on SIGTERM/SIGINT.
    Daemon {
        /// The config: a file, or `s3://bucket/key.toml` (checked for changes while running).
        #[arg(long)]
        config: String,
        /// The SQS queue URL. Optional when the config has `[milter] listen`: the daemon then
        /// serves only the milter. The packaged unit reads it from /etc/default/sluice.
        #[arg(long, env = "SLUICE_QUEUE")]
        queue: Option<String>,
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
        /// `emf`: print per-message and per-step metrics on stdout in CloudWatch Embedded
        /// Metric Format, for the CloudWatch agent's EMF listener; `off`: none.
        #[arg(long, value_enum, env = "SLUICE_METRICS", default_value = "off")]
        metrics: MetricsFormat,
        /// Directory for fetched and compiled plugins [default: $SLUICE_CACHE_DIR, else
        /// ~/.cache/sluice].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Edit the alias directory (`[directory.NAME]` of a config): add, list, pause and
    /// remove aliases, import and export them, and set the domains it serves.
    Alias(alias::AliasArgs),
    /// Edit the sender allow and block lists a directory keeps beside its aliases, which the
    /// `sender-lists` rule reads with `table = "NAME"`: add, rm, show.
    List(list::ListArgs),
    /// Search and read the message archive (`[archive]` of a config): `find` lists archived
    /// messages of a domain by sender, recipient, subject and days; `get` prints one.
    Archive(archive::ArchiveArgs),
    /// The copies `[quarantine]` kept out of the mailboxes: list, show, release into the
    /// `[store]`, delete, purge those older than `days`.
    Quarantine(quarantine::QuarantineArgs),
    /// Read what an S3 or dir `[store]` holds: list mailboxes and messages, print one, or
    /// mirror a mailbox into a Maildir an IMAP server (Dovecot) serves.
    Mailbox(mailbox::MailboxArgs),
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MetricsFormat {
    /// CloudWatch Embedded Metric Format on stdout.
    Emf,
    /// No metrics.
    Off,
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
    /// Compile components ahead of time for the machine that runs them (`--target
    /// aarch64-unknown-linux-gnu` for an arm64 Lambda) into a directory shipped with the
    /// host (the Lambda's package or a layer): its cold start then loads them instead of
    /// compiling. Prints one line per artifact.
    Precompile(precompile::PrecompileArgs),
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
    // The daemon's log is its record of every message handled; the other commands print
    // their results and log only what went wrong.
    let daemon = matches!(cli.command, Command::Daemon { .. } | Command::Milter(_));
    // `deliver`'s output is read by the MTA: its first line must be the status (`--log warn`
    // or SLUICE_LOG to see more).
    let default_level = match cli.command {
        Command::Daemon { .. } | Command::Milter(_) => "info",
        Command::Deliver(_) => "off",
        _ => "warn",
    };
    let filter = match sluice_telemetry::filter(cli.log.as_deref().unwrap_or(default_level)) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("sluice: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = sluice_telemetry::addresses_from_env() {
        eprintln!("sluice: {err}");
        return ExitCode::from(2);
    }
    sluice_telemetry::init(cli.log_format, sluice_telemetry::LogSink::Terminal, filter);
    match run(cli.command) {
        Ok(code) => code,
        // The daemon's stderr is its log, where addresses are masked like every other line;
        // the other commands are the operator's own tools and say exactly what failed.
        Err(err) if daemon => {
            eprintln!(
                "sluice: {}",
                sluice_telemetry::MaskedText(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
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
            metrics,
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
                metrics: metrics == MetricsFormat::Emf,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run::run(args),
        Command::Deliver(args) => Ok(deliver::deliver(args)),
        Command::Milter(args) => {
            milter::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, engine } => {
            let remote = remote::Remote::default();
            let config = remote::load_config(&config, &remote)?;
            let cache = cache_dir(&config, &engine);
            let engine = build_engine(&config, &engine)?;
            let chains = remote::load_chains(&engine, &config, &remote, cache.as_deref())?;
            print!("{}", report::chains(&config, &chains, &engine));
            let missing = config.missing_markers();
            let archive_problem = archive::check_object_lock(&config);
            if let Some(problem) = &archive_problem {
                eprintln!("error: {}: {problem}", config.source.name);
            }
            for problem in &missing {
                eprintln!(
                    "error: {}: {problem} (the daemon, the Lambda and `sluice deliver` refuse to start; `sluice run` can still preview)",
                    config.source.name
                );
            }
            Ok(if missing.is_empty() && archive_problem.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Test { dirs, engine } => fixtures::run(&dirs, &engine),
        Command::Alias(args) => alias::run(args),
        Command::List(args) => list::run(args),
        Command::Archive(args) => archive::run(args),
        Command::Quarantine(args) => quarantine::run(args),
        Command::Mailbox(args) => mailbox::run(args),
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
        Command::Plugin(PluginCommand::Precompile(args)) => precompile::run(args),
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
            print_created(&name, &created);
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

/// What `plugin new` made, and what to do next.
fn print_created(name: &str, created: &sluice_build::scaffold::Scaffolded) {
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
}
