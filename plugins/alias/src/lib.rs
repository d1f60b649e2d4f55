//! `alias`: virtual mailboxes and aliases for one domain, with plus-addressing and a catch-all.
//!
//! For every recipient of the group (`user+tag@domain`) the rule strips the tag (everything
//! from the first `plus` character on), lower-cases the rest, and looks it up:
//!
//! 1. a **mailbox** is kept, without its tag: `alice+news@example.com` -> `alice@example.com`;
//! 2. an **alias** expands to its destinations when `active`; a `paused` alias refuses the
//!    recipient (550 5.1.1 "mailbox unavailable"); an `ignored` one discards the message for
//!    it, silently;
//! 3. anything else goes to the catch-all alias `*` when there is one (with the same three
//!    statuses), else follows `unknown`: a bounce 550 5.1.1 "no such user" or a silent drop.
//!
//! The rule returns one `set-recipients` with every address resolved (duplicates removed,
//! first occurrence kept) when anything resolved, and refuses or discards single recipients
//! through the `recipients` interface, so one dead address never bounces its neighbours.
//! External destinations are relayed by the host (through `[relay]`, subject to its
//! `allow_domains`); destinations in another domain the host serves go through that
//! domain's own chain.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `mailboxes` | list of local parts | `[]` | real mailboxes, delivered as they are |
//! | `aliases` | table: local part or `"*"` -> destinations | `{}` | see below; `"*"` is the catch-all |
//! | `plus` | string | `"+"` | sub-address separators: each character of it starts a tag (`"+-"` strips `a+x` and `a-x`); `""` turns plus-addressing off |
//! | `unknown` | `"bounce"` \| `"drop"` | `"bounce"` | what happens to an address that is neither a mailbox nor an alias, without a catch-all |
//! | `directory` | table name | none | also look addresses up in this table of the host (`[directory.NAME]`; the step needs `lookups = ["NAME"]`) |
//!
//! An alias is one of
//! * a destination: `postmaster = "alice"`;
//! * a list of destinations: `info = ["alice", "bob@gmail.example"]`;
//! * a table `{ to = [...], status = "active" | "paused" | "ignored" }` (`status` defaults to
//!   `"active"`; `to` may be omitted for a paused or ignored alias, and may be one string).
//!
//! A destination is a **bare local part**, which must name a mailbox or another alias of this
//! config (it takes the recipient's domain; aliases resolve through other aliases up to
//! [`MAX_DEPTH`] levels, and a cycle is a config error), or a **full address**, used as
//! written (never looked up again). An inactive alias reached through another alias adds
//! nothing; when an active alias ends up with no destination at all that way, the recipient
//! is refused if one of them was paused, else discarded.
//!
//! Names are matched case-insensitively. `validate-config` refuses nonsense: an active alias
//! without destinations, a bare destination that is neither a mailbox nor an alias, an
//! invalid address, a name listed twice or both as a mailbox and an alias, a name containing
//! a `plus` character (it could never match), an alias cycle or a chain deeper than
//! [`MAX_DEPTH`], and an alias expanding to more than [`MAX_DESTINATIONS`] addresses.
//!
//! # The directory
//! With `directory = "aliases"`, an address that is neither a mailbox nor an alias of the
//! config is looked up in the host's table `aliases` as `local@domain` (tag stripped, lower
//! case), and, when it is not there and the config has no catch-all, as `*@domain`. A record
//! is `{"status": ..., "to": [full addresses]}`; an active record without `to` is a mailbox
//! (delivered as it is). Destinations in the recipient's domain resolve again (through the
//! config's mailboxes and aliases, then the table) up to [`MAX_DEPTH`] levels; a loop in the
//! table refuses the recipient with 554 5.4.6. A table that is down is a temporary error:
//! the host retries the message instead of bouncing or skipping it.
//!
//! ```toml
//! [[domain.step]]
//! plugin = "alias.wasm"
//! [domain.step.config]
//! mailboxes = ["alice", "bob", "carol"]
//! plus = "+"
//! unknown = "bounce"
//! [domain.step.config.aliases]
//! info = ["alice", "bob@gmail.example"]   # active, one local and one external destination
//! sales = "team"                           # an alias of an alias
//! team = ["alice", "carol"]
//! old = { to = ["carol"], status = "paused" }   # refused: 550 5.1.1 mailbox unavailable
//! noise = { status = "ignored" }                # discarded silently
//! # "*" = "alice"                               # catch-all instead of bouncing unknown users
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use sluice_sdk::prelude::*;

/// How many aliases deep a destination may resolve (`a -> b -> ... -> mailbox`).
pub const MAX_DEPTH: usize = 8;
/// The most addresses one alias may expand to, and the most the rule returns for a group (the
/// host's limit for one `set-recipients`).
pub const MAX_DESTINATIONS: usize = sluice_sdk::facts::MAX_RECIPIENTS_PER_ACTION;

/// The key of the catch-all alias.
pub const CATCH_ALL: &str = "*";

