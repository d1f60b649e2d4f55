//! Lookup tables for rules (`lookups = ["aliases"]` in a step): the alias directory.
//!
//! A `[directory.NAME]` section of the config says where a table lives ([`DirectorySection`]):
//! a DynamoDB table (one item per alias: partition key `domain`, sort key `alias`) or a file
//! (TOML, JSON or CSV). Both are behind [`AliasStore`]; [`Tables`] serves them to rules through
//! [`sluice_engine::LookupTables`], cached per process with a TTL (misses too).
//!
//! The pieces, in the order a message meets them:
//! - [`open`] turns a config section into a store: [`FileStore`] (read once, kept in memory,
//!   written through atomically) or `DynamoStore` (feature `dynamodb`).
//! - [`Tables`] answers a rule's `lookup.get("aliases", "info@example.com")` with JSON
//!   `{"status": "active", "to": ["alice@example.net"]}`, from its cache or the store, within the
//!   step's deadline. Backend failures are temporary errors (the message is retried, never
//!   routed on a guess); malformed records are permanent ones.
//! - After delivery the host calls [`Tables::count_use`] per alias used, and
//!   [`Tables::flush_uses`] now and then to write the counts in one batch per table.
//! - `sluice alias` edits the same stores, checking addresses against the directory's
//!   [`DirectorySettings`] (the domains it serves and the destinations it may point to).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub mod admin;
#[cfg(feature = "dynamodb")]
mod dynamo;
mod file;
pub mod format;
mod senders;
mod tables;

#[cfg(feature = "dynamodb")]
pub use dynamo::DynamoStore;
pub use file::FileStore;
pub use format::{DirectoryFile, FileFormat};
pub use senders::{normalize_sender_entry, SenderList, SENDER_KEY_PREFIX};
pub use tables::{Tables, DEFAULT_TTL, MAX_CACHED};

/// `[directory.NAME]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// `dynamodb` or `file`.
    pub kind: DirectoryKind,
    /// The DynamoDB table name (`kind = "dynamodb"`).
    pub table: Option<String>,
    /// The file (`kind = "file"`), relative to the config file: `.toml`, `.json` or `.csv`.
    pub path: Option<String>,
    /// How long a looked-up record (or its absence) is trusted, in seconds (default 60).
    pub cache_ttl_s: Option<u64>,
}

/// Where a directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// A DynamoDB table (the standard AWS config chain; `AWS_ENDPOINT_URL` for an emulator).
    Dynamodb,
    /// A file on disk, read when the config loads.
    File,
}

/// Whether an alias is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Delivers to its destinations.
    #[default]
    Active,
    /// Refuses mail: 550 5.1.1 "mailbox unavailable".
    Paused,
    /// Discards mail silently.
    Ignored,
}

/// One alias of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AliasRecord {
    /// `local@domain`, lower case; the local part `*` is the domain's catch-all.
    pub address: String,
    /// Whether it is in use.
    pub status: Status,
    /// Where its mail goes: full addresses. Empty: the alias is a mailbox itself ("store it").
    pub to: Vec<String>,
    /// Created, seconds since the Unix epoch.
    pub created: u64,
    /// Last changed, seconds since the Unix epoch.
    pub modified: u64,
    /// Messages delivered through it (counted by the host after delivery).
    pub uses: u64,
    /// Last delivery through it, seconds since the Unix epoch.
    pub last_used: Option<u64>,
}

/// The directory's reserved records: what it serves and where its aliases may point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DirectorySettings {
    /// Domains the directory holds aliases for (lower case).
    pub domains: Vec<String>,
    /// Destinations aliases may point to outside the served domains: full addresses, or
    /// `@domain` for any address of a domain.
    pub destinations: Vec<String>,
}

/// A directory failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The backend could not be reached or refused (network, throttling, a timeout): try
    /// again later.
    #[error("{0}")]
    Unavailable(String),
    /// The directory's contents or settings are wrong (a malformed record or file).
    #[error("{0}")]
    Invalid(String),
    /// What was asked is refused (a domain not served, a destination not allowed).
    #[error("{0}")]
    Refused(String),
}

