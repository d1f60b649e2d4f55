//! `[store]` and `[relay]`, read into trait objects. Each kind is one module that holds its
//! section as written (a `deny_unknown_fields` struct), its checks, its constructor and its
//! implementation: `store::{dir, s3, lmtp, smtp}` and `relay::{ses, smtp}`. [`STORE_KINDS`]
//! and [`RELAY_KINDS`] register them; `kind` is looked up there once, when the config is
//! read, and nothing after that looks at the text again.
//!
//! Adding a target: a module with a `KIND` ([`StoreKind`] or [`RelayKind`]) and an
//! implementation of [`StoreTarget`] or [`RelayTarget`], one line in the list here, and its
//! test file.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sluice_aws::{S3Url, Ses, S3};

use crate::relay::{SendLimits, Transport};
use crate::{MailboxStore, SetupError};

/// The most `X-Sluice-Loop` hops a relayed message may carry before it is not relayed again.
pub const DEFAULT_MAX_HOPS: usize = 3;

/// A problem in `[store]` or `[relay]`, in words; the config reader adds the file and line.
pub type Checked<T> = Result<T, String>;

/// Makes a path written in the config absolute (relative to the config file).
pub type Resolve<'a> = &'a dyn Fn(&str) -> PathBuf;

/// The clients a target may need when it is built (the S3 mailboxes, the SES relay).
#[derive(Debug, Clone)]
pub struct TargetClients {
    /// S3.
    pub s3: S3,
    /// SES v2.
    pub ses: Ses,
}

/// One `[store] kind`.
pub struct StoreKind {
    /// The `kind` value.
    pub name: &'static str,
    /// Reads the section's keys (without `kind`).
    pub read: fn(toml::Table, &StoreContext) -> Checked<StoreConfig>,
}

/// One `[relay] kind`.
pub struct RelayKind {
    /// The `kind` value.
    pub name: &'static str,
    /// Reads the kind's own keys (the keys every relay takes are read already).
    pub read: fn(toml::Table, Resolve<'_>) -> Checked<Arc<dyn RelayTarget>>,
}

/// Every `[store]` kind.
pub const STORE_KINDS: &[StoreKind] = &[
    crate::store::dir::KIND,
    crate::store::s3::KIND,
    crate::store::lmtp::KIND,
    crate::store::smtp::KIND,
];

/// Every `[relay]` kind.
pub const RELAY_KINDS: &[RelayKind] = &[crate::relay::ses::KIND, crate::relay::smtp::KIND];

/// What a store section is read with.
pub struct StoreContext<'a> {
    /// Paths relative to the config file.
    pub resolve: Resolve<'a>,
    /// `[relay] markers`: where a store that records its deliveries does so when it names
    /// no place of its own.
    pub relay_markers: Option<&'a RecordsAt>,
}

/// A checked `[store]`.
pub type StoreConfig = Arc<dyn StoreTarget>;

/// A place local mailboxes live, as configured.
pub trait StoreTarget: Debug + Send + Sync {
    /// The kind as written in the config (for messages).
    fn kind(&self) -> &'static str;

    /// Where this store keeps its copies, when Sluice can keep its own records beside them
    /// (send claims under `_sent/`, undeliverable copies): the S3 and directory stores.
    fn home(&self) -> Option<RecordsAt>;

    /// Whether a copy stored again is a second copy (LMTP, SMTP): then the store needs a
    /// record of the copies delivered ([`StoreTarget::delivered_at`]) so a retry skips them.
    fn needs_delivered_log(&self) -> bool;

    /// Where delivered copies are recorded (`markers`, or `[relay] markers`).
    fn delivered_at(&self) -> Option<&RecordsAt>;

    /// The store, ready to take messages (connections open on first use).
    fn build(&self, clients: &TargetClients) -> Result<Arc<dyn MailboxStore>, SetupError>;
}

/// A checked `[relay]` kind: how copies and bounces leave.
pub trait RelayTarget: Debug + Send + Sync {
    /// The kind as written in the config.
    fn kind(&self) -> &'static str;