/// The rule's typed config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Local parts that are real mailboxes.
    pub mailboxes: Vec<String>,
    /// Alias local part (or `*`) -> destinations.
    pub aliases: BTreeMap<String, Alias>,
    /// Sub-address separator characters; empty disables plus-addressing.
    pub plus: String,
    /// What happens to unknown addresses without a catch-all.
    pub unknown: Unknown,
    /// The host's table to consult after the config (`lookups` must grant it).
    pub directory: Option<String>,
    /// The lookup tables built from the fields above, once per parsed config: the SDK keeps
    /// a warm instance's config, so a large table is not indexed again for every message.
    #[serde(skip)]
    prepared: Prepared,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mailboxes: Vec::new(),
            aliases: BTreeMap::new(),
            plus: "+".into(),
            unknown: Unknown::Bounce,
            directory: None,
            prepared: Prepared::default(),
        }
    }
}

impl Config {
    /// The config's lookup tables (built on first use).
    fn directory(&self) -> Result<&Directory, String> {
        self.prepared
            .0
            .get_or_init(|| Directory::new(self))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// A cache derived from the rest of the config: not part of its value (equal, not printed).
#[derive(Clone, Default)]
struct Prepared(std::cell::OnceCell<Result<Directory, String>>);

impl PartialEq for Prepared {
    fn eq(&self, _: &Prepared) -> bool {
        true
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("..")
    }
}

/// One alias: its destinations and status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alias {
    /// Bare local parts (mailboxes or aliases of this config) or full addresses.
    pub to: Vec<String>,
    /// Whether the alias is in use.
    pub status: Status,
}

/// `status` of an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Expands to its destinations.
    #[default]
    Active,
    /// Refuses the recipient: 550 5.1.1 "mailbox unavailable".
    Paused,
    /// Discards the message for the recipient, silently.
    Ignored,
}

/// `unknown` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unknown {
    /// Refuse with 550 5.1.1 "no such user".
    Bounce,
    /// Discard silently.
    Drop,
}

/// The table form of an alias; `deny_unknown_fields` so that `{ too = [...] }` is named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasTable {
    #[serde(default, deserialize_with = "sluice_sdk::config::one_or_many")]
    to: Vec<String>,
    #[serde(default)]
    status: Status,
}

/// An alias is a string, a list of strings or a table; a hand-written visitor (rather than an
/// untagged enum) keeps serde's precise message for a typo inside the table.
impl<'de> Deserialize<'de> for Alias {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Alias, D::Error> {
        struct AliasVisitor;
        impl<'de> Visitor<'de> for AliasVisitor {
            type Value = Alias;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a destination, a list of destinations, or a table \
                     { to = [...], status = \"active\" | \"paused\" | \"ignored\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Alias, E> {
                Ok(Alias {
                    to: vec![v.to_string()],
                    status: Status::Active,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Alias, A::Error> {
                let to = Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Alias {
                    to,
                    status: Status::Active,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Alias, A::Error> {
                let t = AliasTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Alias {
                    to: t.to,
                    status: t.status,
                })
            }
        }
        deserializer.deserialize_any(AliasVisitor)
    }
}

/// The rule.
pub struct AliasRule;

impl Rule for AliasRule {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        config.directory()?.check()
    }

    fn evaluate(_msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let directory = config.directory().map_err(RuleError::permanent)?;
        directory.route(ctx.recipients())
    }
}

sluice_sdk::export_rule!(AliasRule);

/// Resolves the group's `recipients` with `config` (refusing and discarding single recipients
/// through [`recipients`]) and returns the actions. The same as `evaluate`, for native tests.
pub fn route(recipients: &[String], config: &Config) -> Result<Vec<Action>, RuleError> {
    config
        .directory()
        .map_err(RuleError::permanent)?
        .route(recipients)
}

/// Where one destination leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    /// A mailbox of this config (local part, lower case): takes the recipient's domain.
    Mailbox(String),
    /// A full address, used as written.
    Address(String),
}

/// What an active alias expanded to.
#[derive(Debug, Default)]
struct Expansion {
    dests: Vec<Dest>,
    /// A paused alias was reached (and added nothing).
    paused: bool,
}

/// The config with names normalised (lower case) for lookups.
#[derive(Clone)]
struct Directory {
    mailboxes: HashSet<String>,
    aliases: HashMap<String, Alias>,
    /// The separator characters.
    plus: Vec<char>,
    unknown: Unknown,
    /// The host table to consult after the config.
    table: Option<String>,
    /// Name-level problems found while normalising, reported by `check`.
    problems: Vec<String>,
}

/// An alias record from the host's table (its JSON answer).
#[derive(Debug, Deserialize)]
struct TableRecord {
    #[serde(default)]
    status: Status,
    #[serde(default)]
    to: Vec<String>,
}

/// Why a directory address did not expand.
enum ExpandError {
    /// The table failed or answered nonsense: the rule fails with it.
    Lookup(RuleError),
    /// The table's aliases loop or nest too deep: this recipient is refused.
    Loop(String),
}

impl From<RuleError> for ExpandError {
    fn from(e: RuleError) -> ExpandError {
        ExpandError::Lookup(e)
    }
}

/// Where a recipient's name was found.
enum Found<'a> {
    /// An alias of the config, by name.
    Config(&'a str, &'a Alias),
    /// A record of the table, by address.
    Table(String, TableRecord),
}

impl Directory {
    fn new(config: &Config) -> Result<Directory, String> {
        let plus: Vec<char> = config.plus.chars().collect();
        if let Some(c) = plus
            .iter()
            .find(|c| **c == '@' || c.is_whitespace() || c.is_control() || **c == '*')
        {
            return Err(format!("`plus`: {c:?} cannot be a sub-address separator"));
        }
        let mut problems = Vec::new();
        let mut mailboxes = HashSet::new();
        for m in &config.mailboxes {
            if let Err(e) = check_local_part(m, &plus) {
                problems.push(format!("mailboxes: {m:?}: {e}"));
            }
            if !mailboxes.insert(m.trim().to_lowercase()) {
                problems.push(format!("mailboxes: {m:?} is listed twice"));
            }
        }
        let mut aliases = HashMap::new();
        for (name, alias) in &config.aliases {
            let key = name.trim().to_lowercase();
            if key != CATCH_ALL {
                if let Err(e) = check_local_part(name, &plus) {
                    problems.push(format!("aliases: {name:?}: {e}"));
                }
            }
            if mailboxes.contains(&key) {
                problems.push(format!(
                    "aliases: {name:?} is also a mailbox; make it one or the other"
                ));
            }
            if aliases.insert(key, alias.clone()).is_some() {
                problems.push(format!(
                    "aliases: {name:?} is given twice (names are case-insensitive)"
                ));
            }
        }
        if let Some(table) = &config.directory {
            if table.is_empty()
                || !table
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                problems.push(format!(
                    "directory: {table:?} is not a table name (lower-case letters, digits, `-`, `_`)"
                ));
            }
        }
        Ok(Directory {
            mailboxes,
            aliases,
            plus,
            unknown: config.unknown,
            table: config.directory.clone(),
            problems,
        })
    }

