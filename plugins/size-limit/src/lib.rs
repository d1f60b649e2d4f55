//! `size-limit`: refuses mail above a size, for the whole domain or per recipient, with
//! 552 5.3.4 ("message too big for system", RFC 3463) — SES Mail Manager's size condition and
//! Exchange's per-mailbox receive limit.
//!
//! The size is the raw message as received (headers and encoded body, what SMTP's `SIZE`
//! counts), not the decoded attachments. A recipient over its limit is refused on its own
//! (`recipients.refuse`): the others still get the message. When every recipient of the group
//! is over, the whole group is bounced and the chain stops.
//!
//! Who hears about it depends on the door (as for every refusal): through the milter or
//! `sluice deliver` the sending server gets the 552 at the end of DATA and no bounce message
//! is ever written; through SES (which has answered 250 already) the host sends a DSN under
//! its backscatter rules. For a hard limit on everything, set the MTA's own limit as well
//! (Postfix `message_size_limit`, SES's 40 MB, `sluice milter --max-message-bytes`): they
//! refuse before the message is read at all.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `max_mb` | number > 0 | none | the limit for every recipient of the chain's domain, in MB (1 MB = 1,048,576 bytes) |
//! | `recipients` | table: address -> number > 0 | `{}` | a limit for one recipient (`local@domain`, compared in lower case), over `max_mb` |
//! | `text` | string | see below | the refusal's text; `{size}` and `{limit}` are replaced by the sizes in MB |
//!
//! At least one of `max_mb` and `recipients` is required. The default text is
//! `message size {size} MB exceeds the {limit} MB limit`.
//!
//! ```toml
//! config = { max_mb = 25, recipients = { "scanner@example.com" = 50, "sms@example.com" = 0.5 } }
//! ```

use std::collections::BTreeMap;

use sluice_sdk::prelude::*;

/// Bytes in one MB of the config.
pub const MB: f64 = 1_048_576.0;

/// The refusal's SMTP code and enhanced status: "message too big for system" (RFC 3463 X.3.4;
/// 552 is what RFC 5321 gives for an exceeded storage allocation).
pub const CODE: u16 = 552;
/// See [`CODE`].
pub const STATUS: &str = "5.3.4";

const DEFAULT_TEXT: &str = "message size {size} MB exceeds the {limit} MB limit";

/// The rule's config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domain-wide limit in MB.
    pub max_mb: Option<f64>,
    /// Per-recipient limits in MB.
    pub recipients: BTreeMap<String, f64>,
    /// The refusal's text.
    pub text: Option<String>,
}

/// The rule.
pub struct SizeLimit;

impl Rule for SizeLimit {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.max_mb.is_none() && config.recipients.is_empty() {
            return Err(
                "set `max_mb` (the domain's limit) or `recipients` (limits per address)".into(),
            );
        }
        let positive = |mb: f64| mb.is_finite() && mb > 0.0;
        if let Some(mb) = config.max_mb {
            if !positive(mb) {
                return Err(format!("`max_mb` must be a number above 0, not {mb}"));
            }
        }
        for (addr, mb) in &config.recipients {
            check_address(addr)
                .map_err(|e| format!("`recipients`: {addr:?} is not an address: {e}"))?;
            if !positive(*mb) {
                return Err(format!(
                    "`recipients`: the limit for {addr} must be a number above 0, not {mb}"
                ));
            }
        }
        if let Some(text) = &config.text {
            if text.trim().is_empty() {
                return Err("`text` must not be empty (leave it out for the default)".into());
            }
        }
        Ok(())
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let decision = decide(msg.size(), ctx.recipients(), config);
        for (recipient, bounce) in &decision.refused {
            log::info!("refused one recipient: {}", bounce.text);
            recipients::refuse(recipient, bounce.code, &bounce.status, &bounce.text);
        }
        Ok(decision.actions)
    }
}

/// What the rule does for one group: actions for the whole group, refusals of single
/// recipients.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Returned actions (a bounce and `stop` when every recipient is over).
    pub actions: Vec<Action>,
    /// Recipients refused on their own, with their bounce.
    pub refused: Vec<(String, Bounce)>,
}

/// The limit in MB for `recipient`, if any.
pub fn limit_for(recipient: &str, config: &Config) -> Option<f64> {
    config
        .recipients
        .iter()
        .find(|(addr, _)| addr.eq_ignore_ascii_case(recipient))
        .map(|(_, mb)| *mb)
        .or(config.max_mb)
}

