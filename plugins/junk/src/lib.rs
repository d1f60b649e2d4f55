//! `junk`: routes mail on the SES receipt verdicts (and optionally a spam-score header).
//!
//! In order of precedence:
//! 1. virus `fail` -> `drop` or a `bounce` 550 5.7.1 "message contains a virus" (`virus`), then `stop`;
//! 2. DMARC `fail` with the sender's policy `reject` -> `bounce` 550 5.7.1 naming DMARC, then `stop`;
//! 3. spam `fail` (when `spam = "junk"`), DMARC `fail` with policy `quarantine`, or the score
//!    header at or above the threshold -> one `file-into` `folder`.
//!
//! Anything else (including `gray`, `processing-failed`, `disabled`, `unknown`) returns nothing.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `folder` | string | `"Junk"` | folder for junk |
//! | `spam` | `"junk"` \| `"ignore"` | `"junk"` | what a spam `fail` verdict does |
//! | `virus` | `"drop"` \| `"bounce"` | `"drop"` | what a virus `fail` verdict does |
//! | `score_header` | string | none | a header holding a numeric score, e.g. `X-Spam-Score` |
//! | `score_threshold` | number | none | junk when the header's first number is >= this; required with `score_header` (and only with it) |
//!
//! ```toml
//! config = { virus = "bounce", score_header = "X-Spam-Score", score_threshold = 5.0 }
//! ```

use sluice_sdk::prelude::*;

/// The rule's typed config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder for junk.
    pub folder: String,
    /// What a spam `fail` does.
    pub spam: SpamAction,
    /// What a virus `fail` does.
    pub virus: VirusAction,
    /// Header holding a numeric score.
    pub score_header: Option<String>,
    /// Junk at or above this score.
    pub score_threshold: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            folder: "Junk".into(),
            spam: SpamAction::Junk,
            virus: VirusAction::Drop,
            score_header: None,
            score_threshold: None,
        }
    }
}

/// `spam` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpamAction {
    /// File into the junk folder.
    Junk,
    /// Do nothing.
    Ignore,
}

/// `virus` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirusAction {
    /// Discard silently.
    Drop,
    /// Refuse with 550 5.7.1.
    Bounce,
}

/// The rule.
pub struct Junk;

impl Rule for Junk {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.folder.trim().is_empty() {
            return Err("`folder` must not be empty".into());
        }
        match (&config.score_header, config.score_threshold) {
            (Some(h), Some(t)) if !h.trim().is_empty() && t.is_finite() => Ok(()),
            (None, None) => Ok(()),
            (Some(_), None) => Err("`score_header` needs `score_threshold`".into()),
            (None, Some(_)) => Err("`score_threshold` needs `score_header`".into()),
            _ => {
                Err("`score_header` must not be empty and `score_threshold` must be finite".into())
            }
        }
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let score = config
            .score_header
            .as_deref()
            .and_then(|name| msg.first_header(name))
            .and_then(|value| first_number(&value));
        let (actions, reason) = decide(ctx.verdicts(), score, config);
        if let Some(reason) = reason {
            log::info!("junk: {reason}");
        }
        Ok(actions)
    }
}

sluice_sdk::export_rule!(Junk);

/// The decision, separated from the message so it can be tested natively: the actions and,
/// when there are any, why.
pub fn decide(v: &Verdicts, score: Option<f64>, config: &Config) -> (Vec<Action>, Option<String>) {
    if v.virus.failed() {
        let action = match config.virus {
            VirusAction::Drop => Action::Drop,
            VirusAction::Bounce => Action::reject("message contains a virus"),
        };
        return (
            vec![action, Action::Stop],
            Some("virus verdict fail".into()),
        );
    }
    let policy = v.dmarc_policy.as_deref().map(str::trim).unwrap_or("");
    let dmarc_fail = v.dmarc.failed();
    if dmarc_fail && policy.eq_ignore_ascii_case("reject") {
        let bounce = Action::reject(
            "message rejected: it failed DMARC and the sender's domain publishes p=reject",
        );
        return (
            vec![bounce, Action::Stop],
            Some("DMARC fail, policy reject".into()),
        );
    }
    let reason = if v.spam.failed() && config.spam == SpamAction::Junk {
        Some("spam verdict fail".to_string())
    } else if dmarc_fail && policy.eq_ignore_ascii_case("quarantine") {
        Some("DMARC fail, policy quarantine".to_string())
    } else {
        match (score, config.score_threshold) {
            (Some(s), Some(t)) if s >= t => Some(format!("score {s} >= {t}")),
            _ => None,
        }
    };
    match reason {
        Some(reason) => (vec![Action::file_into(config.folder.clone())], Some(reason)),
        None => (vec![], None),
    }
}