    /// Everything `check_config` reports.
    fn check(&self) -> Result<(), String> {
        if let Some(p) = self.problems.first() {
            return Err(p.clone());
        }
        let mut names: Vec<&String> = self.aliases.keys().collect();
        names.sort();
        for name in names {
            let alias = &self.aliases[name];
            if alias.status == Status::Active && alias.to.is_empty() {
                return Err(format!(
                    "aliases: {name:?} is active but has no destinations (`to`)"
                ));
            }
            for dest in &alias.to {
                let dest = dest.trim();
                if dest.contains('@') {
                    check_address(dest)
                        .map_err(|e| format!("aliases: {name:?}: destination {dest:?}: {e}"))?;
                    continue;
                }
                let key = dest.to_lowercase();
                if key == CATCH_ALL {
                    return Err(format!(
                        "aliases: {name:?}: the catch-all \"*\" cannot be a destination"
                    ));
                }
                check_local_part(dest, &self.plus)
                    .map_err(|e| format!("aliases: {name:?}: destination {dest:?}: {e}"))?;
                if !self.mailboxes.contains(&key) && !self.aliases.contains_key(&key) {
                    return Err(format!(
                        "aliases: {name:?}: destination {dest:?} is neither a mailbox nor an alias \
                         (list it in `mailboxes`, or give a full address)"
                    ));
                }
            }
            // Cycles and depth, following inactive aliases too: re-activating one must not
            // create a loop.
            self.walk(name, &mut Vec::new(), &mut Expansion::default(), true)
                .map_err(|e| format!("aliases: {e}"))?;
            if alias.status == Status::Active {
                let mut e = Expansion::default();
                self.walk(name, &mut Vec::new(), &mut e, false)
                    .map_err(|e| format!("aliases: {e}"))?;
                if e.dests.len() > MAX_DESTINATIONS {
                    return Err(format!(
                        "aliases: {name:?} expands to {} addresses; at most {MAX_DESTINATIONS}",
                        e.dests.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Expands alias `name` into `out`. With `all`, inactive aliases are followed too (for
    /// the config check); without, they add nothing (a paused one sets `out.paused`).
    fn walk(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        out: &mut Expansion,
        all: bool,
    ) -> Result<(), String> {
        if let Some(at) = stack.iter().position(|s| s == name) {
            let mut cycle: Vec<&str> = stack[at..].iter().map(String::as_str).collect();
            cycle.push(name);
            return Err(format!("alias cycle: {}", cycle.join(" -> ")));
        }
        if stack.len() >= MAX_DEPTH {
            let mut chain: Vec<&str> = stack.iter().map(String::as_str).collect();
            chain.push(name);
            return Err(format!(
                "aliases nest deeper than {MAX_DEPTH} levels: {}",
                chain.join(" -> ")
            ));
        }
        let Some(alias) = self.aliases.get(name) else {
            return Err(format!("{name:?} is neither a mailbox nor an alias"));
        };
        // The alias the recipient named has its status handled by the caller; nested ones
        // contribute nothing unless active.
        if !stack.is_empty() && !all {
            match alias.status {
                Status::Active => {}
                Status::Paused => {
                    out.paused = true;
                    return Ok(());
                }
                Status::Ignored => return Ok(()),
            }
        }
        stack.push(name.to_string());
        for dest in &alias.to {
            let dest = dest.trim();
            if dest.contains('@') {
                out.dests.push(Dest::Address(normalise_address(dest)));
                continue;
            }
            let key = dest.to_lowercase();
            if self.mailboxes.contains(&key) {
                out.dests.push(Dest::Mailbox(key));
            } else {
                self.walk(&key, stack, out, all)?;
            }
        }
        stack.pop();
        Ok(())
    }

    /// `alice+news` -> `alice` (lower case); a leading separator is not a tag.
    fn base_name(&self, local: &str) -> String {
        let local = local.to_lowercase();
        match local.char_indices().find(|(_, c)| self.plus.contains(c)) {
            Some((at, _)) if at > 0 => local[..at].to_string(),
            _ => local,
        }
    }

    /// The record of `address` in the host's table, when the config names one.
    fn lookup(&self, address: &str) -> Result<Option<TableRecord>, RuleError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let Some(json) = lookup::get(table, address)? else {
            return Ok(None);
        };
        sluice_sdk::serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| {
                RuleError::permanent(format!(
                    "directory {table:?}: the record of {address} is not an alias ({e})"
                ))
            })
    }

    /// Where `base@domain` is defined: a config alias, the table, the config's catch-all,
    /// the table's catch-all (in that order), or nowhere.
    fn find(&self, base: &str, domain: &str) -> Result<Option<Found<'_>>, RuleError> {
        if let Some((name, alias)) = self.aliases.get_key_value(base) {
            return Ok(Some(Found::Config(name, alias)));
        }
        let address = format!("{base}@{domain}");
        if let Some(record) = self.lookup(&address)? {
            return Ok(Some(Found::Table(address, record)));
        }
        if let Some((name, alias)) = self.aliases.get_key_value(CATCH_ALL) {
            return Ok(Some(Found::Config(name, alias)));
        }
        let catch_all = format!("{CATCH_ALL}@{domain}");
        Ok(self
            .lookup(&catch_all)?
            .map(|record| Found::Table(catch_all, record)))
    }

    /// Expands an active table record into `out`: no `to` is a mailbox (the address itself);
    /// a destination in `domain` resolves through the config, then the table, again.
    fn expand_record(
        &self,
        address: &str,
        record: &TableRecord,
        domain: &str,
        stack: &mut Vec<String>,
        out: &mut Expansion,
    ) -> Result<(), ExpandError> {
        if stack.iter().any(|s| s == address) || stack.len() >= MAX_DEPTH {
            let mut chain = stack.clone();
            chain.push(address.to_string());
            return Err(ExpandError::Loop(format!(
                "directory aliases loop or nest deeper than {MAX_DEPTH} levels: {}",
                chain.join(" -> ")
            )));
        }
        if record.to.is_empty() {
            out.dests.push(Dest::Address(address.to_string()));
            return Ok(());
        }
        stack.push(address.to_string());
        for dest in &record.to {
            let dest = normalise_address(dest.trim());
            let (Some(local), Some(dest_domain)) = (local_part(&dest), domain_of(&dest)) else {
                return Err(ExpandError::Lookup(RuleError::permanent(format!(
                    "directory: {address} has the destination {dest:?}, which is not an address"
                ))));
            };
            if !dest_domain.eq_ignore_ascii_case(domain) {
                out.dests.push(Dest::Address(dest));
                continue;
            }
            let local = local.to_lowercase();
            if self.mailboxes.contains(&local) {
                out.dests.push(Dest::Mailbox(local));
            } else if let Some(alias) = self.aliases.get(&local) {
                // `walk` leaves the status of the alias it starts from to its caller.
                match alias.status {
                    Status::Active => self
                        .walk(&local, &mut Vec::new(), out, false)
                        .map_err(ExpandError::Loop)?,
                    Status::Paused => out.paused = true,
                    Status::Ignored => {}
                }
            } else {
                let dest = format!("{local}@{domain}");
                match self.lookup(&dest)? {
                    None => out.dests.push(Dest::Address(dest)),
                    Some(next) => match next.status {
                        Status::Active => self.expand_record(&dest, &next, domain, stack, out)?,
                        Status::Paused => out.paused = true,
                        Status::Ignored => {}
                    },
                }
            }
        }
        stack.pop();
        Ok(())
    }

    fn route(&self, recipients: &[String]) -> Result<Vec<Action>, RuleError> {
        let mut resolved: Vec<String> = Vec::new();
        let mut push = |addr: String| {
            if !resolved.iter().any(|r| r.eq_ignore_ascii_case(&addr)) {
                resolved.push(addr);
            }
        };
        for rcpt in recipients {
            let (Some(local), Some(domain)) = (local_part(rcpt), domain_of(rcpt)) else {
                log::warn!("alias: {rcpt:?} is not an address; kept as it is");
                push(rcpt.clone());
                continue;
            };
            let domain = domain.to_lowercase();
            let base = self.base_name(local);
            if self.mailboxes.contains(&base) {
                log::debug!("alias: {rcpt} -> mailbox {base}@{domain}");
                push(format!("{base}@{domain}"));
                continue;
            }
            let Some(found) = self.find(&base, &domain)? else {
                match self.unknown {
                    Unknown::Bounce => {
                        log::info!("alias: {rcpt}: no such user, refused");
                        recipients::refuse(rcpt, 550, "5.1.1", "no such user");
                    }
                    Unknown::Drop => {
                        log::info!("alias: {rcpt}: no such user, dropped");
                        recipients::discard(rcpt);
                    }
                }
                continue;
            };
            let (name, status) = match &found {
                Found::Config(name, alias) => (name.to_string(), alias.status),
                Found::Table(address, record) => (address.clone(), record.status),
            };
            match status {
                Status::Paused => {
                    log::info!("alias: {rcpt}: alias {name:?} is paused, refused");
                    recipients::refuse(rcpt, 550, "5.1.1", "mailbox unavailable");
                }
                Status::Ignored => {
                    log::info!("alias: {rcpt}: alias {name:?} is ignored, dropped");
                    recipients::discard(rcpt);
                }
                Status::Active => {
                    let mut e = Expansion::default();
                    let expanded = match &found {
                        Found::Config(name, _) => self
                            .walk(name, &mut Vec::new(), &mut e, false)
                            .map_err(|e| RuleError::permanent(format!("invalid config: {e}")))
                            .map_err(ExpandError::Lookup),
                        Found::Table(address, record) => {
                            self.expand_record(address, record, &domain, &mut Vec::new(), &mut e)
                        }
                    };
                    match expanded {
                        Ok(()) => {}
                        Err(ExpandError::Lookup(err)) => return Err(err),
                        Err(ExpandError::Loop(why)) => {
                            log::warn!("alias: {rcpt}: {why}, refused");
                            recipients::refuse(rcpt, 554, "5.4.6", "alias loop");
                            continue;
                        }
                    }
                    if e.dests.is_empty() {
                        if e.paused {
                            log::info!(
                                "alias: {rcpt}: alias {name:?} leads only to paused aliases, refused"
                            );
                            recipients::refuse(rcpt, 550, "5.1.1", "mailbox unavailable");
                        } else {
                            log::info!(
                                "alias: {rcpt}: alias {name:?} leads only to ignored aliases, dropped"
                            );
                            recipients::discard(rcpt);
                        }
                        continue;
                    }
                    let addresses: Vec<String> = e
                        .dests
                        .into_iter()
                        .map(|d| match d {
                            Dest::Mailbox(m) => format!("{m}@{domain}"),
                            Dest::Address(a) => a,
                        })
                        .collect();
                    log::info!("alias: {rcpt} -> {name} -> {}", addresses.join(", "));
                    for a in addresses {
                        push(a);
                    }
                }
            }
        }
        if resolved.len() > MAX_DESTINATIONS {
            return Err(RuleError::permanent(format!(
                "the group's recipients resolve to {} addresses; at most {MAX_DESTINATIONS}",
                resolved.len()
            )));
        }
        Ok(if resolved.is_empty() {
            // Everyone was refused or discarded: those requests already removed them, and an
            // empty `set-recipients` is invalid.
            vec![]
        } else {
            vec![Action::set_recipients(resolved)]
        })
    }
}

/// A mailbox or alias name: a non-empty local part without `@`, spaces, angle brackets or a
/// separator character.
fn check_local_part(name: &str, plus: &[char]) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.chars().any(|c| {
        c == '@' || c == '<' || c == '>' || c == '*' || c.is_whitespace() || c.is_control()
    }) {
        return Err("a local part cannot contain '@', '*', '<', '>', spaces or control characters (give a full address as a destination instead)".into());
    }
    if let Some(c) = name.chars().find(|c| plus.contains(c)) {
        return Err(format!(
            "contains the sub-address separator {c:?}, so no address could reach it"
        ));
    }
    Ok(())
}

/// The address with its domain lower-cased (local parts may be case-sensitive elsewhere).
fn normalise_address(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::recipients::{take_recorded, Request};

    fn config(json: &str) -> Config {
        let c: Config = sluice_sdk::parse_config(json).unwrap();
        AliasRule::check_config(&c).unwrap_or_else(|e| panic!("{json}: {e}"));
        c
    }

    fn config_error(json: &str) -> String {
        match sluice_sdk::parse_config::<Config>(json) {
            Err(e) => e,
            Ok(c) => AliasRule::check_config(&c)
                .err()
                .unwrap_or_else(|| panic!("accepted: {json}")),
        }
    }

    /// Runs the rule for `rcpts`: the actions and the per-recipient requests.
    fn run(c: &Config, rcpts: &[&str]) -> (Vec<Action>, Vec<Request>) {
        let _ = take_recorded();
        let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
        let actions = route(&rcpts, c).unwrap();
        (actions, take_recorded())
    }

    fn set(addrs: &[&str]) -> Vec<Action> {
        vec![Action::set_recipients(addrs.iter().copied())]
    }

    fn refused(rcpt: &str, text: &str) -> Request {
        Request::Refuse(
            rcpt.into(),
            Bounce {
                code: 550,
                status: "5.1.1".into(),
                text: text.into(),
            },
        )
    }

    const SITE: &str = r#"{
        "mailboxes": ["alice", "Bob", "carol"],
        "aliases": {
            "info": ["alice", "bob@gmail.example"],
            "Sales": "team",
            "team": { "to": ["alice", "carol"] },
            "old": { "to": ["carol"], "status": "paused" },
            "noise": { "status": "ignored" }
        }
    }"#;

    #[test]
    fn mailboxes_are_kept_and_aliases_expand() {
        let c = config(SITE);
        let (a, r) = run(
            &c,
            &[
                "info@example.com",
                "old@example.com",
                "noise@example.com",
                "nobody@example.com",
                "alice+news@example.com",
            ],
        );
        assert_eq!(a, set(&["alice@example.com", "bob@gmail.example"]));
        assert_eq!(
            r,
            vec![
                refused("old@example.com", "mailbox unavailable"),
                Request::Discard("noise@example.com".into()),
                refused("nobody@example.com", "no such user"),
            ]
        );
    }

    #[test]
    fn names_are_case_insensitive_and_the_domain_comes_from_the_recipient() {
        let c = config(SITE);
        let (a, r) = run(&c, &["BOB@Other.Example", "SALES@example.com"]);
        assert_eq!(
            a,
            set(&[
                "bob@other.example",
                "alice@example.com",
                "carol@example.com"
            ])
        );
        assert!(r.is_empty());
    }

    #[test]
    fn plus_addressing_on_off_and_other_separators() {
        let on = config(SITE);
        assert_eq!(
            run(&on, &["alice+a+b@example.com", "info+x@example.com"]).0,
            set(&["alice@example.com", "bob@gmail.example"])
        );
        // A leading separator is not a tag.
        assert_eq!(
            run(&on, &["+alice@example.com"]).1,
            vec![refused("+alice@example.com", "no such user")]
        );

        let off = config(r#"{"mailboxes":["alice"],"plus":""}"#);
        let (a, r) = run(&off, &["alice+news@example.com", "alice@example.com"]);
        assert_eq!(a, set(&["alice@example.com"]));
        assert_eq!(r, vec![refused("alice+news@example.com", "no such user")]);

        let dash = config(r#"{"mailboxes":["alice"],"plus":"+-"}"#);
        assert_eq!(
            run(&dash, &["alice-x@example.com", "alice+y@example.com"]).0,
            set(&["alice@example.com"])
        );
        assert!(take_recorded().is_empty());
    }

    #[test]
    fn the_catch_all_takes_unknown_addresses() {
        let c = config(r#"{"mailboxes":["alice","postmaster"],"aliases":{"*":"postmaster"}}"#);
        let (a, r) = run(&c, &["nobody@example.com", "alice@example.com"]);
        assert_eq!(a, set(&["postmaster@example.com", "alice@example.com"]));
        assert!(r.is_empty());

        let paused = config(r#"{"mailboxes":["a"],"aliases":{"*":{"status":"paused"}}}"#);
        assert_eq!(
            run(&paused, &["x@example.com"]),
            (
                vec![],
                vec![refused("x@example.com", "mailbox unavailable")]
            )
        );
        let ignored = config(r#"{"mailboxes":["a"],"aliases":{"*":{"status":"ignored"}}}"#);
        assert_eq!(
            run(&ignored, &["x@example.com", "a@example.com"]),
            (
                set(&["a@example.com"]),
                vec![Request::Discard("x@example.com".into())]
            )
        );
    }

    #[test]
    fn unknown_addresses_bounce_or_drop() {
        let bounce = config(r#"{"mailboxes":["a"]}"#);
        assert_eq!(
            run(&bounce, &["x@example.com"]),
            (vec![], vec![refused("x@example.com", "no such user")])
        );
        let drop = config(r#"{"mailboxes":["a"],"unknown":"drop"}"#);
        assert_eq!(
            run(&drop, &["x@example.com", "y@example.com"]),
            (
                vec![],
                vec![
                    Request::Discard("x@example.com".into()),
                    Request::Discard("y@example.com".into())
                ]
            )
        );
    }

    #[test]
    fn paused_and_ignored_aliases() {
        let c = config(SITE);
        assert_eq!(
            run(&c, &["old+tag@example.com"]),
            (
                vec![],
                vec![refused("old+tag@example.com", "mailbox unavailable")]
            )
        );
        assert_eq!(
            run(&c, &["Noise@example.com"]),
            (vec![], vec![Request::Discard("Noise@example.com".into())])
        );
    }

    #[test]
    fn alias_chains_resolve_and_skip_inactive_links() {
        let c = config(
            r#"{"mailboxes":["m1","m2"],"aliases":{
                "a":["b","m1","ext@partner.example"],"b":["c"],"c":["m2","m1"],
                "d":["p","m2"],"p":{"to":["m1"],"status":"paused"},
                "e":["p"],"f":["i"],"i":{"status":"ignored"}}}"#,
        );
        assert_eq!(
            run(&c, &["a@example.com"]).0,
            set(&["m2@example.com", "m1@example.com", "ext@partner.example"])
        );
        // A paused alias inside another adds nothing; the rest still gets it.
        assert_eq!(
            run(&c, &["d@example.com"]),
            (set(&["m2@example.com"]), vec![])
        );
        // Nothing left: refused when a link was paused, dropped when ignored.
        assert_eq!(
            run(&c, &["e@example.com"]),
            (
                vec![],
                vec![refused("e@example.com", "mailbox unavailable")]
            )
        );
        assert_eq!(
            run(&c, &["f@example.com"]),
            (vec![], vec![Request::Discard("f@example.com".into())])
        );
    }

    #[test]
    fn results_are_deduplicated_in_order() {
        let c = config(SITE);
        assert_eq!(
            run(
                &c,
                &[
                    "alice@example.com",
                    "team@example.com",
                    "Alice+x@example.com",
                    "info@example.com"
                ]
            )
            .0,
            set(&[
                "alice@example.com",
                "carol@example.com",
                "bob@gmail.example"
            ])
        );
    }

    #[test]
    fn cycles_and_depth_are_config_errors() {
        let e = config_error(r#"{"mailboxes":["m"],"aliases":{"a":["b"],"b":["c"],"c":["a"]}}"#);
        assert!(e.contains("alias cycle: a -> b -> c -> a"), "{e}");
        // Through a paused alias too: re-activating it must not create a loop.
        let e = config_error(
            r#"{"mailboxes":["m"],"aliases":{"a":["b","m"],"b":{"to":["a"],"status":"paused"}}}"#,
        );
        assert!(e.contains("cycle"), "{e}");
        let e = config_error(r#"{"aliases":{"a":"a"}}"#);
        assert!(e.contains("a -> a"), "{e}");

        let mut aliases: Vec<String> = (0..MAX_DEPTH)
            .map(|i| format!("\"l{i}\":\"l{}\"", i + 1))
            .collect();
        aliases.push(format!("\"l{MAX_DEPTH}\":\"m\""));
        let deep = format!(
            r#"{{"mailboxes":["m"],"aliases":{{{}}}}}"#,
            aliases.join(",")
        );
        let e = config_error(&deep);
        assert!(e.contains("deeper than"), "{e}");
        // One level less is fine.
        let ok = deep.replace("\"l0\":\"l1\",", "");
        config(&ok);
    }

    #[test]
    fn nonsense_configs_are_refused() {
        for (json, needle) in [
            (r#"{"aliases":{"a":[]}}"#, "no destinations"),
            (
                r#"{"aliases":{"a":{"status":"active"}}}"#,
                "no destinations",
            ),
            (
                r#"{"aliases":{"a":"nobody"}}"#,
                "neither a mailbox nor an alias",
            ),
            (r#"{"aliases":{"a":"x@"}}"#, "domain"),
            (r#"{"aliases":{"a":"x@y@z"}}"#, "exactly one"),
            (r#"{"aliases":{"a":"Bob <b@x.example>"}}"#, "bare address"),
            (r#"{"aliases":{"a":"b@x..example"}}"#, "empty label"),
            (r#"{"aliases":{"a":"*"}}"#, "catch-all"),
            (r#"{"mailboxes":["a","A"]}"#, "twice"),
            (
                r#"{"mailboxes":["a"],"aliases":{"a":"a@x.example"}}"#,
                "also a mailbox",
            ),
            (r#"{"mailboxes":["a+b"]}"#, "separator"),
            (r#"{"mailboxes":[""]}"#, "empty"),
            (r#"{"mailboxes":["a b"]}"#, "spaces"),
            (r#"{"mailboxes":["a@x.example"]}"#, "'@'"),
            (
                r#"{"mailboxes":["m"],"aliases":{"m-x":"m"},"plus":"-"}"#,
                "separator",
            ),
            (r#"{"plus":"@"}"#, "separator"),
            (
                r#"{"mailboxes":["a"],"aliases":{"x":"a+tag"}}"#,
                "separator",
            ),
            // serde's own messages name the key.
            (r#"{"aliases":{"a":{"too":["b"]}}}"#, "unknown field `too`"),
            (
                r#"{"aliases":{"a":{"to":"b","status":"pausd"}}}"#,
                "unknown variant `pausd`",
            ),
            (r#"{"unknown":"reject"}"#, "unknown variant `reject`"),
            (r#"{"mailbox":["a"]}"#, "unknown field `mailbox`"),
            (
                r#"{"aliases":{"a":3}}"#,
                "a destination, a list of destinations",
            ),
        ] {
            let e = config_error(json);
            assert!(e.contains(needle), "{json}: {e}");
        }
        // Paused and ignored aliases need no destinations; a single string `to` is fine.
        config(r#"{"mailboxes":["m"],"aliases":{"p":{"status":"paused"},"q":{"to":"m"}}}"#);
    }

    #[test]
    fn the_expansion_size_is_bounded() {
        let many: Vec<String> = (0..=MAX_DESTINATIONS)
            .map(|i| format!("\"u{i}@x.example\""))
            .collect();
        let e = config_error(&format!(r#"{{"aliases":{{"big":[{}]}}}}"#, many.join(",")));
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn an_empty_config_bounces_everyone() {
        let c = config("{}");
        assert_eq!(
            run(&c, &["a@example.com"]),
            (vec![], vec![refused("a@example.com", "no such user")])
        );
        assert_eq!(run(&c, &[]), (vec![], vec![]));
    }

    fn table(entries: &[(&str, &str)]) {
        sluice_sdk::lookup::clear();
        for (key, value) in entries {
            sluice_sdk::lookup::set("aliases", key, value);
        }
    }

    const WITH_TABLE: &str = r#"{
        "mailboxes": ["alice"],
        "aliases": { "info": "alice", "quiet": { "status": "paused" } },
        "directory": "aliases"
    }"#;

    #[test]
    fn the_directory_is_consulted_after_the_config() {
        table(&[
            (
                "shop-x1@example.com",
                r#"{"status":"active","to":["alice@example.com","me@gmail.example"]}"#,
            ),
            (
                "old-x2@example.com",
                r#"{"status":"paused","to":["alice@example.com"]}"#,
            ),
            ("spam-x3@example.com", r#"{"status":"ignored"}"#),
            ("bob@example.com", r#"{"status":"active","to":[]}"#),
            // Shadowed by the config's own alias.
            ("info@example.com", r#"{"to":["nobody@gmail.example"]}"#),
        ]);
        let c = config(WITH_TABLE);
        let (a, r) = run(
            &c,
            &[
                "Shop-X1+promo@example.com",
                "old-x2@example.com",
                "spam-x3@example.com",
                "bob@example.com",
                "info@example.com",
                "nobody@example.com",
            ],
        );
        assert_eq!(
            a,
            set(&["alice@example.com", "me@gmail.example", "bob@example.com"])
        );
        assert_eq!(
            r,
            vec![
                refused("old-x2@example.com", "mailbox unavailable"),
                Request::Discard("spam-x3@example.com".into()),
                refused("nobody@example.com", "no such user"),
            ]
        );
        let asked = sluice_sdk::lookup::take_asked();
        assert!(
            asked.contains(&("aliases".into(), "shop-x1@example.com".into())),
            "{asked:?}"
        );
        assert!(
            !asked.iter().any(|(_, k)| k == "info@example.com"),
            "{asked:?}"
        );
        assert!(
            asked.contains(&("aliases".into(), "*@example.com".into())),
            "{asked:?}"
        );
    }

    #[test]
    fn directory_aliases_resolve_through_each_other_and_the_config() {
        table(&[
            (
                "a@example.com",
                r#"{"to":["b@example.com","quiet@example.com"]}"#,
            ),
            (
                "b@example.com",
                r#"{"to":["info@example.com","c@example.com"]}"#,
            ),
            ("c@example.com", r#"{"status":"paused"}"#),
            ("*@example.com", r#"{"to":["alice@example.com"]}"#),
            ("loop1@example.com", r#"{"to":["loop2@example.com"]}"#),
            ("loop2@example.com", r#"{"to":["loop1@example.com"]}"#),
        ]);
        let c = config(WITH_TABLE);
        let (a, r) = run(
            &c,
            &["a@example.com", "unknown@example.com", "loop1@example.com"],
        );
        // a -> b -> info (config) -> alice; quiet (config, paused) and c (paused) add nothing;
        // unknown -> the table's catch-all.
        assert_eq!(a, set(&["alice@example.com"]));
        assert_eq!(
            r,
            vec![Request::Refuse(
                "loop1@example.com".into(),
                Bounce {
                    code: 554,
                    status: "5.4.6".into(),
                    text: "alias loop".into()
                }
            )]
        );
    }

    #[test]
    fn a_directory_that_is_down_is_a_temporary_error_and_nonsense_a_permanent_one() {
        sluice_sdk::lookup::clear();
        sluice_sdk::lookup::fail(
            "aliases",
            RuleError::temporary("lookup in \"aliases\": timed out"),
        );
        let c = config(WITH_TABLE);
        let rcpts = vec!["someone@example.com".to_string()];
        let err = route(&rcpts, &c).unwrap_err();
        assert!(err.temporary, "{err:?}");
        // Mailboxes and config aliases need no lookup and still resolve.
        let ok = route(&["alice@example.com".to_string()], &c).unwrap();
        assert_eq!(ok, set(&["alice@example.com"]));

        table(&[("x@example.com", r#"{"status":"gone"}"#)]);
        let err = route(&["x@example.com".to_string()], &c).unwrap_err();
        assert!(
            !err.temporary && err.message.contains("x@example.com"),
            "{err:?}"
        );
        assert!(config_error(r#"{"directory": "Bad Name"}"#).contains("not a table name"));
    }
}
