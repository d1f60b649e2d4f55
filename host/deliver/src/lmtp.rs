//! `[store] kind = "lmtp"`: hands each message to an LMTP server (Dovecot) in one
//! transaction for all its copies, and honours the per-recipient replies after DATA.
//!
//! Folders travel in the recipient address: `alice+Junk@example.com` for a copy filed into
//! `Junk` (Dovecot: `lmtp_save_to_detail_mailbox = yes`, `recipient_delimiter = +`,
//! `lda_mailbox_autocreate = yes`); `INBOX` copies go to the plain address.

use sluice_chain::{LmtpStoreConfig, LmtpUser, DEFAULT_FOLDER};

use crate::session::{Pool, Protocol, Target};
use crate::{all_failed, BoxFuture, MailboxStore, SetupError, StoreOutcome, StoreRequest};

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
