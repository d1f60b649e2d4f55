//! The milter server: accepts MTA connections on TCP (loopback or a private address) or a
//! Unix socket and runs one [`Session`] per connection, with limits.
//!
//! Limits: a packet size, a message size (552 5.3.4), a per-command read timeout, an overall
//! time limit per connection, and a number of connections served at once (one more is answered 421 4.3.2 on every command,
//! so the MTA applies its own tempfail rather than queueing on a busy filter). On stop, new
//! transactions are refused 451 and each connection may finish its message within a grace
//! period; what is still open after it is closed, and the MTA applies its
//! `milter_default_action`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_inbound::Pipeline;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::codec::{self, Command, ProtocolError, Response};
pub use crate::session::DefaultAction;
use crate::session::{BufferBudget, GroupKey, Session, SessionSettings, Step};
use crate::verdicts::{AuthVerdicts, ScannerHeader};

/// Where to listen: `inet:HOST:PORT` (an IP address or `localhost`) or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Inet(SocketAddr),
    /// A Unix socket path (a stale socket file there is replaced).
    Unix(PathBuf),
}

/// Why a listen address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Not `inet:HOST:PORT` or `unix:PATH`.
    #[error("{0:?} is not inet:HOST:PORT or unix:PATH")]
    Syntax(String),
    /// Binding failed.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl std::str::FromStr for Listen {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Listen, ListenError> {
        let bad = || ListenError::Syntax(s.to_string());
        if let Some(path) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("inet:").ok_or_else(bad)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => "127.0.0.1",
            h => h,
        };
        let ip: std::net::IpAddr = host.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(Listen::Inet(SocketAddr::new(ip, port)))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Inet(a) => write!(f, "inet:{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How the server runs. [`Default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct MilterOptions {
    /// The largest message accepted (bytes of header and body as the MTA sends them).
    /// Default 40 MiB, SES's own limit for received mail.
    pub max_message_bytes: usize,
    /// The message bytes all connections may hold at once (default 512 MiB); a transaction
    /// that would pass it is answered 452 4.3.1 (try again later).
    pub max_buffered_bytes: usize,
    /// The largest packet read (default [`codec::DEFAULT_MAX_PACKET`]).
    pub max_packet: usize,
    /// How long to wait for the MTA's next command before closing (default 10 minutes:
    /// longer than an SMTP client may idle between commands, 5 minutes by RFC 5321).
    pub command_timeout: Duration,
    /// Connections served at once (default 64); one more is answered 421 on every command.
    pub max_connections: usize,
    /// The answer when the chain cannot run.
    pub default_action: DefaultAction,
    /// Read SPF/DKIM/DMARC from this authserv-id's `Authentication-Results` header.
    pub trusted_authserv_id: Option<String>,
    /// `{daemon_name}` values whose transactions are outbound without SMTP AUTH (default
    /// none: only an authenticated client's mail is outbound).
    pub outbound_daemon_names: Vec<String>,
    /// Where SPF/DKIM/DMARC come from (default: the trusted header above).
    pub verdicts: AuthVerdicts,
    /// Scanner headers trusted for the spam and virus verdicts (default: none, both
    /// `unknown`).
    pub scanners: Vec<ScannerHeader>,
    /// How long one connection may last in all, however busy (default 1 hour); then it is
    /// closed and the MTA applies its `milter_default_action` to a message in progress.
    /// Bounds what a client trickling commands just inside `command_timeout` can hold.
    pub connection_timeout: Duration,
    /// On stop, how long connections may take to finish their message (default 30 s).
    pub grace: Duration,
    /// How often the server checks the config for changes (default 30 s). `None`: the
    /// caller reloads the pipeline itself, as `sluice daemon` does for the pipeline its queue
    /// and its milter share (one check, one log line per change, not one per door).
    pub reload_interval: Option<Duration>,
}

