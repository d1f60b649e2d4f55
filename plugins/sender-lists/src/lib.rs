//! `sender-lists`: allow and block lists of senders, checked against the envelope sender
//! (MAIL FROM) and the header `From:`.
//!
//! # Entries
//! | entry | matches |
//! |---|---|
//! | `alice@partner.example` | that address (compared in lower case) |
//! | `partner.example` | any address at that domain, not its subdomains |
//! | `.partner.example` | any address at a subdomain of it (`mx.partner.example`), not the domain itself: list both for both |
//! | `news-*@*.example` | a wildcard over the whole address: `*` is any run of characters, possibly empty |
//!
//! The most specific matching entry wins: an address, then a wildcard, then a domain, then a
//! subdomain entry (the longer one first). On a tie between the lists, **block** wins. So
//! `block = ["partner.example"]` with `allow = ["ceo@partner.example"]` blocks the domain but
//! lets its CEO through.
//!
//! # What a match does
//! - **block** (either sender blocked): `on_block = "refuse"` (default) bounces the group
//!   with 550 5.7.1 and stops; `"junk"` files into `folder` (`Junk`) and lets the chain go on;
//!   `"drop"` discards silently and stops. A refusal through the milter or `sluice deliver` is
//!   an SMTP reply (no bounce message); through SES the host's DSN rules apply as for any bounce.
//! - **allow**: the chain stops here for this group (`stop`), so the steps after this one —
//!   put `junk`, `banner` and other spam or warning steps there — do not run. Routing steps
//!   (`alias`, `forward`) belong **before** `sender-lists`, or an allowed sender would skip them.
//!   `on_allow = "continue"` only logs the match.
//!
//! Both senders are written by the sender, so an allow entry counts only for an authenticated
//! sender by default (`allow_needs_auth = true`): the envelope sender's match needs an SPF pass,
//! the `From:` match a DMARC pass (which means SPF or DKIM passed for a domain aligned with
//! the `From:` domain, RFC 7489). Without that the allow is logged and ignored. Block entries
//! need no authentication: a forged blocked address is blocked too.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `allow` | list of entries | `[]` | senders that skip the later steps |
//! | `block` | list of entries | `[]` | senders that are refused (or junked, or dropped) |
//! | `check` | list of `"envelope"`, `"from"` | both | which senders are compared |
//! | `on_block` | `"refuse"` \| `"junk"` \| `"drop"` | `"refuse"` | what a block does |
//! | `folder` | string | `"Junk"` | the folder for `on_block = "junk"` |
//! | `on_allow` | `"stop"` \| `"continue"` | `"stop"` | what an allow does |
//! | `allow_needs_auth` | bool | `true` | an allow counts only for an SPF (envelope) or DMARC (`From:`) pass |
//! | `table` | string | none | a directory whose `[senders]` lists are read too (grant it: `lookups = ["NAME"]`) |
//!
//! ```toml
//! config = { block = ["spam.example", ".spam.example", "*@*.bulk.example"], allow = ["partner.example"] }
//! ```
//!
//! # Lists in a directory
//! With `table = "aliases"` (and `lookups = ["aliases"]` on the step) the rule also reads the
//! sender lists kept in that directory (the file's `[senders]` section, or the DynamoDB
//! table's `#senders` partition), which `sluice list add|rm|show` edits without a config
//! change. For each sender it asks for the address, then the domain, then each parent
//! `.domain` (`sender:x@mx.spam.example`, `sender:mx.spam.example`, `sender:.spam.example`,
//! `sender:.example`), stopping at the first answer, and ranks that answer like a config
//! entry: the most specific match over both places wins, block on a tie. A directory holds no
//! `*` patterns. A directory that cannot answer (DynamoDB throttled or down) is a temporary
//! error: the message is retried, never let through on a guess.

use sluice_sdk::prelude::*;

