//! `[store]` and `[relay]` as typed values: each `kind` is one enum variant with exactly the
//! settings it needs, checked once when the config is parsed. Nothing after parsing looks at
//! the `kind` text again, so adding a target is one variant here and one match arm (that the
//! compiler asks for) where delivery targets are built.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The most `X-Sluice-Loop` hops a relayed message may carry before it is not relayed again.
pub const DEFAULT_MAX_HOPS: usize = 3;

/// Default for `timeout_ms` of LMTP and SMTP servers: each command's answer, and the whole
/// DATA transfer, must come within it.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `max_connections`: connections kept open to one LMTP or SMTP server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// `[store]` as written: every key any kind takes; [`StoreSection::check`] turns it into a
/// [`StoreConfig`] and refuses keys the kind does not use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `s3`, `dir`, `lmtp` or `smtp`.
    pub kind: Spanned<String>,
    /// dir: the directory (relative to the config file).
    pub path: Option<String>,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// s3: the key prefix.
    pub prefix: Option<String>,
    /// lmtp: `host:port` or the path of a unix socket.
    pub address: Option<String>,
    /// smtp: the server's host name or address.
    pub host: Option<String>,
    /// smtp: the port (default 25).
    pub port: Option<u16>,
    /// lmtp, smtp: `none` (default for lmtp), `starttls` (default for smtp) or `implicit`.
    pub tls: Option<Spanned<String>>,
    /// lmtp, smtp: check the server's certificate (default true; turning it off is logged).
    pub tls_verify: Option<bool>,
    /// lmtp, smtp: PEM file of the CA(s) to check the certificate against, instead of the
    /// system's roots (a private CA).
    pub tls_ca_file: Option<String>,
    /// lmtp, smtp: the name Sluice greets with in LHLO/EHLO (default: this host's name).
    pub hello_name: Option<String>,
    /// lmtp, smtp: answer timeout in milliseconds (default 30000).
    pub timeout_ms: Option<u64>,
    /// lmtp, smtp: connections kept open to the server, and the most used at once (default 4).
    pub max_connections: Option<usize>,
    /// lmtp: `address` (default) or `local-part`: what the recipient's user name is.
    pub user: Option<Spanned<String>>,
    /// lmtp: the separator between user and folder (`alice+Junk@example.com`, default `+`).
    pub folder_delimiter: Option<String>,
    /// smtp: `AUTH` credentials from the environment: `NAME` reads `NAME_USER` and
    /// `NAME_PASSWORD`.
    pub auth_env: Option<String>,
    /// smtp: `AUTH` credentials from a file: its first line is `user:password`.
    pub auth_file: Option<String>,
    /// lmtp, smtp: where delivered recipients are recorded (`s3://bucket/prefix` or a
    /// directory), so a retry delivers only to the recipients not yet done. Default: the
    /// relay's markers.
    pub markers: Option<String>,
}

/// `[relay]` as written; [`RelaySection::check`] turns it into a [`RelayConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// `ses` (SES v2 `SendEmail` with raw content) or `smtp` (a smarthost).
    pub kind: Spanned<String>,
    /// The address relayed copies are sent `From:` (for SES, a verified identity).
    pub from: Option<String>,
    /// Domains the relay may send to; anything else is refused and logged (no open relay).
    /// An entry starting with `.` also allows its subdomains.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Sender of bounce DSNs (default `mailer-daemon@<domain of from>`).
    pub bounce_from: Option<String>,
    /// Loop guard: a message already relayed this many times (by any Sluice) is not relayed
    /// again (default 3).
    pub max_hops: Option<usize>,
    /// `s3://bucket/prefix` for the records of what was sent (idempotency markers), or a
    /// directory (safe only when one process consumes the queue: claims are files). Default:
    /// `<store prefix>/_sent/` in the `[store]` bucket when that is S3.
    pub markers: Option<String>,
    /// What a send claimed and never confirmed (a crash between the send and its record)
    /// becomes: `at-least-once` (the default: sent again, so a forward is never lost; the
    /// receiver may see a duplicate) or `at-most-once` (logged and counted, never resent).
    pub sends: Option<Spanned<String>>,
    /// smtp: the smarthost.
    pub host: Option<String>,
    /// smtp: its port (default 587).
    pub port: Option<u16>,
    /// smtp: `starttls` (default), `implicit` or `none`.
    pub tls: Option<Spanned<String>>,
    /// smtp: check the server's certificate (default true).
    pub tls_verify: Option<bool>,
    /// smtp: PEM file of the CA(s) to check the certificate against.
    pub tls_ca_file: Option<String>,
    /// smtp: the EHLO name (default: this host's name).
    pub hello_name: Option<String>,
    /// smtp: answer timeout in milliseconds (default 30000).
    pub timeout_ms: Option<u64>,
    /// smtp: connections kept open (default 4).
    pub max_connections: Option<usize>,
    /// smtp: `AUTH` credentials from `NAME_USER` / `NAME_PASSWORD`.
    pub auth_env: Option<String>,
    /// smtp: `AUTH` credentials from a file (`user:password` on its first line).
    pub auth_file: Option<String>,
}