impl Default for MilterOptions {
    fn default() -> Self {
        MilterOptions {
            max_message_bytes: 40 * 1024 * 1024,
            max_buffered_bytes: 512 * 1024 * 1024,
            max_packet: codec::DEFAULT_MAX_PACKET,
            command_timeout: Duration::from_secs(600),
            max_connections: 64,
            default_action: DefaultAction::Tempfail,
            trusted_authserv_id: None,
            outbound_daemon_names: Vec::new(),
            verdicts: AuthVerdicts::AuthenticationResults,
            scanners: Vec::new(),
            connection_timeout: Duration::from_secs(3600),
            grace: Duration::from_secs(30),
            reload_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// While the chains run, the MTA hears `SMFIR_PROGRESS` this often, so a slow chain does
/// not hit its `milter_content_timeout`.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A bound listener.
pub enum Listener {
    /// TCP.
    Inet(tokio::net::TcpListener),
    /// A Unix socket, removed when the server stops.
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// Binds `listen`.
    pub async fn bind(listen: &Listen) -> Result<Listener, ListenError> {
        let err = |source| ListenError::Bind {
            listen: listen.to_string(),
            source,
        };
        match listen {
            Listen::Inet(addr) => Ok(Listener::Inet(
                tokio::net::TcpListener::bind(addr).await.map_err(err)?,
            )),
            Listen::Unix(path) => {
                // A socket file left by an earlier run that did not stop cleanly.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let l = tokio::net::UnixListener::bind(path).map_err(err)?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The bound address (with the port the system chose for port 0).
    pub fn local(&self) -> Listen {
        match self {
            Listener::Inet(l) => l
                .local_addr()
                .map(Listen::Inet)
                .unwrap_or(Listen::Inet(SocketAddr::from(([127, 0, 0, 1], 0)))),
            Listener::Unix(_, p) => Listen::Unix(p.clone()),
        }
    }
}

/// The recipient group key, as the pipeline's current chains group recipients: the
/// configured domain, `*` for the catch-all, else the domain itself.
fn group_key(pipeline: Arc<Pipeline>) -> GroupKey {
    Arc::new(move |address: &str| {
        let domain = sluice_chain::domain_of(address);
        let loaded = pipeline.current();
        let chains = loaded.chains.chains();
        if chains.iter().any(|c| c.domain == domain) {
            domain
        } else if chains.iter().any(|c| c.domain == "*") {
            "*".into()
        } else {
            domain
        }
    })
}

/// Serves until `stop` resolves, then stops as the module docs say.
pub async fn serve(
    pipeline: Arc<Pipeline>,
    listener: Listener,
    options: MilterOptions,
    stop: impl Future<Output = ()>,
) {
    let settings = Arc::new(SessionSettings {
        max_message_bytes: options.max_message_bytes,
        default_action: options.default_action,
        trusted_authserv_id: options.trusted_authserv_id.clone(),
        group_key: group_key(pipeline.clone()),
        stopping: Arc::new(AtomicBool::new(false)),
        budget: Arc::new(BufferBudget::new(options.max_buffered_bytes)),
        outbound_daemon_names: options.outbound_daemon_names.clone(),
        scanners: options.scanners.clone(),
    });
    let options = Arc::new(options);
    let serving = Arc::new(Semaphore::new(options.max_connections));
    // Refused connections are cheap, but not free: as many again, then they are closed.
    let refusing = Arc::new(Semaphore::new(options.max_connections));
    let mut tasks = JoinSet::new();
    let reloader = options
        .reload_interval
        .map(|every| tokio::spawn(reload_loop(pipeline.clone(), every)));
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            a = accept(&listener) => a,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (permit, refuse) = match serving.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(p) => {
                    tracing::warn!(
                        max = options.max_connections,
                        "connection limit reached: answering 421"
                    );
                    (p, true)
                }
                Err(_) => continue,
            },
        };
        let session = Session::new(settings.clone(), refuse);
        let (pipeline, options) = (pipeline.clone(), options.clone());
        tasks.spawn(async move {
            match conn {
                Conn::Tcp(s) => connection(s, session, pipeline, &options).await,
                Conn::Unix(s) => connection(s, session, pipeline, &options).await,
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    settings.stopping.store(true, Ordering::Relaxed);
    // Closed now, so a new connection is refused at once (the MTA applies its default
    // action) instead of waiting in the backlog.
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    tracing::info!(connections = tasks.len(), grace = ?options.grace, "stopping: letting connections finish");
    let drained = tokio::time::timeout(options.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "grace period over: closing the rest (the MTA applies its default action)"
        );
        tasks.shutdown().await;
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    pipeline.flush_uses().await;
}

/// Asks the pipeline to reload when due. The tick is shorter than `every` (at most 1 s)
/// and [`Pipeline::reload_if_due`] keeps to the interval: a tick of exactly `every` lands
/// just short of it after each check, so only every other tick would check. Never zero
/// (`--reload-seconds 0`), which `tokio::time::interval` refuses.
async fn reload_loop(pipeline: Arc<Pipeline>, every: Duration) {
    let period = every
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        pipeline.reload_if_due().await;
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    Ok(match listener {
        Listener::Inet(l) => {
            let stream = l.accept().await?.0;
            // Each answer is one small write the MTA waits for: no Nagle delay.
            stream.set_nodelay(true)?;
            Conn::Tcp(stream)
        }
        Listener::Unix(l, _) => Conn::Unix(l.accept().await?.0),
    })
}

/// One connection: commands in, answers out, until QUIT, EOF, a timeout or a protocol error
/// (logged; only this connection ends).
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mut session: Session,
    pipeline: Arc<Pipeline>,
    options: &MilterOptions,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let conversation = converse(&mut reader, &mut writer, &mut session, &pipeline, options);
    match tokio::time::timeout(options.connection_timeout, conversation).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(queue_id = session.queue_id(), error = %e, "milter connection ended")
        }
        Err(_) => tracing::warn!(
            queue_id = session.queue_id(),
            limit = ?options.connection_timeout,
            "milter connection closed: it lasted longer than connection_timeout"
        ),
    }
}

async fn converse<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    session: &mut Session,
    pipeline: &Pipeline,
    options: &MilterOptions,
) -> Result<(), ProtocolError> {
    loop {
        let packet = tokio::time::timeout(
            options.command_timeout,
            codec::read_packet(reader, options.max_packet),
        )
        .await
        .map_err(|_| {
            ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no command from the MTA in {:?}", options.command_timeout),
            ))
        })??;
        let Some((code, data)) = packet else {
            return Ok(());
        };
        let responses = match session.command(Command::decode(code, &data)?) {
            Step::Reply(r) => r,
            Step::Silent => continue,
            Step::Close => return Ok(()),
            Step::Decide(arrival) => {
                decide(*arrival, session, pipeline, &options.verdicts, writer).await?
            }
        };
        codec::write_responses(writer, &responses).await?;
    }
}

/// Runs the chains, telling the MTA it is still working every [`PROGRESS_EVERY`].
async fn decide<W: AsyncWrite + Unpin>(
    arrival: sluice_inbound::Arrival,
    session: &mut Session,
    pipeline: &Pipeline,
    verdicts: &AuthVerdicts,
    writer: &mut W,
) -> Result<Vec<Response>, ProtocolError> {
    let id = arrival.message_id.clone();
    let started = std::time::Instant::now();
    let client = session.client();
    // Computing the verdicts (DNS) is part of deciding: the MTA hears progress meanwhile.
    let decision = async {
        let mut arrival = arrival;
        if let AuthVerdicts::Compute(authenticator) = verdicts {
            computed_verdicts(authenticator, &mut arrival, &client).await;
        }
        pipeline.decide(arrival).await
    };
    tokio::pin!(decision);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut decision => break outcome,
            _ = progress.tick() => codec::write_responses(writer, &[Response::Progress]).await?,
        }
    };
    let responses = session.decided(outcome);
    tracing::info!(
        message_id = %id,
        micros = started.elapsed().as_micros() as u64,
        answer = %summary(&responses),
        "milter message decided"
    );
    Ok(responses)
}

