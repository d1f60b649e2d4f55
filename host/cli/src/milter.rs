//! `sluice milter`: the milter door. Postfix or Sendmail connects (`smtpd_milters =
//! inet:127.0.0.1:PORT`), streams each SMTP transaction, and at end of message gets the
//! chain's result as milter modifications or an SMTP reply (see `sluice_milter::answer`).
//! Nothing is delivered by Sluice here: the MTA delivers, so `[store]` and `[relay]` are not
//! needed (and not used).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_chain::{MilterDefaultAction, MilterSection, MilterVerdicts, ScannerKind};
use sluice_inbound::{Pipeline, PipelineOptions};
use sluice_milter::{
    AuthVerdicts, Authenticator, DefaultAction, Listen, Listener, MilterOptions, ScannerHeader,
    ScannerVerdict,
};

/// `sluice milter`'s arguments. Each setting but `--config` can also be set in the config's
/// `[milter]` section (same names, `_s` for seconds: `command_timeout_s`, `grace_s`); a flag
/// wins over the section, the section over the default. Scanner headers are set in the
/// section only (`[[milter.scanner]]`).
#[derive(Args)]
pub struct MilterArgs {
    /// The config: a file, or `s3://bucket/key.toml` (checked for changes while running).
    #[arg(long)]
    pub config: String,
    /// Where to listen: `inet:127.0.0.1:PORT` (port 0: any free port, printed on stdout) or
    /// `unix:/path/to/socket` [default: [milter] listen; one of them is required].
    #[arg(long)]
    pub listen: Option<Listen>,
    /// The largest message accepted, in bytes; larger ones are refused 552 5.3.4
    /// [default: 41943040, 40 MiB].
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// The message bytes all connections may hold at once; a transaction that would pass it
    /// is answered 452 4.3.1 (try again later) [default: 536870912, 512 MiB].
    #[arg(long)]
    pub max_buffered_bytes: Option<usize>,
    /// Seconds to wait for the MTA's next command before closing the connection
    /// [default: 600].
    #[arg(long)]
    pub command_timeout: Option<u64>,
    /// Connections served at once; more are answered 421 4.3.2 [default: 64].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// When the chain cannot run (a panic, an engine failure): `tempfail` (451, the sender
    /// retries) or `accept` (the message passes unchanged) [default: tempfail].
    #[arg(long, value_enum)]
    pub default_action: Option<DefaultActionArg>,
    /// Read SPF/DKIM/DMARC verdicts from the topmost `Authentication-Results` header with this
    /// authserv-id (your MTA's, e.g. `mx.example.com`); without it every verdict is `unknown`.
    #[arg(long, value_name = "AUTHSERV-ID")]
    pub trusted_authserv_id: Option<String>,
    /// Where SPF/DKIM/DMARC verdicts come from: `authentication-results` (the header of
    /// `--trusted-authserv-id`) or `compute` (Sluice checks them, asking `--dns`)
    /// [default: authentication-results].
    #[arg(long, value_enum)]
    pub verdicts: Option<VerdictsArg>,
    /// With `--verdicts compute`: the DNS server, `IP` or `IP:PORT` [default: the system's
    /// resolvers, /etc/resolv.conf].
    #[arg(long, value_name = "IP[:PORT]")]
    pub dns: Option<String>,
    /// With `--verdicts compute`: seconds one message's checks may take in all; a check cut
    /// short is `processing-failed` [default: 10].
    #[arg(long)]
    pub verdicts_timeout: Option<u64>,
    /// Seconds one MTA connection may last in all, however busy [default: 3600].
    #[arg(long)]
    pub connection_timeout: Option<u64>,
    /// On SIGTERM, seconds connections may take to finish their message [default: 30].
    #[arg(long)]
    pub grace: Option<u64>,
    /// Check the config for changes this often, in seconds (the chains reload; `[milter]`
    /// is read once, at start).
    #[arg(long, default_value_t = 30)]
    pub reload_seconds: u64,
    /// Directory for fetched and compiled plugins [default: [engine] cache_dir, else
    /// $SLUICE_CACHE_DIR, else ~/.cache/sluice].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// `--default-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultActionArg {
    /// 451 4.3.0.
    Tempfail,
    /// Pass unchanged.
    Accept,
}

/// `--verdicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictsArg {
    /// From the trusted `Authentication-Results` header.
    AuthenticationResults,
    /// Computed by Sluice.
    Compute,
}

