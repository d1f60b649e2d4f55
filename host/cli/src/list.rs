//! `sluice list`: edit the sender allow and block lists a directory keeps beside its aliases
//! (`[directory.NAME]`: the file's `[senders]` section, or the DynamoDB table's `#senders`
//! partition), which the `sender-lists` rule reads with `table = "NAME"`.
//!
//! Edits reach running hosts within the directory's `cache_ttl_s` (60 s by default), like
//! alias edits: no config change and no restart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use sluice_chain::ConfigFile;
use sluice_directory::{normalize_sender_entry, SenderList};

use crate::alias::directory_section;

/// `sluice list ...`.
#[derive(Args)]
pub struct ListArgs {
    /// The config file whose `[directory.NAME]` section says where the directory lives.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which `[directory.NAME]` of the config.
    #[arg(long, global = true, default_value = "aliases", value_name = "NAME")]
    directory: String,
    #[command(subcommand)]
    command: ListCommand,
}

#[derive(Subcommand)]
enum ListCommand {
    /// Put senders on a list: addresses, domains, or `.domain` for its subdomains (an entry
    /// on the other list moves).
    Add {
        /// `allow` or `block`.
        list: ListArg,
        /// The entries.
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Take senders off a list.
    Rm {
        /// `allow` or `block`.
        list: ListArg,
        /// The entries.
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Print the lists (or one), one `LIST ENTRY` per line.
    Show {
        /// Only this list.
        list: Option<ListArg>,
        /// One JSON object `{"allow": [...], "block": [...]}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ListArg {
    Allow,
    Block,
}

impl From<ListArg> for SenderList {
    fn from(l: ListArg) -> SenderList {
        match l {
            ListArg::Allow => SenderList::Allow,
            ListArg::Block => SenderList::Block,
        }
    }
}

/// Runs `sluice list`: 0 done, 1 refused or failed (the error says what to fix), 2 usage.
pub fn run(args: ListArgs) -> Result<ExitCode> {
    let Some(config_path) = args.config else {
        eprintln!("sluice list: --config FILE is required (or set SLUICE_CONFIG)");
        return Ok(ExitCode::from(2));
    };
    let config = ConfigFile::read(&config_path)?;
    let name = args.directory;
    let section = directory_section(&config, &config_path, &name)?;
    let store = sluice_directory::open(&name, section, &config.source.base_dir)?;
    match args.command {
        ListCommand::Add { list, entries } => {
            let list = SenderList::from(list);
            // Every entry is checked before the first is written: a typo leaves nothing half
            // done.
            let entries = normalize_all(&entries)?;
            for entry in entries {
                match store.put_sender(&entry, list)? {
                    None => println!("added {entry} to {list}"),
                    Some(old) if old == list => println!("{entry} was on {list} already"),
                    Some(old) => println!("moved {entry} from {old} to {list}"),
                }
            }
        }
        ListCommand::Rm { list, entries } => {
            let list = SenderList::from(list);
            let entries = normalize_all(&entries)?;
            // One read per entry named, not a listing of the whole directory.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            for entry in &entries {
                match store.sender_before(entry, deadline)? {
                    Some(l) if l == list => {}
                    Some(other) => bail!(
                        "{entry} is on the {other} list, not {list}: `sluice list rm {other} {entry}` (nothing was removed)"
                    ),
                    None => bail!(
                        "{entry} is on no list of directory \"{name}\" (nothing was removed; `sluice list show` prints them)"
                    ),
                }
            }
            for entry in entries {
                store.remove_sender(&entry)?;
                println!("removed {entry} from {list}");
            }
        }
        ListCommand::Show { list, json } => {
            let only = list.map(SenderList::from);
            let entries: Vec<(String, SenderList)> = store
                .senders()?
                .into_iter()
                .filter(|(_, l)| only.is_none_or(|o| o == *l))
                .collect();
            if json {
                let of = |list: SenderList| -> Vec<&str> {
                    entries
                        .iter()
                        .filter(|(_, l)| *l == list)
                        .map(|(e, _)| e.as_str())
                        .collect()
                };
                println!(
                    "{}",
                    serde_json::json!({ "allow": of(SenderList::Allow), "block": of(SenderList::Block) })
                );
            } else {
                for (entry, list) in entries {
                    println!("{list}\t{entry}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every entry normalized, or the first bad one's error.
fn normalize_all(entries: &[String]) -> Result<Vec<String>> {
    entries
        .iter()
        .map(|e| normalize_sender_entry(e).map_err(anyhow::Error::from))
        .collect()
}
