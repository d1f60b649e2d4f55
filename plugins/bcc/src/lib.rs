//! `bcc`: a copy of every message to fixed addresses, e.g. a compliance archive.
//!
//! Returns `add-recipients`: the copy goes in the same transaction, so the message is the one
//! the other recipients get (with the chain's edits), and nothing in its header shows the
//! copy. Through the milter the host adds the addresses with `SMFIR_ADDRCPT`, and the MTA
//! delivers or relays them like any recipient. Meant for `[[outbound]]` chains (mail local
//! users send); in a `[[domain]]` chain it copies received mail the same way.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `to` | list of addresses, required, non-empty | | who gets the copy |
//!
//! ```toml
//! [[outbound.step]]
//! plugin = "bcc.wasm"
//! config = { to = ["compliance@example.com"] }
//! ```

use sluice_sdk::prelude::*;

/// The rule's config.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who gets the copy.
    pub to: Vec<String>,
}

/// The rule.
pub struct Bcc;

impl Rule for Bcc {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.to.is_empty() {
            return Err("`to` must name at least one address".into());
        }
        for address in &config.to {
            check_address(address).map_err(|e| format!("`to`: {address:?}: {e}"))?;
        }
        Ok(())
    }

    fn evaluate(_msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        Ok(copies(ctx.recipients(), &config.to))
    }
}

sluice_sdk::export_rule!(Bcc);

/// `add-recipients` with the addresses of `to` that are not recipients already (none: no
/// action, so a message to the archive itself is not listed twice).
pub fn copies(recipients: &[String], to: &[String]) -> Vec<Action> {
    let new: Vec<&String> = to
        .iter()
        .filter(|a| !recipients.iter().any(|r| r.eq_ignore_ascii_case(a)))
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    vec![Action::add_recipients(new)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_go_to_addresses_not_already_recipients() {
        let to = vec!["compliance@example.com".to_string()];
        assert_eq!(
            copies(&["bob@partner.test".to_string()], &to),
            vec![Action::add_recipients(["compliance@example.com"])]
        );
        assert!(copies(&["Compliance@Example.com".to_string()], &to).is_empty());
    }

    #[test]
    fn config_needs_valid_addresses() {
        assert!(Bcc::check_config(&Config::default()).is_err());
        let bad = Config {
            to: vec!["not an address".into()],
        };
        assert!(Bcc::check_config(&bad).is_err());
        let ok = Config {
            to: vec!["a@example.com".into()],
        };
        assert!(Bcc::check_config(&ok).is_ok());
    }
}