/// The rule's config (see the crate docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Allowed senders.
    pub allow: Vec<String>,
    /// Blocked senders.
    pub block: Vec<String>,
    /// Which senders are compared.
    pub check: Vec<Sender>,
    /// What a block does.
    pub on_block: OnBlock,
    /// The folder for `on_block = "junk"`.
    pub folder: String,
    /// What an allow does.
    pub on_allow: OnAllow,
    /// An allow needs an SPF (envelope) or DMARC (`From:`) pass.
    pub allow_needs_auth: bool,
    /// A directory whose sender lists are read too.
    pub table: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow: Vec::new(),
            block: Vec::new(),
            check: vec![Sender::Envelope, Sender::From],
            on_block: OnBlock::Refuse,
            folder: "Junk".into(),
            on_allow: OnAllow::Stop,
            allow_needs_auth: true,
            table: None,
        }
    }
}

/// One of the two senders of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    /// MAIL FROM.
    Envelope,
    /// The header `From:`.
    From,
}

/// `on_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBlock {
    /// 550 5.7.1 and stop.
    Refuse,
    /// File into `folder`.
    Junk,
    /// Discard and stop.
    Drop,
}

/// `on_allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAllow {
    /// Run no later steps for this group.
    Stop,
    /// Only log.
    Continue,
}

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum List {
    /// `allow` (sorts first, so a tie goes to block).
    Allow,
    /// `block`.
    Block,
}

/// A parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `local@domain`, lower case.
    Address(String),
    /// `*` wildcard over the whole address, lower case.
    Wildcard(String),
    /// A domain, lower case.
    Domain(String),
    /// `.domain`: its subdomains (stored without the dot).
    Subdomains(String),
}

impl Entry {
    /// Parses one list entry, saying what is wrong with a bad one.
    pub fn parse(entry: &str) -> Result<Entry, String> {
        let e = entry.trim().to_ascii_lowercase();
        if e.is_empty() {
            return Err("an empty entry".into());
        }
        if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{entry:?} contains a space or a control character"));
        }
        if e.contains('*') {
            if !e.contains('@') {
                return Err(format!(
                    "{entry:?}: a wildcard entry is a whole address pattern (`*@*.example.com`); for a domain and its subdomains list `example.com` and `.example.com`"
                ));
            }
            return Ok(Entry::Wildcard(e));
        }
        if e.contains('@') {
            check_address(&e).map_err(|err| format!("{entry:?} is not an address: {err}"))?;
            return Ok(Entry::Address(e));
        }
        let (subdomains, domain) = match e.strip_prefix('.') {
            Some(rest) => (true, rest.to_string()),
            None => (false, e),
        };
        if domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "{entry:?} is not a domain, an address or a `*` pattern"
            ));
        }
        Ok(if subdomains {
            Entry::Subdomains(domain)
        } else {
            Entry::Domain(domain)
        })
    }

    /// How specific a match of this entry is (higher wins), or `None` when `addr` does not
    /// match. `addr` is lower case.
    fn rank(&self, addr: &str) -> Option<usize> {
        let domain = addr.rsplit_once('@').map(|(_, d)| d)?;
        match self {
            Entry::Address(a) => (a == addr).then_some(3_000),
            Entry::Wildcard(p) => glob(p.as_bytes(), addr.as_bytes()).then_some(2_000),
            Entry::Domain(d) => (d == domain).then_some(1_000),
            Entry::Subdomains(d) => domain
                .strip_suffix(d.as_str())
                .filter(|rest| rest.ends_with('.') && rest.len() > 1)
                .map(|_| d.len().min(999)),
        }
    }
}

/// `*`-only glob, iterative (no backtracking blow-up on long inputs).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The parsed lists.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    entries: Vec<(List, Entry)>,
}

impl Lists {
    /// Parses both lists; the error names the list and the entry.
    pub fn from_config(config: &Config) -> Result<Lists, String> {
        let mut entries = Vec::new();
        for (list, name, items) in [
            (List::Allow, "allow", &config.allow),
            (List::Block, "block", &config.block),
        ] {
            for item in items {
                let entry = Entry::parse(item).map_err(|e| format!("`{name}`: {e}"))?;
                entries.push((list, entry));
            }
        }
        Ok(Lists { entries })
    }

    /// The list of the most specific entry matching `addr` (block on a tie), if any.
    pub fn lookup(&self, addr: &str) -> Option<List> {
        self.best(addr).map(|(_, list)| list)
    }

    /// The most specific match for `addr` with its rank (block on a tie).
    pub fn best(&self, addr: &str) -> Option<(usize, List)> {
        let addr = addr.trim().to_ascii_lowercase();
        self.entries
            .iter()
            .filter_map(|(list, entry)| entry.rank(&addr).map(|rank| (rank, *list)))
            .max()
    }
}