    /// How sends are split and limited, so a stand-in (`sluice run`'s outbox) splits alike.
    fn limits(&self) -> SendLimits;

    /// The transport, ready to send.
    fn build(&self, clients: &TargetClients) -> Result<Arc<dyn Transport>, SetupError>;
}

/// Where Sluice records what it did: a bucket and prefix, or a directory of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsAt {
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// A directory (absolute).
    Dir(PathBuf),
}

impl RecordsAt {
    /// `s3://bucket/prefix`, or a directory relative to the config file.
    pub fn parse(at: &str, resolve: Resolve<'_>) -> Checked<RecordsAt> {
        if at.is_empty() {
            return Err("is empty; give s3://bucket/prefix or a directory".into());
        }
        if at.starts_with("s3://") {
            let url = S3Url::parse(at).map_err(|e| e.to_string())?;
            return Ok(RecordsAt::S3 {
                bucket: url.bucket,
                prefix: url.key.trim_matches('/').to_string(),
            });
        }
        Ok(RecordsAt::Dir(resolve(at)))
    }

    /// The same place one level down (`_sent`).
    pub fn join(&self, name: &str) -> RecordsAt {
        match self {
            RecordsAt::S3 { bucket, prefix } => RecordsAt::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                },
            },
            RecordsAt::Dir(dir) => RecordsAt::Dir(dir.join(name)),
        }
    }
}

impl std::fmt::Display for RecordsAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordsAt::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RecordsAt::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// `[relay]`, checked.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// How copies leave (`kind`).
    pub transport: Arc<dyn RelayTarget>,
    /// The address relayed copies are sent from.
    pub from: String,
    /// Domains a copy may go to (see [`relay_allows`]).
    pub allow_domains: Vec<String>,
    /// Sender of bounce DSNs.
    pub bounce_from: String,
    /// Loop guard.
    pub max_hops: usize,
    /// `markers`, if given.
    pub markers: Option<RecordsAt>,
    /// `sends`: what an unconfirmed claim becomes.
    pub sends: SendGuarantee,
}

impl RelayConfig {
    /// The domain of `from`, lower case: the relay's own domain (DSN reporting MTA, loop
    /// header of the catch-all chain).
    pub fn domain(&self) -> String {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// Where sends are claimed: `markers`, else `_sent/` beside the S3 or directory
    /// mailboxes of `store`. `None`: nowhere, and the config cannot relay for real.
    pub fn sends_recorded_at(&self, store: Option<&dyn StoreTarget>) -> Option<RecordsAt> {
        self.markers
            .clone()
            .or_else(|| store?.home().map(|home| home.join("_sent")))
    }
}

/// What becomes of a send that was claimed and never confirmed: the process died (or lost
/// the answer) after the claim, so nobody knows whether the copy went out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendGuarantee {
    /// Send it again once the claim is stale (the default): nothing is lost; the recipient
    /// may get a second copy with the same Message-ID when the first had gone out.
    #[default]
    AtLeastOnce,
    /// Never send it again: log `UNCONFIRMED SEND` and count it; an operator resends by hand.
    AtMostOnce,
}

impl SendGuarantee {
    /// The config value: `at-least-once` or `at-most-once`.
    pub fn as_str(self) -> &'static str {
        match self {
            SendGuarantee::AtLeastOnce => "at-least-once",
            SendGuarantee::AtMostOnce => "at-most-once",
        }
    }
}

/// Whether `allow_domains` lets a copy go to `recipient`: an entry matches the recipient's
/// domain exactly, case-insensitively; an entry with a leading dot, `.example.org`, matches
/// `example.org` and every subdomain of it. The one reading of the list, for the relay and
/// for `sluice check`.
pub fn relay_allows(allow_domains: &[String], recipient: &str) -> bool {
    let domain = recipient
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    !domain.is_empty()
        && allow_domains.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            match entry.strip_prefix('.') {
                Some(parent) => {
                    domain == parent
                        || domain
                            .strip_suffix(parent)
                            .is_some_and(|sub| sub.ends_with('.'))
                }
                None => domain == entry,
            }
        })
}

