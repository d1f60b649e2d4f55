//! Verdicts for the milter door's messages. SES is not in this path, so nothing hands them
//! over; the operator picks where SPF, DKIM and DMARC come from ([`AuthVerdicts`]):
//!
//! - `authentication-results` (the default): read by the pipeline from the topmost
//!   `Authentication-Results` header with the authserv-id the operator names
//!   (`trusted_authserv_id`: OpenDKIM / OpenDMARC or the MTA wrote it); all `unknown` without
//!   one.
//! - `compute`: Sluice checks them itself with `mail-auth` ([`Authenticator`]): SPF for the
//!   client's IP, HELO name and MAIL FROM, every DKIM signature, DMARC alignment and the
//!   sender domain's policy, through the resolver the operator names, within a time limit
//!   that counts against the message.
//!
//! Spam and virus verdicts come only from a scanner the operator names ([`ScannerHeader`]):
//! a header such as SpamAssassin's `X-Spam-Flag` or clamav-milter's `X-Virus-Status`, with
//! the values that mean fail and pass. Otherwise they stay `unknown`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};
use sluice_engine::{Verdict, Verdicts};
use sluice_inbound::door::unknown_verdicts;

/// What the MTA told the milter about the SMTP client: `SMFIC_CONNECT`, `SMFIC_HELO` and
/// the macros Postfix sends by default. SPF needs the address and the HELO name; the rest
/// is kept for log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpClient {
    /// The client's name as the MTA resolved it, or `[address]`.
    pub hostname: Option<String>,
    /// The client's IP address (`SMFIC_CONNECT`, else the `{client_addr}` macro); `None` on
    /// a local socket.
    pub ip: Option<IpAddr>,
    /// The client's port.
    pub port: Option<u16>,
    /// The HELO/EHLO argument.
    pub helo: Option<String>,
    /// The MTA's own name (macro `j`): SPF's receiving host.
    pub receiver: Option<String>,
    /// The SASL login name (`{auth_authen}`) when the client authenticated.
    pub auth_authen: Option<String>,
    /// The MTA service that took the connection (`{daemon_name}`).
    pub daemon_name: Option<String>,
}

/// Where SPF, DKIM and DMARC come from.
#[derive(Debug, Clone, Default)]
pub enum AuthVerdicts {
    /// From the trusted `Authentication-Results` header (`trusted_authserv_id`), read by the
    /// pipeline; all `unknown` without an authserv-id.
    #[default]
    AuthenticationResults,
    /// Computed by Sluice.
    Compute(std::sync::Arc<Authenticator>),
}

/// Why computed verdicts cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerdictsError {
    /// `dns` is not `IP` or `IP:PORT`.
    #[error("{0:?} is not a DNS server address (IP or IP:PORT, e.g. 127.0.0.1:53)")]
    DnsAddress(String),
    /// The resolver cannot be built (e.g. no readable /etc/resolv.conf).
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

/// Parses `dns`: an IP address (port 53) or `IP:PORT` (`[v6]:PORT`).
pub fn parse_dns_address(text: &str) -> Result<SocketAddr, VerdictsError> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| VerdictsError::DnsAddress(text.to_string()))
}

/// SPF, DKIM and DMARC checks with `mail-auth`, through one resolver (its answers cached
/// across messages, as a resolver's are).
pub struct Authenticator {
    resolver: MessageAuthenticator,
    /// How long one message's checks may take in all.
    timeout: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks through the DNS server at `dns` (UDP, TCP for truncated answers), or the
    /// system's resolvers (`/etc/resolv.conf`) when `None`. `timeout` bounds one message's
    /// checks in all; one query waits at most that long, or 5 s.
    pub fn new(dns: Option<SocketAddr>, timeout: Duration) -> Result<Authenticator, VerdictsError> {
        let (config, mut opts) = match dns {
            Some(addr) => {
                let connection = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let server = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                (
                    ResolverConfig::from_name_servers(vec![server]),
                    ResolverOpts::default(),
                )
            }
            None => mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| VerdictsError::Resolver(e.to_string()))?,
        };
        opts.timeout = timeout.min(Duration::from_secs(5));
        let resolver = MessageAuthenticator::new(config, opts)
            .map_err(|e| VerdictsError::Resolver(e.to_string()))?;
        Ok(Authenticator { resolver, timeout })
    }

    /// The SPF, DKIM and DMARC verdicts of one message (spam and virus `unknown`). A check
    /// the time limit cuts short, or that meets a DNS error, is `processing-failed`: the rules
    /// decide what that means (the `junk` rule does nothing on it), the message is not held.
    pub async fn verdicts(&self, raw: &[u8], mail_from: &str, client: &SmtpClient) -> Verdicts {
        let deadline = Instant::now() + self.timeout;
        let mut verdicts = unknown_verdicts();
        let helo = client.helo.as_deref().unwrap_or_default();
        let receiver = client.receiver.as_deref().unwrap_or("localhost");
        // RFC 7208 2.4: a null sender is checked as postmaster@ the HELO name.
        let mail_from_domain = match mail_from.rsplit_once('@') {
            Some((_, domain)) => domain,
            None => helo,
        };
        let spf = match client.ip {
            // A local client (a Unix socket): nothing to check SPF against.
            None => SpfOutput::new(mail_from_domain.to_string()),
            Some(ip) => {
                let params = if mail_from.is_empty() {
                    SpfParameters::verify_ehlo(ip, helo, receiver)
                } else {
                    SpfParameters::verify_mail_from(ip, helo, receiver, mail_from)
                };
                match timeout_at(deadline, self.resolver.verify_spf(params)).await {
                    Ok(output) => output,
                    Err(_) => SpfOutput::new(mail_from_domain.to_string())
                        .with_result(SpfResult::TempError),
                }
            }
        };
        verdicts.spf = match client.ip {
            None => Verdict::Unknown,
            Some(_) => spf_verdict(spf.result()),
        };
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            // No header section mail-auth can read: DKIM and DMARC cannot be checked.
            verdicts.dkim = Verdict::ProcessingFailed;
            verdicts.dmarc = Verdict::ProcessingFailed;
            return verdicts;
        };
        let Ok(dkim) = timeout_at(deadline, self.resolver.verify_dkim(&message)).await else {
            verdicts.dkim = Verdict::ProcessingFailed;
            verdicts.dmarc = Verdict::ProcessingFailed;
            return verdicts;
        };
        verdicts.dkim = dkim_verdict(&dkim);
        let params = DmarcParameters::new(&message, &dkim, mail_from_domain, &spf);
        match timeout_at(deadline, self.resolver.verify_dmarc(params)).await {
            Ok(dmarc) => {
                (verdicts.dmarc, verdicts.dmarc_policy) = dmarc_verdict(&dmarc);
            }
            Err(_) => verdicts.dmarc = Verdict::ProcessingFailed,
        }
        verdicts
    }
}