/// Where local mailboxes go (`[store]`, checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Files under a directory: `<path>/<domain>/<local>/<folder>/<id>.eml`.
    Dir {
        /// The directory, as written (resolve it with [`crate::ConfigFile::resolve`]).
        path: String,
    },
    /// S3 objects: `s3://<bucket>/<prefix>/<domain>/<local>/<folder>/<id>.eml`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// LMTP (RFC 2033), e.g. into Dovecot.
    Lmtp(LmtpStoreConfig),
    /// SMTP to a self-hosted MTA, with the original envelope.
    Smtp(SmtpStoreConfig),
}

impl StoreConfig {
    /// The kind as written in the config (for messages).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Dir { .. } => "dir",
            StoreConfig::S3 { .. } => "s3",
            StoreConfig::Lmtp(_) => "lmtp",
            StoreConfig::Smtp(_) => "smtp",
        }
    }

    /// The `markers` setting of a store that needs one (LMTP, SMTP), to fill in a default.
    pub(crate) fn markers_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            StoreConfig::Dir { .. } | StoreConfig::S3 { .. } => None,
            StoreConfig::Lmtp(l) => Some(&mut l.markers),
            StoreConfig::Smtp(s) => Some(&mut s.markers),
        }
    }

    /// Where delivered recipients are recorded, for the stores that cannot overwrite an
    /// earlier copy (LMTP, SMTP); `None` for dir and S3, whose copies are idempotent.
    pub fn markers(&self) -> Option<&str> {
        match self {
            StoreConfig::Dir { .. } | StoreConfig::S3 { .. } => None,
            StoreConfig::Lmtp(l) => l.markers.as_deref(),
            StoreConfig::Smtp(s) => s.markers.as_deref(),
        }
    }
}

/// Where an LMTP or SMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// `host:port`.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket (e.g. `/var/run/dovecot/lmtp`).
    Unix(PathBuf),
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How a connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (loopback or a unix socket).
    None,
    /// Plain, then `STARTTLS`; a server that does not offer it is an error.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// Where `AUTH` credentials come from: never the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `NAME_USER` and `NAME_PASSWORD` in the environment.
    Env(String),
    /// A file whose first line is `user:password`.
    File(PathBuf),
}

/// What an LMTP or SMTP connection needs. [`ServerConfig::new`] gives the defaults a config
/// file gets for keys it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where it listens.
    pub address: ServerAddress,
    /// Encryption.
    pub tls: TlsMode,
    /// Check the certificate (on unless turned off explicitly).
    pub tls_verify: bool,
    /// Check it against these CAs (PEM) instead of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// The LHLO/EHLO name (`None`: this host's name).
    pub hello_name: Option<String>,
    /// Answer timeout.
    pub timeout: Duration,
    /// Connections kept open, and the most in use at once.
    pub max_connections: usize,
    /// `AUTH` credentials, if the server wants them.
    pub credentials: Option<Credentials>,
}

impl ServerConfig {
    /// A server at `address` with the config defaults: no TLS, certificates checked when TLS
    /// is turned on, this host's name in LHLO/EHLO, [`DEFAULT_SERVER_TIMEOUT`],
    /// [`DEFAULT_MAX_CONNECTIONS`], no AUTH.
    pub fn new(address: ServerAddress) -> ServerConfig {
        ServerConfig {
            address,
            tls: TlsMode::None,
            tls_verify: true,
            tls_ca_file: None,
            hello_name: None,
            timeout: DEFAULT_SERVER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            credentials: None,
        }
    }

