//! `sluice alias`: edit the alias directory a config's `[directory.NAME]` names (DynamoDB or
//! a file), the same one rules read through `lookups = ["aliases"]`.
//!
//! Every edit is checked against the directory's settings: an alias must be in a domain the
//! directory serves, and point to a served domain or an allowed destination. A refusal
//! says which command changes the list.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use sluice_chain::ConfigFile;
use sluice_directory::admin::{destinations, AddRequest, Added, Admin};
use sluice_directory::{
    normalize_destination, normalize_domain, now_epoch, AliasRecord, DirectoryFile, DirectoryKind,
    DirectorySection, DirectorySettings, FileFormat, Status,
};

/// `sluice alias ...`.
#[derive(Args)]
pub struct AliasArgs {
    /// The config file whose `[directory.NAME]` section says where the directory lives.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which `[directory.NAME]` of the config.
    #[arg(long, global = true, default_value = "aliases", value_name = "NAME")]
    directory: String,
    #[command(subcommand)]
    command: AliasCommand,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Add an alias (`--to` several times for several destinations; no `--to`: the alias is
    /// a mailbox itself), or an unguessable one with `--random DOMAIN`.
    Add(AddArgs),
    /// List a domain's aliases.
    List {
        /// The domain.
        domain: String,
        /// Only aliases with this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Print a JSON array of records instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one alias.
    Show {
        /// The alias (`local@domain`, or `*@domain` for the catch-all).
        address: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refuse mail to an alias (550 5.1.1) until it is resumed.
    Pause {
        /// The alias.
        address: String,
    },
    /// Deliver mail to a paused or ignored alias again.
    Resume {
        /// The alias.
        address: String,
    },
    /// Discard mail to an alias silently.
    Ignore {
        /// The alias.
        address: String,
    },
    /// Remove an alias.
    Rm {
        /// The alias.
        address: String,
    },
    /// Add and update aliases from a file (.csv, .toml or .json; settings in TOML/JSON are
    /// merged in). Aliases not in the file are kept. Running it twice changes nothing.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Write the directory (or one domain's aliases) to stdout.
    Export {
        /// Only this domain [default: every served domain, with the settings].
        domain: Option<String>,
        /// The format.
        #[arg(long, default_value = "toml")]
        format: FormatArg,
    },
    /// Serve these verbs (add, list, show, pause/resume/ignore, rm) as a JSON API over HTTP,
    /// each request authorized by `Authorization: Bearer <token>` (see docs/alias-api.md).
    /// Runs until stopped.
    Api {
        /// Where to listen (plain HTTP: loopback, or behind a TLS proxy).
        #[arg(long, default_value = "127.0.0.1:8025")]
        listen: std::net::SocketAddr,
        /// The bearer token's file (first line; at least 16 characters; mode 600).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
    /// Let the directory hold aliases of a domain.
    Serve {
        /// The domain.
        domain: String,
    },
    /// Stop serving a domain (refused while it has aliases).
    Unserve {
        /// The domain.
        domain: String,
    },
    /// Let aliases point to a destination outside the served domains: an address, or
    /// `@domain` for all of a domain.
    Allow {
        /// The destination.
        destination: String,
    },
    /// Take a destination off the allowed list (existing aliases keep pointing to it).
    Disallow {
        /// The destination.
        destination: String,
    },
    /// Print the served domains and the allowed destinations.
    Settings,
    /// Create the directory's storage if it is missing: the DynamoDB table (on-demand
    /// billing) or an empty file.
    Init,
}

#[derive(Args)]
#[command(group(ArgGroup::new("alias").required(true).args(["address", "random"])))]
struct AddArgs {
    /// The alias (`local@domain`, or `*@domain` for the domain's catch-all).
    address: Option<String>,
    /// Make an unguessable alias in DOMAIN (such as `shop-k3x9q2m7ab@DOMAIN`) and print it.
    #[arg(long, value_name = "DOMAIN")]
    random: Option<String>,
    /// The random alias' prefix (`--prefix shop`).
    #[arg(long, requires = "random")]
    prefix: Option<String>,
    /// A destination (repeat for several).
    #[arg(long = "to", value_name = "DEST")]
    to: Vec<String>,
    /// Its status [default: active].
    #[arg(long)]
    status: Option<StatusArg>,
    /// Overwrite an existing alias (its creation time and use count are kept).
    #[arg(long)]
    replace: bool,
}

impl From<AddArgs> for AddRequest {
    fn from(a: AddArgs) -> AddRequest {
        AddRequest {
            address: a.address,
            random: a.random,
            prefix: a.prefix,
            to: a.to,
            status: a.status.map(Status::from),
            replace: a.replace,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Active,
    Paused,
    Ignored,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Status {
        match s {
            StatusArg::Active => Status::Active,
            StatusArg::Paused => Status::Paused,
            StatusArg::Ignored => Status::Ignored,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Toml,
    Json,
    Csv,
}

impl From<FormatArg> for FileFormat {
    fn from(f: FormatArg) -> FileFormat {
        match f {
            FormatArg::Toml => FileFormat::Toml,
            FormatArg::Json => FileFormat::Json,
            FormatArg::Csv => FileFormat::Csv,
        }
    }
}

/// Runs `sluice alias`: 0 done, 1 refused or failed (the error says what to fix), 2 usage.
pub fn run(args: AliasArgs) -> Result<ExitCode> {
    let Some(config_path) = args.config else {
        eprintln!("sluice alias: --config FILE is required (or set SLUICE_CONFIG)");
        return Ok(ExitCode::from(2));
    };
    let config = ConfigFile::read(&config_path)?;
    let name = args.directory;
    let section = directory_section(&config, &config_path, &name)?;
    let base_dir = &config.source.base_dir;
    let command = match args.command {
        AliasCommand::Init => {
            println!("{}", sluice_directory::init(&name, section, base_dir)?);
            return Ok(ExitCode::SUCCESS);
        }
        command => command,
    };
    let dir = Directory {
        admin: Admin {
            store: sluice_directory::open(&name, section, base_dir)?,
            name,
        },
        section: section.clone(),
    };
    match command {
        AliasCommand::Init => {}
        AliasCommand::Add(add) => {
            let random = add.random.is_some();
            let Added { record, replaced } = dir.add(add.into())?;
            if random {
                println!("{}", record.address);
            } else {
                println!(
                    "{} {} -> {}{}",
                    if replaced { "replaced" } else { "added" },
                    record.address,
                    destinations(&record.to),
                    match record.status {
                        Status::Active => String::new(),
                        other => format!(" ({other})"),
                    }
                );
            }
        }
        AliasCommand::List {
            domain,
            status,
            json,
        } => dir.list(&domain, status.map(Status::from), json)?,
        AliasCommand::Show { address, json } => dir.show(&address, json)?,
        AliasCommand::Pause { address } => dir.print_status(&address, Status::Paused)?,
        AliasCommand::Resume { address } => dir.print_status(&address, Status::Active)?,
        AliasCommand::Ignore { address } => dir.print_status(&address, Status::Ignored)?,
        AliasCommand::Rm { address } => println!("removed {}", dir.remove(&address)?),
        AliasCommand::Import { file } => dir.import(&file)?,
        AliasCommand::Export { domain, format } => dir.export(domain.as_deref(), format.into())?,
        AliasCommand::Serve { domain } => dir.serve(&domain, true)?,
        AliasCommand::Unserve { domain } => dir.serve(&domain, false)?,
        AliasCommand::Allow { destination } => dir.allow(&destination, true)?,
        AliasCommand::Disallow { destination } => dir.allow(&destination, false)?,
        AliasCommand::Settings => dir.print_settings()?,
        AliasCommand::Api { listen, token_file } => {
            let token = crate::alias_api::read_token(&token_file)?;
            crate::alias_api::serve(dir.admin, listen, token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `[directory.NAME]` section of a config, or an error that lists the sections it has
/// and says how to add one.
pub(crate) fn directory_section<'a>(
    config: &'a ConfigFile,
    config_path: &std::path::Path,
    name: &str,
) -> Result<&'a DirectorySection> {
    let Some(section) = config.directories.get(name) else {
        let known: Vec<&str> = config.directories.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            String::new()
        } else {
            format!(" (it has: {})", known.join(", "))
        };
        bail!(
            "{} has no [directory.{name}] section{known}: add one with kind = \"dynamodb\" and table = \"...\", or kind = \"file\" and path = \"{name}.toml\" (or pick one with --directory)",
            config_path.display()
        );
    };
    Ok(section)
}

/// A directory opened for editing ([`Admin`] holds the edits and checks the API shares).
pub(crate) struct Directory {
    admin: Admin,
    section: DirectorySection,
}

impl std::ops::Deref for Directory {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

/// `2026-11-23 10:05` (UTC) for seconds since the Unix epoch.
fn utc(secs: u64) -> String {
    // Days to a civil date: Howard Hinnant's algorithm.
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// [`utc`], or `-` for an unknown time.
pub(crate) fn when(secs: Option<u64>) -> String {
    match secs {
        Some(s) if s > 0 => utc(s),
        _ => "-".into(),
    }
}

fn same_to(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

impl Directory {
    fn list(&self, domain: &str, status: Option<Status>, json: bool) -> Result<()> {
        let records = self.records(domain, status)?;
        let domain = normalize_domain(domain)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&records)?);
            return Ok(());
        }
        if records.is_empty() {
            eprintln!("no aliases in {domain}");
            return Ok(());
        }
        let rows: Vec<[String; 5]> = records
            .iter()
            .map(|r| {
                [
                    r.address.clone(),
                    r.status.to_string(),
                    destinations(&r.to),
                    r.uses.to_string(),
                    when(r.last_used),
                ]
            })
            .collect();
        let header = ["ADDRESS", "STATUS", "TO", "USES", "LAST-USED"].map(String::from);
        let mut widths = [0usize; 5];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
            println!("{}", line.trim_end());
        }
        Ok(())
    }

    fn show(&self, address: &str, json: bool) -> Result<()> {
        let r = self.get(address)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!("address:   {}", r.address);
        println!("status:    {}", r.status);
        println!("to:        {}", destinations(&r.to));
        println!("created:   {}", when(Some(r.created)));
        println!("modified:  {}", when(Some(r.modified)));
        println!("uses:      {}", r.uses);
        println!("last used: {}", when(r.last_used));
        Ok(())
    }

    fn print_status(&self, address: &str, status: Status) -> Result<()> {
        let (record, changed) = self.set_status(address, status)?;
        if !changed {
            println!("{} is already {status}", record.address);
            return Ok(());
        }
        let done = match status {
            Status::Active => "resumed",
            Status::Paused => "paused",
            Status::Ignored => "ignored",
        };
        println!("{done} {}", record.address);
        Ok(())
    }

    fn import(&self, path: &std::path::Path) -> Result<()> {
        let file = DirectoryFile::read(path)?;
        let mut settings = self.settings()?;
        let before = settings.clone();
        if file.settings != DirectorySettings::default() {
            if !self.store.keeps_settings() {
                bail!(
                    "{} has settings but directory \"{}\" is a CSV file, which cannot keep them: import a CSV file, or keep the directory in a .toml or .json file",
                    path.display(),
                    self.name
                );
            }
            settings
                .domains
                .extend(file.settings.domains.iter().cloned());
            settings
                .destinations
                .extend(file.settings.destinations.iter().cloned());
            settings = settings.normalized();
        }
        // Check everything before writing anything.
        let mut problems = Vec::new();
        for record in &file.aliases {
            if let Err(e) = self.check(&settings, record) {
                problems.push(format!("{}: {e:#}", record.address));
            }
        }
        if let Some(first) = problems.first() {
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            bail!("{}: nothing imported: {first}{more}", path.display());
        }
        if settings != before {
            self.store.put_settings(&settings)?;
            for domain in settings
                .domains
                .iter()
                .filter(|d| !before.domains.contains(d))
            {
                println!("serving {domain}");
            }
            for dest in settings
                .destinations
                .iter()
                .filter(|d| !before.destinations.contains(d))
            {
                println!("allowing {dest}");
            }
        }
        let now = now_epoch();
        let (mut added, mut changed, mut unchanged) = (0, 0, 0);
        for record in &file.aliases {
            match self.store.get(&record.address)? {
                None => {
                    let mut new = record.clone();
                    if new.created == 0 {
                        new.created = now;
                    }
                    if new.modified == 0 {
                        new.modified = new.created;
                    }
                    self.store.put(&new)?;
                    println!("added {} -> {}", new.address, destinations(&new.to));
                    added += 1;
                }
                Some(old) if old.status == record.status && same_to(&old.to, &record.to) => {
                    unchanged += 1;
                }
                Some(old) => {
                    let mut what = Vec::new();
                    if old.status != record.status {
                        what.push(format!("status {} -> {}", old.status, record.status));
                    }
                    if !same_to(&old.to, &record.to) {
                        what.push(format!(
                            "to {} -> {}",
                            destinations(&old.to),
                            destinations(&record.to)
                        ));
                    }
                    let new = AliasRecord {
                        status: record.status,
                        to: record.to.clone(),
                        modified: now,
                        ..old
                    };
                    self.store.put(&new)?;
                    println!("changed {}: {}", new.address, what.join(", "));
                    changed += 1;
                }
            }
        }
        println!("added {added}, changed {changed}, unchanged {unchanged}");
        if !file.senders.is_empty() {
            let mut moved = 0;
            for (entry, list) in &file.senders {
                if self
                    .store
                    .put_sender(entry, *list)?
                    .is_some_and(|old| old != *list)
                {
                    moved += 1;
                }
            }
            println!(
                "sender lists: {} entr{} ({moved} moved between lists)",
                file.senders.len(),
                if file.senders.len() == 1 { "y" } else { "ies" }
            );
        }
        Ok(())
    }

    fn export(&self, domain: Option<&str>, format: FileFormat) -> Result<()> {
        let file = match domain {
            Some(domain) => DirectoryFile {
                settings: DirectorySettings::default(),
                aliases: self.store.list(&normalize_domain(domain)?)?,
                senders: Default::default(),
            },
            None => {
                if !self.store.keeps_settings() {
                    bail!(
                        "directory \"{}\" is a CSV file, which has no list of domains: name one (`sluice alias export DOMAIN`)",
                        self.name
                    );
                }
                let settings = self.settings()?;
                let mut aliases = Vec::new();
                for domain in &settings.domains {
                    aliases.extend(self.store.list(domain)?);
                }
                // The whole directory: its sender lists too (`sluice list`), so an export
                // is a backup `import` restores.
                let senders = if format == FileFormat::Csv {
                    Default::default()
                } else {
                    self.store.senders()?.into_iter().collect()
                };
                DirectoryFile {
                    settings,
                    aliases,
                    senders,
                }
            }
        };
        print!("{}", file.render(format));
        Ok(())
    }

    fn serve(&self, domain: &str, serve: bool) -> Result<()> {
        let domain = normalize_domain(domain)?;
        let mut settings = self.settings()?;
        let served = settings.serves(&domain);
        if serve == served {
            println!(
                "directory \"{}\" {} {domain}",
                self.name,
                if served {
                    "already serves"
                } else {
                    "does not serve"
                }
            );
            return Ok(());
        }
        if serve {
            settings.domains.push(domain.clone());
        } else {
            let left = self.store.list(&domain)?.len();
            if left > 0 {
                bail!(
                    "{domain} still has {left} alias{} in directory \"{}\": remove them first (`sluice alias export {domain}` keeps a copy)",
                    if left == 1 { "" } else { "es" },
                    self.name
                );
            }
            settings.domains.retain(|d| *d != domain);
        }
        self.store.put_settings(&settings)?;
        println!(
            "directory \"{}\" {} {domain}",
            self.name,
            if serve {
                "now serves"
            } else {
                "no longer serves"
            }
        );
        Ok(())
    }

    fn allow(&self, destination: &str, allow: bool) -> Result<()> {
        let destination = normalize_destination(destination)?;
        let mut settings = self.settings()?;
        let listed = settings.destinations.contains(&destination);
        if allow == listed {
            println!(
                "{destination} is {} the destinations of directory \"{}\"",
                if listed { "already among" } else { "not among" },
                self.name
            );
            return Ok(());
        }
        if allow {
            settings.destinations.push(destination.clone());
        } else {
            settings.destinations.retain(|d| *d != destination);
        }
        self.store.put_settings(&settings)?;
        println!(
            "directory \"{}\" {} {destination}",
            self.name,
            if allow {
                "now allows"
            } else {
                "no longer allows"
            }
        );
        Ok(())
    }

    fn print_settings(&self) -> Result<()> {
        let settings = self.settings()?;
        let place = match self.section.kind {
            DirectoryKind::Dynamodb => format!(
                "DynamoDB table {}",
                self.section.table.as_deref().unwrap_or("?")
            ),
            DirectoryKind::File => format!("file {}", self.section.path.as_deref().unwrap_or("?")),
        };
        let list = |items: &[String]| {
            if items.is_empty() {
                "(none)".to_string()
            } else {
                items.join(", ")
            }
        };
        println!("directory:    {} ({place})", self.name);
        if !self.store.keeps_settings() {
            println!("settings:     none (a CSV file holds aliases only; nothing is checked)");
            return Ok(());
        }
        println!("domains:      {}", list(&settings.domains));
        println!("destinations: {}", list(&settings.destinations));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_minutes() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(when(None), "-");
    }
}
