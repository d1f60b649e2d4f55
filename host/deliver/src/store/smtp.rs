//! `[store] kind = "smtp"`: hands every local copy to a self-hosted MTA (Postfix, Stalwart,
//! Exchange) with the envelope SES received: the original sender and recipients, the rules'
//! edits applied. SMTP has no folders: a copy a rule filed elsewhere than `INBOX` carries
//! an [`FOLDER_HEADER`] header for the MTA's filter (Sieve `fileinto`) to act on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{
    read_section, store_markers, Checked, RecordsAt, StoreConfig, StoreContext, StoreKind,
    StoreTarget, TargetClients,
};
use crate::server::{take_server, tcp_address, ServerConfig, ServerRules, TlsMode};
use crate::session::{Pool, Protocol, Target};
use crate::{
    all_failed, BoxFuture, MailboxCopy, MailboxError, MailboxStore, Reply, SetupError,
    StoreOutcome, StoreRequest, DEFAULT_FOLDER,
};

/// `[store] kind = "smtp"`.
pub const KIND: StoreKind = StoreKind { name: "smtp", read };

/// The section as written (the server keys are read by [`take_server`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSection {
    /// The server's host name or address.
    host: Option<String>,
    /// The port (default 25).
    port: Option<u16>,
    /// Where delivered recipients are recorded (`s3://bucket/prefix` or a directory), so a
    /// retry delivers only to the recipients not yet done. Default: the relay's markers.
    markers: Option<String>,
}

/// `[store] kind = "smtp"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpStoreConfig {
    /// The MTA.
    pub server: ServerConfig,
    /// Where delivered recipients are recorded.
    pub markers: Option<RecordsAt>,
}

fn read(table: toml::Table, context: &StoreContext<'_>) -> Checked<StoreConfig> {
    Ok(Arc::new(check(table, context)?))
}

fn check(mut table: toml::Table, context: &StoreContext<'_>) -> Checked<SmtpStoreConfig> {
    table.remove("kind");
    let rules = ServerRules {
        default_tls: TlsMode::StartTls,
        auth: true,
    };
    let settings = take_server("store", &mut table, rules, context.resolve)?;
    let section: SmtpSection = read_section("store", table)?;
    Ok(SmtpStoreConfig {
        server: settings.at(tcp_address("store", &section.host, section.port, 25)?),
        markers: store_markers(section.markers.as_deref(), context)?,
    })
}

impl StoreTarget for SmtpStoreConfig {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    fn home(&self) -> Option<RecordsAt> {
        None
    }

    fn needs_delivered_log(&self) -> bool {
        true
    }

    fn delivered_at(&self) -> Option<&RecordsAt> {
        self.markers.as_ref()
    }

    fn build(&self, _: &TargetClients) -> Result<Arc<dyn MailboxStore>, SetupError> {
        Ok(Arc::new(SmtpStore::new(self)?))
    }
}

/// The header that names the folder a rule chose, on copies handed over SMTP.
pub const FOLDER_HEADER: &str = "X-Sluice-Folder";

/// Sends messages to one SMTP server over pooled connections: the SMTP store's transport,
/// and the SMTP relay's.
pub struct SmtpSender {
    pool: Pool,
}

impl SmtpSender {
    /// A sender for this server; connections open on first use. `Err` says what to fix
    /// (credentials or a CA file that cannot be read).
    pub fn new(server: &ServerConfig) -> Result<SmtpSender, SetupError> {
        Ok(SmtpSender {
            pool: Pool::new(Target::new(server, Protocol::Smtp)?),
        })
    }

    /// `smtp host:port`.
    pub fn describe(&self) -> String {
        self.pool.target.name.clone()
    }