/// SPF results as `Authentication-Results` values map onto verdicts (see
/// `sluice_inbound::door::verdicts_from_authentication_results`): the same table for both
/// modes, so a rule sees the same verdict whichever one the operator picked.
fn spf_verdict(result: SpfResult) -> Verdict {
    match result {
        SpfResult::Pass => Verdict::Pass,
        SpfResult::Fail | SpfResult::SoftFail => Verdict::Fail,
        SpfResult::Neutral | SpfResult::None => Verdict::Gray,
        SpfResult::TempError | SpfResult::PermError => Verdict::ProcessingFailed,
    }
}

/// One passing signature is enough (as for SES's verdict); else a failing one fails; no
/// signature at all is `gray`.
fn dkim_verdict(outputs: &[DkimOutput<'_>]) -> Verdict {
    let rank = |r: &DkimResult| match r {
        DkimResult::Pass => (0, Verdict::Pass),
        DkimResult::Fail(_) => (1, Verdict::Fail),
        // mail-auth says neutral for a body that changed after signing; RFC 6376 6.1.3 and
        // OpenDKIM say fail ("body hash did not verify"): the message was altered.
        DkimResult::Neutral(mail_auth::Error::Dkim(
            mail_auth::dkim::DkimError::FailedBodyHashMatch,
        )) => (1, Verdict::Fail),
        DkimResult::TempError(_) | DkimResult::PermError(_) => (2, Verdict::ProcessingFailed),
        DkimResult::Neutral(_) | DkimResult::None => (3, Verdict::Gray),
    };
    outputs
        .iter()
        .map(|o| rank(o.result()))
        .min_by_key(|(rank, _)| *rank)
        .map_or(Verdict::Gray, |(_, verdict)| verdict)
}

/// The DMARC verdict and the policy the sender's domain publishes (`none`, `quarantine`,
/// `reject`; `None` without a DMARC record).
fn dmarc_verdict(output: &DmarcOutput) -> (Verdict, Option<String>) {
    let verdict = match output.result() {
        DmarcResult::Pass => Verdict::Pass,
        DmarcResult::Fail(_) => Verdict::Fail,
        DmarcResult::TempError(_) | DmarcResult::PermError(_) => Verdict::ProcessingFailed,
        DmarcResult::None => Verdict::Gray,
    };
    let policy = output.dmarc_record().and(match output.policy() {
        Policy::None => Some("none"),
        Policy::Quarantine => Some("quarantine"),
        Policy::Reject => Some("reject"),
        Policy::Unspecified => None,
    });
    (verdict, policy.map(str::to_string))
}

/// Which verdict a scanner's header gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerVerdict {
    /// The spam verdict.
    Spam,
    /// The virus verdict.
    Virus,
}

/// A header a scanner running before Sluice writes, trusted because the operator named it:
/// e.g. SpamAssassin's `X-Spam-Flag: YES`, clamav-milter's `X-Virus-Status: Infected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerHeader {
    /// The scanner's name, for log lines.
    pub name: String,
    /// The verdict it gives.
    pub verdict: ScannerVerdict,
    /// The header field name (case-insensitive).
    pub header: String,
    /// Values meaning `fail`: matched, case-insensitively, against the value's first word
    /// (`Yes` in `Yes, score=7.1 ...`, `Infected` in `Infected (Eicar-Signature)`).
    pub fail: Vec<String>,
    /// Values meaning `pass`.
    pub pass: Vec<String>,
}

