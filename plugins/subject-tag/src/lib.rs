//! `subject-tag`: tags mail from outside, records the authentication verdicts, files mail
//! that mentions watched keywords, and warns when both SPF and DKIM failed.
//!
//! The same rule exists in JavaScript (`js/`) and Python (`python/`); `README.md` in this
//! directory is the specification all three follow, and a test asserts they agree on every
//! corpus message.
//!
//! # Config
//! | key | type | default |
//! |---|---|---|
//! | `tag` | string, non-empty | `"[EXTERNAL]"` |
//! | `internal_domains` | list of strings | `[]` |
//! | `keywords` | list of non-empty strings | `[]` |
//! | `keyword_folder` | string, non-empty | `"Review"` |
//!
//! In an `[[outbound]]` chain (mail local users send, WIT 0.1.5 `flow`) the rule tags the
//! subject only when some recipient is external (its domain is not one of
//! `internal_domains`), and does nothing else: see `README.md`.

use sluice_sdk::prelude::*;

/// The banner added when both SPF and DKIM failed.
pub const AUTH_WARNING: &str = "Warning: this message failed sender authentication.";

/// The rule's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Subject tag (a space is added after it).
    pub tag: String,
    /// Senders in these domains are not tagged.
    pub internal_domains: Vec<String>,
    /// Words that file the message into `keyword_folder`.
    pub keywords: Vec<String>,
    /// The folder for messages with a keyword.
    pub keyword_folder: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tag: "[EXTERNAL]".into(),
            internal_domains: Vec::new(),
            keywords: Vec::new(),
            keyword_folder: "Review".into(),
        }
    }
}

/// The rule.
pub struct SubjectTag;

impl Rule for SubjectTag {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.tag.is_empty() {
            return Err("`tag` must not be empty".into());
        }
        if config.keyword_folder.is_empty() {
            return Err("`keyword_folder` must not be empty".into());
        }
        if config.keywords.iter().any(String::is_empty) {
            return Err("`keywords` must not contain an empty string".into());
        }
        Ok(())
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        if flow::is_outbound() {
            return Ok(decide_outbound(ctx.recipients(), config));
        }
        let from = msg.from();
        let text = msg.text_body(4096).unwrap_or_default();
        let actions = decide(from.as_deref(), &text, ctx.verdicts(), config);
        if !actions.is_empty() {
            log::info!(
                "tagged {}: {} keyword(s)",
                from.as_deref().unwrap_or("(no from)"),
                keywords_found(&text, &config.keywords).len()
            );
        }
        Ok(actions)
    }
}

sluice_sdk::export_rule!(SubjectTag);

/// The keywords (as configured, in config order) that occur in `text`, ASCII case-insensitively.
pub fn keywords_found<'a>(text: &str, keywords: &'a [String]) -> Vec<&'a str> {
    let text = text.to_ascii_lowercase();
    let mut found: Vec<&str> = Vec::new();
    for k in keywords {
        if !found.contains(&k.as_str()) && text.contains(&k.to_ascii_lowercase()) {
            found.push(k);
        }
    }
    found
}

/// Whether `address`'s domain (after the last `@`) is one of `internal_domains`, ASCII
/// case-insensitively.
fn is_internal(address: &str, internal_domains: &[String]) -> bool {
    address.rsplit_once('@').is_some_and(|(_, domain)| {
        internal_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    })
}

/// The decision for outbound mail: the tag when some recipient is external.
pub fn decide_outbound(recipients: &[String], config: &Config) -> Vec<Action> {
    if recipients
        .iter()
        .all(|r| is_internal(r, &config.internal_domains))
    {
        return Vec::new();
    }
    vec![Action::prefix_subject(format!("{} ", config.tag))]
}

/// The decision over plain values, testable natively.
pub fn decide(from: Option<&str>, text: &str, v: &Verdicts, config: &Config) -> Vec<Action> {
    if let Some((_, domain)) = from.and_then(|f| f.rsplit_once('@')) {
        let domain = domain.to_ascii_lowercase();
        if config
            .internal_domains
            .iter()
            .any(|d| d.to_ascii_lowercase() == domain)
        {
            return Vec::new();
        }
    }
    let mut actions = vec![
        Action::prefix_subject(format!("{} ", config.tag)),
        Action::add_header(
            "X-Sluice-Auth",
            format!(
                "spf={} dkim={} dmarc={}",
                v.spf.as_str(),
                v.dkim.as_str(),
                v.dmarc.as_str()
            ),
        ),
    ];
    let found = keywords_found(text, &config.keywords);
    if !found.is_empty() {
        actions.push(Action::set_header("X-Sluice-Keywords", found.join(", ")));
        actions.push(Action::file_into(config.keyword_folder.clone()));
    }
    if v.spf == Verdict::Fail && v.dkim == Verdict::Fail {
        actions.push(Action::banner_top(AUTH_WARNING));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(spf: Verdict, dkim: Verdict) -> Verdicts {
        Verdicts {
            spf,
            dkim,
            dmarc: Verdict::Unknown,
            spam: Verdict::Pass,
            virus: Verdict::Pass,
            dmarc_policy: None,
        }
    }

    fn config() -> Config {
        Config {
            internal_domains: vec!["Example.com".into()],
            keywords: vec!["Invoice".into(), "password".into(), "invoice".into()],
            ..Config::default()
        }
    }

    #[test]
    fn internal_senders_are_left_alone() {
        let v = verdicts(Verdict::Fail, Verdict::Fail);
        assert!(decide(Some("a@EXAMPLE.COM"), "invoice", &v, &config()).is_empty());
    }

    #[test]
    fn external_mail_gets_every_action_in_order() {
        let v = verdicts(Verdict::Fail, Verdict::Fail);
        let a = decide(
            Some("eve@evil.example"),
            "Your INVOICE and PassWord",
            &v,
            &config(),
        );
        assert_eq!(
            a,
            vec![
                Action::prefix_subject("[EXTERNAL] "),
                Action::add_header("X-Sluice-Auth", "spf=fail dkim=fail dmarc=unknown"),
                Action::set_header("X-Sluice-Keywords", "Invoice, password, invoice"),
                Action::file_into("Review"),
                Action::banner_top(AUTH_WARNING),
            ]
        );
    }

    #[test]
    fn outbound_mail_is_tagged_only_with_an_external_recipient() {
        let inside = vec![
            "bob@example.com".to_string(),
            "carol@EXAMPLE.com".to_string(),
        ];
        assert!(decide_outbound(&inside, &config()).is_empty());
        let mixed = vec![
            "bob@example.com".to_string(),
            "ext@partner.test".to_string(),
        ];
        assert_eq!(
            decide_outbound(&mixed, &config()),
            vec![Action::prefix_subject("[EXTERNAL] ")]
        );
    }

    #[test]
    fn no_from_is_external_and_a_pass_gets_no_banner() {
        let v = verdicts(Verdict::Pass, Verdict::Fail);
        let a = decide(None, "hello", &v, &config());
        assert_eq!(a.len(), 2);
    }
}
