//! `[relay] kind = "smtp"`: relayed copies and DSNs leave through a smarthost, one recipient
//! per transaction so that a refusal is that recipient's.

use std::sync::Arc;

use serde::Deserialize;

use super::{SendFailure, SendLimits, Transport};
use crate::config::{read_section, Checked, RelayKind, RelayTarget, Resolve, TargetClients};
use crate::server::{take_server, tcp_address, ServerConfig, ServerRules, TlsMode};
use crate::store::smtp::SmtpSender;
use crate::{BoxFuture, SetupError};

/// `[relay] kind = "smtp"`.
pub const KIND: RelayKind = RelayKind { name: "smtp", read };

/// What smarthost sends allow.
pub const SMTP_LIMITS: SendLimits = SendLimits {
    chunk: 1,
    max_bytes: None,
    refuses_per_recipient: true,
};

/// The section's own keys (the server keys are read by [`take_server`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpRelaySection {
    /// The smarthost.
    host: Option<String>,
    /// Its port (default 587).
    port: Option<u16>,
}

/// `[relay] kind = "smtp"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRelayConfig {
    /// The smarthost.
    pub server: ServerConfig,
}

fn read(table: toml::Table, resolve: Resolve<'_>) -> Checked<Arc<dyn RelayTarget>> {
    Ok(Arc::new(check(table, resolve)?))
}

fn check(mut table: toml::Table, resolve: Resolve<'_>) -> Checked<SmtpRelayConfig> {
    let rules = ServerRules {
        default_tls: TlsMode::StartTls,
        auth: true,
    };
    let settings = take_server("relay", &mut table, rules, resolve)?;
    let section: SmtpRelaySection = read_section("relay", table)?;
    Ok(SmtpRelayConfig {
        server: settings.at(tcp_address("relay", &section.host, section.port, 587)?),
    })
}

impl RelayTarget for SmtpRelayConfig {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    fn limits(&self) -> SendLimits {
        SMTP_LIMITS
    }

    fn build(&self, _: &TargetClients) -> Result<Arc<dyn Transport>, SetupError> {
        Ok(Arc::new(SmtpSender::new(&self.server)?))
    }
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport for SmtpSender {
    fn send<'a>(
        &'a self,
        _name: &'a str,
        from: &'a str,
        to: &'a [String],
        raw: Vec<u8>,
        null_sender: bool,
    ) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            let mail_from = if null_sender { "" } else { from };
            let results = SmtpSender::send(self, mail_from, to, &raw).await?;
            let mut ids = Vec::new();
            for r in results {
                ids.push(r?.text);
            }
            Ok(ids.join("; "))
        })
    }

    fn limits(&self) -> SendLimits {
        SMTP_LIMITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Credentials, ServerAddress};
    use std::path::PathBuf;

    #[test]
    fn smtp_relay() {
        let r = crate::config::tests::relay(
            "kind = \"smtp\"\nhost = \"smtp.example.net\"\nfrom = \"fwd@example.com\"\nmarkers = \"s3://b/m\"\nauth_env = \"RELAY\"",
        )
        .unwrap();
        assert_eq!(r.transport.kind(), "smtp");
        assert_eq!(r.transport.limits(), SMTP_LIMITS);
        let resolve = |p: &str| PathBuf::from("/etc/sluice").join(p);
        let table = toml::from_str("host = \"smtp.example.net\"\nauth_env = \"RELAY\"").unwrap();
        let server = check(table, &resolve).unwrap().server;
        assert_eq!(
            server.address,
            ServerAddress::Tcp {
                host: "smtp.example.net".into(),
                port: 587
            }
        );
        assert_eq!(server.credentials, Some(Credentials::Env("RELAY".into())));
        assert!(
            crate::config::tests::relay("kind = \"smtp\"\nfrom = \"f@example.com\"")
                .unwrap_err()
                .contains("needs `host")
        );
    }
}
