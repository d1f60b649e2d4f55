//! The configuration file: where mail goes and which rules run for which domain.
//!
//! Parsing is in two stages: [`ConfigFile::parse`] reads and checks the TOML (every error
//! names the file, line and key), then [`crate::RuleChains::load`] loads the plugins it names.
//! Relative paths are relative to the directory of the config file.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use sluice_deliver::{RelayConfig, StoreConfig, StoreContext};

/// A configuration problem, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// 1-based line (0 when the problem has no position, e.g. an unreadable file).
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(file: &SourceFile, span: Option<Range<usize>>, message: String) -> Self {
        ConfigError {
            file: file.name.clone(),
            line: span.map(|s| file.line_of(s.start)).unwrap_or(0),
            message,
        }
    }
}

/// The text of a config file, kept to turn byte offsets into line numbers.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Display name (path or URL).
    pub name: String,
    /// Directory that relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The config's URL when it was read from S3.
    pub remote_base: Option<String>,
    text: String,
}

impl SourceFile {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

/// Where a plugin's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLocation {
    /// A local file.
    Local(PathBuf),
    /// An `s3://bucket/key` URL (a sha256 is required).
    Remote(String),
    /// A URL scheme Sluice does not read.
    Unsupported(String),
}

/// What to do when a step fails (trap, timeout, memory cap, invalid action, rule error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Ignore the step's answer and go on with the next step (the default).
    #[default]
    Continue,
    /// Stop and leave the message for a later retry (exit code 75 for `sluice run`).
    Tempfail,
    /// Refuse the message for the group (554 5.3.0).
    Bounce,
}

/// Whether a step's actions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepMode {
    /// Apply the actions (the default).
    #[default]
    Enforce,
    /// Run and record the actions in the trace, apply none.
    Audit,
}

/// Whether a step gets a new instance for every message or reuses warm ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Instances {
    /// A new instance per message: nothing survives into the next message (the default).
    #[default]
    Fresh,
    /// Instances serve many messages (see `sluice_engine::WarmPool`): what the rule keeps in
    /// its memory (an interpreter, a parsed config, a counter) carries over.
    Warm,
}

/// `warm = { ... }`: how long a warm instance lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmSection {
    /// Messages per instance (default 1000).
    pub max_messages: Option<u32>,
    /// Seconds an instance lives (default 300).
    pub max_age_s: Option<u64>,
    /// Idle instances kept (default 16).
    pub max_idle: Option<usize>,
}

/// What `add-banner` does to a message with no displayed text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BannerFallbackSetting {
    /// Wrap it: a new multipart/mixed with the banner, then the original as message/rfc822.
    #[default]
    Wrap,
    /// Leave the body alone.
    Ignore,
}

/// `[inbound]`: where the receipt rule's S3 action stores messages; needed for SES direct
/// Lambda invocations, which carry no content.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSection {
    /// The S3 action's bucket.
    pub bucket: String,
    /// The S3 action's object key prefix (e.g. `incoming/`); the key is prefix + message id.
    #[serde(default)]
    pub prefix: String,
}

/// `[milter]`: settings of the milter door, for `sluice milter` (its flags override them) and
/// for `sluice daemon`, which serves the milter beside its queue when `listen` is set. Read
/// once at start: a config reload changes the chains, not these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterSection {
    /// `inet:127.0.0.1:PORT` or `unix:/path`. Its presence is what makes `sluice daemon`
    /// serve the milter too (one config, one reload for both doors).
    pub listen: Option<String>,
    /// The largest message accepted, in bytes (default 40 MiB).
    pub max_message_bytes: Option<usize>,
    /// The message bytes all connections may hold at once (default 512 MiB).
    pub max_buffered_bytes: Option<usize>,
    /// Seconds without a command from the MTA before the connection is closed (default 600).
    pub command_timeout_s: Option<u64>,
    /// Connections served at once (default 64).
    pub max_connections: Option<usize>,
    /// The answer when the chain cannot run (default `tempfail`).
    pub default_action: Option<MilterDefaultAction>,
    /// Read SPF/DKIM/DMARC from the `Authentication-Results` header of this authserv-id.
    pub trusted_authserv_id: Option<String>,
    /// Seconds connections may take to finish their message on SIGTERM (default 30).
    pub grace_s: Option<u64>,
    /// Postfix `{daemon_name}` values (`milter_macro_daemon_name`) whose transactions are
    /// mail local users send even without SMTP AUTH, e.g. `["ORIGINATING"]` on an outbound
    /// relay whose `sendmail` submissions reach the milter through `non_smtpd_milters`.
    /// Default none: a transaction is outbound when the client authenticated.
    #[serde(default)]
    pub outbound_daemon_names: Vec<String>,
    /// Where SPF/DKIM/DMARC verdicts come from (default `authentication-results`).
    pub verdicts: Option<MilterVerdicts>,
    /// With `verdicts = "compute"`: the DNS server to ask, `IP` or `IP:PORT` (default: the
    /// system's resolvers, /etc/resolv.conf).
    pub dns: Option<String>,
    /// With `verdicts = "compute"`: seconds one message's SPF, DKIM and DMARC checks may take
    /// in all (default 10); a check cut short is `processing-failed`.
    pub verdicts_timeout_s: Option<u64>,
    /// Seconds one MTA connection may last in all (default 3600).
    pub connection_timeout_s: Option<u64>,
    /// `[[milter.scanner]]`: headers of scanners that run before Sluice, trusted for the spam
    /// and virus verdicts.
    #[serde(default)]
    pub scanner: Vec<ScannerSection>,
}

