//! `banner`: an "external sender" banner, like Exchange's.
//!
//! Adds one `add-banner` action to mail that is not from an authenticated internal sender,
//! unless the message already carries the banner (a reply quoting it, a message that went
//! through the chain twice).
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

/// How much of each body to read when looking for a top banner: it sits at the start, so
/// there is no need to copy a long body into the sandbox. A bottom banner needs the whole body.
const TOP_SCAN_BYTES: u32 = 64 * 1024;

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
        let limit = match config.position {
            BannerPosition::Top => TOP_SCAN_BYTES.saturating_add(config.text.len() as u32),
            BannerPosition::Bottom => 0,
        };
        let (text, html) = (msg.text_body(limit), msg.html_body(limit));
        if already_bannered(text.as_deref(), html.as_deref(), config) {
            log::debug!("banner already present");
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

/// Whether the banner is already in the message: its text in the decoded text body, or its
/// HTML (or its text rendered as the host renders it) in the HTML body. Line endings and surrounding whitespace are
/// ignored.
pub fn already_bannered(text_body: Option<&str>, html_body: Option<&str>, config: &Config) -> bool {
    let contains = |body: Option<&str>, needle: &str| {
        let needle = normalize(needle);
        !needle.is_empty() && body.is_some_and(|b| normalize(b).contains(&needle))
    };
    contains(text_body, &config.text)
        || config
            .html
            .as_deref()
            .is_some_and(|h| contains(html_body, h))
        || contains(html_body, &text_as_html(&config.text))
        || contains(html_body, &config.text)
}

fn normalize(s: &str) -> String {
    s.trim().replace("\r\n", "\n")
}

/// A text banner as the host renders it in HTML parts (without its `<div>` wrapper): each
/// line HTML-escaped, lines joined with `<br>`.
pub fn text_as_html(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        for c in line.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
    }
    out
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

    #[test]
    fn detects_an_existing_banner() {
        let c = config(r#"{"text":"External sender: <be careful>"}"#);
        assert!(!already_bannered(Some("hello"), Some("<p>hello</p>"), &c));
        assert!(already_bannered(
            Some("External sender: <be careful>\r\n\r\nhello"),
            None,
            &c
        ));
        assert!(already_bannered(
            None,
            Some("<body>External sender: &lt;be careful&gt;<p>hi</p>"),
            &c
        ));
        let c = config(r#"{"text":"EXT\r\nline 2","html":"<div class=\"ext\">EXT</div>"}"#);
        assert!(already_bannered(Some("EXT\nline 2\nbody"), None, &c));
        assert!(already_bannered(
            None,
            Some("<body><div class=\"ext\">EXT</div>hi"),
            &c
        ));
        assert!(!already_bannered(None, Some("<body><div>EXT</div>hi"), &c));
        let c = config(r#"{"text":"Careful: <x> & 'y'\nline 2"}"#);
        assert!(already_bannered(
            None,
            Some("<body><div>Careful: &lt;x&gt; &amp; &#39;y&#39;<br>line 2</div>hi"),
            &c
        ));
    }
}
