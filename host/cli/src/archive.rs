//! `sluice archive find` and `sluice archive get`: read the `[archive]` of a config, through
//! its day-partitioned index (see `sluice_deliver::archive`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use sluice_deliver::{ArchiveQuery, ArchiveRecord};

/// `sluice archive`.
#[derive(Args)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// List archived messages of a domain: one line each (id, received time, sender,
    /// subject), oldest first.
    Find {
        /// The config whose `[archive]` to read: a file, or `s3://bucket/key.toml`.
        #[arg(long)]
        config: String,
        /// The archived domain (the index is filed by it).
        #[arg(long)]
        domain: String,
        /// Only messages whose envelope sender contains this text (case-insensitive).
        #[arg(long)]
        from: Option<String>,
        /// Only messages with an envelope recipient containing this text.
        #[arg(long)]
        to: Option<String>,
        /// Only messages whose subject contains this text.
        #[arg(long)]
        subject: Option<String>,
        /// First day (UTC, yyyy-mm-dd), inclusive.
        #[arg(long, value_parser = sluice_deliver::archive::parse_day)]
        since: Option<time::Date>,
        /// Last day (UTC, yyyy-mm-dd), inclusive.
        #[arg(long, value_parser = sluice_deliver::archive::parse_day)]
        until: Option<time::Date>,
        /// One JSON index record per line instead.
        #[arg(long)]
        json: bool,
    },
    /// Print one archived message, byte for byte as received.
    Get {
        /// The config whose `[archive]` to read.
        #[arg(long)]
        config: String,
        /// The message id (as `find` prints it).
        id: String,
        /// Write it to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `sluice archive ...`.
pub fn run(args: ArchiveArgs) -> Result<ExitCode> {
    let config_arg = match &args.command {
        ArchiveCommand::Find { config, .. } | ArchiveCommand::Get { config, .. } => config,
    };
    let config = crate::remote::load_config(config_arg, &crate::remote::Remote::default())?;
    let Some(archive) = config.archive.clone() else {
        bail!("{} has no [archive] section", config.source.name);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let archive = archive.build(&sluice_aws::S3::from_env().await);
        match args.command {
            ArchiveCommand::Find {
                domain,
                from,
                to,
                subject,
                since,
                until,
                json,
                ..
            } => {
                let query = ArchiveQuery {
                    domain,
                    from,
                    to,
                    subject,
                    since,
                    until,
                };
                let found = archive.find(&query).await?;
                let mut out = std::io::stdout().lock();
                for record in &found {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(record)?)?;
                    } else {
                        writeln!(out, "{}", line(record))?;
                    }
                }
                if !json {
                    eprintln!("{} message(s) in {}", found.len(), archive.describe());
                }
                Ok(ExitCode::SUCCESS)
            }
            ArchiveCommand::Get { id, out, .. } => {
                let bytes = archive.get(&id).await?;
                match out {
                    Some(path) => std::fs::write(&path, &bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => std::io::stdout().lock().write_all(&bytes)?,
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `ID  2026-11-30T10:15:00Z  FROM  SUBJECT`, tab-separated.
fn line(record: &ArchiveRecord) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp((record.received_at / 1000) as i64)
        .map(|t| {
            format!(
                "{}T{:02}:{:02}:{:02}Z",
                record.date,
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| record.date.clone());
    let from = if record.from.is_empty() {
        "<>"
    } else {
        &record.from
    };
    format!("{}\t{when}\t{from}\t{}", record.id, record.subject)
}

/// For `sluice check`: an S3 `[archive]` with `retention` needs a bucket with Object Lock
/// enabled (S3 refuses every write otherwise). A bucket that answers it has none is a problem
/// to report; one that cannot be asked (no credentials on this machine) is only a warning.
pub fn check_object_lock(config: &sluice_chain::ConfigFile) -> Option<String> {
    let archive = config.archive.as_ref()?;
    let sluice_deliver::ArchiveTarget::S3 {
        bucket,
        retention: Some(_),
        ..
    } = &archive.target
    else {
        return None;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    match rt.block_on(async {
        sluice_aws::S3::from_env()
            .await
            .object_lock_enabled(bucket)
            .await
    }) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "archive: bucket {bucket:?} has no Object Lock, so no message can be archived with `retention` (create the bucket with --object-lock-enabled-for-bucket, or drop `retention`)"
        )),
        Err(e) => {
            eprintln!("warning: cannot check Object Lock on the archive bucket {bucket:?}: {e}");
            None
        }
    }
}
