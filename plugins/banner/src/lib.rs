//! `banner`: an "external sender" banner, like Exchange's.
//!
//! Adds one `add-banner` action to mail that is not from an authenticated internal sender.
//! The host adds a banner only to parts that do not show it already (a reply quoting it, a
//! message that went through the chain twice), so the rule never reads the body.
//!
//! `From:` is written by the sender, so a claim alone proves nothing: phishing mail from
//! outside with `From: ceo@example.com` is exactly what the banner is for. A sender is
//! internal only when the `From:` domain is in `internal_domains` **and** SES's DMARC verdict
//! is PASS, which means SPF or DKIM passed for a domain aligned with that `From:` domain
//! (RFC 7489). Internal domains that publish no DMARC record get the banner; publish one, or
//! set `trust_from = true` to go back to trusting the header alone (spoofable).
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `text` | string, required, non-empty | | the banner for text/plain parts (escaped by the host for HTML parts when `html` is absent) |
//! | `html` | string | none | the banner for text/html parts, inserted as-is |
//! | `position` | `"top"` \| `"bottom"` | `"top"` | where the banner goes in each displayed part |
//! | `internal_domains` | list of domains | `[]` | senders whose `From:` domain is one of these, or a subdomain of one (ASCII case-insensitive), and whose mail passed DMARC, get no banner |
//! | `trust_from` | bool | `false` | `true`: an internal `From:` domain is enough, without DMARC (spoofable; only for internal domains without DMARC that cannot be reached from outside) |
//!
//! A message without a usable `From:` address is treated as external.
//!
//! ```toml
//! config = { text = "External sender: be careful with links.", internal_domains = ["example.com"] }
//! ```

use sluice_sdk::prelude::*;

/// The rule's typed config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plain-text banner.
    pub text: String,
    /// HTML banner for text/html parts.
    #[serde(default)]
    pub html: Option<String>,
    /// Top or bottom of each displayed part.
    #[serde(default)]
    pub position: BannerPosition,
    /// Domains (and their subdomains) whose authenticated senders are internal.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// Treat an internal `From:` as internal without a DMARC pass.
    #[serde(default)]
    pub trust_from: bool,
}

/// `position` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BannerPosition {
    /// Before the part's content.
    #[default]
    Top,
    /// After the part's content.
    Bottom,
}

/// The rule.
pub struct Banner;

impl Rule for Banner {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.text.trim().is_empty() {
            return Err("`text` must not be empty".into());
        }
        Ok(())
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let authenticated = config.trust_from || ctx.verdicts.dmarc.passed();
        if !is_external(
            msg.from().as_deref(),
            &config.internal_domains,
            authenticated,
        ) {
            return Ok(vec![]);
        }
        let position = match config.position {
            BannerPosition::Top => Position::Top,
            BannerPosition::Bottom => Position::Bottom,
        };
        Ok(vec![Action::banner(
            config.text.clone(),
            config.html.clone(),
            position,
        )])
    }
}

sluice_sdk::export_rule!(Banner);

/// Whether a message from `from` gets the banner: unless `from` is in an internal domain
/// and `authenticated` (DMARC passed, or the config trusts `From:`).
pub fn is_external(from: Option<&str>, internal_domains: &[String], authenticated: bool) -> bool {
    !(authenticated && from.is_some_and(|from| is_in_domains(from, internal_domains)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        sluice_sdk::parse_config(json).unwrap()
    }

    #[test]
    fn config_requires_text_and_rejects_unknown_keys() {
        let c = config(r#"{"text":"EXT","internal_domains":["example.com"]}"#);
        assert_eq!(c.position, BannerPosition::Top);
        assert_eq!(
            config(r#"{"text":"x","position":"bottom"}"#).position,
            BannerPosition::Bottom
        );
        let err = sluice_sdk::parse_config::<Config>(r#"{"txt":"x"}"#).unwrap_err();
        assert!(err.contains("unknown field `txt`"), "{err}");
        let err = sluice_sdk::parse_config::<Config>("{}").unwrap_err();
        assert!(err.contains("missing field `text`"), "{err}");
        let err =
            sluice_sdk::parse_config::<Config>(r#"{"text":"x","position":"middle"}"#).unwrap_err();
        assert!(err.contains("unknown variant `middle`"), "{err}");
        assert!(Banner::check_config(&config(r#"{"text":"  "}"#)).is_err());
    }

    #[test]
    fn internal_senders_and_subdomains_get_no_banner() {
        let internal = vec!["Example.com".to_string()];
        assert!(!is_external(Some("ann@example.com"), &internal, true));
        assert!(!is_external(Some("ann@EU.EXAMPLE.COM"), &internal, true));
        assert!(is_external(Some("eve@badexample.com"), &internal, true));
        assert!(is_external(
            Some("eve@example.com.evil.test"),
            &internal,
            true
        ));
        assert!(is_external(None, &internal, true));
        assert!(is_external(Some("ann@example.com"), &[], true));
    }

    #[test]
    fn an_unauthenticated_internal_from_gets_the_banner() {
        let internal = vec!["example.com".to_string()];
        // A spoofed `From: ceo@example.com` from outside: no DMARC pass, banner.
        assert!(is_external(Some("ceo@example.com"), &internal, false));
        assert!(is_external(Some("eve@elsewhere.example"), &internal, false));
    }
}
