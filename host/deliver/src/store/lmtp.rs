//! `[store] kind = "lmtp"`: hands each message to an LMTP server (Dovecot) in one
//! transaction for all its copies, and honours the per-recipient replies after DATA.
//!
//! Folders travel in the recipient address: `alice+Junk@example.com` for a copy filed into
//! `Junk` (Dovecot: `lmtp_save_to_detail_mailbox = yes`, `recipient_delimiter = +`,
//! `lda_mailbox_autocreate = yes`); `INBOX` copies go to the plain address.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{
    read_section, store_markers, Checked, RecordsAt, StoreConfig, StoreContext, StoreKind,
    StoreTarget, TargetClients,
};
use crate::server::{take_server, ServerAddress, ServerConfig, ServerRules, TlsMode};
use crate::session::{Pool, Protocol, Target};
use crate::{
    all_failed, BoxFuture, MailboxStore, SetupError, StoreOutcome, StoreRequest, DEFAULT_FOLDER,
};

/// `[store] kind = "lmtp"`.
pub const KIND: StoreKind = StoreKind { name: "lmtp", read };

/// The section as written (the server keys are read by [`take_server`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LmtpSection {
    /// `host:port` or the path of a unix socket.
    address: Option<String>,
    /// `address` (default) or `local-part`: what the recipient's user name is.
    user: Option<String>,
    /// The separator between user and folder (`alice+Junk@example.com`, default `+`).
    folder_delimiter: Option<String>,
    /// Where delivered recipients are recorded (`s3://bucket/prefix` or a directory), so a
    /// retry delivers only to the recipients not yet done. Default: the relay's markers.
    markers: Option<String>,
}

/// What the LMTP server knows a recipient as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmtpUser {
    /// `alice@example.com` (Dovecot's default).
    Address,
    /// `alice` (a userdb keyed by user names).
    LocalPart,
}

/// `[store] kind = "lmtp"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpStoreConfig {
    /// The server.
    pub server: ServerConfig,
    /// Full address or local part.
    pub user: LmtpUser,
    /// Folder separator in the recipient (`alice+Junk@…`); Dovecot files into the folder with
    /// `lmtp_save_to_detail_mailbox = yes`.
    pub folder_delimiter: String,
    /// Where delivered recipients are recorded.
    pub markers: Option<RecordsAt>,
}

fn read(table: toml::Table, context: &StoreContext<'_>) -> Checked<StoreConfig> {
    Ok(Arc::new(check(table, context)?))
}

fn check(mut table: toml::Table, context: &StoreContext<'_>) -> Checked<LmtpStoreConfig> {
    table.remove("kind");
    let rules = ServerRules {
        default_tls: TlsMode::None,
        auth: false,
    };
    let settings = take_server("store", &mut table, rules, context.resolve)?;
    let section: LmtpSection = read_section("store", table)?;
    let address = match section.address.as_deref() {
        None | Some("") => {
            return Err("store: kind = \"lmtp\" needs `address = \"127.0.0.1:24\"` or a unix socket path such as \"/var/run/dovecot/lmtp\"".into())
        }
        Some(a) => parse_lmtp_address(a)?,
    };
    let server = settings.at(address);
    let user = match section.user.as_deref() {
        None | Some("address") => LmtpUser::Address,
        Some("local-part") => LmtpUser::LocalPart,
        Some(other) => return Err(format!("store.user {other:?}; expected \"address\" (alice@example.com) or \"local-part\" (alice)")),
    };
    let folder_delimiter = section.folder_delimiter.unwrap_or_else(|| "+".into());
    if folder_delimiter.len() != 1 || !folder_delimiter.bytes().all(|b| b"+-_.=#".contains(&b)) {
        return Err(format!("store.folder_delimiter {folder_delimiter:?}: one of + - _ . = # (Dovecot's recipient_delimiter)"));
    }
    Ok(LmtpStoreConfig {
        server,
        user,
        folder_delimiter,
        markers: store_markers(section.markers.as_deref(), context)?,
    })
}

/// `host:port`, `[v6]:port` or an absolute unix socket path.
fn parse_lmtp_address(a: &str) -> Checked<ServerAddress> {
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

impl StoreTarget for LmtpStoreConfig {
    fn kind(&self) -> &'static str {
        "lmtp"
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
        Ok(Arc::new(LmtpStore::new(self)?))
    }
}

/// Delivers over LMTP.
pub struct LmtpStore {
    pool: Pool,
    user: LmtpUser,
    delimiter: String,
}

/// Whether `s` can be a local part without quotes (RFC 5321 dot-string).
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80)
}