impl ScannerHeader {
    /// The verdict of one header field, if it is this scanner's and its value is one of the
    /// configured ones.
    pub fn read(&self, name: &str, value: &[u8]) -> Option<Verdict> {
        if !name.eq_ignore_ascii_case(&self.header) {
            return None;
        }
        let value = String::from_utf8_lossy(value);
        let word = value
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '('))
            .find(|w| !w.is_empty())?;
        let is = |values: &[String]| values.iter().any(|v| v.eq_ignore_ascii_case(word));
        if is(&self.fail) {
            Some(Verdict::Fail)
        } else if is(&self.pass) {
            Some(Verdict::Pass)
        } else {
            None
        }
    }
}

/// The spam and virus verdicts of one message, from the scanner headers seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// The spam verdict.
    pub spam: Verdict,
    /// The virus verdict.
    pub virus: Verdict,
}

impl Default for Scanned {
    fn default() -> Self {
        Scanned {
            spam: Verdict::Unknown,
            virus: Verdict::Unknown,
        }
    }
}

impl Scanned {
    /// Takes one header field into account. With several copies of a scanner's header (a
    /// sender's forged one beside the scanner's), `fail` wins: a forged "clean" cannot hide
    /// the scanner's "infected".
    pub fn header(&mut self, scanners: &[ScannerHeader], name: &str, value: &[u8]) {
        for scanner in scanners {
            let Some(seen) = scanner.read(name, value) else {
                continue;
            };
            let slot = match scanner.verdict {
                ScannerVerdict::Spam => &mut self.spam,
                ScannerVerdict::Virus => &mut self.virus,
            };
            if *slot != Verdict::Fail {
                *slot = seen;
            }
            tracing::debug!(scanner = %scanner.name, header = name, verdict = ?seen, "scanner verdict");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spamassassin() -> ScannerHeader {
        ScannerHeader {
            name: "spamassassin".into(),
            verdict: ScannerVerdict::Spam,
            header: "X-Spam-Status".into(),
            fail: vec!["Yes".into()],
            pass: vec!["No".into()],
        }
    }

    fn clamav() -> ScannerHeader {
        ScannerHeader {
            name: "clamav".into(),
            verdict: ScannerVerdict::Virus,
            header: "X-Virus-Status".into(),
            fail: vec!["Infected".into()],
            pass: vec!["Clean".into()],
        }
    }

    #[test]
    fn a_named_scanner_header_gives_its_verdict_by_the_first_word() {
        let s = spamassassin();
        assert_eq!(
            s.read("x-spam-status", b"Yes, score=7.1 required=5.0"),
            Some(Verdict::Fail)
        );
        assert_eq!(
            s.read("X-Spam-Status", b" No, score=0.1"),
            Some(Verdict::Pass)
        );
        assert_eq!(s.read("X-Spam-Status", b"Maybe"), None);
        assert_eq!(s.read("X-Spam-Flag", b"YES"), None, "another header");
        assert_eq!(
            clamav().read("X-Virus-Status", b"Infected (Eicar-Signature)"),
            Some(Verdict::Fail)
        );
    }

    #[test]
    fn a_forged_clean_copy_cannot_hide_a_fail_and_unnamed_verdicts_stay_unknown() {
        let scanners = [spamassassin(), clamav()];
        let mut scanned = Scanned::default();
        scanned.header(&scanners, "X-Virus-Status", b"Infected");
        scanned.header(&scanners, "X-Virus-Status", b"Clean");
        assert_eq!(scanned.virus, Verdict::Fail);
        assert_eq!(scanned.spam, Verdict::Unknown);
        scanned.header(&scanners, "X-Spam-Status", b"No, score=1.0");
        assert_eq!(scanned.spam, Verdict::Pass);
        assert_eq!(Scanned::default().spam, Verdict::Unknown);
        let mut none = Scanned::default();
        none.header(&[], "X-Spam-Status", b"Yes");
        assert_eq!(none.spam, Verdict::Unknown, "not trusted unless configured");
    }

    #[test]
    fn results_map_as_authentication_results_values_do() {
        assert_eq!(spf_verdict(SpfResult::Pass), Verdict::Pass);
        assert_eq!(spf_verdict(SpfResult::SoftFail), Verdict::Fail);
        assert_eq!(spf_verdict(SpfResult::None), Verdict::Gray);
        assert_eq!(spf_verdict(SpfResult::TempError), Verdict::ProcessingFailed);
        assert_eq!(dkim_verdict(&[]), Verdict::Gray);
        let (verdict, policy) = dmarc_verdict(&DmarcOutput::default());
        assert_eq!((verdict, policy), (Verdict::Gray, None));
    }

    #[test]
    fn dns_addresses_parse_with_port_53_by_default() {
        assert_eq!(
            parse_dns_address("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_address("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(parse_dns_address("resolver.example").is_err());
    }
}
