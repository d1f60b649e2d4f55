//! `forward`: relay a copy of the group's mail to external addresses, or redirect it there.
//!
//! The rule asks the host for a re-originated copy through the `recipients` interface
//! ([`recipients::forward`]); it returns no actions. With `mode = "copy"` the group's
//! recipients keep the message and `to` gets a copy; with `mode = "redirect"` the message goes
//! to `to` instead.
//!
//! With `recipients`, the rule acts only when the group has one of those recipients. A
//! redirect that matches only some of the group's recipients becomes a copy plus a silent
//! discard of each matched recipient, so the others still get the message.
//!
//! With `skip_if_spam` (the default), mail whose SES spam or virus verdict is `fail` is not
//! forwarded at all (and logged): relaying spam hurts the relay's sending reputation. The
//! group's own recipients are unaffected; put a `junk` step first to file or drop it.
//!
//! **Sender rewriting is the host's job, not this rule's.** On every relayed copy the host
//! sets `From:` to the verified address (`from`, else `[relay] from`) with the original
//! sender's name as "Name via <domain>", keeps the original `From:` as `Reply-To:` (unless
//! one exists), removes `DKIM-Signature`, `Return-Path`, `Sender` and duplicate `Message-ID`
//! fields, sends with the verified address as the envelope sender too (no SRS: bounces of
//! the copy come back to that address, not to the original sender), and relays only to
//! `[relay] allow_domains`.
//! `subject_prefix` applies to the relayed copy only; local copies keep their subject.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `to` | list of addresses, required, non-empty | | where the copy goes (always relayed, never delivered locally); a single string is accepted |
//! | `from` | address | none (the host's `[relay] from`) | a verified sender address for the copy's `From:` |
//! | `subject_prefix` | string | none | prefix for the copy's `Subject` |
//! | `mode` | `"copy"` \| `"redirect"` | `"copy"` | keep the message for the group's recipients too, or not |
//! | `recipients` | list of addresses or local parts | none (every group) | act only for these recipients (case-insensitive; a bare local part matches it in any domain; a `+tag` is not stripped: run `alias` first) |
//! | `skip_if_spam` | bool | `true` | do nothing when the SES spam or virus verdict is `fail` |
//!
//! ```toml
//! [[domain.step]]
//! plugin = "forward.wasm"
//! config = { to = ["alice.personal@gmail.example"], from = "forwarder@example.com", subject_prefix = "[example] ", recipients = ["alice"] }
//! ```

use sluice_sdk::prelude::*;

/// The most addresses in `to` (the host's limit for one request).
pub const MAX_TO: usize = sluice_sdk::facts::MAX_RECIPIENTS_PER_ACTION;

/// The rule's typed config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// External addresses for the copy.
    #[serde(deserialize_with = "sluice_sdk::config::one_or_many")]
    pub to: Vec<String>,
    /// Verified `From:` for the copy.
    #[serde(default)]
    pub from: Option<String>,
    /// Subject prefix for the copy.
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// Copy or redirect.
    #[serde(default)]
    pub mode: Mode,
    /// Only for these recipients (addresses or local parts).
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    /// Do nothing for spam or viruses.
    #[serde(default = "yes")]
    pub skip_if_spam: bool,
}

fn yes() -> bool {
    true
}

/// `Default` exists for the SDK (an empty config string); it fails `check_config` (no `to`).
impl Default for Config {
    fn default() -> Self {
        Config {
            to: Vec::new(),
            from: None,
            subject_prefix: None,
            mode: Mode::Copy,
            recipients: None,
            skip_if_spam: true,
        }
    }
}

/// `mode` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The group's recipients keep the message; `to` gets a copy.
    #[default]
    Copy,
    /// The message goes to `to` instead.
    Redirect,
}

/// The rule.
pub struct ForwardRule;

impl Rule for ForwardRule {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if config.to.is_empty() {
            return Err("`to` must list at least one address".into());
        }
        if config.to.len() > MAX_TO {
            return Err(format!(
                "`to` has {} addresses; at most {MAX_TO}",
                config.to.len()
            ));
        }
        for (i, addr) in config.to.iter().enumerate() {
            check_address(addr).map_err(|e| format!("`to`: {addr:?}: {e}"))?;
            if config.to[..i].iter().any(|a| a.eq_ignore_ascii_case(addr)) {
                return Err(format!("`to`: {addr:?} is listed twice"));
            }
        }
        if let Some(from) = &config.from {
            check_address(from).map_err(|e| format!("`from`: {from:?}: {e}"))?;
        }
        if let Some(prefix) = &config.subject_prefix {
            if prefix.trim().is_empty() {
                return Err("`subject_prefix` must not be empty (leave it out instead)".into());
            }
            if prefix.chars().any(char::is_control) {
                return Err(
                    "`subject_prefix` must not contain line breaks or control characters".into(),
                );
            }
        }
        if let Some(list) = &config.recipients {
            if list.is_empty() {
                return Err(
                    "`recipients` is empty, so the rule would never forward; leave it out to forward for every recipient"
                        .into(),
                );
            }
            for r in list {
                let r = r.trim();
                let ok = if r.contains('@') {
                    check_address(r).map_err(|e| e.to_string())
                } else if r.is_empty()
                    || r.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
                {
                    Err("not a local part".to_string())
                } else {
                    Ok(())
                };
                ok.map_err(|e| format!("`recipients`: {r:?}: {e}"))?;
            }
        }
        Ok(())
    }

    fn evaluate(_msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        decide(ctx, config);
        Ok(vec![])
    }
}

