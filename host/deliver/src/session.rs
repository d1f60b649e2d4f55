//! One SMTP or LMTP connection, and a small pool of them.
//!
//! mail-send (Stalwart's client) parses replies and capabilities, negotiates TLS and AUTH;
//! the transaction itself is driven here because its `send` cannot report per-recipient
//! results (RCPT refusals, and LMTP's one reply per recipient after DATA, RFC 2033 §4.2) and
//! appends a CRLF to a message that already ends with one.

use std::sync::Mutex;
use std::time::Duration;

use crate::server::{Credentials, ServerAddress, ServerConfig, TlsMode};
use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, Response, EXT_8BIT_MIME, EXT_SMTP_UTF8, EXT_START_TLS};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{MailboxError, Reply, SetupError};

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 2033: `LHLO`, and one reply per accepted recipient after DATA.
    Lmtp,
    /// RFC 5321: `EHLO`, one reply after DATA for every accepted recipient.
    Smtp,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Client = SmtpClient<Box<dyn Stream>>;

/// One open, greeted (and, as configured, encrypted and authenticated) connection.
pub(crate) struct Session {
    client: Client,
    capabilities: u32,
}

fn reply(r: Response<String>) -> Reply {
    let status = (r.esc[0] != 0).then(|| format!("{}.{}.{}", r.esc[0], r.esc[1], r.esc[2]));
    Reply {
        code: r.code,
        status,
        text: r.message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The transaction's outcome for one recipient: accepted (the server's 2xx) or refused.
pub(crate) type RecipientResult = Result<Reply, MailboxError>;

/// What one connection target needs, resolved once: the settings and the credentials.
pub(crate) struct Target {
    pub(crate) config: ServerConfig,
    pub(crate) protocol: Protocol,
    /// For logs and errors: `lmtp 127.0.0.1:24`.
    pub(crate) name: String,
    hello: String,
    credentials: Option<mail_send::Credentials<String>>,
    /// Built once: checks certificates against the system roots, a CA file, or (only when
    /// `tls_verify = false`) not at all.
    connector: Option<tokio_rustls::TlsConnector>,
}

/// Makes aws-lc-rs rustls's process-wide provider. mail-send (and the config below) build
/// with `ClientConfig::builder()`, which panics when both of rustls's providers are compiled
/// in and none is installed; ring is, for the rules' HTTP client (`sluice-http`, through
/// ureq, which names its provider itself), and so is aws-lc-rs, for the AWS SDK.
fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // An Err means another part of the process installed one first: that one serves.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The TLS client for `config`; `None` without TLS.
fn tls_connector(config: &ServerConfig) -> Result<Option<tokio_rustls::TlsConnector>, SetupError> {
    if config.tls == TlsMode::None {
        return Ok(None);
    }
    install_crypto_provider();
    let Some(path) = &config.tls_ca_file else {
        return mail_send::smtp::tls::build_tls_connector(!config.tls_verify)
            .map(Some)
            .map_err(SetupError::Tls);
    };
    use rustls_pki_types::pem::PemObject;
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| SetupError::CaFile {
        path: path.clone(),
        source: e,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(e.into()))? {
        roots
            .add(cert.map_err(|e| bad(e.into()))?)
            .map_err(|e| bad(e.into()))?;
    }
    if roots.is_empty() {
        return Err(SetupError::CaFileEmpty { path: path.clone() });
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    ))))
}

/// Reads `AUTH` credentials from where the config says: the environment or a file.
fn load_credentials(c: &Credentials) -> Result<mail_send::Credentials<String>, SetupError> {
    let (username, secret) = match c {
        Credentials::Env(prefix) => {
            let get = |suffix: &str| {
                let name = format!("{prefix}_{suffix}");
                std::env::var(&name).map_err(|source| SetupError::CredentialsEnv {
                    name: name.clone(),
                    prefix: prefix.clone(),
                    source,
                })
            };
            (get("USER")?, get("PASSWORD")?)
        }
        Credentials::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| SetupError::CredentialsRead {
                    path: path.clone(),
                    source,
                })?;
            let line = text.lines().next().unwrap_or("");
            let (u, p) = line
                .split_once(':')
                .ok_or_else(|| SetupError::CredentialsFormat { path: path.clone() })?;
            (u.to_string(), p.to_string())
        }
    };
    Ok(mail_send::Credentials::Plain { username, secret })
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        })
        .unwrap_or_else(|| "localhost".into())
}

