//! `sluice mailbox`: read what an S3 or directory `[store]` holds, and mirror one mailbox
//! into a Maildir that Dovecot (or any IMAP server) serves, so the serverless setup's mail can
//! be read with an ordinary client.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sluice_deliver::mailboxes::{StoredCopy, StoredMailboxes};
use sluice_deliver::maildir::sync_maildir;

use crate::remote::{load_config, Remote};

/// `sluice mailbox ...`.
#[derive(Args)]
pub struct MailboxArgs {
    /// The config whose `[store]` (kind = "s3" or "dir") holds the mailboxes: a file, or
    /// `s3://bucket/key.toml`.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<String>,
    #[command(subcommand)]
    command: MailboxCommand,
}

#[derive(Subcommand)]
enum MailboxCommand {
    /// Without ADDRESS: one line per mailbox and folder (address, folder, messages, bytes).
    /// With ADDRESS: one line per stored copy (folder, message id, size, stored at).
    List {
        /// Whose mailbox.
        address: Option<String>,
        /// Only this folder.
        #[arg(long)]
        folder: Option<String>,
        /// A JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print one stored copy, raw (RFC 5322), to stdout or `--out`.
    Get {
        /// Whose mailbox.
        address: String,
        /// The message id (as `list` shows it).
        id: String,
        /// The folder, when the message is in more than one.
        #[arg(long)]
        folder: Option<String>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Mirror a mailbox (every folder) into a Maildir (Maildir++ layout: INBOX at its root,
    /// `Junk` as `.Junk/`). Adds only what the Maildir lacks; never changes or deletes what
    /// is there, so it can run again (from cron) while an IMAP server serves the Maildir.
    Sync {
        /// Whose mailbox.
        address: String,
        /// The Maildir (created if missing), e.g. `/var/mail/example.com/alice/Maildir`.
        #[arg(long)]
        maildir: PathBuf,
    },
}

/// Runs `sluice mailbox`: 0 done, 1 failed (the error says why), 2 usage.
pub fn run(args: MailboxArgs) -> Result<ExitCode> {
    let Some(config_arg) = args.config else {
        eprintln!("sluice mailbox: --config FILE is required (or set SLUICE_CONFIG)");
        return Ok(ExitCode::from(2));
    };
    let config = load_config(&config_arg, &Remote::default())?;
    let Some(store) = &config.store else {
        bail!("{config_arg} has no [store] section: `sluice mailbox` reads an s3 or dir store");
    };
    let Some(home) = store.home() else {
        bail!(
            "{config_arg}: [store] kind = \"{}\" hands mail to a server that keeps it; `sluice mailbox` reads s3 and dir stores (read that server's mail over IMAP)",
            store.kind()
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let s3 = sluice_aws::S3::from_env().await;
        let mailboxes = StoredMailboxes::at(home, s3);
        match args.command {
            MailboxCommand::List {
                address,
                folder,
                json,
            } => list(&mailboxes, address.as_deref(), folder.as_deref(), json).await,
            MailboxCommand::Get {
                address,
                id,
                folder,
                out,
            } => get(&mailboxes, &address, &id, folder.as_deref(), out).await,
            MailboxCommand::Sync { address, maildir } => {
                let report = sync_maildir(&mailboxes, &address, &maildir).await?;
                println!(
                    "synced {address} into {}: {} new, {} already there; folders: {}",
                    maildir.display(),
                    report.copied,
                    report.present,
                    if report.folders.is_empty() {
                        "none (no mail stored)".to_string()
                    } else {
                        report.folders.join(", ")
                    }
                );
                for (location, why) in &report.failed {
                    eprintln!("error: {location} not mirrored: {why}");
                }
                Ok(if report.failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    })
}

async fn list(
    mailboxes: &StoredMailboxes,
    address: Option<&str>,
    folder: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let copies: Vec<StoredCopy> = mailboxes
        .list(address)
        .await?
        .into_iter()
        .filter(|c| folder.is_none_or(|f| c.name.folder == f))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = copies
            .iter()
            .map(|c| {
                serde_json::json!({
                    "recipient": c.name.recipient,
                    "folder": c.name.folder,
                    "message_id": c.name.message_id,
                    "size": c.size,
                    "stored_ms": c.stored_ms,
                    "location": c.location,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if address.is_some() {
        for c in &copies {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                c.name.folder,
                c.name.message_id,
                c.size,
                crate::alias::when(u64::try_from(c.stored_ms / 1000).ok())
            )?;
        }
    } else {
        // One line per mailbox and folder: copies come sorted by recipient and folder.
        let mut i = 0;
        while i < copies.len() {
            let same = copies[i..]
                .iter()
                .take_while(|c| {
                    c.name.recipient == copies[i].name.recipient
                        && c.name.folder == copies[i].name.folder
                })
                .count();
            let bytes: u64 = copies[i..i + same].iter().map(|c| c.size).sum();
            writeln!(
                out,
                "{}\t{}\t{same} messages\t{bytes} bytes",
                copies[i].name.recipient, copies[i].name.folder
            )?;
            i += same;
        }
    }
    if copies.is_empty() {
        eprintln!(
            "no stored messages{}",
            address.map(|a| format!(" for {a}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(
    mailboxes: &StoredMailboxes,
    address: &str,
    id: &str,
    folder: Option<&str>,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let found: Vec<StoredCopy> = mailboxes
        .list(Some(address))
        .await?
        .into_iter()
        .filter(|c| c.name.message_id == id && folder.is_none_or(|f| c.name.folder == f))
        .collect();
    let copy = match found.as_slice() {
        [one] => one,
        [] => bail!(
            "no message {id:?} in {address}'s mailbox{} (`sluice mailbox list {address}` shows what is there)",
            folder.map(|f| format!(", folder {f:?}")).unwrap_or_default()
        ),
        several => bail!(
            "message {id:?} is in several folders of {address}'s mailbox ({}): pick one with --folder",
            several.iter().map(|c| c.name.folder.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let bytes = mailboxes.get(copy).await?;
    match out {
        Some(path) => {
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}