/// Runs the milter until SIGTERM/SIGINT.
pub fn run(args: MilterArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(args));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(args: MilterArgs) -> Result<()> {
    let stop = crate::daemon::shutdown_signal()?;
    let pipeline = Pipeline::start(PipelineOptions {
        config: args.config.clone(),
        reload_interval: Duration::from_secs(args.reload_seconds),
        cache_dir: args.cache_dir.clone(),
        metrics: false,
        precompiled_dirs: Vec::new(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let section = pipeline.current().config.milter.clone().unwrap_or_default();
    let (listen, options) = settings(&args, &section, &args.config)?;
    let listener = Listener::bind(&listen).await?;
    // The bound address on stdout: with port 0, how a supervisor (or a test) finds it.
    println!("sluice milter: listening on {}", listener.local());
    tracing::info!(listen = %listener.local(), config = %args.config, "milter listening");
    sluice_milter::serve(Arc::new(pipeline), listener, options, stop).await;
    tracing::info!("milter stopped");
    Ok(())
}

/// For `sluice daemon`: where and how to serve the milter beside the queue, from the
/// config's `[milter]` section alone (the daemon has no milter flags); `None` without a
/// `[milter] listen`. The server does not reload: the daemon reloads the pipeline both
/// doors share.
pub(crate) fn section_settings(
    section: &MilterSection,
    config: &str,
) -> Result<Option<(Listen, MilterOptions)>> {
    if section.listen.is_none() {
        return Ok(None);
    }
    let no_flags = MilterArgs {
        config: config.to_string(),
        listen: None,
        max_message_bytes: None,
        max_buffered_bytes: None,
        command_timeout: None,
        max_connections: None,
        default_action: None,
        trusted_authserv_id: None,
        verdicts: None,
        dns: None,
        verdicts_timeout: None,
        connection_timeout: None,
        grace: None,
        reload_seconds: 0,
        cache_dir: None,
    };
    let (listen, options) = settings(&no_flags, section, config)?;
    let options = MilterOptions {
        reload_interval: None,
        ..options
    };
    Ok(Some((listen, options)))
}

/// The listen address and options: each flag, else `[milter]`, else the default.
fn settings(
    args: &MilterArgs,
    section: &MilterSection,
    config: &str,
) -> Result<(Listen, MilterOptions)> {
    let listen = match (&args.listen, &section.listen) {
        (Some(listen), _) => listen.clone(),
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("{config}: [milter] listen"))?,
        (None, None) => anyhow::bail!(
            "where to listen: pass --listen inet:127.0.0.1:PORT (or unix:PATH), or set [milter] listen in {config}"
        ),
    };
    let defaults = MilterOptions::default();
    let default_action = match (args.default_action, section.default_action) {
        (Some(DefaultActionArg::Accept), _) | (None, Some(MilterDefaultAction::Accept)) => {
            DefaultAction::Accept
        }
        _ => DefaultAction::Tempfail,
    };
    let options = MilterOptions {
        max_message_bytes: args
            .max_message_bytes
            .or(section.max_message_bytes)
            .unwrap_or(defaults.max_message_bytes),
        max_buffered_bytes: args
            .max_buffered_bytes
            .or(section.max_buffered_bytes)
            .unwrap_or(defaults.max_buffered_bytes),
        command_timeout: args
            .command_timeout
            .or(section.command_timeout_s)
            .map(Duration::from_secs)
            .unwrap_or(defaults.command_timeout),
        max_connections: args
            .max_connections
            .or(section.max_connections)
            .unwrap_or(defaults.max_connections)
            .max(1),
        default_action,
        trusted_authserv_id: args
            .trusted_authserv_id
            .clone()
            .or_else(|| section.trusted_authserv_id.clone()),
        outbound_daemon_names: section.outbound_daemon_names.clone(),
        grace: args
            .grace
            .or(section.grace_s)
            .map(Duration::from_secs)
            .unwrap_or(defaults.grace),
        connection_timeout: args
            .connection_timeout
            .or(section.connection_timeout_s)
            .map(Duration::from_secs)
            .unwrap_or(defaults.connection_timeout),
        verdicts: auth_verdicts(args, section, config)?,
        scanners: section.scanner.iter().map(scanner_header).collect(),
        reload_interval: Some(Duration::from_secs(args.reload_seconds)),
        ..defaults
    };
    Ok((listen, options))
}

/// Where SPF/DKIM/DMARC come from. `compute` with a trusted authserv-id is refused: one
/// source, so nobody wonders which one a rule saw.
fn auth_verdicts(args: &MilterArgs, section: &MilterSection, config: &str) -> Result<AuthVerdicts> {
    let compute = match (args.verdicts, section.verdicts) {
        (Some(v), _) => v == VerdictsArg::Compute,
        (None, Some(v)) => v == MilterVerdicts::Compute,
        (None, None) => false,
    };
    let dns = args.dns.as_ref().or(section.dns.as_ref());
    if !compute {
        if dns.is_some() {
            anyhow::bail!(
                "{config}: [milter] dns (--dns) is for verdicts = \"compute\"; the Authentication-Results mode asks no DNS"
            );
        }
        return Ok(AuthVerdicts::AuthenticationResults);
    }
    if args.trusted_authserv_id.is_some() || section.trusted_authserv_id.is_some() {
        anyhow::bail!(
            "{config}: verdicts = \"compute\" and trusted_authserv_id both say where SPF/DKIM/DMARC come from: keep one"
        );
    }
    let dns = dns
        .map(|d| sluice_milter::verdicts::parse_dns_address(d))
        .transpose()
        .with_context(|| format!("{config}: [milter] dns"))?;
    let timeout = Duration::from_secs(
        args.verdicts_timeout
            .or(section.verdicts_timeout_s)
            .unwrap_or(10)
            .max(1),
    );
    let authenticator = Authenticator::new(dns, timeout).context("verdicts = \"compute\"")?;
    Ok(AuthVerdicts::Compute(Arc::new(authenticator)))
}

fn scanner_header(s: &sluice_chain::ScannerSection) -> ScannerHeader {
    ScannerHeader {
        name: s.name.clone(),
        verdict: match s.verdict {
            ScannerKind::Spam => ScannerVerdict::Spam,
            ScannerKind::Virus => ScannerVerdict::Virus,
        },
        header: s.header.clone(),
        fail: s.fail.clone(),
        pass: s.pass.clone(),
    }
}
