//! Editing a directory's aliases with its checks, for whoever asks: `sluice alias`, the alias
//! API it serves (`sluice alias api`) and the alias API Lambda behind a function URL. The
//! same edit gets the same refusal on every path, and the HTTP answer ([`answer`]) is shared.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/aliases?domain=D[&status=S]` | 200, the domain's records |
//! | `GET /v1/aliases/{address}` | 200 the record, 404 |
//! | `POST /v1/aliases` `{"address"` or `"random": DOMAIN, "prefix", "to": [..], "status", "replace"}` | 201 (200 replaced), 409 exists |
//! | `POST /v1/aliases/{address}/pause` (`resume`, `ignore`) | 200 `{"record", "changed"}` |
//! | `DELETE /v1/aliases/{address}` | 200 `{"removed"}`, 404 |
//!
//! Errors are `{"error": "..."}` with 400 (bad input), 404, 405, 409, 422 (a domain not
//! served, a destination not allowed) and 503 (the backend is down: try again).

use std::io::Read;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    normalize_address, normalize_domain, now_epoch, AliasRecord, AliasStore, DirectoryError,
    DirectorySettings, Status,
};

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such alias.
    #[error("{0}")]
    NotFound(String),
    /// The alias exists and replacing it was not asked.
    #[error("{0}")]
    Exists(String),
    /// The request itself is wrong (says what to fix).
    #[error("{0}")]
    Invalid(String),
    /// The directory refused or failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl AdminError {
    /// The HTTP status the API answers this with.
    pub fn status(&self) -> u16 {
        match self {
            AdminError::NotFound(_) => 404,
            AdminError::Exists(_) => 409,
            AdminError::Invalid(_) | AdminError::Directory(DirectoryError::Invalid(_)) => 400,
            AdminError::Directory(DirectoryError::Refused(_)) => 422,
            AdminError::Directory(DirectoryError::Unavailable(_)) => 503,
        }
    }
}

/// What `add` makes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddRequest {
    /// The alias, unless `random` names the domain of an unguessable one.
    pub address: Option<String>,
    /// Make an unguessable alias in this domain.
    pub random: Option<String>,
    /// The random alias' prefix.
    pub prefix: Option<String>,
    /// Destinations; none: the alias is a mailbox itself.
    pub to: Vec<String>,
    /// Its status (default active).
    pub status: Option<Status>,
    /// Overwrite an existing alias (its creation time and use count are kept).
    pub replace: bool,
}

/// What `add` did.
#[derive(Debug)]
pub struct Added {
    /// The record as stored.
    pub record: AliasRecord,
    /// An existing alias was replaced.
    pub replaced: bool,
}

/// A directory opened for editing.
pub struct Admin {
    /// The `[directory.NAME]` name (for messages).
    pub name: String,
    /// The store.
    pub store: Arc<dyn AliasStore>,
}

/// Characters of random aliases: lower case without look-alikes (0/o, 1/l); 32 of them, so
/// a byte's low five bits pick one without bias.
const RANDOM_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Random characters per alias: 50 bits, unguessable for a spammer.
const RANDOM_LEN: usize = 10;

/// An unguessable local part, `prefix-` first when given.
pub fn random_local(prefix: Option<&str>) -> Result<String, AdminError> {
    let mut bytes = [0u8; RANDOM_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            AdminError::Invalid(format!("cannot read random bytes from /dev/urandom: {e}"))
        })?;
    let random: String = bytes
        .iter()
        .map(|b| char::from(RANDOM_ALPHABET[usize::from(b & 31)]))
        .collect();
    Ok(match prefix {
        Some(prefix) => format!("{prefix}-{random}"),
        None => random,
    })
}

/// `a, b` or `(itself)`.
pub fn destinations(to: &[String]) -> String {
    if to.is_empty() {
        "(itself)".into()
    } else {
        to.join(", ")
    }
}

impl Admin {
    /// The directory's settings.
    pub fn settings(&self) -> Result<DirectorySettings, AdminError> {
        Ok(self.store.settings()?)
    }

    /// "no alias ... : add it with ...".
    pub fn no_such(&self, address: &str) -> String {
        format!(
            "no alias {address} in directory \"{}\": add it with `sluice alias add {address} --to DEST`",
            self.name
        )
    }