/// Where aliases are kept: read by the host for every lookup a rule makes (through
/// [`Tables`]' cache), written by `sluice alias`.
pub trait AliasStore: Send + Sync {
    /// The record for `address` (`local@domain` or `*@domain`, lower case).
    fn get(&self, address: &str) -> Result<Option<AliasRecord>, DirectoryError>;
    /// Every record of `domain`, by address.
    fn list(&self, domain: &str) -> Result<Vec<AliasRecord>, DirectoryError>;
    /// Creates or replaces a record.
    fn put(&self, record: &AliasRecord) -> Result<(), DirectoryError>;
    /// Removes a record; false when there was none.
    fn remove(&self, address: &str) -> Result<bool, DirectoryError>;
    /// The reserved records.
    fn settings(&self) -> Result<DirectorySettings, DirectoryError>;
    /// Replaces the reserved records.
    fn put_settings(&self, settings: &DirectorySettings) -> Result<(), DirectoryError>;
    /// Adds `count` uses to each alias and sets its last use to `at` (seconds).
    fn record_uses(&self, uses: &[(String, u64)], at: u64) -> Result<(), DirectoryError>;

    /// [`get`](AliasStore::get) that gives up at `deadline` with
    /// [`DirectoryError::Unavailable`]: a lookup counts against the calling step's time, so a
    /// slow backend must not hold a rule past it. The default ignores the deadline, which
    /// suits stores that answer from memory.
    fn get_before(
        &self,
        address: &str,
        deadline: Instant,
    ) -> Result<Option<AliasRecord>, DirectoryError> {
        let _ = deadline;
        self.get(address)
    }

    /// Whether the store keeps [`DirectorySettings`]. A CSV file holds aliases only: its
    /// settings are always empty and cannot be written, so `sluice alias` does not check
    /// addresses against them.
    fn keeps_settings(&self) -> bool {
        true
    }

    /// The list a sender entry (normalized, [`normalize_sender_entry`]) is on, giving up at
    /// `deadline` where the backend is remote. Stores that cannot keep sender lists (a CSV
    /// file) have none.
    fn sender_before(
        &self,
        entry: &str,
        deadline: Instant,
    ) -> Result<Option<SenderList>, DirectoryError> {
        let _ = (entry, deadline);
        Ok(None)
    }

    /// Every sender entry with its list, sorted by entry.
    fn senders(&self) -> Result<Vec<(String, SenderList)>, DirectoryError> {
        Ok(Vec::new())
    }

    /// Puts a sender entry on a list (moving it from the other one); the previous list, if
    /// it was on one.
    fn put_sender(
        &self,
        entry: &str,
        list: SenderList,
    ) -> Result<Option<SenderList>, DirectoryError> {
        let _ = (entry, list);
        Err(DirectoryError::Refused(
            "this directory cannot keep sender lists (a CSV file holds aliases only): keep it in a .toml or .json file, or in DynamoDB".into(),
        ))
    }

    /// Takes a sender entry off its list; the list it was on, if any.
    fn remove_sender(&self, entry: &str) -> Result<Option<SenderList>, DirectoryError> {
        let _ = entry;
        Ok(None)
    }
}

impl DirectorySection {
    /// How long answers are cached: `cache_ttl_s`, else [`DEFAULT_TTL`].
    pub fn ttl(&self) -> std::time::Duration {
        self.cache_ttl_s
            .map(std::time::Duration::from_secs)
            .unwrap_or(DEFAULT_TTL)
    }

    /// Where a `kind = "file"` directory lives, resolved against `base_dir` (the config
    /// file's directory).
    pub fn file_path(
        &self,
        name: &str,
        base_dir: &Path,
    ) -> Result<std::path::PathBuf, DirectoryError> {
        match &self.path {
            Some(path) if !path.trim().is_empty() => Ok(base_dir.join(path)),
            _ => Err(DirectoryError::Invalid(format!(
                "[directory.{name}] has kind = \"file\" but no `path`: add `path = \"{name}.toml\"` (a .toml, .json or .csv file, relative to the config)"
            ))),
        }
    }