/// `[milter] verdicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilterVerdicts {
    /// Read from the `Authentication-Results` header of `trusted_authserv_id` (all
    /// `unknown` without it).
    AuthenticationResults,
    /// Computed by Sluice (SPF, DKIM, DMARC with mail-auth).
    Compute,
}

/// `[[milter.scanner]]`: a header a scanner writes, and its values that mean fail and pass.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSection {
    /// The scanner's name, for log lines (e.g. `spamassassin`).
    pub name: String,
    /// The verdict it gives: `spam` or `virus`.
    pub verdict: ScannerKind,
    /// The header field it writes (e.g. `X-Spam-Flag`).
    pub header: String,
    /// Values meaning fail, matched case-insensitively against the value's first word
    /// (e.g. `["YES"]`).
    pub fail: Vec<String>,
    /// Values meaning pass (e.g. `["NO"]`); others leave the verdict `unknown`.
    #[serde(default)]
    pub pass: Vec<String>,
}

/// `[[milter.scanner]] verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// The spam verdict.
    Spam,
    /// The virus verdict.
    Virus,
}

/// `[milter] default_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterDefaultAction {
    /// 451 4.3.0: the sender retries.
    Tempfail,
    /// The message passes unchanged.
    Accept,
}

/// `[engine]`: sandbox settings for the whole process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Directory for compiled components (relative to the config file).
    pub cache_dir: Option<String>,
    /// `auto` (default) or `off` (spanned: a bad value is reported at its line).
    pub pooling: Option<Spanned<String>>,
    /// Size bound of each cache directory in MiB (default 512).
    pub cache_max_mb: Option<u64>,
}

impl EngineSection {
    /// `cache_max_mb` in bytes (default 512 MiB).
    pub fn cache_max_bytes(&self) -> u64 {
        self.cache_max_mb
            .map(|mb| mb << 20)
            .unwrap_or(sluice_engine::DEFAULT_CACHE_BYTES)
    }

    /// `pooling` as the engine's choice (`auto` unless `off`).
    pub fn pooling_choice(&self) -> sluice_engine::PoolingChoice {
        match self.pooling.as_ref().map(|p| p.get_ref().as_str()) {
            Some("off") => sluice_engine::PoolingChoice::Off,
            _ => sluice_engine::PoolingChoice::Auto,
        }
    }
}

/// One `[[domain.step]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// The component: a path (relative to the config file).
    pub plugin: Spanned<String>,
    /// Expected sha256 of the component bytes; required for remote plugins.
    pub sha256: Option<Spanned<String>>,
    /// A name for the trace and logs (default: the plugin file's stem).
    pub name: Option<String>,
    /// Failure policy.
    #[serde(default)]
    pub on_error: OnError,
    /// `enforce` or `audit`.
    #[serde(default)]
    pub mode: StepMode,
    /// Deadline in milliseconds (default 100).
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB (default 64).
    pub memory_mb: Option<u64>,
    /// Most actions one call may return (default 256).
    pub max_actions: Option<usize>,
    /// Circuit breaker settings (default: 5 failures within 60 s open it for 60 s).
    #[serde(default)]
    pub breaker: crate::breaker::BreakerSettings,
    /// `fresh` (default) or `warm`.
    #[serde(default)]
    pub instances: Instances,
    /// Lifetime of warm instances (only with `instances = "warm"`).
    pub warm: Option<WarmSection>,
    /// The tables (`[directory.NAME]`) the rule may read through `lookup.get`; none by
    /// default.
    #[serde(default)]
    pub lookups: Vec<String>,
    /// The services the rule may call through `http.send`; none by default.
    pub http: Option<HttpSection>,
    /// Whether the rule may answer senders automatically through `reply.send`
    /// (`reply = { once_per_days = 7 }`); not by default.
    pub reply: Option<ReplySection>,
    /// The rule's own configuration, handed to it as JSON.
    pub config: Option<toml::Table>,
}

/// A step's `http = { allow = [...], timeout_ms, max_response_kb }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// URL prefixes the rule may call (`https://classifier.internal:8443/v1/`).
    pub allow: Vec<String>,
    /// Bound of one call in milliseconds (default: the step's deadline, which bounds it too).
    pub timeout_ms: Option<u64>,
    /// Largest response body in KiB (default 64).
    pub max_response_kb: Option<u64>,
}

/// A step's `reply = { once_per_days = N }`: it may ask the host to answer senders (an
/// out-of-office reply), each sender at most once per recipient in N days.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySection {
    /// The shortest interval between two replies to one sender from one recipient, in days
    /// (1..=366); a rule may ask for a longer one.
    pub once_per_days: u32,
}

/// Most `max_response_kb` a step may set (a response is held in memory while the rule reads
/// it).
pub const MAX_RESPONSE_KB: u64 = 16 * 1024;