sluice_sdk::export_rule!(ForwardRule);

/// Whether `rcpt` is one of `list` (an address, or a bare local part in any domain).
fn listed(rcpt: &str, list: &[String]) -> bool {
    list.iter().map(|e| e.trim()).any(|entry| {
        if entry.contains('@') {
            entry.eq_ignore_ascii_case(rcpt)
        } else {
            local_part(rcpt).is_some_and(|l| l.eq_ignore_ascii_case(entry))
        }
    })
}

/// Makes the rule's requests for the group in `ctx` (through [`recipients`]); separate from
/// the message so it can be tested natively with `recipients::take_recorded`.
pub fn decide(ctx: &Context, config: &Config) {
    let v = ctx.verdicts();
    if config.skip_if_spam && (v.spam.failed() || v.virus.failed()) {
        let which = if v.virus.failed() { "virus" } else { "spam" };
        log::info!(
            "forward: not forwarding to {}: the {which} verdict is fail",
            config.to.join(", ")
        );
        return;
    }
    let matched: Vec<&String> = match &config.recipients {
        None => ctx.recipients().iter().collect(),
        Some(list) => ctx
            .recipients()
            .iter()
            .filter(|r| listed(r, list))
            .collect(),
    };
    if matched.is_empty() {
        log::debug!("forward: no matching recipient in the group; nothing forwarded");
        return;
    }
    let every = matched.len() == ctx.recipients().len();
    let mut request = match (config.mode, every) {
        (Mode::Redirect, true) => Forward::redirect_to(config.to.iter().cloned()),
        _ => Forward::copy_to(config.to.iter().cloned()),
    };
    if let Some(from) = &config.from {
        request = request.from(from.clone());
    }
    if let Some(prefix) = &config.subject_prefix {
        request = request.subject_prefix(prefix.clone());
    }
    recipients::forward(&request);
    let to = config.to.join(", ");
    match (config.mode, every) {
        (Mode::Copy, _) => log::info!("forward: copy to {to}"),
        (Mode::Redirect, true) => log::info!("forward: redirected to {to}"),
        (Mode::Redirect, false) => {
            // Only some recipients redirect: they lose the message, the others keep it.
            for r in &matched {
                recipients::discard(r);
            }
            let names: Vec<&str> = matched.iter().map(|s| s.as_str()).collect();
            log::info!(
                "forward: redirected {} to {to}; the group's other recipients keep it",
                names.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::recipients::{take_recorded, Request};

    fn config(json: &str) -> Config {
        let c: Config = sluice_sdk::parse_config(json).unwrap();
        ForwardRule::check_config(&c).unwrap_or_else(|e| panic!("{json}: {e}"));
        c
    }

    fn config_error(json: &str) -> String {
        match sluice_sdk::parse_config::<Config>(json) {
            Err(e) => e,
            Ok(c) => ForwardRule::check_config(&c)
                .err()
                .unwrap_or_else(|| panic!("accepted: {json}")),
        }
    }

    fn ctx(rcpts: &[&str]) -> Context<'static> {
        Context::from(data(rcpts))
    }

    fn data(rcpts: &[&str]) -> ContextData {
        ContextData {
            domain: "example.com".into(),
            recipients: rcpts.iter().map(|s| s.to_string()).collect(),
            mail_from: "sender@outside.example".into(),
            verdicts: Verdicts {
                spf: Verdict::Pass,
                dkim: Verdict::Pass,
                dmarc: Verdict::Pass,
                spam: Verdict::Pass,
                virus: Verdict::Pass,
                dmarc_policy: None,
            },
            received_at: 0,
            message_id: "m".into(),
            config: String::new(),
        }
    }

    fn run(ctx: &Context, c: &Config) -> Vec<Request> {
        let _ = take_recorded();
        decide(ctx, c);
        take_recorded()
    }

    #[test]
    fn copies_with_from_and_prefix() {
        let c = config(
            r#"{"to":["me@gmail.example"],"from":"fwd@example.com","subject_prefix":"[ex] "}"#,
        );
        assert_eq!(
            run(&ctx(&["bob@example.com"]), &c),
            vec![Request::Forward(
                Forward::copy_to(["me@gmail.example"])
                    .from("fwd@example.com")
                    .subject_prefix("[ex] ")
            )]
        );
        // The defaults: no from, no prefix, copy.
        let c = config(r#"{"to":"me@gmail.example"}"#);
        assert_eq!(
            run(&ctx(&["bob@example.com"]), &c),
            vec![Request::Forward(Forward::copy_to(["me@gmail.example"]))]
        );
    }

    #[test]
    fn redirects_the_whole_group() {
        let c = config(r#"{"to":["a@x.example","b@y.example"],"mode":"redirect"}"#);
        assert_eq!(
            run(&ctx(&["bob@example.com", "carol@example.com"]), &c),
            vec![Request::Forward(Forward::redirect_to([
                "a@x.example",
                "b@y.example"
            ]))]
        );
    }

    #[test]
    fn only_for_listed_recipients() {
        let c = config(r#"{"to":["me@gmail.example"],"recipients":["Bob","carol@example.com"]}"#);
        assert!(run(&ctx(&["alice@example.com"]), &c).is_empty());
        assert_eq!(
            run(&ctx(&["alice@example.com", "BOB@example.com"]), &c).len(),
            1
        );
        assert_eq!(run(&ctx(&["carol@Example.COM"]), &c).len(), 1);
        // An address entry does not match another domain; a tag is not stripped.
        assert!(run(&ctx(&["carol@other.example", "bob+x@example.com"]), &c).is_empty());
        assert!(run(&ctx(&[]), &c).is_empty());
    }

    #[test]
    fn redirect_with_a_partial_match_copies_and_discards_the_matched() {
        let c = config(r#"{"to":["me@gmail.example"],"mode":"redirect","recipients":["bob"]}"#);
        assert_eq!(
            run(&ctx(&["alice@example.com", "bob@example.com"]), &c),
            vec![
                Request::Forward(Forward::copy_to(["me@gmail.example"])),
                Request::Discard("bob@example.com".into()),
            ]
        );
        // All matched: a plain redirect.
        assert_eq!(
            run(&ctx(&["bob@example.com"]), &c),
            vec![Request::Forward(Forward::redirect_to(["me@gmail.example"]))]
        );
    }

    #[test]
    fn spam_and_viruses_are_not_forwarded_unless_asked() {
        let c = config(r#"{"to":["me@gmail.example"]}"#);
        for (spam, virus) in [
            (Verdict::Fail, Verdict::Pass),
            (Verdict::Pass, Verdict::Fail),
        ] {
            let mut x = data(&["bob@example.com"]);
            x.verdicts.spam = spam;
            x.verdicts.virus = virus;
            assert!(run(&x.into(), &c).is_empty());
        }
        let mut x = data(&["bob@example.com"]);
        x.verdicts.spam = Verdict::Gray;
        assert_eq!(run(&x.clone().into(), &c).len(), 1);
        let c = config(r#"{"to":["me@gmail.example"],"skip_if_spam":false}"#);
        x.verdicts.spam = Verdict::Fail;
        assert_eq!(run(&x.into(), &c).len(), 1);
    }

    #[test]
    fn nonsense_configs_are_refused() {
        for (json, needle) in [
            ("{}", "missing field `to`"),
            ("", "`to` must list"),
            (r#"{"to":[]}"#, "`to` must list"),
            (r#"{"to":["nobody"]}"#, "exactly one '@'"),
            (r#"{"to":["Me <me@x.example>"]}"#, "bare address"),
            (r#"{"to":["me@x..example"]}"#, "empty label"),
            (r#"{"to":["a@x.example","A@x.example"]}"#, "twice"),
            (r#"{"to":["a@x.example"],"from":"nope"}"#, "`from`"),
            (
                r#"{"to":["a@x.example"],"subject_prefix":" "}"#,
                "subject_prefix",
            ),
            (
                r#"{"to":["a@x.example"],"subject_prefix":"a\nb"}"#,
                "line breaks",
            ),
            (
                r#"{"to":["a@x.example"],"recipients":[]}"#,
                "`recipients` is empty",
            ),
            (
                r#"{"to":["a@x.example"],"recipients":["a b"]}"#,
                "`recipients`",
            ),
            (
                r#"{"to":["a@x.example"],"mode":"move"}"#,
                "unknown variant `move`",
            ),
            (r#"{"to":["a@x.example"],"too":1}"#, "unknown field `too`"),
            (r#"{"to":3}"#, "a string or a list of strings"),
        ] {
            let e = config_error(json);
            assert!(e.contains(needle), "{json}: {e}");
        }
        let many: Vec<String> = (0..=MAX_TO)
            .map(|i| format!("\"u{i}@x.example\""))
            .collect();
        assert!(config_error(&format!(r#"{{"to":[{}]}}"#, many.join(","))).contains("at most"));
    }
}