/// The keys a directory is asked for `addr` (lower case), most specific first, each with the
/// rank its entry has in [`Entry::rank`]: the address, the domain, then each parent
/// `.domain`.
pub fn table_keys(addr: &str) -> Vec<(String, usize)> {
    let Some((_, domain)) = addr.rsplit_once('@') else {
        return Vec::new();
    };
    let mut keys = vec![(addr.to_string(), 3_000), (domain.to_string(), 1_000)];
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.is_empty() {
            break;
        }
        keys.push((format!(".{parent}"), parent.len().min(999)));
        rest = parent;
    }
    keys
}

/// The most specific match for `addr` in directory `table`'s sender lists, with its rank.
pub fn table_best(table: &str, addr: &str) -> Result<Option<(usize, List)>, RuleError> {
    #[derive(Deserialize)]
    struct Answer {
        list: String,
    }
    let addr = addr.trim().to_ascii_lowercase();
    for (key, rank) in table_keys(&addr) {
        let Some(json) = lookup::get(table, &format!("sender:{key}"))? else {
            continue;
        };
        let answer: Answer = sluice_sdk::serde_json::from_str(&json).map_err(|e| {
            RuleError::permanent(format!(
                "directory {table:?}: the sender entry {key} is not a list answer ({e}): is the table a Sluice directory?"
            ))
        })?;
        let list = match answer.list.as_str() {
            "allow" => List::Allow,
            "block" => List::Block,
            other => {
                return Err(RuleError::permanent(format!(
                    "directory {table:?}: the sender entry {key} is on an unknown list {other:?}"
                )))
            }
        };
        return Ok(Some((rank, list)));
    }
    Ok(None)
}

/// The list `addr` is on over the config's lists and directory `table`'s: the most specific
/// entry of either wins, block on a tie.
pub fn list_of(lists: &Lists, table: Option<&str>, addr: &str) -> Result<Option<List>, RuleError> {
    let mut best = lists.best(addr);
    if let Some(table) = table {
        best = best.max(table_best(table, addr)?);
    }
    Ok(best.map(|(_, list)| list))
}

/// What the rule decided for one group, and why (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The actions to return.
    pub actions: Vec<Action>,
    /// One line for the log, when something matched.
    pub why: Option<String>,
}

/// The senders to compare: (which, address, authenticated).
pub struct Senders<'a> {
    /// MAIL FROM (empty for a null sender).
    pub envelope: &'a str,
    /// The header `From:` address.
    pub from: Option<&'a str>,
}

/// Decides for one group, with the config's lists only.
pub fn decide(
    senders: &Senders<'_>,
    verdicts: &Verdicts,
    config: &Config,
    lists: &Lists,
) -> Decision {
    let list_of = |addr: &str| Ok::<_, std::convert::Infallible>(lists.lookup(addr));
    match decide_with(senders, verdicts, config, &list_of) {
        Ok(decision) => decision,
        Err(never) => match never {},
    }
}

/// Decides for one group; `list_of` says which list a sender is on (config and directory).
pub fn decide_with<E>(
    senders: &Senders<'_>,
    verdicts: &Verdicts,
    config: &Config,
    list_of: &dyn Fn(&str) -> Result<Option<List>, E>,
) -> Result<Decision, E> {
    let mut blocked = None;
    let mut allowed = None;
    let mut ignored_allow = None;
    for which in &config.check {
        let (addr, authenticated) = match which {
            Sender::Envelope if !senders.envelope.is_empty() => {
                (senders.envelope, verdicts.spf.passed())
            }
            Sender::From => match senders.from {
                Some(a) => (a, verdicts.dmarc.passed()),
                None => continue,
            },
            Sender::Envelope => continue,
        };
        let label = match which {
            Sender::Envelope => "envelope sender",
            Sender::From => "From:",
        };
        match list_of(addr)? {
            Some(List::Block) => blocked = blocked.or(Some(label)),
            Some(List::Allow) if authenticated || !config.allow_needs_auth => {
                allowed = allowed.or(Some(label))
            }
            Some(List::Allow) => ignored_allow = ignored_allow.or(Some(label)),
            None => {}
        }
    }
    if let Some(label) = blocked {
        let actions = match config.on_block {
            OnBlock::Refuse => vec![
                Action::bounce(550, "5.7.1", "sender blocked by the recipient's policy"),
                Action::Stop,
            ],
            OnBlock::Junk => vec![Action::file_into(config.folder.clone())],
            OnBlock::Drop => vec![Action::Drop, Action::Stop],
        };
        return Ok(Decision {
            actions,
            why: Some(format!("{label} on the block list")),
        });
    }
    if let Some(label) = allowed {
        let actions = match config.on_allow {
            OnAllow::Stop => vec![Action::Stop],
            OnAllow::Continue => Vec::new(),
        };
        return Ok(Decision {
            actions,
            why: Some(format!("{label} on the allow list")),
        });
    }
    Ok(Decision {
        actions: Vec::new(),
        why: ignored_allow.map(|label| {
            format!("{label} on the allow list but not authenticated (allow_needs_auth): ignored")
        }),
    })
}