/// One `[[domain]]`, or one `[[outbound]]` (the same keys: `name` is then the sending
/// domain whose users' outgoing mail the chain sees).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSection {
    /// The domain (`example.com`), or `*` for every other domain.
    pub name: Spanned<String>,
    /// What add-banner does to messages without a displayed text part.
    #[serde(default)]
    pub banner_fallback: BannerFallbackSetting,
    /// The chain, in order.
    #[serde(default)]
    pub step: Vec<Spanned<StepSection>>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: Option<Spanned<toml::Table>>,
    relay: Option<Spanned<toml::Table>>,
    archive: Option<Spanned<toml::Table>>,
    quarantine: Option<Spanned<toml::Table>>,
    inbound: Option<InboundSection>,
    milter: Option<MilterSection>,
    arc: Option<Spanned<crate::sealing::ArcSection>>,
    #[serde(default)]
    engine: EngineSection,
    #[serde(default)]
    directory: BTreeMap<String, Spanned<sluice_directory::DirectorySection>>,
    #[serde(default)]
    domain: Vec<Spanned<DomainSection>>,
    #[serde(default)]
    outbound: Vec<Spanned<DomainSection>>,
}

/// A parsed, checked configuration (plugins not loaded yet).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The source, for error locations.
    pub source: SourceFile,
    /// `[store]`, if any (`sluice run --out` can stand in for it).
    pub store: Option<StoreConfig>,
    /// `[relay]`, if any.
    pub relay: Option<RelayConfig>,
    /// `[archive]`: where every message of the chosen domains is kept as received, before
    /// delivery.
    pub archive: Option<sluice_deliver::ArchiveConfig>,
    /// `[quarantine]`: where copies filed into its folder are kept instead of the mailbox.
    pub quarantine: Option<sluice_deliver::QuarantineConfig>,
    /// `[inbound]`, if any.
    pub inbound: Option<InboundSection>,
    /// `[milter]`, if any.
    pub milter: Option<MilterSection>,
    /// `[arc]`: the sealer for copies the chain changed or relayed; `None`: no ARC sets.
    pub arc: Option<std::sync::Arc<sluice_arc::Sealer>>,
    /// `[engine]`.
    pub engine: EngineSection,
    /// `[directory.NAME]`: the tables steps may be granted (`lookups = ["NAME"]`).
    pub directories: BTreeMap<String, sluice_directory::DirectorySection>,
    /// `[[domain]]` entries, in file order.
    pub domains: Vec<Spanned<DomainSection>>,
    /// `[[outbound]]` entries, in file order: the chains for mail local users send, picked
    /// by the sending domain (see `RuleChains::process`).
    pub outbound: Vec<Spanned<DomainSection>>,
}

const NEEDS_MARKERS: &str = "store: kind = \"KIND\" needs `markers = \"s3://bucket/prefix\"` or `markers = \"/var/lib/sluice/delivered\"` (or [relay] markers): where delivered recipients are recorded, so a retry delivers only to those not done yet";

/// A `[directory.NAME]` section: a usable name and the key its kind needs.
fn check_directory(name: &str, section: &sluice_directory::DirectorySection) -> Result<(), String> {
    use sluice_directory::DirectoryKind;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "[directory.{name}]: a directory name is lower-case letters, digits, `-` and `_`"
        ));
    }
    match section.kind {
        DirectoryKind::Dynamodb if section.table.is_none() => Err(format!(
            "[directory.{name}]: kind = \"dynamodb\" needs `table = \"...\"` (the DynamoDB table name)"
        )),
        DirectoryKind::File if section.path.is_none() => Err(format!(
            "[directory.{name}]: kind = \"file\" needs `path = \"aliases.toml\"` (TOML, JSON or CSV, relative to this file)"
        )),
        _ => Ok(()),
    }
}

/// Limits a step may not exceed, whatever its config says.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// See [`MAX_TIMEOUT_MS`].
pub const MAX_MEMORY_MB: u64 = 512;

/// An address in a step's config that mail could never reach: it is in no configured domain
/// and `[relay] allow_domains` refuses it (or there is no `[relay]`). A rule that redirects
/// or forwards there makes copies that are kept as undeliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreachableAddress {
    /// The chain's domain.
    pub domain: String,
    /// The step's name (or plugin path when unnamed).
    pub step: String,
    /// The address as written.
    pub address: String,
    /// 1-based line of the step in the config file.
    pub line: usize,
}

/// The strings in `value` (nested arrays and tables too) that look like `local@domain.tld`.
fn collect_addresses(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => {
            let s = s.trim();
            let looks_like_address = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !local.contains(char::is_whitespace)
                    && domain.contains('.')
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            });
            if looks_like_address {
                out.push(s.to_string());
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_addresses(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| collect_addresses(v, out)),
        _ => {}
    }
}

