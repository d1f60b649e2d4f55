//! `sluice run`: one message through the chains, delivered by the daemon's dispatcher with
//! local targets (mailboxes in a directory, sends in its outbox); with `--deliver`, through
//! the daemon's whole pipeline to the config's own targets (a real mailbox over LMTP, S3,
//! SES), with the same trace.
//!
//! The trace it prints on stdout keeps addresses whole: it is a preview of the operator's
//! own message, read in a terminal, not a log. Its log on stderr is masked like the daemon's
//! (`sluice_telemetry::MaskingWriter`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use sluice_chain::{ConfigFile, Envelope, ProcessResult};
use sluice_deliver::RecordsAt;
use sluice_engine::{Flow, Verdict, Verdicts};
use sluice_inbound::{Dispatcher, Handled};
use sluice_mail::Message;

use sluice_inbound::door::{sysexits, unknown_verdicts, RefuseBy};
use sluice_inbound::{Answer, Arrival, MessageContent};

use crate::{build_engine, cache_dir, remote, report, EngineArgs};

/// `sluice run`'s arguments.
#[derive(Args)]
pub struct RunArgs {
    /// The config: a file, or `s3://bucket/key.toml`.
    #[arg(long)]
    pub config: String,
    /// An envelope recipient (repeatable) [default: the To and Cc addresses].
    #[arg(long = "rcpt")]
    pub rcpt: Vec<String>,
    /// The envelope sender [default: the From address].
    #[arg(long)]
    pub mail_from: Option<String>,
    /// An SES verdict, e.g. `spf=pass`, `spam=fail` (repeatable; others are `unknown`).
    #[arg(long = "verdict", value_name = "NAME=VALUE")]
    pub verdicts: Vec<String>,
    /// The sender's DMARC policy as SES reports it (none, quarantine, reject).
    #[arg(long)]
    pub dmarc_policy: Option<String>,
    /// Message id for output names [default: derived from the message's sha256].
    #[arg(long)]
    pub message_id: Option<String>,
    /// Write deliveries under this directory (overrides the config's [store]).
    #[arg(long, conflicts_with = "deliver")]
    pub out: Option<PathBuf>,
    /// Deliver to the config's own [store] and [relay] (directory, S3, LMTP, SMTP, SES) as
    /// the daemon would, instead of the local preview; a rule's bounce sends a real DSN.
    #[arg(long)]
    pub deliver: bool,
    /// Print the result as JSON instead of a readable trace.
    #[arg(long)]
    pub json: bool,
    /// Run the message as mail a local user sends: the `[[outbound]]` chain of the sending
    /// domain (of `--auth-sender` when it is an address, else of the envelope sender) runs,
    /// with every recipient in one group, instead of the `[[domain]]` chains.
    #[arg(long, conflicts_with = "deliver")]
    pub outbound: bool,
    /// The SMTP AUTH login the sender used (what the milter reads from `{auth_authen}`).
    #[arg(long, requires = "outbound", value_name = "LOGIN")]
    pub auth_sender: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The message (RFC 5322 file).
    pub message: PathBuf,
}

impl RunArgs {
    /// Inbound, or outbound with `--auth-sender`.
    fn flow(&self) -> Flow {
        if self.outbound {
            Flow::outbound(self.auth_sender.clone())
        } else {
            Flow::inbound()
        }
    }
}