/// The first decimal number in `s` (optional sign, digits, optional fraction):
/// `"*** 7.5 (required 5)"` -> 7.5, `"score=-1.2"` -> -1.2, `"none"` -> None.
pub fn first_number(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let mut begin = start;
    // A '.' right before the digits (".5") and a '-' before that belong to the number.
    if begin > 0 && bytes[begin - 1] == b'.' {
        begin -= 1;
    }
    if begin > 0 && (bytes[begin - 1] == b'-' || bytes[begin - 1] == b'+') {
        begin -= 1;
    }
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if bytes[begin..start].last() != Some(&b'.')
        && end + 1 < bytes.len()
        && bytes[end] == b'.'
        && bytes[end + 1].is_ascii_digit()
    {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
    }
    s[begin..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts() -> Verdicts {
        Verdicts {
            spf: Verdict::Pass,
            dkim: Verdict::Pass,
            dmarc: Verdict::Pass,
            spam: Verdict::Pass,
            virus: Verdict::Pass,
            dmarc_policy: None,
        }
    }

    fn config(json: &str) -> Config {
        let c: Config = sluice_sdk::parse_config(json).unwrap();
        Junk::check_config(&c).unwrap();
        c
    }

    #[test]
    fn clean_mail_is_left_alone() {
        let (actions, why) = decide(&verdicts(), None, &config("{}"));
        assert!(actions.is_empty() && why.is_none());
        let mut v = verdicts();
        v.spam = Verdict::Gray;
        v.virus = Verdict::ProcessingFailed;
        assert!(decide(&v, None, &config("{}")).0.is_empty());
    }

    #[test]
    fn spam_goes_to_the_folder_unless_ignored() {
        let mut v = verdicts();
        v.spam = Verdict::Fail;
        assert_eq!(
            decide(&v, None, &config("{}")).0,
            vec![Action::file_into("Junk")]
        );
        assert_eq!(
            decide(&v, None, &config(r#"{"folder":"Spam"}"#)).0,
            vec![Action::file_into("Spam")]
        );
        assert!(decide(&v, None, &config(r#"{"spam":"ignore"}"#))
            .0
            .is_empty());
    }

    #[test]
    fn viruses_are_dropped_or_bounced_and_stop_the_chain() {
        let mut v = verdicts();
        v.virus = Verdict::Fail;
        v.spam = Verdict::Fail;
        assert_eq!(
            decide(&v, None, &config("{}")).0,
            vec![Action::Drop, Action::Stop]
        );
        assert_eq!(
            decide(&v, None, &config(r#"{"virus":"bounce"}"#)).0,
            vec![
                Action::bounce(550, "5.7.1", "message contains a virus"),
                Action::Stop
            ]
        );
    }

    #[test]
    fn dmarc_follows_the_published_policy() {
        let mut v = verdicts();
        v.dmarc = Verdict::Fail;
        v.dmarc_policy = Some("REJECT".into());
        let (actions, _) = decide(&v, None, &config("{}"));
        match &actions[..] {
            [Action::Bounce(b), Action::Stop] => {
                assert_eq!((b.code, b.status.as_str()), (550, "5.7.1"));
                assert!(b.text.contains("DMARC"));
            }
            other => panic!("{other:?}"),
        }
        v.dmarc_policy = Some("quarantine".into());
        assert_eq!(
            decide(&v, None, &config("{}")).0,
            vec![Action::file_into("Junk")]
        );
        v.dmarc_policy = Some("none".into());
        assert!(decide(&v, None, &config("{}")).0.is_empty());
        v.dmarc_policy = None;
        assert!(decide(&v, None, &config("{}")).0.is_empty());
    }

    #[test]
    fn score_threshold() {
        let c = config(r#"{"score_header":"X-Spam-Score","score_threshold":5.0}"#);
        assert_eq!(
            decide(&verdicts(), Some(7.5), &c).0,
            vec![Action::file_into("Junk")]
        );
        assert_eq!(
            decide(&verdicts(), Some(5.0), &c).0,
            vec![Action::file_into("Junk")]
        );
        assert!(decide(&verdicts(), Some(4.9), &c).0.is_empty());
        assert!(decide(&verdicts(), None, &c).0.is_empty());
        // Spam and score together still file once.
        let mut v = verdicts();
        v.spam = Verdict::Fail;
        assert_eq!(decide(&v, Some(9.0), &c).0.len(), 1);
    }

    #[test]
    fn config_errors() {
        for bad in [
            r#"{"score_header":"X-Spam-Score"}"#,
            r#"{"score_threshold":5}"#,
            r#"{"folder":""}"#,
        ] {
            let c: Config = sluice_sdk::parse_config(bad).unwrap();
            assert!(Junk::check_config(&c).is_err(), "{bad}");
        }
        for bad in [
            r#"{"virus":"quarantine"}"#,
            r#"{"spam":"yes"}"#,
            r#"{"folder":"J","x":1}"#,
        ] {
            assert!(sluice_sdk::parse_config::<Config>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            config(r#"{"score_header":"X","score_threshold":5}"#).score_threshold,
            Some(5.0)
        );
    }

    #[test]
    fn finds_the_first_number() {
        assert_eq!(first_number("7.5"), Some(7.5));
        assert_eq!(first_number(" 12 "), Some(12.0));
        assert_eq!(first_number("*** score=-1.25 required=5"), Some(-1.25));
        assert_eq!(first_number("Yes, score=6.1 required=5.0"), Some(6.1));
        assert_eq!(first_number(".5"), Some(0.5));
        assert_eq!(first_number("3."), Some(3.0));
        assert_eq!(first_number("1.2.3"), Some(1.2));
        assert_eq!(first_number("none"), None);
        assert_eq!(first_number(""), None);
    }
}