/// Decides for a message of `size` bytes and the group's `recipients`.
pub fn decide(size: u64, recipients: &[String], config: &Config) -> Decision {
    let over: Vec<(&String, f64)> = recipients
        .iter()
        .filter_map(|r| limit_for(r, config).map(|mb| (r, mb)))
        .filter(|(_, mb)| size as f64 > mb * MB)
        .collect();
    let mut decision = Decision::default();
    if over.is_empty() {
        return decision;
    }
    let bounce = |limit: f64| Bounce {
        code: CODE,
        status: STATUS.into(),
        text: refusal_text(size, limit, config),
    };
    if over.len() == recipients.len() {
        // One text for the group: the smallest limit it was held to.
        let limit = over.iter().map(|(_, mb)| *mb).fold(f64::INFINITY, f64::min);
        let b = bounce(limit);
        decision.actions = vec![Action::bounce(b.code, b.status, b.text), Action::Stop];
    } else {
        decision.refused = over
            .into_iter()
            .map(|(r, mb)| (r.clone(), bounce(mb)))
            .collect();
    }
    decision
}

/// The refusal's text with `{size}` and `{limit}` filled in (MB, one decimal).
fn refusal_text(size: u64, limit_mb: f64, config: &Config) -> String {
    config
        .text
        .as_deref()
        .unwrap_or(DEFAULT_TEXT)
        .replace("{size}", &show_mb(size as f64 / MB))
        .replace("{limit}", &format!("{limit_mb}"))
}

/// A size in MB, one decimal from 1 MB up (`31.2`), four below (`0.0007`), so a small
/// message over a small limit does not read "0.0 MB".
fn show_mb(mb: f64) -> String {
    if mb >= 1.0 {
        format!("{mb:.1}")
    } else {
        format!("{mb:.4}")
    }
}

sluice_sdk::export_rule!(SizeLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        let c: Config = sluice_sdk::parse_config(json).expect("parses");
        SizeLimit::check_config(&c).expect("valid");
        c
    }

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn under_or_at_the_limit_passes() {
        let c = config(r#"{"max_mb": 1}"#);
        assert_eq!(
            decide(1_048_576, &rcpts(&["a@example.com"]), &c),
            Decision::default()
        );
        assert_eq!(
            decide(10, &rcpts(&["a@example.com"]), &c),
            Decision::default()
        );
    }

    #[test]
    fn over_the_domain_limit_bounces_the_group_552_5_3_4_and_stops() {
        let c = config(r#"{"max_mb": 1}"#);
        let d = decide(
            3 * 1_048_576 + 1,
            &rcpts(&["a@example.com", "b@example.com"]),
            &c,
        );
        assert!(d.refused.is_empty());
        match &d.actions[..] {
            [Action::Bounce(b), Action::Stop] => {
                assert_eq!((b.code, b.status.as_str()), (552, "5.3.4"));
                assert_eq!(b.text, "message size 3.0 MB exceeds the 1 MB limit");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_recipient_limit_refuses_only_that_recipient() {
        let c = config(r#"{"max_mb": 25, "recipients": {"SMS@example.com": 0.5}}"#);
        let d = decide(
            600_000,
            &rcpts(&["alice@example.com", "sms@example.com"]),
            &c,
        );
        assert!(d.actions.is_empty());
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.refused[0].0, "sms@example.com");
        assert_eq!(
            d.refused[0].1.text,
            "message size 0.5722 MB exceeds the 0.5 MB limit"
        );
        // A recipient limit above the domain's raises it for that address.
        let c = config(r#"{"max_mb": 1, "recipients": {"scanner@example.com": 50}}"#);
        let d = decide(
            5 * 1_048_576,
            &rcpts(&["scanner@example.com", "bob@example.com"]),
            &c,
        );
        assert_eq!(
            d.refused
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>(),
            ["bob@example.com"]
        );
    }

    #[test]
    fn only_recipient_limits_leave_the_others_unlimited() {
        let c = config(r#"{"recipients": {"sms@example.com": 1}}"#);
        let d = decide(100 * 1_048_576, &rcpts(&["alice@example.com"]), &c);
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn the_text_can_be_set() {
        let c =
            config(r#"{"max_mb": 2, "text": "too big ({size} > {limit} MB): use the file share"}"#);
        let d = decide(5 * 1_048_576, &rcpts(&["a@example.com"]), &c);
        match &d.actions[0] {
            Action::Bounce(b) => assert_eq!(b.text, "too big (5.0 > 2 MB): use the file share"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_errors_say_what_to_fix() {
        for (bad, says) in [
            ("{}", "set `max_mb`"),
            (r#"{"max_mb": 0}"#, "above 0"),
            (r#"{"max_mb": -3}"#, "above 0"),
            (r#"{"recipients": {"not an address": 1}}"#, "not an address"),
            (
                r#"{"recipients": {"a@example.com": 0}}"#,
                "a@example.com must be a number above 0",
            ),
            (r#"{"max_mb": 1, "text": " "}"#, "`text`"),
        ] {
            let c: Config = sluice_sdk::parse_config(bad).unwrap();
            let err = SizeLimit::check_config(&c).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(sluice_sdk::parse_config::<Config>(r#"{"max_kb": 1}"#).is_err());
        assert!(sluice_sdk::parse_config::<Config>(r#"{"max_mb": "big"}"#).is_err());
    }
}