impl Target {
    /// Resolves what a connection needs; an error says what to fix (unreadable credentials).
    pub(crate) fn new(config: &ServerConfig, protocol: Protocol) -> Result<Target, SetupError> {
        let credentials = config
            .credentials
            .as_ref()
            .map(load_credentials)
            .transpose()?;
        let kind = match protocol {
            Protocol::Lmtp => "lmtp",
            Protocol::Smtp => "smtp",
        };
        Ok(Target {
            connector: tls_connector(config)?,
            name: format!("{kind} {}", config.address),
            hello: config.hello_name.clone().unwrap_or_else(this_host),
            config: config.clone(),
            protocol,
            credentials,
        })
    }

    fn connection_error(&self, reason: impl std::fmt::Display) -> MailboxError {
        MailboxError::Connection {
            server: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn mail_send_error(&self, during: &'static str, e: mail_send::Error) -> MailboxError {
        match e {
            mail_send::Error::UnexpectedReply(r) => MailboxError::Protocol {
                server: self.name.clone(),
                during,
                reply: reply(r),
            },
            mail_send::Error::AuthenticationFailed(r) => MailboxError::Setup {
                server: self.name.clone(),
                reason: format!("authentication refused: {}", reply(r)),
            },
            mail_send::Error::UnsupportedAuthMechanism => MailboxError::Setup {
                server: self.name.clone(),
                reason:
                    "the server offers no AUTH mechanism Sluice speaks (PLAIN, LOGIN, CRAM-MD5)"
                        .into(),
            },
            mail_send::Error::Timeout => self.connection_error(format!(
                "no answer to {during} within {:?}",
                self.config.timeout
            )),
            other => self.connection_error(format!("{during}: {other}")),
        }
    }

    async fn tls(&self, stream: Box<dyn Stream>) -> Result<Box<dyn Stream>, MailboxError> {
        let host = match &self.config.address {
            ServerAddress::Tcp { host, .. } => host.clone(),
            ServerAddress::Unix(_) => "localhost".into(),
        };
        let Some(connector) = &self.connector else {
            return Err(self.connection_error("TLS is not configured (tls = \"none\")"));
        };
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| self.connection_error(format!("{host:?} is not a TLS server name")))?;
        let tls = tokio::time::timeout(self.config.timeout, connector.connect(name, stream))
            .await
            .map_err(|_| self.connection_error("TLS handshake timed out"))?
            .map_err(|e| self.connection_error(format!("TLS handshake failed: {e}")))?;
        Ok(Box::new(tls))
    }

    async fn hello(&self, client: &mut Client) -> Result<EhloResponse<String>, MailboxError> {
        let r = match self.protocol {
            Protocol::Lmtp => client.lhlo(&self.hello).await,
            Protocol::Smtp => client.ehlo(&self.hello).await,
        };
        r.map_err(|e| {
            self.mail_send_error(
                if self.protocol == Protocol::Lmtp {
                    "LHLO"
                } else {
                    "EHLO"
                },
                e,
            )
        })
    }

    /// Connects, reads the greeting, says hello, and does STARTTLS and AUTH as configured.
    pub(crate) async fn open(&self) -> Result<Session, MailboxError> {
        let timeout = self.config.timeout;
        let stream: Box<dyn Stream> = match &self.config.address {
            ServerAddress::Tcp { host, port } => Box::new(
                tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| self.connection_error("connecting timed out"))?
                .map_err(|e| self.connection_error(format!("cannot connect: {e}")))?,
            ),
            ServerAddress::Unix(path) => Box::new(
                tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| self.connection_error("connecting timed out"))?
                    .map_err(|e| self.connection_error(format!("cannot connect: {e}")))?,
            ),
        };
        let stream = match self.config.tls {
            TlsMode::Implicit => self.tls(stream).await?,
            TlsMode::None | TlsMode::StartTls => stream,
        };
        let mut client: Client = SmtpClient { stream, timeout };
        let greeting = tokio::time::timeout(timeout, client.read())
            .await
            .map_err(|_| self.connection_error("no greeting"))?
            .map_err(|e| self.mail_send_error("the greeting", e))?;
        if greeting.code != 220 {
            return Err(MailboxError::Protocol {
                server: self.name.clone(),
                during: "the greeting",
                reply: reply(greeting),
            });
        }
        let mut caps = self.hello(&mut client).await?;
        if self.config.tls == TlsMode::StartTls {
            if !caps.has_capability(EXT_START_TLS) {
                return Err(MailboxError::Setup {
                    server: self.name.clone(),
                    reason: "the server does not offer STARTTLS (tls = \"starttls\"); set tls = \"none\" only for loopback or a unix socket".into(),
                });
            }
            let r = client
                .cmd(b"STARTTLS\r\n")
                .await
                .map_err(|e| self.mail_send_error("STARTTLS", e))?;
            if r.code != 220 {
                return Err(MailboxError::Protocol {
                    server: self.name.clone(),
                    during: "STARTTLS",
                    reply: reply(r),
                });
            }
            let stream = self.tls(client.stream).await?;
            client = SmtpClient { stream, timeout };
            caps = self.hello(&mut client).await?;
        }
        if let Some(credentials) = &self.credentials {
            client
                .authenticate(credentials, &caps)
                .await
                .map_err(|e| self.mail_send_error("AUTH", e))?;
        }
        Ok(Session {
            client,
            capabilities: caps.capabilities,
        })
    }
}