/// Removes `names` from `table` and returns them as a table of their own.
pub(crate) fn take_keys(table: &mut toml::Table, names: &[&str]) -> toml::Table {
    let mut taken = toml::Table::new();
    for name in names {
        if let Some(value) = table.remove(*name) {
            taken.insert((*name).to_string(), value);
        }
    }
    taken
}

/// Reads `table` as `T` (a `deny_unknown_fields` struct: a key the kind does not take is
/// refused, naming the keys it does take).
pub(crate) fn read_section<T: DeserializeOwned>(what: &str, table: toml::Table) -> Checked<T> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| format!("{what}: {}", e.message().trim()))
}

/// The `kind` of a section, taken out of it.
fn take_kind(section: &str, table: &mut toml::Table, kinds: &[&str]) -> Checked<String> {
    match table.remove("kind") {
        Some(toml::Value::String(kind)) => Ok(kind),
        Some(other) => Err(format!(
            "[{section}] kind must be a string, one of {}; found {other}",
            quoted(kinds)
        )),
        None => Err(format!(
            "[{section}] needs `kind`, one of {}",
            quoted(kinds)
        )),
    }
}

fn quoted(kinds: &[&str]) -> String {
    kinds
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `[store]`.
pub fn read_store(mut table: toml::Table, context: &StoreContext<'_>) -> Checked<StoreConfig> {
    let names: Vec<&str> = STORE_KINDS.iter().map(|k| k.name).collect();
    let kind = take_kind("store", &mut table, &names)?;
    let Some(entry) = STORE_KINDS.iter().find(|k| k.name == kind) else {
        return Err(format!(
            "store: unknown kind {kind:?}; expected one of {}",
            quoted(&names)
        ));
    };
    (entry.read)(table, context)
}

/// The keys every relay takes, whatever its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayKeys {
    /// The address relayed copies are sent `From:` (for SES, a verified identity).
    from: Option<String>,
    /// Domains the relay may send to; anything else is refused and logged (no open relay).
    /// An entry starting with `.` also allows its subdomains.
    #[serde(default)]
    allow_domains: Vec<String>,
    /// Sender of bounce DSNs (default `mailer-daemon@<domain of from>`).
    bounce_from: Option<String>,
    /// Loop guard: a message already relayed this many times (by any Sluice) is not relayed
    /// again (default 3).
    max_hops: Option<usize>,
    /// `s3://bucket/prefix` for the records of what was sent (idempotency markers), or a
    /// directory (safe only when one process consumes the queue: claims are files). Default:
    /// `_sent/` beside an S3 or directory store's mailboxes.
    markers: Option<String>,
    /// What a send claimed and never confirmed (a crash between the send and its record)
    /// becomes: `at-least-once` (the default: sent again, so a forward is never lost; the
    /// receiver may see a duplicate) or `at-most-once` (logged and counted, never resent).
    sends: Option<String>,
}

/// The keys of [`RelayKeys`], taken out of `[relay]` before its kind reads the rest (public
/// for the test that every key the parser accepts is documented).
pub const RELAY_KEYS: [&str; 6] = [
    "from",
    "allow_domains",
    "bounce_from",
    "max_hops",
    "markers",
    "sends",
];

/// `local@domain.tld` with nothing odd in it: what `from` and `bounce_from` must be.
fn is_address(a: &str) -> bool {
    a.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !a.contains([' ', '<', '>']))
}