    /// [`ServerConfig::new`] for `127.0.0.1:port`.
    pub fn loopback(port: u16) -> ServerConfig {
        ServerConfig::new(ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        })
    }
}

/// What the LMTP server knows a recipient as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmtpUser {
    /// `alice@example.com` (Dovecot's default).
    Address,
    /// `alice` (a userdb keyed by user names).
    LocalPart,
}

/// `[store] kind = "lmtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpStoreConfig {
    /// The server.
    pub server: ServerConfig,
    /// Full address or local part.
    pub user: LmtpUser,
    /// Folder separator in the recipient (`alice+Junk@…`); Dovecot files into the folder with
    /// `lmtp_save_to_detail_mailbox = yes`.
    pub folder_delimiter: String,
    /// Where delivered recipients are recorded (`s3://…` or a directory).
    pub markers: Option<String>,
}

/// `[store] kind = "smtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpStoreConfig {
    /// The MTA.
    pub server: ServerConfig,
    /// Where delivered recipients are recorded (`s3://…` or a directory).
    pub markers: Option<String>,
}

/// How relayed copies and bounces leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayTransport {
    /// SES v2 raw sends.
    Ses,
    /// A smarthost over SMTP.
    Smtp(ServerConfig),
}

/// `[relay]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// How copies leave.
    pub transport: RelayTransport,
    /// The address relayed copies are sent from.
    pub from: String,
    /// Domains a copy may go to (see [`RelaySection::allow_domains`]).
    pub allow_domains: Vec<String>,
    /// Sender of bounce DSNs.
    pub bounce_from: String,
    /// Loop guard.
    pub max_hops: usize,
    /// `s3://bucket/prefix` for send claims, if given (else the S3 store's `_sent/`).
    pub markers: Option<String>,
    /// `[relay] sends`: what an unconfirmed claim becomes.
    pub sends: SendGuarantee,
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

impl RelayConfig {
    /// The domain of `from`, lower case: the relay's own domain (DSN reporting MTA, loop
    /// header of the catch-all chain).
    pub fn domain(&self) -> String {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// A problem in `[store]` or `[relay]`, with the span to report it at.
pub(crate) type Checked<T> = Result<T, (Range<usize>, String)>;

/// `local@domain.tld` with nothing odd in it: what `from` and `bounce_from` must be.
fn is_address(a: &str) -> bool {
    a.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !a.contains([' ', '<', '>']))
}

/// The keys each section takes, to refuse one the chosen kind does not use (it would be
/// silently ignored otherwise).
struct Present<'a>(Vec<(&'static str, bool)>, &'a str, &'static str);