/// The per-recipient results once every recipient has one.
/// A recipient's refusal: permanent (5xx) or deferred (4xx).
fn refusal(target: &Target, recipient: &str, r: Reply) -> MailboxError {
    let (server, recipient) = (target.name.clone(), recipient.to_string());
    if r.is_permanent() {
        MailboxError::Rejected {
            server,
            recipient,
            reply: r,
        }
    } else {
        MailboxError::Deferred {
            server,
            recipient,
            reply: r,
        }
    }
}

fn answered(results: Vec<Option<RecipientResult>>) -> Vec<RecipientResult> {
    results
        .into_iter()
        .map(|r| r.expect("every recipient answered"))
        .collect()
}

/// `<addr>`, or `<>` for a null sender.
fn path(addr: &str) -> String {
    format!("<{addr}>")
}

/// The message as DATA sends it: every line ending CRLF (a bare LF or CR becomes CRLF, as
/// SMTP requires), a `.` at the start of a line doubled (RFC 5321 §4.5.2), a final CRLF if
/// missing, then the `.` line that ends DATA.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

impl Session {
    /// `RSET`: ends any transaction; on a reused connection, also checks it is alive.
    async fn reset(&mut self) -> bool {
        matches!(self.client.cmd(b"RSET\r\n").await, Ok(r) if r.code == 250)
    }

    /// One transaction: MAIL FROM, a RCPT TO per recipient, DATA. Per recipient: `Ok` with
    /// the server's acceptance, or `Err` with its refusal (5xx) or deferral (4xx). `Err` of
    /// the whole call when the connection failed mid-way (the session must be dropped; a
    /// recipient without an answer is not delivered, as far as Sluice can know).
    pub(crate) async fn transaction(
        &mut self,
        target: &Target,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Vec<RecipientResult>, MailboxError> {
        let mut results: Vec<Option<RecipientResult>> = vec![None; recipients.len()];
        let Some(accepted) = self
            .envelope(target, mail_from, recipients, message, &mut results)
            .await?
        else {
            self.reset().await;
            return Ok(answered(results));
        };
        let r = reply(
            self.client
                .cmd(b"DATA\r\n")
                .await
                .map_err(|e| target.mail_send_error("DATA", e))?,
        );
        if r.code != 354 {
            self.reset().await;
            for i in accepted {
                results[i] = Some(Err(refusal(target, &recipients[i], r.clone())));
            }
            return Ok(answered(results));
        }
        let replies = self.data(target, message, accepted.len()).await?;
        for (n, i) in accepted.into_iter().enumerate() {
            let r = reply(replies[n.min(replies.len() - 1)].clone());
            results[i] = Some(if r.is_success() {
                Ok(r)
            } else {
                Err(refusal(target, &recipients[i], r))
            });
        }
        Ok(answered(results))
    }

    /// MAIL FROM and one RCPT TO per recipient: the indexes of the recipients the server
    /// accepted, the others' refusals in `results`; `None` when it accepted none (then every
    /// recipient has its answer).
    async fn envelope(
        &mut self,
        target: &Target,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
        results: &mut [Option<RecipientResult>],
    ) -> Result<Option<Vec<usize>>, MailboxError> {
        let eight_bit = message.iter().any(|b| *b >= 0x80);
        let utf8_addr = !mail_from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        let mut params = String::new();
        if eight_bit && self.capabilities & EXT_8BIT_MIME != 0 {
            params.push_str(" BODY=8BITMIME");
        }
        if utf8_addr && self.capabilities & EXT_SMTP_UTF8 != 0 {
            params.push_str(" SMTPUTF8");
        }
        let cmd = |e| target.mail_send_error("MAIL FROM", e);
        let r = reply(
            self.client
                .cmd(format!("MAIL FROM:{}{params}\r\n", path(mail_from)).as_bytes())
                .await
                .map_err(cmd)?,
        );
        if r.code == 530 {
            // "Must issue STARTTLS first" / "Authentication required": the settings, not
            // the message, are wrong; no copy may be bounced for that.
            return Err(MailboxError::Setup {
                server: target.name.clone(),
                reason: format!(
                    "the server wants TLS or AUTH first ({r}): set tls and credentials"
                ),
            });
        }
        if !r.is_success() {
            for (slot, rcpt) in results.iter_mut().zip(recipients) {
                *slot = Some(Err(refusal(target, rcpt, r.clone())));
            }
            return Ok(None);
        }
        let mut accepted = Vec::new();
        for (i, rcpt) in recipients.iter().enumerate() {
            let r = reply(
                self.client
                    .cmd(format!("RCPT TO:{}\r\n", path(rcpt)).as_bytes())
                    .await
                    .map_err(|e| target.mail_send_error("RCPT TO", e))?,
            );
            if r.is_success() {
                accepted.push(i);
            } else {
                results[i] = Some(Err(refusal(target, rcpt, r)));
            }
        }
        Ok((!accepted.is_empty()).then_some(accepted))
    }

    /// Sends the message after a 354 and reads the answers to it: one per accepted
    /// recipient over LMTP, one for all over SMTP. No answer in time means it may have been
    /// accepted ([`MailboxError::Unanswered`]).
    async fn data(
        &mut self,
        target: &Target,
        message: &[u8],
        accepted: usize,
    ) -> Result<Vec<Response<String>>, MailboxError> {
        let data = dot_stuffed(message);
        let timeout = target.config.timeout;
        let stream = &mut self.client.stream;
        tokio::time::timeout(timeout.max(Duration::from_secs(1)) * 4, async {
            stream.write_all(&data).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| target.connection_error("sending the message timed out"))?
        .map_err(|e| target.connection_error(format!("sending the message: {e}")))?;
        let expected = match target.protocol {
            Protocol::Lmtp => accepted,
            Protocol::Smtp => 1,
        };
        let unanswered = |reason: String| MailboxError::Unanswered {
            server: target.name.clone(),
            reason,
        };
        tokio::time::timeout(timeout, self.client.read_many(expected))
            .await
            .map_err(|_| unanswered(format!("no answer within {timeout:?}")))?
            .map_err(|e| unanswered(e.to_string()))
    }
}

/// Open connections to one server, reused across messages, at most `max_connections` in
/// use at once.
pub(crate) struct Pool {
    pub(crate) target: Target,
    idle: Mutex<Vec<Session>>,
    permits: Semaphore,
}

/// A session taken from the pool; give it back with [`Pool::put`] when it is healthy.
pub(crate) struct Lease<'a> {
    pub(crate) session: Session,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    pub(crate) fn new(target: Target) -> Pool {
        let n = target.config.max_connections;
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(n),
        }
    }