impl ConfigFile {
    /// What keeps this config from delivering for real (the daemon, the Lambda, `sluice
    /// deliver`): a place to record what was delivered or sent, so that a retry does neither
    /// twice. `sluice run`'s preview needs none (it records in a temporary directory).
    /// Empty when nothing is missing.
    pub fn missing_markers(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if let Some(store) = &self.store {
            if store.needs_delivered_log() && store.delivered_at().is_none() {
                missing.push(NEEDS_MARKERS.replace("KIND", store.kind()));
            }
        }
        if let Some(relay) = &self.relay {
            if relay.sends_recorded_at(self.store.as_deref()).is_none() {
                missing.push("relay: set `markers = \"s3://bucket/prefix\"` (where sends are recorded so a retried message is not sent twice; a directory serves when one daemon consumes the queue), or use an s3 or dir [store] (sends are then recorded in its `_sent/`)".into());
            }
        }
        missing
    }

    /// Every address among the string values of the steps' `config` tables (keys are not
    /// read: a forward map's keys are its sources) that no configured domain takes and the
    /// relay refuses. `sluice check` prints them: each is a message that would reach nobody.
    pub fn unreachable_addresses(&self) -> Vec<UnreachableAddress> {
        let local: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.get_ref().name.get_ref().to_ascii_lowercase())
            .collect();
        let allow = self
            .relay
            .as_ref()
            .map(|r| r.allow_domains.as_slice())
            .unwrap_or_default();
        let mut found = Vec::new();
        for domain in &self.domains {
            for step in &domain.get_ref().step {
                let Some(config) = &step.get_ref().config else {
                    continue;
                };
                let mut addresses = Vec::new();
                for value in config.values() {
                    collect_addresses(value, &mut addresses);
                }
                for address in addresses {
                    let dest = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                    let dest = dest.trim_end_matches('.').to_ascii_lowercase();
                    if local.contains(&dest) || sluice_deliver::relay_allows(allow, &address) {
                        continue;
                    }
                    found.push(UnreachableAddress {
                        domain: domain.get_ref().name.get_ref().clone(),
                        step: step
                            .get_ref()
                            .name
                            .clone()
                            .unwrap_or_else(|| step.get_ref().plugin.get_ref().clone()),
                        address,
                        line: self.line_of(step.span()),
                    });
                }
            }
        }
        found
    }

    /// Reads and checks a config file.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read the config file: {e}"),
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        ConfigFile::parse(&path.display().to_string(), base_dir, text)
    }

    /// Parses and checks config text.
    pub fn parse(name: &str, base_dir: PathBuf, text: String) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse_with(name, base_dir, text, None)
    }

    fn parse_with(
        name: &str,
        base_dir: PathBuf,
        text: String,
        remote_base: Option<&str>,
    ) -> Result<ConfigFile, ConfigError> {
        let source = SourceFile {
            name: name.to_string(),
            remote_base: remote_base.map(str::to_string),
            base_dir: if base_dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base_dir
            },
            text,
        };
        let raw: RawConfig = toml::from_str(&source.text).map_err(|e| {
            let message = e.message().trim().to_string();
            ConfigError::at(&source, e.span(), message)
        })?;
        let resolve = |p: &str| source.base_dir.join(p);
        let at =
            |(span, message): (Range<usize>, String)| ConfigError::at(&source, Some(span), message);
        // The relay first: its markers serve a store that records deliveries (LMTP, SMTP)
        // and names no place of its own. Without either, the daemon refuses to start
        // (`missing_markers`); a preview needs none.
        let relay = raw
            .relay
            .as_ref()
            .map(|r| {
                sluice_deliver::read_relay(r.get_ref().clone(), &resolve).map_err(|m| (r.span(), m))
            })
            .transpose()
            .map_err(at)?;
        let context = StoreContext {
            resolve: &resolve,
            relay_markers: relay.as_ref().and_then(|r| r.markers.as_ref()),
        };
        let store = raw
            .store
            .as_ref()
            .map(|s| {
                sluice_deliver::read_store(s.get_ref().clone(), &context).map_err(|m| (s.span(), m))
            })
            .transpose()
            .map_err(at)?;
        let archive = raw
            .archive
            .as_ref()
            .map(|a| {
                sluice_deliver::read_archive(a.get_ref().clone(), &resolve)
                    .map_err(|m| (a.span(), m))
            })
            .transpose()
            .map_err(at)?;
        let quarantine = raw
            .quarantine
            .as_ref()
            .map(|q| {
                sluice_deliver::read_quarantine(q.get_ref().clone(), &resolve)
                    .map_err(|m| (q.span(), m))
            })
            .transpose()
            .map_err(at)?;
        let arc = raw
            .arc
            .as_ref()
            .map(|a| crate::sealing::ArcSection::load(a, &resolve))
            .transpose()
            .map_err(at)?;
        for (name, section) in &raw.directory {
            check_directory(name, section.get_ref()).map_err(|m| at((section.span(), m)))?;
        }
        let config = ConfigFile {
            source,
            store,
            relay,
            archive,
            quarantine,
            inbound: raw.inbound,
            milter: raw.milter,
            arc,
            engine: raw.engine,
            directories: raw
                .directory
                .into_iter()
                .map(|(name, section)| (name, section.into_inner()))
                .collect(),
            domains: raw.domain,
            outbound: raw.outbound,
        };
        config.check()?;
        Ok(config)
    }

    /// The checks serde cannot make: engine settings, domain names, and each step's limits,
    /// warm settings, hash and plugin location. The first problem is the error, at its span.
    fn check(&self) -> Result<(), ConfigError> {
        self.check_engine()?;
        for (table, chains) in [("domain", &self.domains), ("outbound", &self.outbound)] {
            let mut seen = BTreeSet::new();
            for domain in chains {
                self.check_domain_name(table, domain, &mut seen)?;
                for step in &domain.get_ref().step {
                    self.check_step(step)?;
                }
            }
        }
        Ok(())
    }

    fn error_at(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::at(&self.source, Some(span), message)
    }

    fn check_engine(&self) -> Result<(), ConfigError> {
        if let Some(pooling) = &self.engine.pooling {
            let value = pooling.get_ref();
            if value != "auto" && value != "off" {
                return Err(self.error_at(
                    pooling.span(),
                    format!("engine.pooling: {value:?}; expected \"auto\" or \"off\""),
                ));
            }
        }
        Ok(())
    }

    /// A domain name or `*`, configured once per table (`domain` or `outbound`, ASCII
    /// case-insensitive); `seen` holds the names of the table's entries before it.
    fn check_domain_name(
        &self,
        table: &str,
        domain: &Spanned<DomainSection>,
        seen: &mut BTreeSet<String>,
    ) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, message: String| Err(self.error_at(span, message));
        let name = domain.get_ref().name.get_ref();
        let span = domain.get_ref().name.span();
        if name != "*" && (name.is_empty() || name.contains(['@', ' ', '/']) || !name.contains('.'))
        {
            return err(
                span,
                format!("{table}.name {name:?} is not a domain (e.g. \"example.com\") or \"*\""),
            );
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            let what = if table == "domain" {
                "domain"
            } else {
                "outbound chain"
            };
            return err(span, format!("{what} {name:?} is configured twice"));
        }
        Ok(())
    }

    fn check_step(&self, step: &Spanned<StepSection>) -> Result<(), ConfigError> {
        self.check_step_limits(step)?;
        self.check_step_grants(step)?;
        self.check_step_source(step.get_ref())
    }

    /// Every table a step is granted is a configured directory, and its `http` grant is sound.
    fn check_step_grants(&self, step: &Spanned<StepSection>) -> Result<(), ConfigError> {
        if let Some(http) = &step.get_ref().http {
            self.check_http_grant(step, http)?;
        }
        if let Some(reply) = &step.get_ref().reply {
            let days = reply.once_per_days;
            if days == 0 || days > sluice_engine::MAX_ONCE_PER_DAYS {
                return Err(self.error_at(
                    step.span(),
                    format!(
                        "step.reply.once_per_days = {days}: must be 1..={} (a sender gets at most one reply per recipient in that many days)",
                        sluice_engine::MAX_ONCE_PER_DAYS
                    ),
                ));
            }
            if self.relay.is_none() {
                return Err(self.error_at(
                    step.span(),
                    "step.reply: replies are sent through [relay], and this config has none; add a [relay] section or remove `reply`".to_string(),
                ));
            }
        }
        for table in &step.get_ref().lookups {
            if !self.directories.contains_key(table) {
                let known: Vec<&str> = self.directories.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "this config has none".to_string()
                } else {
                    format!("this config has {}", known.join(", "))
                };
                return Err(self.error_at(
                    step.span(),
                    format!(
                        "step.lookups: no [directory.{table}] section ({known}); add one with `kind = \"dynamodb\"` and `table = \"...\"`, or `kind = \"file\"` and `path = \"...\"`"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_http_grant(
        &self,
        step: &Spanned<StepSection>,
        http: &HttpSection,
    ) -> Result<(), ConfigError> {
        let err = |message: String| Err(self.error_at(step.span(), message));
        if http.allow.is_empty() {
            return err(
                "step.http.allow is empty: list the URL prefixes the rule may call, e.g. `allow = [\"https://classifier.internal:8443/\"]`, or remove `http`".to_string(),
            );
        }
        for entry in &http.allow {
            if let Err(e) = sluice_engine::AllowedUrl::parse(entry) {
                return err(format!(
                    "step.http.allow: {e} (an entry is `http(s)://host[:port]/path-prefix`)"
                ));
            }
        }
        let deadline = step
            .get_ref()
            .timeout_ms
            .unwrap_or(sluice_engine::StepLimits::default().timeout.as_millis() as u64);
        if let Some(t) = http.timeout_ms {
            if t == 0 || t > MAX_TIMEOUT_MS {
                return err(format!(
                    "step.http.timeout_ms = {t}: must be 1..={MAX_TIMEOUT_MS}"
                ));
            }
            if t > deadline && step.get_ref().timeout_ms.is_some() {
                return err(format!(
                    "step.http.timeout_ms = {t} is longer than the step's deadline (timeout_ms = {deadline}), which ends the call first: raise the step's timeout_ms or lower http.timeout_ms"
                ));
            }
        }
        if let Some(kb) = http.max_response_kb {
            if kb == 0 || kb > MAX_RESPONSE_KB {
                return err(format!(
                    "step.http.max_response_kb = {kb}: must be 1..={MAX_RESPONSE_KB}"
                ));
            }
        }
        Ok(())
    }

    /// Timeout, memory and warm-instance settings in range.
    fn check_step_limits(&self, step: &Spanned<StepSection>) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, message: String| Err(self.error_at(span, message));
        let s = step.get_ref();
        if let Some(t) = s.timeout_ms {
            if t == 0 || t > MAX_TIMEOUT_MS {
                return err(
                    step.span(),
                    format!("step.timeout_ms = {t}: must be 1..={MAX_TIMEOUT_MS}"),
                );
            }
        }
        if let (Some(_), Instances::Fresh) = (&s.warm, s.instances) {
            return err(
                step.span(),
                "step.warm applies to warm instances only: add `instances = \"warm\"` or remove it"
                    .into(),
            );
        }
        if let Some(w) = &s.warm {
            if w.max_messages == Some(0) || w.max_age_s == Some(0) {
                return err(
                    step.span(),
                    "step.warm: max_messages and max_age_s must be at least 1".into(),
                );
            }
        }
        if let Some(m) = s.memory_mb {
            if m == 0 || m > MAX_MEMORY_MB {
                return err(
                    step.span(),
                    format!("step.memory_mb = {m}: must be 1..={MAX_MEMORY_MB}"),
                );
            }
        }
        Ok(())
    }

    /// A well-formed sha256, required for a remote plugin; a supported plugin location.
    fn check_step_source(&self, s: &StepSection) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, message: String| Err(self.error_at(span, message));
        if let Some(sha) = &s.sha256 {
            let v = sha.get_ref();
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return err(
                    sha.span(),
                    format!("step.sha256 {v:?} is not 64 hex digits"),
                );
            }
        }
        match self.plugin_location(s.plugin.get_ref()) {
            PluginLocation::Remote(url) if s.sha256.is_none() => {
                return err(
                    s.plugin.span(),
                    format!(
                        "step.plugin {url:?} is remote: add `sha256 = \"...\"` (the line `sluice plugin push` prints) so only those exact bytes are ever run"
                    ),
                )
            }
            PluginLocation::Unsupported(scheme) => {
                return err(
                    s.plugin.span(),
                    format!(
                        "step.plugin {:?}: {scheme}:// is not supported; use a local path or s3://bucket/key",
                        s.plugin.get_ref()
                    ),
                )
            }
            _ => {}
        }
        Ok(())
    }

    /// Where a step's plugin comes from: `s3://` URLs, and relative paths in a config that
    /// was itself read from S3, are remote; everything else is a local file.
    pub fn plugin_location(&self, plugin: &str) -> PluginLocation {
        if let Some((scheme, _)) = plugin.split_once("://") {
            return if scheme == "s3" {
                PluginLocation::Remote(plugin.to_string())
            } else {
                PluginLocation::Unsupported(scheme.to_string())
            };
        }
        match &self.source.remote_base {
            Some(base) => {
                let dir = match base.rfind('/') {
                    Some(i) if i >= "s3://".len() => &base[..=i],
                    _ => base.as_str(),
                };
                PluginLocation::Remote(format!("{dir}{}", plugin.trim_start_matches('/')))
            }
            None => PluginLocation::Local(self.resolve(plugin)),
        }
    }

    /// Parses config text read from `url` (e.g. `s3://bucket/key.toml`); relative plugin
    /// paths in it resolve against the URL's directory.
    pub fn parse_remote(url: &str, text: String) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse_with(url, PathBuf::from("."), text, Some(url))
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.source.base_dir.join(p)
        }
    }

    /// The line a span starts on.
    pub fn line_of(&self, span: Range<usize>) -> usize {
        self.source.line_of(span.start)
    }
}