/// Reads `[relay]`.
pub fn read_relay(mut table: toml::Table, resolve: Resolve<'_>) -> Checked<RelayConfig> {
    let names: Vec<&str> = RELAY_KINDS.iter().map(|k| k.name).collect();
    let kind = take_kind("relay", &mut table, &names)?;
    let Some(entry) = RELAY_KINDS.iter().find(|k| k.name == kind) else {
        return Err(format!(
            "relay: unknown kind {kind:?}; expected one of {}",
            quoted(&names)
        ));
    };
    let keys: RelayKeys = read_section("relay", take_keys(&mut table, &RELAY_KEYS))?;
    let transport = (entry.read)(table, resolve)?;
    let from = match keys.from {
        Some(from) if is_address(&from) => from,
        Some(from) => {
            return Err(format!(
                "relay.from {from:?} is not an address (e.g. \"forwarder@example.com\")"
            ))
        }
        None => return Err("relay: `from` is required: the address relayed mail is sent from (for SES, a verified identity)".into()),
    };
    if let Some(b) = keys.bounce_from.as_deref().filter(|b| !is_address(b)) {
        return Err(format!("relay.bounce_from {b:?} is not an address"));
    }
    if keys.max_hops == Some(0) {
        return Err("relay.max_hops must be at least 1".into());
    }
    let markers = keys
        .markers
        .as_deref()
        .map(|m| RecordsAt::parse(m, resolve).map_err(|e| format!("relay.markers {e}")))
        .transpose()?;
    let sends = match keys.sends.as_deref() {
        None => SendGuarantee::default(),
        Some("at-least-once") => SendGuarantee::AtLeastOnce,
        Some("at-most-once") => SendGuarantee::AtMostOnce,
        Some(other) => return Err(format!("relay.sends = {other:?}: use \"at-least-once\" (the default: a send cut off by a crash is sent again) or \"at-most-once\" (it is logged and never resent)")),
    };
    if keys.allow_domains.is_empty() {
        tracing::warn!("relay.allow_domains is empty: every relayed recipient will be refused");
    }
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    Ok(RelayConfig {
        transport,
        bounce_from: keys
            .bounce_from
            .unwrap_or_else(|| format!("mailer-daemon@{domain}")),
        from,
        allow_domains: keys.allow_domains,
        max_hops: keys.max_hops.unwrap_or(DEFAULT_MAX_HOPS),
        markers,
        sends,
    })
}

/// `markers` of a store section, or `[relay] markers` when it names none.
pub(crate) fn store_markers(
    markers: Option<&str>,
    context: &StoreContext<'_>,
) -> Checked<Option<RecordsAt>> {
    match markers {
        Some(m) => RecordsAt::parse(m, context.resolve)
            .map(Some)
            .map_err(|e| format!("store.markers {e}")),
        None => Ok(context.relay_markers.cloned()),
    }
}

