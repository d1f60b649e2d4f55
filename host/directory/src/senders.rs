//! Sender allow and block lists kept in a directory beside its aliases, for the
//! `sender-lists` rule (`table = "NAME"`) and `sluice list`.
//!
//! An entry is an address (`alice@partner.example`), a domain (`partner.example`: that domain
//! only) or a leading-dot domain (`.partner.example`: its subdomains only), lower case. `*`
//! patterns stay in the step config: a table is read by key, and a pattern cannot be a key.
//!
//! A rule asks for one entry at a time with the key `sender:ENTRY` (`lookup.get("aliases",
//! "sender:spam.example")`) and gets `{"list": "block"}` or nothing; the `sender-lists` rule
//! asks for the address, its domain and each parent `.domain` and keeps the most specific
//! answer, as it does for its config lists.

use serde::{Deserialize, Serialize};

use crate::{normalize_address, normalize_domain, DirectoryError};

/// The prefix of a lookup key that asks the sender lists rather than the aliases.
pub const SENDER_KEY_PREFIX: &str = "sender:";

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderList {
    /// Senders that skip the later steps.
    Allow,
    /// Senders that are refused (or junked, or dropped: the rule's config says).
    Block,
}

impl SenderList {
    /// The spelling in files, tables, lookup answers and `sluice list`.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderList::Allow => "allow",
            SenderList::Block => "block",
        }
    }

    /// What a rule's lookup of an entry on this list gets: `{"list":"block"}`.
    pub fn lookup_value(self) -> String {
        serde_json::json!({ "list": self.as_str() }).to_string()
    }
}

impl std::fmt::Display for SenderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SenderList {
    type Err = DirectoryError;

    fn from_str(s: &str) -> Result<SenderList, DirectoryError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(SenderList::Allow),
            "block" => Ok(SenderList::Block),
            other => Err(DirectoryError::Invalid(format!(
                "unknown list `{other}`: use allow or block"
            ))),
        }
    }
}

/// Lower-cases and checks a list entry: an address, a domain, or `.domain` for its
/// subdomains. The error says what an entry may be.
pub fn normalize_sender_entry(entry: &str) -> Result<String, DirectoryError> {
    let trimmed = entry.trim();
    if trimmed.contains('*') {
        return Err(DirectoryError::Invalid(format!(
            "`{trimmed}`: a `*` pattern cannot be kept in a directory (it is read by key): put patterns in the step's `block`/`allow` config, and list domains here as `example.com` and `.example.com`"
        )));
    }
    if trimmed.contains('@') {
        return normalize_address(trimmed);
    }
    let (dot, domain) = match trimmed.strip_prefix('.') {
        Some(rest) => (".", rest),
        None => ("", trimmed),
    };
    normalize_domain(domain)
        .map(|d| format!("{dot}{d}"))
        .map_err(|_| {
            DirectoryError::Invalid(format!(
                "`{trimmed}` is not a sender entry: use an address (alice@example.com), a domain (example.com) or `.example.com` for its subdomains"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_addresses_domains_or_subdomains_in_lower_case() {
        assert_eq!(
            normalize_sender_entry(" Alice@Partner.Example ").unwrap(),
            "alice@partner.example"
        );
        assert_eq!(
            normalize_sender_entry("Spam.Example").unwrap(),
            "spam.example"
        );
        assert_eq!(
            normalize_sender_entry(".Spam.Example").unwrap(),
            ".spam.example"
        );
    }

    #[test]
    fn patterns_and_junk_are_refused_with_what_to_do() {
        let err = normalize_sender_entry("*@*.bulk.example").unwrap_err();
        assert!(
            err.to_string().contains("step's `block`/`allow` config"),
            "{err}"
        );
        for bad in ["", ".", "..example", "exa mple.com", "a@", "@example.com"] {
            assert!(normalize_sender_entry(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lists_parse_and_answer_json() {
        assert_eq!("Block".parse::<SenderList>().unwrap(), SenderList::Block);
        assert!("deny".parse::<SenderList>().is_err());
        assert_eq!(SenderList::Allow.lookup_value(), r#"{"list":"allow"}"#);
    }
}