    /// An idle session that still answers, else a new one.
    pub(crate) async fn take(&self) -> Result<Lease<'_>, MailboxError> {
        let permit = self.permits.acquire().await.map_err(|_| {
            self.target
                .connection_error("the connection pool is closed")
        })?;
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut session) = idle else { break };
            if session.reset().await {
                return Ok(Lease {
                    session,
                    _permit: permit,
                });
            }
        }
        let session = self.target.open().await?;
        Ok(Lease {
            session,
            _permit: permit,
        })
    }

    /// Returns a session for reuse.
    pub(crate) fn put(&self, lease: Lease<'_>) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(lease.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_endings() {
        assert_eq!(dot_stuffed(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuffed(b".\n..\nx"), b"..\r\n...\r\nx\r\n.\r\n");
        assert_eq!(dot_stuffed(b"a\rb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuffed(b""), b".\r\n");
        // A dot inside a line is data.
        assert_eq!(dot_stuffed(b"a.b\r\n"), b"a.b\r\n.\r\n");
    }

    #[test]
    fn credentials_come_from_outside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "relay-user:pa:ss\nignored\n").unwrap();
        let c = load_credentials(&Credentials::File(file.clone())).unwrap();
        assert!(
            matches!(c, mail_send::Credentials::Plain { username, secret } if username == "relay-user" && secret == "pa:ss")
        );
        std::fs::write(&file, "no colon").unwrap();
        let e = load_credentials(&Credentials::File(file)).err().unwrap();
        assert!(matches!(e, SetupError::CredentialsFormat { .. }), "{e}");
        assert!(e.to_string().contains("user:password"), "{e}");
        let e = load_credentials(&Credentials::Env("SLUICE_TEST_UNSET_CREDS".into()))
            .err()
            .unwrap();
        assert!(matches!(e, SetupError::CredentialsEnv { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("SLUICE_TEST_UNSET_CREDS_USER is not set"),
            "{e}"
        );
    }
}