impl StepSection {
    /// The step's limits, with defaults filled in.
    pub fn limits(&self) -> sluice_engine::StepLimits {
        self.limits_for(sluice_engine::RuleRuntime::Native)
    }

    /// The step's limits, with the defaults for a rule of `runtime` where the step sets none
    /// (JavaScript and Python rules get more time and memory, see `StepLimits::defaults_for`).
    pub fn limits_for(&self, runtime: sluice_engine::RuleRuntime) -> sluice_engine::StepLimits {
        let d = sluice_engine::StepLimits::defaults_for(runtime);
        sluice_engine::StepLimits {
            timeout: self
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.timeout),
            memory_bytes: self
                .memory_mb
                .map(|m| (m as usize) << 20)
                .unwrap_or(d.memory_bytes),
            max_actions: self.max_actions.unwrap_or(d.max_actions),
        }
    }

    /// The warm-instance settings, when the step uses warm instances.
    pub fn warm_settings(&self) -> Option<sluice_engine::WarmSettings> {
        if self.instances == Instances::Fresh {
            return None;
        }
        let d = sluice_engine::WarmSettings::default();
        let w = self.warm.unwrap_or(WarmSection {
            max_messages: None,
            max_age_s: None,
            max_idle: None,
        });
        Some(sluice_engine::WarmSettings {
            max_messages: w.max_messages.unwrap_or(d.max_messages),
            max_age: w.max_age_s.map(Duration::from_secs).unwrap_or(d.max_age),
            max_idle: w.max_idle.unwrap_or(d.max_idle),
        })
    }

    /// What the step may use besides the message: its tables and its HTTP grant. Call after
    /// [`ConfigFile::parse`], which checked the `http` entries.
    pub fn grants(&self, limits: &sluice_engine::StepLimits) -> sluice_engine::StepGrants {
        let mut grants = sluice_engine::StepGrants::lookups(self.lookups.iter().cloned());
        if let Some(reply) = &self.reply {
            grants = grants.with_reply(sluice_engine::ReplyGrant {
                once_per_days: reply.once_per_days,
            });
        }
        match &self.http {
            None => grants,
            Some(http) => grants.with_http(sluice_engine::HttpGrant {
                allow: http
                    .allow
                    .iter()
                    .filter_map(|a| sluice_engine::AllowedUrl::parse(a).ok())
                    .collect(),
                timeout: http
                    .timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(limits.timeout)
                    .min(limits.timeout),
                max_response_bytes: http
                    .max_response_kb
                    .map(|kb| (kb as usize) << 10)
                    .unwrap_or(sluice_engine::DEFAULT_MAX_RESPONSE_BYTES),
            }),
        }
    }

    /// The rule's config as JSON (`{}` when absent).
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".into()),
            None => "{}".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse("test.toml", PathBuf::from("."), text.to_string())
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"a.wasm\"\ntimeout = 5\n")
            .unwrap_err();
        assert_eq!(err.file, "test.toml");
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("timeout"), "{err}");
    }

    #[test]
    fn a_milter_section_is_read_and_its_mistakes_named() {
        let config = parse("[milter]\nlisten = \"inet:127.0.0.1:8891\"\ndefault_action = \"accept\"\ngrace_s = 5\n").unwrap();
        let milter = config.milter.unwrap();
        assert_eq!(milter.listen.as_deref(), Some("inet:127.0.0.1:8891"));
        assert_eq!(milter.default_action, Some(MilterDefaultAction::Accept));
        assert_eq!((milter.grace_s, milter.max_connections), (Some(5), None));
        let err = parse("[milter]\n\ndefault_action = \"bounce\"\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = parse("[milter]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(err.message.contains("listen_on"), "{err}");
    }

    #[test]
    fn milter_verdict_sources_and_scanners_are_read() {
        let config = parse(
            "[milter]\nverdicts = \"compute\"\ndns = \"127.0.0.1:5353\"\n\
             [[milter.scanner]]\nname = \"clamav\"\nverdict = \"virus\"\n\
             header = \"X-Virus-Status\"\nfail = [\"Infected\"]\n",
        )
        .unwrap();
        let milter = config.milter.unwrap();
        assert_eq!(milter.verdicts, Some(MilterVerdicts::Compute));
        assert_eq!(milter.dns.as_deref(), Some("127.0.0.1:5353"));
        assert_eq!(milter.scanner[0].verdict, ScannerKind::Virus);
        assert!(milter.scanner[0].pass.is_empty());
        let err = parse("[milter]\nverdicts = \"ses\"\n").unwrap_err();
        assert!(err.message.contains("compute"), "{err}");
        let err = parse("[[milter.scanner]]\nname = \"x\"\nverdict = \"spam\"\n").unwrap_err();
        assert!(err.message.contains("header"), "{err}");
    }

    #[test]
    fn bad_pooling_names_its_line() {
        // Found by the `config` fuzz target: this error used to say line 0.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/config/engine-pooling-line-0.toml"
        ))
        .unwrap();
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("\"auto\" or \"off\""), "{err}");
    }

    #[test]
    fn bad_on_error_is_refused() {
        let err = parse("[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"a.wasm\"\non_error = \"retry\"\n")
            .unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("continue"), "{err}");
    }

    #[test]
    fn outbound_chains_are_read_and_checked_like_domains() {
        let c = parse(
            "[[domain]]\nname = \"example.com\"\n[[outbound]]\nname = \"example.com\"\n[[outbound.step]]\nplugin = \"banner.wasm\"\nconfig = { text = \"hi\" }\n",
        )
        .unwrap();
        assert_eq!(c.outbound.len(), 1);
        assert_eq!(c.outbound[0].get_ref().step.len(), 1);
        // The same name in both tables is fine; twice in one is not, and names its line.
        let err = parse("[[outbound]]\nname = \"a.example\"\n[[outbound]]\nname = \"A.example\"\n")
            .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.message
                .contains("outbound chain \"A.example\" is configured twice"),
            "{err}"
        );
        let err = parse("[[outbound]]\nname = \"nodot\"\n").unwrap_err();
        assert!(err.message.starts_with("outbound.name \"nodot\""), "{err}");
        // Steps are checked as in [[domain.step]]: an unknown key names its line.
        let err = parse(
            "[[outbound]]\nname = \"*\"\n[[outbound.step]]\nplugin = \"a.wasm\"\ntimeout = 5\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 5, "{err}");
    }

    #[test]
    fn duplicate_domain_is_refused() {
        let err = parse("[[domain]]\nname = \"example.com\"\n[[domain]]\nname = \"EXAMPLE.com\"\n")
            .unwrap_err();
        assert_eq!(err.line, 4);
    }

    #[test]
    fn http_grants_are_checked_at_their_step() {
        let with = |http: &str, timeout: &str| {
            parse(&format!(
                "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"a.wasm\"\n{timeout}http = {http}\n"
            ))
        };
        for (http, timeout, expect) in [
            ("{ allow = [] }", "", "step.http.allow is empty"),
            ("{ allow = [\"ftp://x/\"] }", "", "is not http or https"),
            (
                "{ allow = [\"https://h/?a=1\"] }",
                "",
                "no query or fragment",
            ),
            (
                "{ allow = [\"https://h/\"], timeout_ms = 0 }",
                "",
                "must be 1..=",
            ),
            (
                "{ allow = [\"https://h/\"], timeout_ms = 500 }",
                "timeout_ms = 100\n",
                "longer than the step's deadline",
            ),
            (
                "{ allow = [\"https://h/\"], max_response_kb = 0 }",
                "",
                "max_response_kb = 0",
            ),
            (
                "{ allow = [\"https://h/\"], follow = true }",
                "",
                "unknown field",
            ),
        ] {
            let err = with(http, timeout).unwrap_err();
            assert!(err.message.contains(expect), "{http}: {err}");
            assert!(err.line >= 3, "{http}: {err}");
        }
        let config = with(
            "{ allow = [\"https://h:8443/v1/\"], max_response_kb = 4 }",
            "timeout_ms = 300\n",
        )
        .unwrap();
        let step = config.domains[0].get_ref().step[0].get_ref();
        let grants = step.grants(&step.limits());
        let http = grants.http.expect("granted");
        assert_eq!(http.allow[0].text, "https://h:8443/v1/");
        assert_eq!(
            http.timeout,
            Duration::from_millis(300),
            "defaults to the deadline"
        );
        assert_eq!(http.max_response_bytes, 4096);
        let plain =
            parse("[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"a.wasm\"\n")
                .unwrap();
        let step = plain.domains[0].get_ref().step[0].get_ref();
        assert!(
            step.grants(&step.limits()).http.is_none(),
            "nothing by default"
        );
    }

    #[test]
    fn warm_settings_need_warm_instances() {
        let step = "[[domain]]\nname = \"*\"\n[[domain.step]]\nplugin = \"a.wasm\"\n";
        let c = parse(step).unwrap();
        assert_eq!(
            c.domains[0].get_ref().step[0].get_ref().warm_settings(),
            None
        );
        let err = parse(&format!("{step}warm = {{ max_messages = 5 }}\n")).unwrap_err();
        assert!(err.message.contains("instances = \"warm\""), "{err}");
        let err = parse(&format!(
            "{step}instances = \"warm\"\nwarm = {{ max_age_s = 0 }}\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("at least 1"), "{err}");
        let err = parse(&format!("{step}instances = \"hot\"\n")).unwrap_err();
        assert!(err.message.contains("fresh"), "{err}");
        let c = parse(&format!(
            "{step}instances = \"warm\"\nwarm = {{ max_messages = 5, max_idle = 2 }}\n"
        ))
        .unwrap();
        let w = c.domains[0].get_ref().step[0]
            .get_ref()
            .warm_settings()
            .unwrap();
        assert_eq!((w.max_messages, w.max_idle), (5, 2));
        assert_eq!(w.max_age, sluice_engine::WarmSettings::default().max_age);
    }

    #[test]
    fn config_table_becomes_json() {
        let c = parse("[[domain]]\nname = \"*\"\n[[domain.step]]\nplugin = \"a.wasm\"\nconfig = { text = \"hi\", n = 3 }\n")
            .unwrap();
        let step = c.domains[0].get_ref().step[0].get_ref();
        let v: serde_json::Value = serde_json::from_str(&step.config_json()).unwrap();
        assert_eq!(v["text"], "hi");
        assert_eq!(v["n"], 3);
        assert_eq!(step.limits(), sluice_engine::StepLimits::default());
    }

    #[test]
    fn remote_plugins_need_a_sha256() {
        let err = parse(
            "[[domain]]\nname = \"a.example\"\n[[domain.step]]\nplugin = \"s3://b/k.wasm\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.message.contains("sha256"), "{err}");
        let err = parse(
            "[[domain]]\nname = \"a.example\"\n[[domain.step]]\nplugin = \"https://x/k.wasm\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("https:// is not supported"), "{err}");
        let sha = "a".repeat(64);
        let remote = ConfigFile::parse_remote(
            "s3://rules/prod/sluice.toml",
            format!("[[domain]]\nname = \"a.example\"\n[[domain.step]]\nplugin = \"banner.wasm\"\nsha256 = \"{sha}\"\n"),
        )
        .unwrap();
        assert_eq!(
            remote.plugin_location("banner.wasm"),
            PluginLocation::Remote("s3://rules/prod/banner.wasm".into())
        );
    }

    #[test]
    fn limits_are_bounded() {
        let err = parse("[[domain]]\nname = \"a.example\"\n[[domain.step]]\nplugin = \"a.wasm\"\nmemory_mb = 100000\n")
            .unwrap_err();
        assert!(err.message.contains("memory_mb"), "{err}");
    }
}