    /// Checks an alias and its destinations against `settings` (not for a CSV file, which
    /// has none).
    pub fn check(
        &self,
        settings: &DirectorySettings,
        record: &AliasRecord,
    ) -> Result<(), AdminError> {
        if !self.store.keeps_settings() {
            return Ok(());
        }
        settings.check_alias(&self.name, &record.address)?;
        for dest in &record.to {
            settings.check_destination(&self.name, dest)?;
        }
        Ok(())
    }

    /// Destinations normalized, without repeats; a catch-all is refused.
    pub fn destinations_of(to: &[String]) -> Result<Vec<String>, AdminError> {
        let mut out = Vec::new();
        for dest in to {
            let dest =
                normalize_address(dest).map_err(|e| AdminError::Invalid(format!("--to: {e}")))?;
            if dest.starts_with("*@") {
                return Err(AdminError::Invalid(format!(
                    "--to {dest}: a catch-all is not a destination: name a full address"
                )));
            }
            if !out.contains(&dest) {
                out.push(dest);
            }
        }
        Ok(out)
    }

    /// Adds (or with `replace`, replaces) an alias, or makes a random one.
    pub fn add(&self, req: AddRequest) -> Result<Added, AdminError> {
        let settings = self.settings()?;
        let to = Admin::destinations_of(&req.to)?;
        let now = now_epoch();
        let status = req.status.unwrap_or_default();
        if let Some(domain) = &req.random {
            let domain = normalize_domain(domain)?;
            let prefix = match req.prefix.as_deref().map(str::to_lowercase) {
                Some(p)
                    if p.is_empty()
                        || !p.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        }) =>
                {
                    return Err(AdminError::Invalid(format!(
                        "--prefix {p:?}: use letters, digits, `.`, `_` and `-`"
                    )))
                }
                p => p,
            };
            for _ in 0..5 {
                let address = format!("{}@{domain}", random_local(prefix.as_deref())?);
                if self.store.get(&address)?.is_some() {
                    continue;
                }
                let mut record = AliasRecord::new(address, to, now);
                record.status = status;
                self.check(&settings, &record)?;
                self.store.put(&record)?;
                return Ok(Added {
                    record,
                    replaced: false,
                });
            }
            return Err(AdminError::Invalid(
                "five random aliases in a row were taken: is the random source broken?".into(),
            ));
        }
        let Some(address) = req.address.as_deref() else {
            return Err(AdminError::Invalid(
                "name the alias (`address`), or ask for a random one in a domain (`random`)".into(),
            ));
        };
        let address = normalize_address(address)?;
        let mut record = AliasRecord::new(address, to, now);
        record.status = status;
        self.check(&settings, &record)?;
        let existing = self.store.get(&record.address)?;
        if let Some(old) = &existing {
            if !req.replace {
                return Err(AdminError::Exists(format!(
                    "{} already exists ({}, to {}): add --replace to overwrite it",
                    old.address,
                    old.status,
                    destinations(&old.to)
                )));
            }
            record.created = old.created;
            record.uses = old.uses;
            record.last_used = old.last_used;
        }
        self.store.put(&record)?;
        Ok(Added {
            record,
            replaced: existing.is_some(),
        })
    }

    /// A domain's aliases, with `status` only if given.
    pub fn records(
        &self,
        domain: &str,
        status: Option<Status>,
    ) -> Result<Vec<AliasRecord>, AdminError> {
        let domain = normalize_domain(domain)?;
        Ok(self
            .store
            .list(&domain)?
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect())
    }

    /// One alias.
    pub fn get(&self, address: &str) -> Result<AliasRecord, AdminError> {
        let address = normalize_address(address)?;
        match self.store.get(&address)? {
            Some(record) => Ok(record),
            None => Err(AdminError::NotFound(self.no_such(&address))),
        }
    }

    /// Removes an alias; returns its (normalized) address.
    pub fn remove(&self, address: &str) -> Result<String, AdminError> {
        let address = normalize_address(address)?;
        if !self.store.remove(&address)? {
            return Err(AdminError::NotFound(self.no_such(&address)));
        }
        Ok(address)
    }

    /// Sets an alias' status; returns the record and whether it changed.
    pub fn set_status(
        &self,
        address: &str,
        status: Status,
    ) -> Result<(AliasRecord, bool), AdminError> {
        let mut record = self.get(address)?;
        if record.status == status {
            return Ok((record, false));
        }
        record.status = status;
        record.modified = now_epoch();
        self.store.put(&record)?;
        Ok((record, true))
    }
}