/// Runs the message, delivers locally, prints the trace; exit 75 when it must be retried,
/// 69 when a copy reaches nobody because the config refuses its recipients (it is kept under
/// `_undeliverable/` in the output directory).
pub fn run(args: RunArgs) -> Result<ExitCode> {
    if args.deliver {
        return run_delivering(&args);
    }
    let remote = remote::Remote::default();
    let config = remote::load_config(&args.config, &remote)?;
    let cache = cache_dir(&config, &args.engine);
    let engine = build_engine(&config, &args.engine)?;
    let chains = remote::load_chains(&engine, &config, &remote, cache.as_deref())?;
    let raw = std::fs::read(&args.message)
        .with_context(|| format!("cannot read {}", args.message.display()))?;
    let message_id = args.message_id.clone().unwrap_or_else(|| content_id(&raw));
    let parsed = Message::parse(raw).with_context(|| format!("{}", args.message.display()))?;
    let parsed = Arc::new(parsed);
    let envelope = envelope(&args, &parsed, message_id)?;
    let result = chains.process(&engine, parsed.clone(), &envelope);
    let root = output_dir(args.out.as_deref(), &config)?;
    if envelope.flow.is_outbound() {
        return run_outbound(&args, &root, &envelope, &parsed, &result);
    }
    let handled = deliver(&config, &root, &envelope, &parsed, &result)?;
    print_trace(&args, &result, &handled, &envelope);
    crate::deliver::report_kept(&handled);
    Ok(if handled.retry.is_some() {
        ExitCode::from(sysexits::TEMPFAIL)
    } else if !handled.kept.is_empty() {
        ExitCode::from(sysexits::UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    })
}

/// `sluice run --outbound`: the MTA sends outbound mail, so nothing goes through the
/// dispatcher (no relay rewrite, no DSN); the message as it would leave is written to
/// `OUT/outgoing/<id>.eml` when some recipient keeps it. Exit 75 when a chain tempfailed.
fn run_outbound(
    args: &RunArgs,
    root: &Path,
    envelope: &Envelope,
    parsed: &Arc<Message>,
    result: &ProcessResult,
) -> Result<ExitCode> {
    let nothing = Handled::nothing_yet(&envelope.message_id);
    print_trace(args, result, &nothing, envelope);
    let leaving = result.groups.iter().find_map(|g| g.output.as_ref());
    if let Some(output) = leaving {
        let bytes = match output {
            sluice_chain::OutputMessage::Original => parsed.raw(),
            sluice_chain::OutputMessage::Edited(edited) => edited.raw(),
        };
        let dir = root.join("outgoing");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{}.eml", envelope.message_id));
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            println!("outgoing: {}", path.display());
        }
    }
    let tempfailed = result
        .groups
        .iter()
        .any(|g| matches!(g.outcome, sluice_chain::GroupOutcome::Tempfail { .. }));
    Ok(if tempfailed {
        ExitCode::from(sysexits::TEMPFAIL)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_trace(args: &RunArgs, result: &ProcessResult, handled: &Handled, envelope: &Envelope) {
    let deliveries = report::deliveries(result, handled);
    if args.json {
        println!("{}", report::json(result, &deliveries));
    } else {
        print!("{}", report::text(result, &deliveries, envelope));
        if handled.arc.sealed > 0 {
            println!("arc: {} copy/copies sealed", handled.arc.sealed);
        }
        for why in &handled.arc.unsealed {
            println!("arc: not sealed: {why}");
        }
    }
}

/// `sluice run --deliver`: the message through the pipeline the daemon runs, to the
/// config's targets; the trace as without `--deliver`, the exit code as `sluice deliver`'s.
fn run_delivering(args: &RunArgs) -> Result<ExitCode> {
    let raw = std::fs::read(&args.message)
        .with_context(|| format!("cannot read {}", args.message.display()))?;
    let message_id = args.message_id.clone().unwrap_or_else(|| content_id(&raw));
    let parsed =
        Message::parse(raw.clone()).with_context(|| format!("{}", args.message.display()))?;
    let envelope = envelope(args, &parsed, message_id)?;
    let arrival = Arrival {
        message_id: envelope.message_id.clone(),
        mail_from: envelope.mail_from.clone(),
        recipients: envelope.recipients.clone(),
        verdicts: envelope.verdicts.clone(),
        received_at: envelope.received_at,
        content: MessageContent::Inline(raw),
        refuse_by: RefuseBy::Dsn,
        trusted_authserv_id: None,
        flow: envelope.flow.clone(),
        skip_step: None,
    };
    let (outcome, trace) =
        crate::deliver::handle(&args.config, args.engine.cache_dir.clone(), arrival)?;
    let nothing = Handled::nothing_yet(&envelope.message_id);
    let handled = outcome.as_ref().unwrap_or(&nothing);
    if let Some(result) = &trace {
        print_trace(args, result, handled, &envelope);
    }
    let answer = Answer::of(&outcome);
    if let Err(e) = &outcome {
        eprintln!("sluice run: {e}");
    }
    crate::deliver::report_kept(handled);
    Ok(ExitCode::from(answer.exit_code()))
}

/// The envelope from the arguments: `--rcpt` (else the To and Cc addresses), `--mail-from`
/// (else the From address), `--verdict`s.
fn envelope(args: &RunArgs, parsed: &Message, message_id: String) -> Result<Envelope> {
    let recipients = if args.rcpt.is_empty() {
        let r = header_recipients(parsed.raw());
        if r.is_empty() {
            bail!(
                "{}: no --rcpt given and no To/Cc addresses in the message",
                args.message.display()
            );
        }
        r
    } else {
        args.rcpt.clone()
    };
    for r in &recipients {
        sluice_mail::validate_address(r).with_context(|| format!("--rcpt {r:?}"))?;
    }
    Ok(Envelope {
        message_id,
        mail_from: args
            .mail_from
            .clone()
            .or_else(|| parsed.from_address())
            .unwrap_or_default(),
        recipients,
        verdicts: parse_verdicts(&args.verdicts, args.dmarc_policy.clone())?,
        received_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        flow: args.flow(),
        skip_step: None,
    })
}

/// Where the mailboxes and the outbox go: `--out`, else a `[store] kind = "dir"`, else
/// `sluice-out`. Another store kind is for the daemon and the Lambda.
fn output_dir(out: Option<&Path>, config: &ConfigFile) -> Result<PathBuf> {
    Ok(match (out, &config.store) {
        (Some(dir), _) => dir.to_path_buf(),
        // A store on this machine's disk is where the preview goes too.
        (None, Some(store)) => match store.home() {
            Some(RecordsAt::Dir(path)) => path,
            _ => bail!(
            "{}: [store] kind = {:?} is for the daemon and the Lambda; `sluice run` writes locally: pass --out DIR for a preview, or --deliver to deliver through it",
            config.source.name,
            store.kind()
        ),
        },
        (None, None) => PathBuf::from("sluice-out"),
    })
}

/// The daemon's dispatcher, with local targets: the same allow list, loop guard and DSN
/// rules, and the sends written to `root/outbox` instead of going out. Claims in a fresh
/// directory, so running a message again writes its sends again.
fn deliver(
    config: &ConfigFile,
    root: &Path,
    envelope: &Envelope,
    parsed: &Arc<Message>,
    result: &ProcessResult,
) -> Result<Handled> {
    let claims = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dispatcher = Dispatcher::local(config, root, claims.path());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(dispatcher.deliver(config, envelope, parsed, result))
        .map_err(|e| anyhow::anyhow!("{}", e.failure))
}

/// The bare addresses of the To and Cc headers (for `run` without `--rcpt`).
pub(crate) fn header_recipients(raw: &[u8]) -> Vec<String> {
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

pub(crate) fn content_id(raw: &[u8]) -> String {
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

pub(crate) fn parse_verdicts(list: &[String], dmarc_policy: Option<String>) -> Result<Verdicts> {
    let mut v = Verdicts {
        dmarc_policy: dmarc_policy.map(|p| p.to_ascii_lowercase()),
        ..unknown_verdicts()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse_by_name_and_unknown_names_are_refused() {
        let v = parse_verdicts(
            &[
                "spf=pass".into(),
                "DKIM=fail".into(),
                "spam=processing_failed".into(),
            ],
            Some("REJECT".into()),
        )
        .unwrap();
        assert_eq!(v.spf, Verdict::Pass);
        assert_eq!(v.dkim, Verdict::Fail);
        assert_eq!(v.spam, Verdict::ProcessingFailed);
        assert_eq!(v.dmarc, Verdict::Unknown);
        assert_eq!(v.dmarc_policy.as_deref(), Some("reject"));
        let e = parse_verdicts(&["spf".into()], None).unwrap_err();
        assert!(e.to_string().contains("expected NAME=VALUE"), "{e}");
        let e = parse_verdicts(&["arc=pass".into()], None).unwrap_err();
        assert!(e.to_string().contains("unknown verdict \"arc\""), "{e}");
        let e = parse_verdicts(&["spf=maybe".into()], None).unwrap_err();
        assert!(format!("{e:#}").contains("expected pass, fail"), "{e:#}");
    }

    #[test]
    fn recipients_default_to_to_and_cc() {
        let raw = b"From: a@x.test\r\nTo: B <b@y.test>, c@y.test\r\nCc: d@z.test\r\n\r\nhi\r\n";
        assert_eq!(header_recipients(raw), ["b@y.test", "c@y.test", "d@z.test"]);
        assert!(header_recipients(b"From: a@x.test\r\n\r\nhi\r\n").is_empty());
        assert_eq!(content_id(b"x"), content_id(b"x"));
        assert_ne!(content_id(b"x"), content_id(b"y"));
    }
}
