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
//! # Outbound mode
//! In an `[[outbound]]` chain (mail local users send, WIT 0.1.5 `flow`) the rule adds the
//! `disclaimer` instead, at the **bottom** of every displayed part (text and HTML), whoever
//! the sender; the external-sender banner is never added to outbound mail. Without a
//! `disclaimer` the rule adds nothing to outbound mail, so one step config can sit in both
//! kinds of chain.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `disclaimer` | table `{ text, html }` (`text` required, non-empty) | none | the disclaimer for outbound mail |
//!
//! `text` is required unless `disclaimer` is given (a step that only serves outbound chains).
//!
//! ```toml
//! config = { text = "External sender: be careful with links.", internal_domains = ["example.com"] }
//! # in an [[outbound]] chain:
//! config = { disclaimer = { text = "This message is confidential.", html = "<p><small>This message is confidential.</small></p>" } }
//! ```

use sluice_sdk::prelude::*;

/// The rule's typed config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plain-text banner (required unless `disclaimer` is given).
    #[serde(default)]
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
    /// The disclaimer for outbound mail (bottom of every displayed part).
    #[serde(default)]
    pub disclaimer: Option<Disclaimer>,
}

/// `disclaimer` in the config.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclaimer {
    /// Plain text, for text/plain parts (escaped by the host for HTML parts without `html`).
    pub text: String,
    /// HTML for text/html parts, inserted as-is before `</body>`.
    #[serde(default)]
    pub html: Option<String>,
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
        match &config.disclaimer {
            Some(d) if d.text.trim().is_empty() => {
                Err("`disclaimer.text` must not be empty".into())
            }
            Some(_) => Ok(()),
            None if config.text.trim().is_empty() => {
                Err("`text` must not be empty (or give a `disclaimer` for outbound mail)".into())
            }
            None => Ok(()),
        }
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        if flow::is_outbound() {
            return Ok(outbound_actions(config));
        }
        if config.text.trim().is_empty() {
            // A disclaimer-only step in an inbound chain.
            return Ok(vec![]);
        }
        let authenticated = config.trust_from || ctx.verdicts().dmarc.passed();
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

/// What the rule asks for on outbound mail: the disclaimer at the bottom, if configured.
pub fn outbound_actions(config: &Config) -> Vec<Action> {
    config
        .disclaimer
        .iter()
        .map(|d| Action::banner(d.text.clone(), d.html.clone(), Position::Bottom))
        .collect()
}

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
        let err = Banner::check_config(&config("{}")).unwrap_err();
        assert!(err.contains("`text` must not be empty"), "{err}");
        let d = config(r#"{"disclaimer":{"text":"Confidential","html":"<p>Confidential</p>"}}"#);
        assert!(Banner::check_config(&d).is_ok());
        assert!(Banner::check_config(&config(r#"{"disclaimer":{"text":" "}}"#)).is_err());
        let err = sluice_sdk::parse_config::<Config>(r#"{"disclaimer":{"txt":"x"}}"#).unwrap_err();
        assert!(err.contains("unknown field `txt`"), "{err}");
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
    fn outbound_mail_gets_the_disclaimer_at_the_bottom_and_never_the_banner() {
        let both = config(
            r#"{"text":"EXT","disclaimer":{"text":"Confidential","html":"<p>Confidential</p>"}}"#,
        );
        assert_eq!(
            outbound_actions(&both),
            vec![Action::banner(
                "Confidential",
                Some("<p>Confidential</p>".into()),
                Position::Bottom
            )]
        );
        assert!(outbound_actions(&config(r#"{"text":"EXT"}"#)).is_empty());
    }

    #[test]
    fn an_unauthenticated_internal_from_gets_the_banner() {
        let internal = vec!["example.com".to_string()];
        // A spoofed `From: ceo@example.com` from outside: no DMARC pass, banner.
        assert!(is_external(Some("ceo@example.com"), &internal, false));
        assert!(is_external(Some("eve@elsewhere.example"), &internal, false));
    }
}