    /// One transaction: per recipient, the server's acceptance or its refusal (5xx) or
    /// deferral (4xx). `Err` for the whole call when no connection could be made or it broke
    /// ([`MailboxError::Unanswered`] once the message was sent: it may have been accepted).
    pub async fn send(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Vec<Result<Reply, MailboxError>>, MailboxError> {
        let mut lease = self.pool.take().await?;
        let results = lease
            .session
            .transaction(&self.pool.target, mail_from, recipients, message)
            .await?;
        self.pool.put(lease);
        Ok(results)
    }
}

/// Delivers to an MTA over SMTP.
pub struct SmtpStore {
    sender: SmtpSender,
}

impl SmtpStore {
    /// A store for this config; connections open on first use. `Err` says what to fix
    /// (credentials that cannot be read).
    pub fn new(config: &SmtpStoreConfig) -> Result<SmtpStore, SetupError> {
        Ok(SmtpStore {
            sender: SmtpSender::new(&config.server)?,
        })
    }

    async fn deliver(&self, request: StoreRequest<'_>) -> Vec<StoreOutcome> {
        // One transaction per folder: the folder header is part of the message.
        let mut by_folder: BTreeMap<&str, Vec<&MailboxCopy>> = BTreeMap::new();
        for c in request.copies {
            by_folder.entry(c.folder.as_str()).or_default().push(c);
        }
        let mut out = Vec::new();
        for (folder, copies) in by_folder {
            let bytes;
            let message: &[u8] = if folder.eq_ignore_ascii_case(DEFAULT_FOLDER) {
                request.bytes
            } else {
                // Prepended: a new first header field changes nothing else in the message.
                let clean: String = folder.chars().filter(|c| !c.is_control()).collect();
                bytes = [
                    format!("{FOLDER_HEADER}: {clean}\r\n").as_bytes(),
                    request.bytes,
                ]
                .concat();
                &bytes
            };
            let rcpts: Vec<String> = copies.iter().map(|c| c.recipient.clone()).collect();
            let part = StoreRequest {
                copies: &copies.iter().map(|c| (*c).clone()).collect::<Vec<_>>(),
                ..request
            };
            let server = self.sender.describe();
            match self.sender.send(request.mail_from, &rcpts, message).await {
                Ok(results) => {
                    out.extend(copies.iter().zip(results).map(|(copy, r)| StoreOutcome {
                        copy: (*copy).clone(),
                        result:
                            r.map(|reply| format!("{server} {} ({})", copy.recipient, reply.text)),
                    }));
                }
                Err(e) => out.extend(all_failed(&part, || e.clone())),
            }
        }
        out
    }
}

impl MailboxStore for SmtpStore {
    fn describe(&self) -> String {
        self.sender.describe()
    }

    fn overwrites(&self) -> bool {
        false
    }

    fn store<'a>(&'a self, request: StoreRequest<'a>) -> BoxFuture<'a, Vec<StoreOutcome>> {
        Box::pin(self.deliver(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Credentials, ServerAddress};

    fn smtp(text: &str) -> Checked<SmtpStoreConfig> {
        crate::config::tests::read_with(check, text)
    }

    #[test]
    fn smtp_needs_tls_for_credentials_and_reads_them_from_outside() {
        let s = smtp("kind = \"smtp\"\nhost = \"mx.internal\"").unwrap();
        assert_eq!(
            s.server.address,
            ServerAddress::Tcp {
                host: "mx.internal".into(),
                port: 25
            }
        );
        assert_eq!(s.server.tls, TlsMode::StartTls);
        let m =
            smtp("kind = \"smtp\"\nhost = \"h\"\ntls = \"none\"\nauth_env = \"SMTP\"").unwrap_err();
        assert!(m.contains("never sent in plain text"), "{m}");
        let s = smtp("kind = \"smtp\"\nhost = \"h\"\nauth_file = \"smtp.secret\"").unwrap();
        assert_eq!(
            s.server.credentials,
            Some(Credentials::File("/etc/sluice/smtp.secret".into()))
        );
        let m = smtp("kind = \"smtp\"\nhost = \"h\"\ntls = \"ssl\"").unwrap_err();
        assert!(
            m.contains("expected \"none\", \"starttls\" or \"implicit\""),
            "{m}"
        );
        assert!(smtp("kind = \"smtp\"").unwrap_err().contains("needs `host"));
    }
}