/// The rule.
pub struct SenderLists;

impl Rule for SenderLists {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        Lists::from_config(config)?;
        if config.allow.is_empty() && config.block.is_empty() && config.table.is_none() {
            return Err(
                "both `allow` and `block` are empty and no `table` is named: list some senders, or name the directory that holds them (`table = \"aliases\"` with `lookups = [\"aliases\"]`)".into(),
            );
        }
        if config.table.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(
                "`table` is empty: name a directory the step is granted (`lookups`)".into(),
            );
        }
        if config.check.is_empty() {
            return Err("`check` is empty: name \"envelope\", \"from\" or both".into());
        }
        if config.folder.trim().is_empty() {
            return Err("`folder` must not be empty".into());
        }
        Ok(())
    }

    fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        // Checked by `check_config` already; parsed per message because a fresh instance
        // keeps nothing (lists of a few hundred entries parse in microseconds).
        let lists = Lists::from_config(config).map_err(RuleError::permanent)?;
        let from = msg.from();
        let senders = Senders {
            envelope: ctx.mail_from(),
            from: from.as_deref(),
        };
        let list_of = |addr: &str| list_of(&lists, config.table.as_deref(), addr);
        let decision = decide_with(&senders, ctx.verdicts(), config, &list_of)?;
        if let Some(why) = &decision.why {
            log::info!("{why}");
        }
        Ok(decision.actions)
    }
}

