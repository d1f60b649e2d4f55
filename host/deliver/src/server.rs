//! What every LMTP or SMTP server section shares (`[store]` lmtp and smtp, `[relay]` smtp):
//! where it listens, TLS, timeouts, the pool size and `AUTH` credentials. The keys are read
//! here once for all three ([`take_server`]), so a section module declares only its own.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{read_section, take_keys, Checked};

/// Default for `timeout_ms` of LMTP and SMTP servers: each command's answer, and the whole
/// DATA transfer, must come within it.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `max_connections`: connections kept open to one LMTP or SMTP server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

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

/// The server keys as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerKeys {
    /// `none`, `starttls` or `implicit`.
    tls: Option<String>,
    /// Check the server's certificate (default true; turning it off is logged).
    tls_verify: Option<bool>,
    /// PEM file of the CA(s) to check the certificate against (a private CA).
    tls_ca_file: Option<String>,
    /// The LHLO/EHLO name (default: this host's name).
    hello_name: Option<String>,
    /// Answer timeout in milliseconds (default 30000).
    timeout_ms: Option<u64>,
    /// Connections kept open, and the most used at once (default 4).
    max_connections: Option<usize>,
    /// `AUTH` credentials from `NAME_USER` / `NAME_PASSWORD`.
    auth_env: Option<String>,
    /// `AUTH` credentials from a file (`user:password` on its first line).
    auth_file: Option<String>,
}

/// Keys every server takes (taken out of the section before its kind reads the rest; public
/// for the test that every key the parser accepts is documented).
pub const SERVER_KEYS: [&str; 6] = [
    "tls",
    "tls_verify",
    "tls_ca_file",
    "hello_name",
    "timeout_ms",
    "max_connections",
];

/// Keys of servers that may ask for `AUTH` (SMTP; an LMTP server trusts its clients).
pub const AUTH_KEYS: [&str; 2] = ["auth_env", "auth_file"];

/// What a section's server may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerRules {
    /// TLS when `tls` is not given.
    pub default_tls: TlsMode,
    /// Whether `auth_env`/`auth_file` apply (left in the table otherwise, for the section
    /// to refuse as unknown).
    pub auth: bool,
}

/// A server's settings before its address is known (the section reads that from its own
/// keys: `address` for LMTP, `host` and `port` for SMTP).
pub(crate) struct ServerSettings(ServerConfig);

impl ServerSettings {
    /// The server at `address`.
    pub(crate) fn at(self, address: ServerAddress) -> ServerConfig {
        ServerConfig { address, ..self.0 }
    }
}

/// Takes the server keys out of `table` and checks them; the section's own keys stay in
/// `table`.
pub(crate) fn take_server(
    section: &str,
    table: &mut toml::Table,
    rules: ServerRules,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Checked<ServerSettings> {
    let mut names: Vec<&str> = SERVER_KEYS.to_vec();
    if rules.auth {
        names.extend(AUTH_KEYS);
    }
    let keys: ServerKeys = read_section(section, take_keys(table, &names))?;
    let tls = match keys.tls.as_deref() {
        None => rules.default_tls,
        Some("none") => TlsMode::None,
        Some("starttls") => TlsMode::StartTls,
        Some("implicit") => TlsMode::Implicit,
        Some(other) => {
            return Err(format!(
                "{section}.tls {other:?}; expected \"none\", \"starttls\" or \"implicit\""
            ))
        }
    };
    server_config(section, tls, &keys, resolve).map(ServerSettings)
}

fn server_config(
    section: &str,
    tls: TlsMode,
    keys: &ServerKeys,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Checked<ServerConfig> {
    let (tls_verify, tls_ca_file, hello_name) =
        (keys.tls_verify, &keys.tls_ca_file, &keys.hello_name);
    let (timeout_ms, max_connections) = (keys.timeout_ms, keys.max_connections);
    let auth = (&keys.auth_env, &keys.auth_file);
    let timeout = match timeout_ms {
        None => DEFAULT_SERVER_TIMEOUT,
        Some(0) => return Err(format!("{section}.timeout_ms must be at least 1")),
        Some(ms) => Duration::from_millis(ms),
    };
    let max_connections = match max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(0) => return Err(format!("{section}.max_connections must be at least 1")),
        Some(n) => n,
    };
    if let Some(h) = hello_name.as_deref().filter(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
    }) {
        return Err(format!("{section}.hello_name {h:?} is not a host name"));
    }
    let credentials = match auth {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{section}: set `auth_env` or `auth_file`, not both"
            ))
        }
        (Some(env), None) if env.is_empty() || env.contains('=') => {
            return Err(format!(
                "{section}.auth_env {env:?} is not an environment variable prefix"
            ))
        }
        (Some(env), None) => Some(Credentials::Env(env.clone())),
        (None, Some(file)) => Some(Credentials::File(resolve(file))),
        (None, None) => None,
    };
    if credentials.is_some() && tls == TlsMode::None {
        return Err(format!("{section}: credentials need tls = \"starttls\" or \"implicit\" (a password is never sent in plain text)"));
    }
    let tls_verify = tls_verify.unwrap_or(true);
    if tls_ca_file.is_some() && (!tls_verify || tls == TlsMode::None) {
        return Err(format!("{section}.tls_ca_file is for checking a TLS certificate: it needs tls = \"starttls\" or \"implicit\" and tls_verify on"));
    }
    if !tls_verify {
        tracing::warn!("{section}.tls_verify = false: the server's certificate is not checked");
    }
    Ok(ServerConfig {
        // Set by [`ServerSettings::at`].
        address: ServerAddress::Unix(PathBuf::new()),
        tls,
        tls_verify,
        tls_ca_file: tls_ca_file.as_deref().map(resolve),
        hello_name: hello_name.clone(),
        timeout,
        max_connections,
        credentials,
    })
}

/// `host` and `port` of an SMTP server (`default_port` when `port` is not given).
pub(crate) fn tcp_address(
    section: &str,
    host: &Option<String>,
    port: Option<u16>,
    default_port: u16,
) -> Checked<ServerAddress> {
    match host.as_deref() {
        Some(h) if !h.is_empty() && !h.contains([' ', '/']) => Ok(ServerAddress::Tcp {
            host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: port.unwrap_or(default_port),
        }),
        Some(h) => Err(format!("{section}.host {h:?} is not a host name or address")),
        None => Err(format!("{section}: kind = \"smtp\" needs `host = \"mail.example.com\"` (and optionally `port`, default {default_port})")),
    }
}
