//! `auto-reply`: out-of-office answers, per recipient or per domain, within a date window —
//! Exchange's automatic replies, Gmail's vacation responder, Sieve's `vacation` (RFC 5230).
//!
//! The rule only decides who is away and what to say; it asks the host (`reply.send`, WIT
//! 0.2.1), which the step must be granted (`reply = { once_per_days = 7 }`). The host sends the
//! reply to the envelope sender after the recipient's copy is delivered, with a null envelope
//! sender, `Auto-Submitted: auto-replied`, `In-Reply-To` and `References`; it never answers
//! mailing lists, bulk or automatic mail, null or daemon senders or the recipient itself
//! (RFC 3834), and answers one sender at most once per recipient in `once_per_days` (at least
//! the grant's), remembered beside its send records rather than in the rule. The message
//! itself is delivered as usual: the rule returns no actions.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `recipients` | table: address -> entry | none (required) | who is away: `local@domain`, or `*@domain` for every recipient of that domain without an entry of its own |
//! | `once_per_days` | integer 0..=366 | 0 | the default interval for entries without one (0: the step's grant) |
//!
//! An entry is `{ text, subject, from, until, once_per_days }`: `text` (required, at most
//! 8 KiB) is the reply's body; `subject` replaces `Auto: <original subject>`; `from` and
//! `until` (`YYYY-MM-DD`, UTC, both days included; or `YYYY-MM-DDTHH:MM:SSZ`) bound when the
//! reply is active, by the message's receipt time; either may be left out.
//!
//! ```toml
//! reply = { once_per_days = 7 }
//! config = { recipients = { "bob@example.com" = { text = "I am away until 4 January.", from = "2026-12-20", until = "2027-01-03" } } }
//! ```
//!
//! Mail a local user sends (an `[[outbound]]` chain) is never answered. The rule asks for
//! every active recipient and leaves the never-answer list to the host (which says in the
//! trace why it did not answer); a rule with costly work per message would call
//! `reply::never_answer` first. Entries live in the config: today's `[directory.NAME]`
//! tables hold alias records only, so per-user settings from a directory are not offered.

use std::collections::BTreeMap;

use sluice_sdk::facts;
use sluice_sdk::prelude::*;

/// One recipient's automatic reply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The reply's body.
    pub text: String,
    /// The reply's Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Active from (see the crate docs).
    #[serde(default)]
    pub from: Option<String>,
    /// Active until, inclusive.
    #[serde(default)]
    pub until: Option<String>,
    /// Answer a sender at most once in this many days.
    #[serde(default)]
    pub once_per_days: Option<u32>,
}

/// The rule's config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Entries by address (`local@domain` or `*@domain`), compared in lower case.
    pub recipients: BTreeMap<String, Entry>,
    /// The default interval.
    pub once_per_days: u32,
}

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (no calendar crate inside the rule).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    // Count from 1 March so that the leap day is the last day of the year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Milliseconds since the epoch at the start of `text` (`YYYY-MM-DD`, or
/// `YYYY-MM-DDTHH:MM:SSZ`); `end_of_day` moves a bare date to its last millisecond.
pub fn parse_time(text: &str, end_of_day: bool) -> Result<i64, String> {
    let bad =
        || format!("{text:?} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[(m - 1) as usize] {
        return Err(bad());
    }
    let start = days_since_epoch(y, m, d) * DAY_MS;
    match time {
        None if end_of_day => Ok(start + DAY_MS - 1),
        None => Ok(start),
        Some(t) => {
            let parts: Vec<&str> = t.split(':').collect();
            let [h, mi, s] = parts[..] else {
                return Err(bad());
            };
            let (h, mi, s) = (num(h, 2)?, num(mi, 2)?, num(s, 2)?);
            if h > 23 || mi > 59 || s > 59 {
                return Err(bad());
            }
            Ok(start + ((h * 60 + mi) * 60 + s) * 1000)
        }
    }
}

impl Entry {
    /// Checks the entry; `key` names it in the message.
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.text.trim().is_empty() {
            return Err(format!("{key}: `text` is empty"));
        }
        if self.text.len() > facts::MAX_REPLY_TEXT_BYTES {
            return Err(format!(
                "{key}: `text` is {} bytes; the limit is {}",
                self.text.len(),
                facts::MAX_REPLY_TEXT_BYTES
            ));
        }
        if let Some(s) = &self.subject {
            if s.len() > facts::MAX_REPLY_SUBJECT_BYTES || s.chars().any(char::is_control) {
                return Err(format!(
                    "{key}: `subject` must be one line of at most {} bytes",
                    facts::MAX_REPLY_SUBJECT_BYTES
                ));
            }
        }
        let from = self
            .from
            .as_deref()
            .map(|f| parse_time(f, false))
            .transpose()
            .map_err(|e| format!("{key}: `from`: {e}"))?;
        let until = self
            .until
            .as_deref()
            .map(|u| parse_time(u, true))
            .transpose()
            .map_err(|e| format!("{key}: `until`: {e}"))?;
        if let (Some(f), Some(u)) = (from, until) {
            if f > u {
                return Err(format!("{key}: `from` is after `until`"));
            }
        }
        if let Some(days) = self.once_per_days {
            check_days(days).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    }

    /// Whether the reply is active at `at` (ms since the epoch). A checked entry's times
    /// parse; one that does not is inactive (never answered on a guess).
    pub fn active_at(&self, at: u64) -> bool {
        let at = at as i64;
        let after_start = match self.from.as_deref().map(|f| parse_time(f, false)) {
            None => true,
            Some(Ok(f)) => at >= f,
            Some(Err(_)) => false,
        };
        let before_end = match self.until.as_deref().map(|u| parse_time(u, true)) {
            None => true,
            Some(Ok(u)) => at <= u,
            Some(Err(_)) => false,
        };
        after_start && before_end
    }
}