    /// The table of a `kind = "dynamodb"` directory.
    pub fn table_name(&self, name: &str) -> Result<&str, DirectoryError> {
        match &self.table {
            Some(table) if !table.trim().is_empty() => Ok(table),
            _ => Err(DirectoryError::Invalid(format!(
                "[directory.{name}] has kind = \"dynamodb\" but no `table`: add `table = \"NAME\"` (the DynamoDB table; `sluice alias init` creates it)"
            ))),
        }
    }
}

impl DirectoryKind {
    /// The config spelling: `dynamodb` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Dynamodb => "dynamodb",
            DirectoryKind::File => "file",
        }
    }
}

impl Status {
    /// The spelling in files, tables and lookup answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Ignored => "ignored",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = DirectoryError;

    fn from_str(s: &str) -> Result<Status, DirectoryError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(Status::Active),
            "paused" => Ok(Status::Paused),
            "ignored" => Ok(Status::Ignored),
            other => Err(DirectoryError::Invalid(format!(
                "unknown status `{other}`: use active, paused or ignored"
            ))),
        }
    }
}

impl AliasRecord {
    /// A new active alias, created and modified `now` (seconds), never used.
    pub fn new(address: impl Into<String>, to: Vec<String>, now: u64) -> AliasRecord {
        AliasRecord {
            address: address.into(),
            status: Status::Active,
            to,
            created: now,
            modified: now,
            uses: 0,
            last_used: None,
        }
    }

    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        split_address(&self.address).1
    }

    /// What a rule's lookup gets: `{"status":"active","to":["a@x"]}` (`to` empty: deliver to
    /// the alias itself).
    pub fn lookup_value(&self) -> String {
        serde_json::json!({ "status": self.status.as_str(), "to": self.to }).to_string()
    }
}

impl DirectorySettings {
    /// Whether aliases of `domain` belong in this directory.
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether an alias may point to `destination` (a full address): it is in a served
    /// domain, or listed in `destinations` itself or by its `@domain`.
    pub fn allows(&self, destination: &str) -> bool {
        let domain = split_address(destination).1;
        self.serves(domain)
            || self.destinations.iter().any(|d| {
                d.eq_ignore_ascii_case(destination)
                    || d.strip_prefix('@')
                        .is_some_and(|d| d.eq_ignore_ascii_case(domain))
            })
    }

    /// Refuses an alias of a domain the directory `name` does not serve, saying how to serve it.
    pub fn check_alias(&self, name: &str, address: &str) -> Result<(), DirectoryError> {
        let domain = split_address(address).1;
        if self.serves(domain) {
            Ok(())
        } else {
            Err(DirectoryError::Refused(format!(
                "{domain} is not served by directory \"{name}\": add it with `sluice alias serve {domain}`"
            )))
        }
    }

    /// Refuses a destination outside the served domains and `destinations`, saying how to
    /// allow it.
    pub fn check_destination(&self, name: &str, destination: &str) -> Result<(), DirectoryError> {
        if self.allows(destination) {
            Ok(())
        } else {
            let domain = split_address(destination).1;
            Err(DirectoryError::Refused(format!(
                "{destination} is not an allowed destination of directory \"{name}\" (neither in a served domain nor in its destinations): add it with `sluice alias allow {destination}` (or `sluice alias allow @{domain}` for the whole domain)"
            )))
        }
    }

    /// Lower case, sorted, without duplicates: the form every store keeps.
    pub fn normalized(mut self) -> DirectorySettings {
        for list in [&mut self.domains, &mut self.destinations] {
            for item in list.iter_mut() {
                *item = item.trim().to_ascii_lowercase();
            }
            list.sort();
            list.dedup();
        }
        self
    }
}

impl DirectoryError {
    /// The same error with `prefix: ` in front (a directory or file name).
    pub fn within(self, prefix: impl std::fmt::Display) -> DirectoryError {
        match self {
            DirectoryError::Unavailable(m) => DirectoryError::Unavailable(format!("{prefix}: {m}")),
            DirectoryError::Invalid(m) => DirectoryError::Invalid(format!("{prefix}: {m}")),
            DirectoryError::Refused(m) => DirectoryError::Refused(format!("{prefix}: {m}")),
        }
    }
}