sluice_sdk::export_rule!(SenderLists);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        let c: Config = sluice_sdk::parse_config(json).expect("parses");
        SenderLists::check_config(&c).expect("valid");
        c
    }

    fn verdicts(spf: Verdict, dmarc: Verdict) -> Verdicts {
        Verdicts {
            spf,
            dkim: Verdict::Unknown,
            dmarc,
            spam: Verdict::Unknown,
            virus: Verdict::Unknown,
            dmarc_policy: None,
        }
    }

    fn run(json: &str, envelope: &str, from: Option<&str>, v: &Verdicts) -> Decision {
        let c = config(json);
        let lists = Lists::from_config(&c).unwrap();
        decide(&Senders { envelope, from }, v, &c, &lists)
    }

    #[test]
    fn entries_match_as_documented() {
        let c = config(
            r#"{"block": ["Alice@Partner.example", "spam.example", ".sub.example", "news-*@*.bulk.example"]}"#,
        );
        let l = Lists::from_config(&c).unwrap();
        assert_eq!(l.lookup("alice@partner.example"), Some(List::Block));
        assert_eq!(l.lookup("ALICE@partner.EXAMPLE"), Some(List::Block));
        assert_eq!(l.lookup("bob@partner.example"), None);
        assert_eq!(l.lookup("x@spam.example"), Some(List::Block));
        assert_eq!(
            l.lookup("x@mx.spam.example"),
            None,
            "a domain entry is not its subdomains"
        );
        assert_eq!(l.lookup("x@a.sub.example"), Some(List::Block));
        assert_eq!(l.lookup("x@a.b.sub.example"), Some(List::Block));
        assert_eq!(
            l.lookup("x@sub.example"),
            None,
            "a .domain entry is not the domain"
        );
        assert_eq!(l.lookup("x@notsub.example"), None);
        assert_eq!(l.lookup("news-daily@eu.bulk.example"), Some(List::Block));
        assert_eq!(l.lookup("news-@x.bulk.example"), Some(List::Block));
        assert_eq!(l.lookup("news-daily@bulk.example"), None);
        assert_eq!(l.lookup("daily@eu.bulk.example"), None);
    }

    #[test]
    fn the_most_specific_entry_wins_and_block_wins_a_tie() {
        let c = config(
            r#"{"block": ["partner.example", ".example", "same@x.example"], "allow": ["ceo@partner.example", ".eu.example", "same@x.example"]}"#,
        );
        let l = Lists::from_config(&c).unwrap();
        assert_eq!(l.lookup("ceo@partner.example"), Some(List::Allow));
        assert_eq!(l.lookup("bob@partner.example"), Some(List::Block));
        assert_eq!(
            l.lookup("a@mx.eu.example"),
            Some(List::Allow),
            "the longer subdomain entry"
        );
        assert_eq!(l.lookup("a@mx.us.example"), Some(List::Block));
        assert_eq!(l.lookup("same@x.example"), Some(List::Block));
    }

    #[test]
    fn a_block_refuses_by_default_or_junks_or_drops() {
        let v = verdicts(Verdict::Pass, Verdict::Pass);
        let d = run(
            r#"{"block": ["spam.example"]}"#,
            "eve@spam.example",
            None,
            &v,
        );
        match &d.actions[..] {
            [Action::Bounce(b), Action::Stop] => {
                assert_eq!((b.code, b.status.as_str()), (550, "5.7.1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.why.as_deref(), Some("envelope sender on the block list"));
        let d = run(
            r#"{"block": ["spam.example"], "on_block": "junk", "folder": "Blocked"}"#,
            "",
            Some("eve@spam.example"),
            &v,
        );
        assert_eq!(d.actions, vec![Action::file_into("Blocked")]);
        assert_eq!(d.why.as_deref(), Some("From: on the block list"));
        let d = run(
            r#"{"block": ["spam.example"], "on_block": "drop"}"#,
            "eve@spam.example",
            None,
            &v,
        );
        assert_eq!(d.actions, vec![Action::Drop, Action::Stop]);
    }

    #[test]
    fn an_allow_stops_the_chain_only_when_authenticated() {
        let json = r#"{"allow": ["partner.example"]}"#;
        let pass = verdicts(Verdict::Pass, Verdict::Fail);
        let d = run(json, "a@partner.example", None, &pass);
        assert_eq!(d.actions, vec![Action::Stop]);
        // The envelope needs SPF; a From: match needs DMARC.
        let d = run(json, "", Some("a@partner.example"), &pass);
        assert!(d.actions.is_empty());
        assert!(d.why.unwrap().contains("not authenticated"));
        let dmarc = verdicts(Verdict::Fail, Verdict::Pass);
        assert_eq!(
            run(json, "", Some("a@partner.example"), &dmarc).actions,
            vec![Action::Stop]
        );
        // Opting out of the check trusts the claim.
        let d = run(
            r#"{"allow": ["partner.example"], "allow_needs_auth": false}"#,
            "a@partner.example",
            None,
            &verdicts(Verdict::Fail, Verdict::Fail),
        );
        assert_eq!(d.actions, vec![Action::Stop]);
        let d = run(
            r#"{"allow": ["partner.example"], "on_allow": "continue"}"#,
            "a@partner.example",
            None,
            &pass,
        );
        assert!(d.actions.is_empty() && d.why.is_some());
    }

    #[test]
    fn a_blocked_sender_is_blocked_even_when_the_other_is_allowed() {
        let v = verdicts(Verdict::Pass, Verdict::Pass);
        let d = run(
            r#"{"allow": ["partner.example"], "block": ["spam.example"]}"#,
            "bounce@spam.example",
            Some("ceo@partner.example"),
            &v,
        );
        assert!(matches!(d.actions[0], Action::Bounce(_)));
    }

    #[test]
    fn check_limits_what_is_compared_and_null_senders_are_skipped() {
        let v = verdicts(Verdict::Pass, Verdict::Pass);
        let json = r#"{"block": ["spam.example"], "check": ["from"]}"#;
        assert!(run(json, "eve@spam.example", Some("a@ok.example"), &v)
            .actions
            .is_empty());
        let json = r#"{"block": ["spam.example"]}"#;
        assert!(run(json, "", None, &v).actions.is_empty());
    }

    #[test]
    fn glob_is_linear_on_hostile_patterns() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*a*b@*";
        let text = format!("{}@x", "a".repeat(5_000));
        let started = std::time::Instant::now();
        assert!(!glob(pattern.as_bytes(), text.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(!glob(b"a*c", b"abbb"));
    }

    #[test]
    fn a_directory_is_asked_most_specific_first_and_ranks_like_the_config() {
        assert_eq!(
            table_keys("x@mx.eu.spam.example"),
            [
                ("x@mx.eu.spam.example".to_string(), 3_000),
                ("mx.eu.spam.example".to_string(), 1_000),
                (".eu.spam.example".to_string(), 15),
                (".spam.example".to_string(), 12),
                (".example".to_string(), 7),
            ]
        );
        lookup::clear();
        lookup::set("aliases", "sender:spam.example", r#"{"list":"block"}"#);
        lookup::set("aliases", "sender:.spam.example", r#"{"list":"block"}"#);
        lookup::set("aliases", "sender:ceo@spam.example", r#"{"list":"allow"}"#);
        let none = Lists::default();
        let on = |addr: &str| list_of(&none, Some("aliases"), addr).unwrap();
        assert_eq!(on("bob@spam.example"), Some(List::Block));
        assert_eq!(on("bob@mx.spam.example"), Some(List::Block));
        assert_eq!(on("CEO@spam.example"), Some(List::Allow));
        assert_eq!(on("bob@other.example"), None);
        // The first answer ends the questions: an address hit asks nothing else.
        lookup::take_asked();
        on("ceo@spam.example");
        assert_eq!(lookup::take_asked().len(), 1);

        // Config and directory together: the more specific entry wins wherever it is.
        let lists = Lists::from_config(&config(
            r#"{"allow": ["bob@spam.example"], "block": ["*@*.example"]}"#,
        ))
        .unwrap();
        assert_eq!(
            list_of(&lists, Some("aliases"), "bob@spam.example").unwrap(),
            Some(List::Allow)
        );
        assert_eq!(
            list_of(&lists, Some("aliases"), "carol@spam.example").unwrap(),
            Some(List::Block)
        );
        assert_eq!(
            list_of(&lists, None, "ceo@spam.example").unwrap(),
            Some(List::Block)
        );

        // A directory that cannot answer is passed on (temporary: retried), not ignored.
        lookup::fail("aliases", RuleError::temporary("throttled"));
        let err = list_of(&none, Some("aliases"), "bob@spam.example").unwrap_err();
        assert!(err.temporary, "{err:?}");
        lookup::clear();
        lookup::set(
            "aliases",
            "sender:odd.example",
            r#"{"status":"active","to":[]}"#,
        );
        let err = list_of(&none, Some("aliases"), "a@odd.example").unwrap_err();
        assert!(err.message.contains("not a list answer"), "{err:?}");
        lookup::clear();
    }

    #[test]
    fn config_errors_say_what_to_fix() {
        for (bad, says) in [
            ("{}", "both `allow` and `block` are empty and no `table`"),
            (r#"{"table": " "}"#, "`table` is empty"),
            (r#"{"block": [""]}"#, "`block`: an empty entry"),
            (r#"{"allow": ["bad entry"]}"#, "`allow`"),
            (r#"{"block": ["*.example"]}"#, "whole address pattern"),
            (r#"{"block": ["x..example"]}"#, "is not a domain"),
            (r#"{"block": ["a@"]}"#, "not an address"),
            (
                r#"{"block": ["x.example"], "check": []}"#,
                "`check` is empty",
            ),
            (r#"{"block": ["x.example"], "folder": ""}"#, "`folder`"),
        ] {
            let c: Config = sluice_sdk::parse_config(bad).unwrap();
            let err = SenderLists::check_config(&c).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(sluice_sdk::parse_config::<Config>(r#"{"on_block": "bounce"}"#).is_err());
        assert!(sluice_sdk::parse_config::<Config>(r#"{"check": ["sender"]}"#).is_err());
    }
}