fn check_days(days: u32) -> Result<(), String> {
    if days > facts::MAX_REPLY_ONCE_PER_DAYS {
        return Err(format!(
            "`once_per_days` is {days}; the limit is {}",
            facts::MAX_REPLY_ONCE_PER_DAYS
        ));
    }
    Ok(())
}

impl Config {
    /// The config's entry for `recipient`: its own, else its domain's `*@domain`.
    pub fn entry_for(&self, recipient: &str) -> Option<&Entry> {
        let lower = recipient.to_ascii_lowercase();
        self.recipients
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&lower))
            .or_else(|| {
                let wildcard = format!("*@{}", domain_of(&lower).unwrap_or_default());
                self.recipients
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&wildcard))
            })
            .map(|(_, e)| e)
    }
}

/// The replies to ask for, for recipients with an active entry: (recipient, entry).
pub fn replies_for<'c>(
    config: &'c Config,
    recipients: &[String],
    received_at: u64,
) -> Vec<(String, &'c Entry)> {
    recipients
        .iter()
        .filter_map(|r| Some((r.clone(), config.entry_for(r)?)))
        .filter(|(_, e)| e.active_at(received_at))
        .collect()
}

/// The rule.
pub struct AutoReply;

impl Rule for AutoReply {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.recipients.is_empty() {
            return Err("set `recipients`: who is away and what to answer".into());
        }
        check_days(config.once_per_days)?;
        for (key, entry) in &config.recipients {
            let addr = key
                .strip_prefix("*@")
                .map_or(key.clone(), |d| format!("any@{d}"));
            check_address(&addr)
                .map_err(|e| format!("`recipients`: {key:?} is not an address or *@domain: {e}"))?;
            entry.check(&format!("`recipients.\"{key}\"`"))?;
        }
        Ok(())
    }

    fn evaluate(_msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        if flow::is_outbound() {
            return Ok(vec![]);
        }
        for (recipient, entry) in replies_for(config, ctx.recipients(), ctx.received_at()) {
            let mut ask = Reply::new(recipient, entry.text.clone())
                .once_per_days(entry.once_per_days.unwrap_or(config.once_per_days));
            if let Some(s) = &entry.subject {
                ask = ask.subject(s.clone());
            }
            reply::send(&ask)?;
        }
        Ok(vec![])
    }
}

sluice_sdk::export_rule!(AutoReply);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(from: Option<&str>, until: Option<&str>) -> Entry {
        Entry {
            text: "Away".into(),
            from: from.map(Into::into),
            until: until.map(Into::into),
            ..Entry::default()
        }
    }

    #[test]
    fn dates_are_utc_days_both_included() {
        assert_eq!(parse_time("1970-01-01", false), Ok(0));
        assert_eq!(parse_time("2024-01-01", false), Ok(1_704_067_200_000));
        assert_eq!(parse_time("2024-02-29", false), Ok(1_709_164_800_000));
        assert_eq!(
            parse_time("2024-01-01", true),
            Ok(1_704_067_200_000 + DAY_MS - 1)
        );
        assert_eq!(
            parse_time("2024-01-01T12:30:00Z", false),
            Ok(1_704_067_200_000 + (12 * 3600 + 1800) * 1000)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-01-01T12:00",
            "soon",
            "2024-1-1",
        ] {
            assert!(parse_time(bad, false).is_err(), "{bad}");
        }
        let e = entry(Some("2024-01-01"), Some("2024-01-02"));
        assert!(!e.active_at(1_704_067_200_000 - 1));
        assert!(e.active_at(1_704_067_200_000));
        assert!(e.active_at(1_704_067_200_000 + 2 * DAY_MS as u64 - 1));
        assert!(!e.active_at(1_704_067_200_000 + 2 * DAY_MS as u64));
        assert!(entry(None, None).active_at(0));
    }

    #[test]
    fn the_config_is_checked_before_any_mail() {
        let mut c = Config::default();
        assert!(AutoReply::check_config(&c)
            .unwrap_err()
            .contains("recipients"));
        c.recipients.insert(
            "bob@example.com".into(),
            entry(Some("2024-02-01"), Some("2024-01-01")),
        );
        assert!(AutoReply::check_config(&c).unwrap_err().contains("after"));
        c.recipients
            .insert("bob@example.com".into(), entry(Some("2024-01-01"), None));
        assert_eq!(AutoReply::check_config(&c), Ok(()));
        c.recipients
            .insert("*@example.com".into(), entry(None, None));
        assert_eq!(AutoReply::check_config(&c), Ok(()));
        c.recipients.insert("nobody".into(), entry(None, None));
        assert!(AutoReply::check_config(&c).unwrap_err().contains("nobody"));
    }

    #[test]
    fn recipients_get_their_own_entry_else_the_domains_within_its_window() {
        let mut c = Config::default();
        c.recipients
            .insert("bob@example.com".into(), entry(Some("2024-01-01"), None));
        c.recipients.insert(
            "*@example.com".into(),
            Entry {
                text: "Team away".into(),
                ..Entry::default()
            },
        );
        let rcpts: Vec<String> = ["Bob@example.com", "carol@example.com", "dan@other.example"]
            .map(String::from)
            .to_vec();
        let before = replies_for(&c, &rcpts, 1_000);
        let who: Vec<&str> = before.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(who, ["carol@example.com"], "bob's window has not started");
        let during = replies_for(&c, &rcpts, 1_704_067_200_000);
        let who: Vec<(&str, &str)> = during
            .iter()
            .map(|(r, e)| (r.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            who,
            [
                ("Bob@example.com", "Away"),
                ("carol@example.com", "Team away")
            ]
        );
    }
}