/// Decodes `%XX` (and `+` as a space, in queries).
pub fn percent_decode(s: &str) -> Result<String, AdminError> {
    let bad = || AdminError::Invalid("bad %-escape in the URL".into());
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(bad)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| AdminError::Invalid("the URL is not UTF-8".into()))
}

/// The route of a request, for logs: the path with the address left out.
pub fn route_name(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "aliases"] => format!("{method} /v1/aliases"),
        ["v1", "aliases", _] => format!("{method} /v1/aliases/{{address}}"),
        ["v1", "aliases", _, verb] => format!("{method} /v1/aliases/{{address}}/{verb}"),
        _ => format!("{method} (unknown path)"),
    }
}

/// Answers one API request (already authenticated): the HTTP status and the JSON body.
pub fn answer(admin: &Admin, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
    match route(admin, method, path, query, body) {
        Ok(answer) => answer,
        Err(e) => (e.status(), json!({"error": e.to_string()})),
    }
}

fn route(
    admin: &Admin,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<(u16, Value), AdminError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (method, segments.as_slice()) {
        ("GET", ["v1", "aliases"]) => {
            let mut domain = None;
            let mut status = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match percent_decode(k)?.as_str() {
                    "domain" => domain = Some(percent_decode(v)?),
                    "status" => {
                        let v = percent_decode(v)?;
                        status = Some(serde_json::from_value::<Status>(json!(v)).map_err(|_| {
                            AdminError::Invalid(format!("status {v:?}: active, paused or ignored"))
                        })?)
                    }
                    _ => {}
                }
            }
            let Some(domain) = domain else {
                return Err(AdminError::Invalid(
                    "name the domain: /v1/aliases?domain=example.com".into(),
                ));
            };
            (200, json!(admin.records(&domain, status)?))
        }
        ("POST", ["v1", "aliases"]) => {
            let req: AddRequest = serde_json::from_slice(body).map_err(|e| {
                AdminError::Invalid(format!("the body is not an alias to add: {e}"))
            })?;
            let Added { record, replaced } = admin.add(req)?;
            (if replaced { 200 } else { 201 }, json!(record))
        }
        ("GET", ["v1", "aliases", a]) => (200, json!(admin.get(&percent_decode(a)?)?)),
        ("DELETE", ["v1", "aliases", a]) => {
            (200, json!({"removed": admin.remove(&percent_decode(a)?)?}))
        }
        ("POST", ["v1", "aliases", a, verb]) => {
            let status = match *verb {
                "pause" => Status::Paused,
                "resume" => Status::Active,
                "ignore" => Status::Ignored,
                other => {
                    return Err(AdminError::NotFound(format!(
                        "no action {other:?}: pause, resume or ignore"
                    )))
                }
            };
            let (record, changed) = admin.set_status(&percent_decode(a)?, status)?;
            (200, json!({"record": record, "changed": changed}))
        }
        (_, ["v1", "aliases"] | ["v1", "aliases", _] | ["v1", "aliases", _, _]) => (
            405,
            json!({"error": format!("{method} is not served here")}),
        ),
        _ => (
            404,
            json!({"error": "no such path: the API is under /v1/aliases"}),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_aliases_use_the_alphabet() {
        let local = random_local(Some("shop")).unwrap();
        let random = local.strip_prefix("shop-").unwrap();
        assert_eq!(random.len(), RANDOM_LEN);
        assert!(random.bytes().all(|b| RANDOM_ALPHABET.contains(&b)));
    }

    #[test]
    fn routes_are_logged_without_addresses() {
        assert_eq!(
            route_name("GET", "/v1/aliases/bob@example.com"),
            "GET /v1/aliases/{address}"
        );
        assert_eq!(percent_decode("a%40b+c").unwrap(), "a@b c");
        assert!(percent_decode("a%4").is_err());
    }
}