/// A directory path as written, made absolute.
pub(crate) fn resolve_dir(path: &str, resolve: Resolve<'_>) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        resolve(path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `read` (a store kind's check, or [`read_store`]) on a `[store]` written as
    /// TOML, paths under `/etc/sluice`, no `[relay] markers`.
    pub(crate) fn read_with<T>(
        read: fn(toml::Table, &StoreContext<'_>) -> Checked<T>,
        text: &str,
    ) -> Checked<T> {
        let resolve = |p: &str| PathBuf::from("/etc/sluice").join(p);
        let context = StoreContext {
            resolve: &resolve,
            relay_markers: None,
        };
        read(toml::from_str(text).unwrap(), &context)
    }

    /// Reads a `[store]` written as TOML, paths under `/etc/sluice`.
    pub(crate) fn store(text: &str) -> Checked<StoreConfig> {
        read_with(read_store, text)
    }

    /// Reads a `[relay]` written as TOML.
    pub(crate) fn relay(text: &str) -> Checked<RelayConfig> {
        let table: toml::Table = toml::from_str(text).unwrap();
        read_relay(table, &|p| PathBuf::from("/etc/sluice").join(p))
    }

    #[test]
    fn keys_of_another_kind_are_refused_naming_what_the_kind_takes() {
        let m = store("kind = \"lmtp\"\naddress = \"h:24\"\nbucket = \"b\"").unwrap_err();
        assert!(m.contains("unknown field `bucket`"), "{m}");
        assert!(m.contains("`address`"), "{m}");
        let m = store("kind = \"s3\"\nbucket = \"b\"\npath = \"x\"").unwrap_err();
        assert!(m.contains("unknown field `path`"), "{m}");
        let m = relay("kind = \"ses\"\nfrom = \"f@example.com\"\nhost = \"h\"").unwrap_err();
        assert!(m.contains("unknown field `host`"), "{m}");
        let m = store("kind = \"maildir\"").unwrap_err();
        assert!(m.contains("\"lmtp\", \"smtp\""), "{m}");
        let m = store("path = \"x\"").unwrap_err();
        assert!(m.contains("needs `kind`"), "{m}");
        let m = store("kind = \"lmtp\"\naddress = \"h:24\"\nauth_env = \"X\"").unwrap_err();
        assert!(m.contains("unknown field `auth_env`"), "{m}");
    }

    #[test]
    fn relay_defaults_and_checks() {
        let r = relay("kind = \"ses\"\nfrom = \"fwd@Example.com\"").unwrap();
        assert_eq!(r.transport.kind(), "ses");
        assert_eq!(r.bounce_from, "mailer-daemon@example.com");
        assert_eq!(r.max_hops, DEFAULT_MAX_HOPS);
        assert_eq!(r.sends, SendGuarantee::AtLeastOnce);
        assert_eq!(r.markers, None);
        assert!(relay("kind = \"ses\"")
            .unwrap_err()
            .contains("`from` is required"));
        assert!(relay("kind = \"ses\"\nfrom = \"x\"")
            .unwrap_err()
            .contains("is not an address"));
        assert!(
            relay("kind = \"ses\"\nfrom = \"f@example.com\"\nsends = \"twice\"")
                .unwrap_err()
                .contains("at-most-once")
        );
        assert!(
            relay("kind = \"ses\"\nfrom = \"f@example.com\"\nmarkers = \"\"")
                .unwrap_err()
                .contains("relay.markers is empty")
        );
        let r = relay("kind = \"ses\"\nfrom = \"f@example.com\"\nmarkers = \"s3://b/m/\"").unwrap();
        assert_eq!(
            r.markers,
            Some(RecordsAt::S3 {
                bucket: "b".into(),
                prefix: "m".into()
            })
        );
    }

    #[test]
    fn sends_are_recorded_beside_a_store_that_has_a_home() {
        let r = relay("kind = \"ses\"\nfrom = \"f@example.com\"").unwrap();
        let s3 = store("kind = \"s3\"\nbucket = \"mail\"\nprefix = \"boxes/\"").unwrap();
        assert_eq!(
            r.sends_recorded_at(Some(s3.as_ref())),
            Some(RecordsAt::S3 {
                bucket: "mail".into(),
                prefix: "boxes/_sent".into()
            })
        );
        let dir = store("kind = \"dir\"\npath = \"mail\"").unwrap();
        assert_eq!(
            r.sends_recorded_at(Some(dir.as_ref())),
            Some(RecordsAt::Dir("/etc/sluice/mail/_sent".into()))
        );
        let lmtp = store("kind = \"lmtp\"\naddress = \"h:24\"").unwrap();
        assert_eq!(r.sends_recorded_at(Some(lmtp.as_ref())), None);
        assert_eq!(r.sends_recorded_at(None), None);
    }

    #[test]
    fn allow_domains_match_exactly_or_with_subdomains() {
        let allow = vec!["example.org".to_string(), ".example.net".to_string()];
        assert!(relay_allows(&allow, "a@Example.ORG"));
        assert!(!relay_allows(&allow, "a@sub.example.org"));
        assert!(relay_allows(&allow, "a@example.net"));
        assert!(relay_allows(&allow, "a@deep.sub.example.net"));
        assert!(!relay_allows(&allow, "a@badexample.net"));
        assert!(!relay_allows(&allow, "nobody"));
    }
}