/// Replaces the arrival's SPF/DKIM/DMARC verdicts with computed ones (spam and virus, from
/// the scanners, stay).
async fn computed_verdicts(
    authenticator: &crate::verdicts::Authenticator,
    arrival: &mut sluice_inbound::Arrival,
    client: &crate::verdicts::SmtpClient,
) {
    let sluice_inbound::door::MessageContent::Inline(raw) = &arrival.content else {
        return;
    };
    let started = std::time::Instant::now();
    let computed = authenticator
        .verdicts(raw, &arrival.mail_from, client)
        .await;
    tracing::debug!(
        message_id = %arrival.message_id,
        spf = ?computed.spf,
        dkim = ?computed.dkim,
        dmarc = ?computed.dmarc,
        dmarc_policy = ?computed.dmarc_policy,
        micros = started.elapsed().as_micros() as u64,
        "verdicts computed"
    );
    arrival.verdicts = sluice_engine::Verdicts {
        spam: arrival.verdicts.spam,
        virus: arrival.verdicts.virus,
        ..computed
    };
}

/// The log line's answer: the reply, or the modifications' kinds.
fn summary(responses: &[Response]) -> String {
    let kinds: Vec<String> = responses
        .iter()
        .map(|r| match r {
            Response::ReplyCode(text) => text.clone(),
            Response::ChangeHeader { name, value, .. } if value.is_empty() => {
                format!("delete {name}")
            }
            Response::ChangeHeader { name, .. } => format!("change {name}"),
            Response::AddHeader { name, .. } | Response::InsertHeader { name, .. } => {
                format!("add {name}")
            }
            Response::ReplaceBody(_) => "body".into(),
            Response::AddRcpt(_) => "add rcpt".into(),
            Response::DelRcpt(_) => "delete rcpt".into(),
            other => format!("{other:?}").to_lowercase(),
        })
        .collect();
    kinds.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "inet:127.0.0.1:8891".parse::<Listen>().unwrap(),
            Listen::Inet(SocketAddr::from(([127, 0, 0, 1], 8891)))
        );
        assert_eq!(
            "inet:localhost:0".parse::<Listen>().unwrap().to_string(),
            "inet:127.0.0.1:0"
        );
        assert_eq!(
            "unix:/run/sluice.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/sluice.sock".into())
        );
        for bad in [
            "127.0.0.1:1",
            "inet:host.example:1",
            "inet:127.0.0.1",
            "unix:",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }
}