impl Present<'_> {
    fn refuse_all_but(&self, allowed: &[&str], span: &Range<usize>) -> Checked<()> {
        for (key, present) in &self.0 {
            if *present && !allowed.contains(key) {
                return Err((
                    span.clone(),
                    format!(
                        "{}: `{key}` does not apply to kind = {:?}; remove it (it takes: {})",
                        self.2,
                        self.1,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_tls(section: &str, tls: &Option<Spanned<String>>, default: TlsMode) -> Checked<TlsMode> {
    let Some(tls) = tls else { return Ok(default) };
    match tls.get_ref().as_str() {
        "none" => Ok(TlsMode::None),
        "starttls" => Ok(TlsMode::StartTls),
        "implicit" => Ok(TlsMode::Implicit),
        other => Err((
            tls.span(),
            format!("{section}.tls {other:?}; expected \"none\", \"starttls\" or \"implicit\""),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn server_config(
    section: &str,
    span: &Range<usize>,
    address: ServerAddress,
    tls: TlsMode,
    (tls_verify, tls_ca_file): (Option<bool>, &Option<String>),
    hello_name: &Option<String>,
    timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    auth: (&Option<String>, &Option<String>),
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Checked<ServerConfig> {
    let timeout = match timeout_ms {
        None => DEFAULT_SERVER_TIMEOUT,
        Some(0) => {
            return Err((
                span.clone(),
                format!("{section}.timeout_ms must be at least 1"),
            ))
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let max_connections = match max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(0) => {
            return Err((
                span.clone(),
                format!("{section}.max_connections must be at least 1"),
            ))
        }
        Some(n) => n,
    };
    if let Some(h) = hello_name.as_deref().filter(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
    }) {
        return Err((
            span.clone(),
            format!("{section}.hello_name {h:?} is not a host name"),
        ));
    }
    let credentials = match auth {
        (Some(_), Some(_)) => {
            return Err((
                span.clone(),
                format!("{section}: set `auth_env` or `auth_file`, not both"),
            ))
        }
        (Some(env), None) if env.is_empty() || env.contains('=') => {
            return Err((
                span.clone(),
                format!("{section}.auth_env {env:?} is not an environment variable prefix"),
            ))
        }
        (Some(env), None) => Some(Credentials::Env(env.clone())),
        (None, Some(file)) => Some(Credentials::File(resolve(file))),
        (None, None) => None,
    };
    if credentials.is_some() && tls == TlsMode::None {
        return Err((
            span.clone(),
            format!("{section}: credentials need tls = \"starttls\" or \"implicit\" (a password is never sent in plain text)"),
        ));
    }
    let tls_verify = tls_verify.unwrap_or(true);
    if tls_ca_file.is_some() && (!tls_verify || tls == TlsMode::None) {
        return Err((
            span.clone(),
            format!("{section}.tls_ca_file is for checking a TLS certificate: it needs tls = \"starttls\" or \"implicit\" and tls_verify on"),
        ));
    }
    if !tls_verify {
        tracing::warn!("{section}.tls_verify = false: the server's certificate is not checked");
    }
    Ok(ServerConfig {
        address,
        tls,
        tls_verify,
        tls_ca_file: tls_ca_file.as_deref().map(resolve),
        hello_name: hello_name.clone(),
        timeout,
        max_connections,
        credentials,
    })
}

fn tcp_address(
    section: &str,
    span: &Range<usize>,
    host: &Option<String>,
    port: Option<u16>,
    default_port: u16,
) -> Checked<ServerAddress> {
    match host.as_deref() {
        Some(h) if !h.is_empty() && !h.contains([' ', '/']) => Ok(ServerAddress::Tcp {
            host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: port.unwrap_or(default_port),
        }),
        Some(h) => Err((span.clone(), format!("{section}.host {h:?} is not a host name or address"))),
        None => Err((span.clone(), format!("{section}: kind = \"smtp\" needs `host = \"mail.example.com\"` (and optionally `port`, default {default_port})"))),
    }
}

fn check_markers(section: &str, span: &Range<usize>, markers: &Option<String>) -> Checked<()> {
    match markers.as_deref() {
        Some("") => Err((
            span.clone(),
            format!("{section}.markers is empty; give s3://bucket/prefix or a directory"),
        )),
        _ => Ok(()),
    }
}

impl StoreSection {
    /// The typed store, or what is wrong and where. `resolve` makes a path relative to the
    /// config file absolute.
    pub(crate) fn check(&self, resolve: &dyn Fn(&str) -> PathBuf) -> Checked<StoreConfig> {
        let span = self.kind.span();
        let kind = self.kind.get_ref().as_str();
        let present = Present(
            vec![
                ("path", self.path.is_some()),
                ("bucket", self.bucket.is_some()),
                ("prefix", self.prefix.is_some()),
                ("address", self.address.is_some()),
                ("host", self.host.is_some()),
                ("port", self.port.is_some()),
                ("tls", self.tls.is_some()),
                ("tls_verify", self.tls_verify.is_some()),
                ("tls_ca_file", self.tls_ca_file.is_some()),
                ("hello_name", self.hello_name.is_some()),
                ("timeout_ms", self.timeout_ms.is_some()),
                ("max_connections", self.max_connections.is_some()),
                ("user", self.user.is_some()),
                ("folder_delimiter", self.folder_delimiter.is_some()),
                ("auth_env", self.auth_env.is_some()),
                ("auth_file", self.auth_file.is_some()),
                ("markers", self.markers.is_some()),
            ],
            kind,
            "store",
        );
        const SERVER: [&str; 7] = [
            "tls",
            "tls_verify",
            "tls_ca_file",
            "hello_name",
            "timeout_ms",
            "max_connections",
            "markers",
        ];
        match kind {
            "dir" => {
                present.refuse_all_but(&["path"], &span)?;
                match &self.path {
                    Some(path) if !path.is_empty() => Ok(StoreConfig::Dir { path: path.clone() }),
                    _ => Err((span, "store: kind = \"dir\" needs `path = \"DIR\"`".into())),
                }
            }
            "s3" => {
                present.refuse_all_but(&["bucket", "prefix"], &span)?;
                match &self.bucket {
                    Some(bucket) if !bucket.is_empty() => Ok(StoreConfig::S3 {
                        bucket: bucket.clone(),
                        prefix: self.prefix.as_deref().unwrap_or("").trim_matches('/').to_string(),
                    }),
                    _ => Err((
                        span,
                        "store: kind = \"s3\" needs `bucket = \"BUCKET\"` (and optionally `prefix`)".into(),
                    )),
                }
            }
            "lmtp" => {
                let mut allowed = vec!["address", "user", "folder_delimiter"];
                allowed.extend(SERVER);
                present.refuse_all_but(&allowed, &span)?;
                let address = match self.address.as_deref() {
                    None | Some("") => {
                        return Err((
                            span,
                            "store: kind = \"lmtp\" needs `address = \"127.0.0.1:24\"` or a unix socket path such as \"/var/run/dovecot/lmtp\"".into(),
                        ))
                    }
                    Some(a) => parse_lmtp_address(a).map_err(|m| (span.clone(), m))?,
                };
                let tls = parse_tls("store", &self.tls, TlsMode::None)?;
                let server = server_config(
                    "store",
                    &span,
                    address,
                    tls,
                    (self.tls_verify, &self.tls_ca_file),
                    &self.hello_name,
                    self.timeout_ms,
                    self.max_connections,
                    (&None, &None),
                    resolve,
                )?;
                let user = match self.user.as_ref().map(|u| (u.get_ref().as_str(), u.span())) {
                    None | Some(("address", _)) => LmtpUser::Address,
                    Some(("local-part", _)) => LmtpUser::LocalPart,
                    Some((other, at)) => {
                        return Err((
                            at,
                            format!("store.user {other:?}; expected \"address\" (alice@example.com) or \"local-part\" (alice)"),
                        ))
                    }
                };
                let folder_delimiter = self.folder_delimiter.clone().unwrap_or_else(|| "+".into());
                if folder_delimiter.len() != 1
                    || !folder_delimiter.bytes().all(|b| b"+-_.=#".contains(&b))
                {
                    return Err((
                        span,
                        format!("store.folder_delimiter {folder_delimiter:?}: one of + - _ . = # (Dovecot's recipient_delimiter)"),
                    ));
                }
                check_markers("store", &span, &self.markers)?;
                Ok(StoreConfig::Lmtp(LmtpStoreConfig {
                    server,
                    user,
                    folder_delimiter,
                    markers: self.markers.clone(),
                }))
            }
            "smtp" => {
                let mut allowed = vec!["host", "port", "auth_env", "auth_file"];
                allowed.extend(SERVER);
                present.refuse_all_but(&allowed, &span)?;
                let address = tcp_address("store", &span, &self.host, self.port, 25)?;
                let tls = parse_tls("store", &self.tls, TlsMode::StartTls)?;
                let server = server_config(
                    "store",
                    &span,
                    address,
                    tls,
                    (self.tls_verify, &self.tls_ca_file),
                    &self.hello_name,
                    self.timeout_ms,
                    self.max_connections,
                    (&self.auth_env, &self.auth_file),
                    resolve,
                )?;
                check_markers("store", &span, &self.markers)?;
                Ok(StoreConfig::Smtp(SmtpStoreConfig {
                    server,
                    markers: self.markers.clone(),
                }))
            }
            other => Err((
                span,
                format!(
                    "store: unknown kind {other:?}; expected \"s3\", \"dir\", \"lmtp\" or \"smtp\""
                ),
            )),
        }
    }
}

/// `host:port`, `[v6]:port` or an absolute unix socket path.
fn parse_lmtp_address(a: &str) -> Result<ServerAddress, String> {
    if a.starts_with('/') {
        return Ok(ServerAddress::Unix(PathBuf::from(a)));
    }
    let bad = || {
        format!("store.address {a:?}: expected host:port (e.g. \"127.0.0.1:24\") or an absolute unix socket path")
    };
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(ServerAddress::Tcp {
        host: host.to_string(),
        port,
    })
}

impl RelaySection {
    /// The typed relay, or what is wrong and where. (Where its sends are claimed when
    /// `markers` is not set is the pipeline's question: see `ConfigFile::missing_markers`.)
    pub(crate) fn check(&self, resolve: &dyn Fn(&str) -> PathBuf) -> Checked<RelayConfig> {
        let span = self.kind.span();
        let kind = self.kind.get_ref().as_str();
        let present = Present(
            vec![
                ("host", self.host.is_some()),
                ("port", self.port.is_some()),
                ("tls", self.tls.is_some()),
                ("tls_verify", self.tls_verify.is_some()),
                ("tls_ca_file", self.tls_ca_file.is_some()),
                ("hello_name", self.hello_name.is_some()),
                ("timeout_ms", self.timeout_ms.is_some()),
                ("max_connections", self.max_connections.is_some()),
                ("auth_env", self.auth_env.is_some()),
                ("auth_file", self.auth_file.is_some()),
            ],
            kind,
            "relay",
        );
        let transport = match kind {
            "ses" => {
                present.refuse_all_but(&[], &span)?;
                RelayTransport::Ses
            }
            "smtp" => {
                let address = tcp_address("relay", &span, &self.host, self.port, 587)?;
                let tls = parse_tls("relay", &self.tls, TlsMode::StartTls)?;
                RelayTransport::Smtp(server_config(
                    "relay",
                    &span,
                    address,
                    tls,
                    (self.tls_verify, &self.tls_ca_file),
                    &self.hello_name,
                    self.timeout_ms,
                    self.max_connections,
                    (&self.auth_env, &self.auth_file),
                    resolve,
                )?)
            }
            other => {
                return Err((
                    span,
                    format!("relay: unknown kind {other:?}; expected \"ses\" or \"smtp\""),
                ))
            }
        };
        let from = match self.from.as_deref() {
            Some(from) if is_address(from) => from.to_string(),
            Some(from) => {
                return Err((
                    span,
                    format!("relay.from {from:?} is not an address (e.g. \"forwarder@example.com\")"),
                ))
            }
            None => {
                return Err((
                    span,
                    "relay: `from` is required: the address relayed mail is sent from (for SES, a verified identity)".into(),
                ))
            }
        };
        if let Some(b) = self.bounce_from.as_deref().filter(|b| !is_address(b)) {
            return Err((span, format!("relay.bounce_from {b:?} is not an address")));
        }
        if self.max_hops == Some(0) {
            return Err((span, "relay.max_hops must be at least 1".into()));
        }
        check_markers("relay", &span, &self.markers)?;
        let sends = match self.sends.as_ref() {
            None => SendGuarantee::default(),
            Some(s) => match s.get_ref().as_str() {
                "at-least-once" => SendGuarantee::AtLeastOnce,
                "at-most-once" => SendGuarantee::AtMostOnce,
                other => {
                    return Err((
                        s.span(),
                        format!("relay.sends = {other:?}: use \"at-least-once\" (the default: a send cut off by a crash is sent again) or \"at-most-once\" (it is logged and never resent)"),
                    ))
                }
            },
        };
        if self.allow_domains.is_empty() {
            tracing::warn!("relay.allow_domains is empty: every relayed recipient will be refused");
        }
        let domain = from
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        Ok(RelayConfig {
            transport,
            bounce_from: self
                .bounce_from
                .clone()
                .unwrap_or_else(|| format!("mailer-daemon@{domain}")),
            from,
            allow_domains: self.allow_domains.clone(),
            max_hops: self.max_hops.unwrap_or(DEFAULT_MAX_HOPS),
            markers: self.markers.clone(),
            sends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(toml_text: &str) -> Checked<StoreConfig> {
        let section: StoreSection = toml::from_str(toml_text).unwrap();
        section.check(&|p| PathBuf::from("/etc/sluice").join(p))
    }

    fn relay(toml_text: &str) -> Checked<RelayConfig> {
        let section: RelaySection = toml::from_str(toml_text).unwrap();
        section.check(&|p| PathBuf::from("/etc/sluice").join(p))
    }

    fn message<T: std::fmt::Debug>(r: Checked<T>) -> String {
        r.unwrap_err().1
    }

    #[test]
    fn lmtp_defaults_and_addresses() {
        let StoreConfig::Lmtp(l) = store("kind = \"lmtp\"\naddress = \"127.0.0.1:24\"").unwrap()
        else {
            panic!("not lmtp")
        };
        assert_eq!(
            l.server.address,
            ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 24
            }
        );
        assert_eq!(l.server.tls, TlsMode::None);
        assert!(l.server.tls_verify);
        assert_eq!(l.server.timeout, DEFAULT_SERVER_TIMEOUT);
        assert_eq!(l.user, LmtpUser::Address);
        assert_eq!(l.folder_delimiter, "+");
        let StoreConfig::Lmtp(l) =
            store("kind = \"lmtp\"\naddress = \"/run/dovecot/lmtp\"\nuser = \"local-part\"")
                .unwrap()
        else {
            panic!("not lmtp")
        };
        assert_eq!(
            l.server.address,
            ServerAddress::Unix("/run/dovecot/lmtp".into())
        );
        assert_eq!(l.user, LmtpUser::LocalPart);
        for bad in ["127.0.0.1", "127.0.0.1:x", ":24", "relative/socket"] {
            let m = message(store(&format!("kind = \"lmtp\"\naddress = {bad:?}")));
            assert!(m.contains("expected host:port"), "{bad}: {m}");
        }
        assert!(message(store("kind = \"lmtp\"")).contains("needs `address"));
        assert!(
            message(store("kind = \"lmtp\"\naddress = \"h:24\"\nuser = \"uid\""))
                .contains("\"local-part\"")
        );
    }

    #[test]
    fn keys_of_another_kind_are_refused() {
        let m = message(store("kind = \"lmtp\"\naddress = \"h:24\"\nbucket = \"b\""));
        assert!(
            m.contains("`bucket` does not apply to kind = \"lmtp\""),
            "{m}"
        );
        let m = message(store("kind = \"s3\"\nbucket = \"b\"\npath = \"x\""));
        assert!(m.contains("`path` does not apply"), "{m}");
        let m = message(relay(
            "kind = \"ses\"\nfrom = \"f@example.com\"\nhost = \"h\"",
        ));
        assert!(m.contains("`host` does not apply to kind = \"ses\""), "{m}");
        let m = message(store("kind = \"maildir\""));
        assert!(m.contains("\"lmtp\" or \"smtp\""), "{m}");
    }

    #[test]
    fn smtp_needs_tls_for_credentials_and_reads_them_from_outside() {
        let StoreConfig::Smtp(s) = store("kind = \"smtp\"\nhost = \"mx.internal\"").unwrap() else {
            panic!("not smtp")
        };
        assert_eq!(
            s.server.address,
            ServerAddress::Tcp {
                host: "mx.internal".into(),
                port: 25
            }
        );
        assert_eq!(s.server.tls, TlsMode::StartTls);
        let m = message(store(
            "kind = \"smtp\"\nhost = \"h\"\ntls = \"none\"\nauth_env = \"SMTP\"",
        ));
        assert!(m.contains("never sent in plain text"), "{m}");
        let StoreConfig::Smtp(s) =
            store("kind = \"smtp\"\nhost = \"h\"\nauth_file = \"smtp.secret\"").unwrap()
        else {
            panic!("not smtp")
        };
        assert_eq!(
            s.server.credentials,
            Some(Credentials::File("/etc/sluice/smtp.secret".into()))
        );
        let m = message(store("kind = \"smtp\"\nhost = \"h\"\ntls = \"ssl\""));
        assert!(
            m.contains("expected \"none\", \"starttls\" or \"implicit\""),
            "{m}"
        );
    }

    #[test]
    fn smtp_relay() {
        let r = relay(
            "kind = \"smtp\"\nhost = \"smtp.example.net\"\nfrom = \"fwd@example.com\"\nmarkers = \"s3://b/m\"\nauth_env = \"RELAY\"",
        )
        .unwrap();
        let RelayTransport::Smtp(server) = &r.transport else {
            panic!("not smtp")
        };
        assert_eq!(
            server.address,
            ServerAddress::Tcp {
                host: "smtp.example.net".into(),
                port: 587
            }
        );
        assert_eq!(server.credentials, Some(Credentials::Env("RELAY".into())));
        assert_eq!(r.bounce_from, "mailer-daemon@example.com");
        assert_eq!(r.max_hops, DEFAULT_MAX_HOPS);
        assert!(message(relay("kind = \"smtp\"\nfrom = \"f@example.com\"")).contains("needs `host"));
    }
}