/// The address the LMTP server gets for one copy: the user (full address or local part)
/// with `<delimiter><folder>` after the local part unless the folder is `INBOX`. A local
/// part that is not a plain dot-string (a folder with a space) is quoted.
pub fn lmtp_recipient(recipient: &str, folder: &str, user: LmtpUser, delimiter: &str) -> String {
    let (local, domain) = match recipient.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (recipient, None),
    };
    let local = local.trim_matches('"');
    let local = if folder.eq_ignore_ascii_case(DEFAULT_FOLDER) {
        local.to_string()
    } else {
        format!("{local}{delimiter}{folder}")
    };
    let local = if is_dot_string(&local) {
        local
    } else {
        format!("\"{}\"", local.replace('\\', "\\\\").replace('"', "\\\""))
    };
    match (user, domain) {
        (LmtpUser::Address, Some(d)) => format!("{local}@{d}"),
        _ => local,
    }
}

impl LmtpStore {
    /// A store for this config; connections open on first use. `Err` says what to fix.
    pub fn new(config: &LmtpStoreConfig) -> Result<LmtpStore, SetupError> {
        Ok(LmtpStore {
            pool: Pool::new(Target::new(&config.server, Protocol::Lmtp)?),
            user: config.user,
            delimiter: config.folder_delimiter.clone(),
        })
    }

    async fn deliver(&self, request: StoreRequest<'_>) -> Vec<StoreOutcome> {
        let server = &self.pool.target.name;
        let rcpts: Vec<String> = request
            .copies
            .iter()
            .map(|c| lmtp_recipient(&c.recipient, &c.folder, self.user, &self.delimiter))
            .collect();
        let mut lease = match self.pool.take().await {
            Ok(l) => l,
            Err(e) => return all_failed(&request, || e.clone()),
        };
        match lease
            .session
            .transaction(&self.pool.target, request.mail_from, &rcpts, request.bytes)
            .await
        {
            Ok(results) => {
                self.pool.put(lease);
                request
                    .copies
                    .iter()
                    .zip(rcpts.iter().zip(results))
                    .map(|(copy, (rcpt, r))| StoreOutcome {
                        copy: copy.clone(),
                        result: r.map(|_| format!("{server} {rcpt}")),
                    })
                    .collect()
            }
            // The connection is dropped with the lease.
            Err(e) => all_failed(&request, || e.clone()),
        }
    }
}

impl MailboxStore for LmtpStore {
    fn describe(&self) -> String {
        self.pool.target.name.clone()
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
    use crate::config::tests::store;
    use crate::server::DEFAULT_SERVER_TIMEOUT;

    fn lmtp(text: &str) -> Checked<LmtpStoreConfig> {
        crate::config::tests::read_with(check, text)
    }

    #[test]
    fn lmtp_defaults_and_addresses() {
        let l = lmtp("kind = \"lmtp\"\naddress = \"127.0.0.1:24\"").unwrap();
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
        assert_eq!(l.markers, None);
        let l = lmtp("kind = \"lmtp\"\naddress = \"/run/dovecot/lmtp\"\nuser = \"local-part\"\nmarkers = \"state\"")
            .unwrap();
        assert_eq!(
            l.server.address,
            ServerAddress::Unix("/run/dovecot/lmtp".into())
        );
        assert_eq!(l.user, LmtpUser::LocalPart);
        assert_eq!(l.markers, Some(RecordsAt::Dir("/etc/sluice/state".into())));
        for bad in ["127.0.0.1", "127.0.0.1:x", ":24", "relative/socket"] {
            let m = store(&format!("kind = \"lmtp\"\naddress = {bad:?}")).unwrap_err();
            assert!(m.contains("expected host:port"), "{bad}: {m}");
        }
        assert!(store("kind = \"lmtp\"")
            .unwrap_err()
            .contains("needs `address"));
        assert!(store("kind = \"lmtp\"\naddress = \"h:24\"\nuser = \"uid\"")
            .unwrap_err()
            .contains("\"local-part\""));
        let s = store("kind = \"lmtp\"\naddress = \"h:24\"").unwrap();
        assert!(s.needs_delivered_log() && s.delivered_at().is_none() && s.home().is_none());
    }

    #[test]
    fn folders_travel_in_the_address() {
        let a = LmtpUser::Address;
        assert_eq!(
            lmtp_recipient("alice@example.com", "INBOX", a, "+"),
            "alice@example.com"
        );
        assert_eq!(
            lmtp_recipient("alice@example.com", "Junk", a, "+"),
            "alice+Junk@example.com"
        );
        assert_eq!(
            lmtp_recipient("alice@example.com", "Junk", LmtpUser::LocalPart, "+"),
            "alice+Junk"
        );
        assert_eq!(
            lmtp_recipient("bob@example.com", "inbox", a, "+"),
            "bob@example.com"
        );
        assert_eq!(
            lmtp_recipient("alice@example.com", "Sent Items", a, "+"),
            "\"alice+Sent Items\"@example.com"
        );
        assert_eq!(
            lmtp_recipient("a@example.com", "Archive/2026", a, "-"),
            "a-Archive/2026@example.com"
        );
    }
}