/// Lower-cases and checks an alias address (`local@domain`, or `*@domain` for the domain's
/// catch-all) the way the host checks recipients.
pub fn normalize_address(address: &str) -> Result<String, DirectoryError> {
    let address = address.trim().to_lowercase();
    sluice_facts::check_address(&address)
        .map_err(|why| DirectoryError::Invalid(format!("`{address}` is not an address: {why}")))?;
    Ok(address)
}

/// Lower-cases and checks a destination a directory may allow: a full address, or
/// `@domain` for every address of a domain.
pub fn normalize_destination(destination: &str) -> Result<String, DirectoryError> {
    let destination = destination.trim().to_lowercase();
    match destination.strip_prefix('@') {
        Some(domain) => normalize_domain(domain).map(|d| format!("@{d}")),
        None => normalize_address(&destination),
    }
}

/// Lower-cases and checks a domain name.
pub fn normalize_domain(domain: &str) -> Result<String, DirectoryError> {
    let domain = domain.trim().to_lowercase();
    match sluice_facts::check_address(&format!("x@{domain}")) {
        Ok(()) if !domain.contains('*') => Ok(domain),
        _ => Err(DirectoryError::Invalid(format!(
            "`{domain}` is not a domain name (such as example.com)"
        ))),
    }
}

/// `(local, domain)` of an address; the domain is empty when there is no `@`.
pub fn split_address(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

/// Now, in seconds since the Unix epoch (the unit of every timestamp in a directory).
pub fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Opens the store of `[directory.NAME]`; a file's path is relative to `base_dir` (the config
/// file's directory). A file is read now; a DynamoDB table is only reached on first use.
pub fn open(
    name: &str,
    section: &DirectorySection,
    base_dir: &Path,
) -> Result<Arc<dyn AliasStore>, DirectoryError> {
    let within = |e: DirectoryError| e.within(format_args!("directory \"{name}\""));
    match section.kind {
        DirectoryKind::File => {
            let path = section.file_path(name, base_dir)?;
            Ok(Arc::new(FileStore::open(&path).map_err(within)?))
        }
        DirectoryKind::Dynamodb => {
            let table = section.table_name(name)?;
            #[cfg(feature = "dynamodb")]
            {
                Ok(Arc::new(DynamoStore::from_env(table).map_err(within)?))
            }
            #[cfg(not(feature = "dynamodb"))]
            {
                let _ = table;
                Err(DirectoryError::Invalid(format!(
                    "directory \"{name}\": this build has no DynamoDB support (feature `dynamodb`)"
                )))
            }
        }
    }
}

/// Creates the storage of `[directory.NAME]` when it is missing (`sluice alias init`): an
/// empty file, or a DynamoDB table (on-demand billing). Says what it did.
pub fn init(
    name: &str,
    section: &DirectorySection,
    base_dir: &Path,
) -> Result<String, DirectoryError> {
    let within = |e: DirectoryError| e.within(format_args!("directory \"{name}\""));
    match section.kind {
        DirectoryKind::File => {
            let path = section.file_path(name, base_dir)?;
            if path.exists() {
                FileStore::open(&path).map_err(within)?;
                Ok(format!("file {} already exists", path.display()))
            } else {
                FileStore::create(&path).map_err(within)?;
                Ok(format!("created {}", path.display()))
            }
        }
        DirectoryKind::Dynamodb => {
            let table = section.table_name(name)?;
            #[cfg(feature = "dynamodb")]
            {
                let store = DynamoStore::from_env(table).map_err(within)?;
                if store.create_table().map_err(within)? {
                    Ok(format!("created DynamoDB table {table}"))
                } else {
                    Ok(format!("DynamoDB table {table} already exists"))
                }
            }
            #[cfg(not(feature = "dynamodb"))]
            {
                let _ = table;
                Err(DirectoryError::Invalid(format!(
                    "directory \"{name}\": this build has no DynamoDB support (feature `dynamodb`)"
                )))
            }
        }
    }
}
