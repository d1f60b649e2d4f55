//! `sluice test DIR...`: runs rule fixtures like a unit test runner.
//!
//! A fixture is a message plus a TOML file of expectations next to it:
//! `fixtures/spam-fail.eml` + `fixtures/spam-fail.toml`. Every `*.toml` in a DIR is a fixture
//! (sorted by name), except sluice configs: files some fixture names as its `config`, and
//! files with `[[domain]]` or `[[outbound]]` but no `[expect]`. A DIR may also be one fixture `.toml`.
//!
//! ```toml
//! config = "sluice.toml"          # the sluice config to run, relative to this file
//!                                 # (default: sluice.toml next to the fixture)
//! message = "spam-fail.eml"       # default: the fixture's stem + .eml
//! rcpt = ["bob@example.com"]      # envelope recipients (default: the To and Cc addresses)
//! mail_from = "eve@spam.example"  # envelope sender (default: the From address)
//! verdicts = { spf = "pass", spam = "fail" }   # spf, dkim, dmarc, spam, virus; others unknown
//! dmarc_policy = "reject"         # none, quarantine, reject (default: none given)
//! message_id = "fixture-1"        # default: derived from the message's sha256
//! received_at = 1704067200000     # ms since the epoch (default: 2024-01-01T00:00:00Z)
//! direction = "outbound"          # inbound (default) | outbound: mail a local user sends,
//!                                 # run by the sending domain's [[outbound]] chain
//! auth_sender = "alice@example.com"  # the SMTP AUTH login of an outbound message
//!
//! [expect]                        # every key is optional; only the keys given are checked
//! actions = ["file-into Junk"]    # every action of every step, in order, as `sluice run`
//!                                 # prints them; an entry may be a prefix of the description
//!                                 # that ends before a space, `,` or `)`: "add-banner" matches
//!                                 # `add-banner (top, html) "CAUTION…"`; [] = no actions
//! steps = { junk = "ok" }         # step name -> ok | rule-error | failed | skipped
//! deliveries = [ { recipient = "bob@example.com", kind = "deliver", folder = "Junk" } ]
//!                                 # one per recipient, in order; kind = deliver | relay |
//!                                 # bounce | drop | tempfail; folder, code, status and text
//!                                 # (a substring of the bounce text) are checked when given
//! headers = { "X-Foo" = "bar" }   # each delivered message has such a field (decoded value)
//! absent_headers = ["X-Bar"]      # and none of these
//! banner = "CAUTION"              # this text is in every displayed text part of each
//!                                 # delivered message (whitespace runs count as one
//!                                 # space; in an HTML part, as written or as the text the
//!                                 # HTML shows once tags are removed and entities decoded)
//! text = "was removed by policy"  # this text is in some displayed text part of each
//!                                 # delivered message (e.g. the note a stripped attachment
//!                                 # left; compared like `banner`)
//! modified = true                 # whether the chain changed the message
//! tempfail = false                # whether a group tempfailed
//! replies = ["reply from bob@example.com to alice@outside.example: Auto: Lunch"]
//!                                 # the automatic replies the rules asked for, in order:
//!                                 # `reply from R to S: SUBJECT` (SUBJECT `Auto: …` when
//!                                 # the rule gave none) or `reply from R suppressed KIND`
//!                                 # (list-mail, bulk, auto-submitted, null-sender,
//!                                 # daemon-sender, to-itself, not-delivered); an entry may be
//!                                 # a prefix, like `actions`; [] = none
//! ```
//!
//! Each distinct config is loaded once, with one engine for the whole run (its `[engine]`
//! settings come from the first config loaded); messages run in memory and nothing is written.
//! The output is one `ok   NAME` or `FAIL NAME` line per fixture (NAME is `rule/stem` for
//! `plugins/rule/fixtures/stem.toml`), each failure followed by expected and actual values of
//! the fields that differ, then `N passed, M failed`. Exit code 0 when every fixture passed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Deserialize;
use sluice_chain::{
    ConfigFile, Disposition, Envelope, GroupOutcome, OutputMessage, ProcessResult, RuleChains,
};
use sluice_engine::{Flow, RuleEngine, Verdicts};
use sluice_mail::Message;
use toml::Spanned;

use crate::EngineArgs;

/// The default `received_at`: 2024-01-01T00:00:00Z, so fixtures are reproducible.
const DEFAULT_RECEIVED_AT: u64 = 1_704_067_200_000;

/// The fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    config: Option<Spanned<String>>,
    message: Option<Spanned<String>>,
    rcpt: Option<Spanned<Vec<String>>>,
    mail_from: Option<String>,
    #[serde(default)]
    verdicts: Option<Spanned<BTreeMap<String, String>>>,
    dmarc_policy: Option<String>,
    message_id: Option<String>,
    received_at: Option<u64>,
    #[serde(default)]
    direction: FixtureDirection,
    auth_sender: Option<String>,
    expect: Option<Expect>,
}

/// `direction` of a fixture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FixtureDirection {
    /// Received mail: the `[[domain]]` chains.
    #[default]
    Inbound,
    /// Mail a local user sends: the sending domain's `[[outbound]]` chain.
    Outbound,
}

/// The flow a fixture runs as.
fn fixture_flow(direction: FixtureDirection, auth_sender: Option<String>) -> Flow {
    match direction {
        FixtureDirection::Inbound => Flow::inbound(),
        FixtureDirection::Outbound => Flow::outbound(auth_sender),
    }
}

/// `[expect]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    actions: Option<Vec<String>>,
    steps: Option<BTreeMap<String, String>>,
    deliveries: Option<Vec<ExpectDelivery>>,
    headers: Option<BTreeMap<String, String>>,
    absent_headers: Option<Vec<String>>,
    banner: Option<String>,
    text: Option<String>,
    modified: Option<bool>,
    tempfail: Option<bool>,
    replies: Option<Vec<String>>,
}

/// One entry of `expect.deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDelivery {
    recipient: String,
    kind: String,
    folder: Option<String>,
    code: Option<u16>,
    status: Option<String>,
    text: Option<String>,
}

/// What happened to one recipient, flattened from the groups' dispositions.
#[derive(Debug)]
struct ActualDelivery {
    recipient: String,
    kind: &'static str,
    folder: Option<String>,
    code: Option<u16>,
    status: Option<String>,
    text: Option<String>,
}

/// One field whose expectation did not hold.
#[derive(Debug)]
struct Mismatch {
    field: String,
    expected: Vec<String>,
    actual: Vec<String>,
}

impl Mismatch {
    fn new(field: impl Into<String>, expected: Vec<String>, actual: Vec<String>) -> Mismatch {
        Mismatch {
            field: field.into(),
            expected,
            actual,
        }
    }
}

/// A config loaded for the run, or why it could not be.
type LoadedConfig = Result<Arc<RuleChains>, String>;

/// The state of one `sluice test` run: the engine and the configs loaded so far.
struct Runner<'a> {
    args: &'a EngineArgs,
    engine: Option<RuleEngine>,
    configs: BTreeMap<PathBuf, LoadedConfig>,
}

/// Runs the fixtures in `paths` and prints the results; exit code 0 when all passed.
pub fn run(paths: &[PathBuf], args: &EngineArgs) -> Result<ExitCode> {
    let mut runner = Runner {
        args,
        engine: None,
        configs: BTreeMap::new(),
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for entry in collect(paths) {
        let (name, outcome) = match entry {
            Entry::Fixture(path) => (fixture_name(&path), runner.run_fixture(&path)),
            Entry::Broken(name, reason) => (name, Err(reason)),
        };
        match outcome {
            Ok(mismatches) if mismatches.is_empty() => {
                passed += 1;
                println!("ok   {name}");
            }
            Ok(mismatches) => {
                failed += 1;
                println!("FAIL {name}");
                print!("{}", render(&mismatches));
            }
            Err(reason) => {
                failed += 1;
                println!("FAIL {name}");
                println!("    {reason}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

enum Entry {
    Fixture(PathBuf),
    Broken(String, String),
}

/// The fixture files named by the arguments: a file as is, a directory's `*.toml` (sorted)
/// minus the sluice configs in it.
fn collect(paths: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push(Entry::Fixture(path.clone()));
            continue;
        }
        let listing = match std::fs::read_dir(path) {
            Ok(l) => l,
            Err(e) => {
                out.push(Entry::Broken(
                    path.display().to_string(),
                    format!("{}: cannot read: {e}", path.display()),
                ));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        // A config named by a fixture, or a file that looks like a config, is not a fixture.
        let mut configs = Vec::new();
        for file in &files {
            let Some(table) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
            else {
                continue;
            };
            if (table.contains_key("domain") || table.contains_key("outbound"))
                && !table.contains_key("expect")
            {
                configs.push(same_file_key(file));
            }
            let named = table.get("config").and_then(|c| c.as_str());
            let base = file.parent().unwrap_or(Path::new("."));
            configs.push(same_file_key(&base.join(named.unwrap_or("sluice.toml"))));
        }
        let before = out.len();
        out.extend(
            files
                .into_iter()
                .filter(|f| !configs.contains(&same_file_key(f)))
                .map(Entry::Fixture),
        );
        if out.len() == before {
            out.push(Entry::Broken(
                path.display().to_string(),
                format!("{}: no fixture files (*.toml) in it", path.display()),
            ));
        }
    }
    out
}

fn same_file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `banner/external` for `plugins/banner/fixtures/external.toml`; else `DIR/stem`.
fn fixture_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut dir = abs.parent();
    if dir
        .and_then(Path::file_name)
        .is_some_and(|n| n == "fixtures")
    {
        dir = dir.and_then(Path::parent);
    }
    match dir.and_then(Path::file_name) {
        Some(d) => format!("{}/{stem}", d.to_string_lossy()),
        None => stem,
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Runner<'_> {
    /// Runs one fixture: `Ok` with the fields that did not match, or `Err` with why it could
    /// not run (one line).
    fn run_fixture(&mut self, path: &Path) -> Result<Vec<Mismatch>, String> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
        let at = |span: Option<std::ops::Range<usize>>, message: &str| match span {
            Some(s) => format!("{file}:{}: {message}", line_of(&text, s.start)),
            None => format!("{file}: {message}"),
        };
        let fixture: FixtureFile =
            toml::from_str(&text).map_err(|e| at(e.span(), e.message().trim_end()))?;
        let expect = fixture
            .expect
            .ok_or_else(|| at(None, "no [expect] table: nothing to check"))?;
        if expect.is_empty() {
            return Err(at(None, "[expect] is empty: nothing to check"));
        }
        let base = path.parent().unwrap_or(Path::new("."));

        let config_path = base.join(
            fixture
                .config
                .as_ref()
                .map(|c| c.get_ref().as_str())
                .unwrap_or("sluice.toml"),
        );
        let chains = self.chains(&config_path).map_err(|e| {
            at(
                fixture.config.as_ref().map(|c| c.span()),
                &format!("config: {e}"),
            )
        })?;

        let message_path = match &fixture.message {
            Some(m) => base.join(m.get_ref()),
            None => path.with_extension("eml"),
        };
        let message_span = fixture.message.as_ref().map(|m| m.span());
        let raw = std::fs::read(&message_path).map_err(|e| {
            at(
                message_span.clone(),
                &format!("cannot read message {}: {e}", message_path.display()),
            )
        })?;
        let message_id = fixture
            .message_id
            .clone()
            .unwrap_or_else(|| crate::run::content_id(&raw));
        let parsed = Message::parse(raw)
            .map(Arc::new)
            .map_err(|e| at(message_span, &format!("{}: {e}", message_path.display())))?;

        let recipients = match &fixture.rcpt {
            Some(r) => {
                for a in r.get_ref() {
                    sluice_mail::validate_address(a)
                        .map_err(|e| at(Some(r.span()), &format!("rcpt {a:?}: {e}")))?;
                }
                r.get_ref().clone()
            }
            None => crate::run::header_recipients(parsed.raw()),
        };
        if recipients.is_empty() {
            return Err(at(
                None,
                "no rcpt given and no To/Cc addresses in the message",
            ));
        }
        let verdicts = verdicts(fixture.verdicts.as_ref(), fixture.dmarc_policy.clone())
            .map_err(|e| at(fixture.verdicts.as_ref().map(|v| v.span()), &e))?;
        let envelope = Envelope {
            message_id,
            mail_from: fixture
                .mail_from
                .clone()
                .or_else(|| parsed.from_address())
                .unwrap_or_default(),
            recipients,
            verdicts,
            received_at: fixture.received_at.unwrap_or(DEFAULT_RECEIVED_AT),
            flow: fixture_flow(fixture.direction, fixture.auth_sender.clone()),
            skip_step: None,
        };
        let engine = self
            .engine
            .as_ref()
            .expect("the engine exists once a config loaded");
        let result = chains.process(engine, parsed.clone(), &envelope);
        Ok(compare(&expect, &result, &parsed))
    }

    /// The chains of a config file, loaded on first use.
    fn chains(&mut self, path: &Path) -> Result<Arc<RuleChains>, String> {
        let key = same_file_key(path);
        if let Some(loaded) = self.configs.get(&key) {
            return loaded.clone();
        }
        let loaded = self.load(path);
        self.configs.insert(key, loaded.clone());
        loaded
    }

    fn load(&mut self, path: &Path) -> LoadedConfig {
        let config = ConfigFile::read(path).map_err(|e| e.to_string())?;
        if self.engine.is_none() {
            let engine = crate::build_engine(&config, self.args).map_err(|e| format!("{e:#}"))?;
            self.engine = Some(engine);
        }
        let engine = self.engine.as_ref().expect("just built");
        RuleChains::load(engine, &config)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

impl Expect {
    fn is_empty(&self) -> bool {
        self.actions.is_none()
            && self.steps.is_none()
            && self.deliveries.is_none()
            && self.headers.is_none()
            && self.absent_headers.is_none()
            && self.banner.is_none()
            && self.text.is_none()
            && self.modified.is_none()
            && self.tempfail.is_none()
            && self.replies.is_none()
    }
}

fn verdicts(
    given: Option<&Spanned<BTreeMap<String, String>>>,
    dmarc_policy: Option<String>,
) -> Result<Verdicts, String> {
    let list: Vec<String> = given
        .map(|v| {
            v.get_ref()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect()
        })
        .unwrap_or_default();
    crate::run::parse_verdicts(&list, dmarc_policy)
        .map_err(|e| format!("{e:#}").replace("--verdict ", "verdicts: "))
}

/// Compares a result with the expectations; empty when everything matched.
fn compare(expect: &Expect, result: &ProcessResult, original: &Message) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let actual_deliveries = deliveries(result);
    compare_actions(expect, result, &mut out);
    compare_replies(expect, result, original, &mut out);
    compare_steps(expect, result, &mut out);
    compare_deliveries(expect, &actual_deliveries, &mut out);
    compare_tempfail(expect, result, &mut out);
    compare_modified(expect, result, &mut out);
    compare_messages(expect, result, original, &actual_deliveries, &mut out);
    if !out.is_empty() {
        // A failed step explains most surprises: show what every step did.
        let trace = trace_lines(result);
        if !trace.is_empty() {
            out.push(Mismatch::new("(trace)", Vec::new(), trace));
        }
    }
    out
}

/// `actions`: every step's actions, in order.
fn compare_actions(expect: &Expect, result: &ProcessResult, out: &mut Vec<Mismatch>) {
    if let Some(expected) = &expect.actions {
        let actual: Vec<String> = result
            .groups
            .iter()
            .flat_map(|g| &g.steps)
            .flat_map(crate::report::step_actions)
            .collect();
        let same = expected.len() == actual.len()
            && expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| action_matches(e, a));
        if !same {
            out.push(Mismatch::new("actions", expected.clone(), actual));
        }
    }
}

/// `replies`: every automatic reply the rules asked for, as the chain left it.
fn compare_replies(
    expect: &Expect,
    result: &ProcessResult,
    original: &Message,
    out: &mut Vec<Mismatch>,
) {
    if let Some(expected) = &expect.replies {
        let actual: Vec<String> = result
            .groups
            .iter()
            .flat_map(|g| &g.replies)
            .map(|r| match &r.suppressed {
                Some(s) => format!("reply from {} suppressed {}", r.from, s.kind),
                None => {
                    let subject = r.request.subject.clone().unwrap_or_else(|| {
                        format!("Auto: {}", original.subject().unwrap_or_default().trim())
                    });
                    format!("reply from {} to {}: {subject}", r.from, r.to)
                }
            })
            .collect();
        let same = expected.len() == actual.len()
            && expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| a.starts_with(e.as_str()));
        if !same {
            out.push(Mismatch::new("replies", expected.clone(), actual));
        }
    }
}

/// `steps`: each named step's outcome, in every group it ran in.
fn compare_steps(expect: &Expect, result: &ProcessResult, out: &mut Vec<Mismatch>) {
    if let Some(expected) = &expect.steps {
        for (name, outcome) in expected {
            let actual: Vec<String> = result
                .groups
                .iter()
                .flat_map(|g| &g.steps)
                .filter(|s| *s.step == **name)
                .map(|s| match &s.error {
                    Some(e) => format!("{} ({e})", s.outcome),
                    None => s.outcome.to_string(),
                })
                .collect();
            let ok = !actual.is_empty()
                && result
                    .groups
                    .iter()
                    .flat_map(|g| &g.steps)
                    .filter(|s| *s.step == **name)
                    .all(|s| s.outcome.as_str() == outcome);
            if !ok {
                let actual = if actual.is_empty() {
                    vec!["(the step did not run)".to_string()]
                } else {
                    actual
                };
                out.push(Mismatch::new(
                    format!("steps.{name}"),
                    vec![outcome.clone()],
                    actual,
                ));
            }
        }
    }
}

/// `deliveries`: where each copy went, in order.
fn compare_deliveries(
    expect: &Expect,
    actual_deliveries: &[ActualDelivery],
    out: &mut Vec<Mismatch>,
) {
    if let Some(expected) = &expect.deliveries {
        let same = expected.len() == actual_deliveries.len()
            && expected
                .iter()
                .zip(actual_deliveries)
                .all(|(e, a)| delivery_matches(e, a));
        if !same {
            out.push(Mismatch::new(
                "deliveries",
                expected.iter().map(render_expected_delivery).collect(),
                actual_deliveries.iter().map(render_delivery).collect(),
            ));
        }
    }
}

/// `tempfail`: whether the message is to be retried.
fn compare_tempfail(expect: &Expect, result: &ProcessResult, out: &mut Vec<Mismatch>) {
    if let Some(expected) = expect.tempfail {
        if expected != result.tempfailed() {
            let reasons = result.groups.iter().filter_map(|g| match &g.outcome {
                GroupOutcome::Tempfail { reason } => Some(format!("true ({reason})")),
                GroupOutcome::Done => None,
            });
            let actual: Vec<String> = if result.tempfailed() {
                reasons.collect()
            } else {
                vec!["false".into()]
            };
            out.push(Mismatch::new(
                "tempfail",
                vec![expected.to_string()],
                actual,
            ));
        }
    }
}

/// `modified`: whether any group delivers an edited message.
fn compare_modified(expect: &Expect, result: &ProcessResult, out: &mut Vec<Mismatch>) {
    if let Some(expected) = expect.modified {
        let actual = result
            .groups
            .iter()
            .any(|g| matches!(g.output, Some(OutputMessage::Edited(_))));
        if expected != actual {
            let mut why = actual.to_string();
            if let Some(e) = result.groups.iter().find_map(|g| g.edit_error.as_ref()) {
                let _ = write!(why, " (edits not applied: {e})");
            }
            out.push(Mismatch::new(
                "modified",
                vec![expected.to_string()],
                vec![why],
            ));
        }
    }
}

/// `headers`, `absent_headers`, `banner` and `text`: checked on every delivered message.
fn compare_messages(
    expect: &Expect,
    result: &ProcessResult,
    original: &Message,
    actual_deliveries: &[ActualDelivery],
    out: &mut Vec<Mismatch>,
) {
    // The delivered messages, one per group that delivers or relays anything.
    let delivered: Vec<(&str, &[u8])> = result
        .groups
        .iter()
        .filter_map(|g| {
            let bytes: &[u8] = match g.output.as_ref()? {
                OutputMessage::Edited(edited) => edited.raw(),
                OutputMessage::Original => original.raw(),
            };
            Some((g.domain.as_str(), bytes))
        })
        .collect();
    let wants_message = expect.headers.is_some()
        || expect.absent_headers.is_some()
        || expect.banner.is_some()
        || expect.text.is_some();
    if wants_message && delivered.is_empty() {
        out.push(Mismatch::new(
            "headers/banner",
            vec!["a delivered message to check".into()],
            vec![format!(
                "nothing delivered: {}",
                actual_deliveries
                    .iter()
                    .map(render_delivery)
                    .collect::<Vec<_>>()
                    .join("; ")
            )],
        ));
    }
    let several = delivered.len() > 1;
    for (domain, bytes) in &delivered {
        let field = |name: String| {
            if several {
                format!("{name} (group {domain})")
            } else {
                name
            }
        };
        let msg = match Message::parse(bytes.to_vec()) {
            Ok(m) => m,
            Err(e) => {
                out.push(Mismatch::new(
                    field("delivered message".into()),
                    vec!["a message".into()],
                    vec![format!("unparseable: {e}")],
                ));
                continue;
            }
        };
        for (name, value) in expect.headers.iter().flatten() {
            let values = msg.header(name);
            if !values.iter().any(|v| v.trim() == value.trim()) {
                let actual = if values.is_empty() {
                    vec!["(absent)".to_string()]
                } else {
                    values.iter().map(|v| format!("{v:?}")).collect()
                };
                out.push(Mismatch::new(
                    field(format!("headers.{name}")),
                    vec![format!("{value:?}")],
                    actual,
                ));
            }
        }
        for name in expect.absent_headers.iter().flatten() {
            let values = msg.header(name);
            if !values.is_empty() {
                out.push(Mismatch::new(
                    field(format!("absent_headers.{name}")),
                    vec!["(absent)".into()],
                    values.iter().map(|v| format!("{v:?}")).collect(),
                ));
            }
        }
        if let Some(banner) = &expect.banner {
            let parts = displayed_parts(bytes);
            let missing = parts.is_empty() || parts.iter().any(|p| !has_banner(p, banner));
            if missing {
                let actual = if parts.is_empty() {
                    vec!["(no displayed text part)".to_string()]
                } else {
                    parts
                        .iter()
                        .map(|p| {
                            format!(
                                "{} part: {} — starts {:?}",
                                p.content_type,
                                if has_banner(p, banner) {
                                    "has it"
                                } else {
                                    "MISSING"
                                },
                                preview(&p.text)
                            )
                        })
                        .collect()
                };
                out.push(Mismatch::new(
                    field("banner".into()),
                    vec![format!("{banner:?} in every displayed text part")],
                    actual,
                ));
            }
        }
        if let Some(text) = &expect.text {
            let parts = displayed_parts(bytes);
            if !parts.iter().any(|p| has_banner(p, text)) {
                out.push(Mismatch::new(
                    field("text".into()),
                    vec![format!("{text:?} in a displayed text part")],
                    parts
                        .iter()
                        .map(|p| format!("{} part: starts {:?}", p.content_type, preview(&p.text)))
                        .collect(),
                ));
            }
        }
    }
}

/// One line per step of every group: domain, step, outcome and error.
fn trace_lines(result: &ProcessResult) -> Vec<String> {
    result
        .groups
        .iter()
        .flat_map(|g| {
            g.steps.iter().map(move |s| {
                let mut line = format!("{} {}: {}", g.domain, s.step, s.outcome);
                if let Some(e) = &s.error {
                    let _ = write!(line, " ({e})");
                }
                line
            })
        })
        .collect()
}

/// An expected action matches a description equal to it, or one it is a prefix of that ends
/// before a space, `,` or `)`.
fn action_matches(expected: &str, actual: &str) -> bool {
    let expected = expected.trim();
    actual == expected
        || (!expected.is_empty()
            && actual
                .strip_prefix(expected)
                .is_some_and(|rest| rest.starts_with([' ', ',', ')'])))
}

fn deliveries(result: &ProcessResult) -> Vec<ActualDelivery> {
    let mut out = Vec::new();
    for group in &result.groups {
        if let GroupOutcome::Tempfail { .. } = group.outcome {
            out.extend(group.recipients.iter().map(|r| ActualDelivery {
                recipient: r.clone(),
                kind: "tempfail",
                folder: None,
                code: None,
                status: None,
                text: None,
            }));
            continue;
        }
        for d in &group.dispositions {
            let mut a = ActualDelivery {
                recipient: d.recipient().to_string(),
                kind: d.kind(),
                folder: None,
                code: None,
                status: None,
                text: None,
            };
            match d {
                Disposition::Deliver { folder, .. } => a.folder = Some(folder.clone()),
                Disposition::Bounce {
                    code, status, text, ..
                } => {
                    a.code = Some(*code);
                    a.status = Some(status.clone());
                    a.text = Some(text.clone());
                }
                Disposition::Relay { .. } | Disposition::Drop { .. } => {}
            }
            out.push(a);
        }
    }
    out
}

fn delivery_matches(e: &ExpectDelivery, a: &ActualDelivery) -> bool {
    e.recipient.eq_ignore_ascii_case(&a.recipient)
        && e.kind.eq_ignore_ascii_case(a.kind)
        && e.folder
            .as_ref()
            .is_none_or(|f| Some(f) == a.folder.as_ref())
        && e.code.is_none_or(|c| Some(c) == a.code)
        && e.status
            .as_ref()
            .is_none_or(|s| Some(s) == a.status.as_ref())
        && e.text
            .as_ref()
            .is_none_or(|t| a.text.as_ref().is_some_and(|at| at.contains(t.as_str())))
}

fn render_delivery(a: &ActualDelivery) -> String {
    let mut s = format!("{} {}", a.recipient, a.kind);
    for part in [&a.folder, &a.code.map(|c| c.to_string()), &a.status]
        .into_iter()
        .flatten()
    {
        let _ = write!(s, " {part}");
    }
    if let Some(t) = &a.text {
        let _ = write!(s, " {t:?}");
    }
    s
}

fn render_expected_delivery(e: &ExpectDelivery) -> String {
    let mut s = format!("{} {}", e.recipient, e.kind);
    for part in [&e.folder, &e.code.map(|c| c.to_string()), &e.status]
        .into_iter()
        .flatten()
    {
        let _ = write!(s, " {part}");
    }
    if let Some(t) = &e.text {
        let _ = write!(s, " {t:?} (substring)");
    }
    s
}

/// The diff under a `FAIL` line.
fn render(mismatches: &[Mismatch]) -> String {
    let mut out = String::new();
    for m in mismatches {
        if m.field == "(trace)" {
            let _ = writeln!(out, "    trace:");
            for line in &m.actual {
                let _ = writeln!(out, "      {line}");
            }
            continue;
        }
        let _ = writeln!(out, "    expect.{}:", m.field);
        for (label, values) in [("expected:", &m.expected), ("actual:  ", &m.actual)] {
            match values.as_slice() {
                [] => {
                    let _ = writeln!(out, "      {label} (none)");
                }
                [one] if m.expected.len() <= 1 && m.actual.len() <= 1 => {
                    let _ = writeln!(out, "      {label} {one}");
                }
                many => {
                    let _ = writeln!(out, "      {}", label.trim_end());
                    for v in many {
                        let _ = writeln!(out, "        {v}");
                    }
                }
            }
        }
    }
    out
}

/// A displayed text part of a delivered message, decoded.
struct TextPart {
    content_type: String,
    html: bool,
    text: String,
}

/// The text/plain and text/html parts a reader displays: leaves of the top-level MIME tree
/// that are not attachments and not inside an attached message.
fn displayed_parts(raw: &[u8]) -> Vec<TextPart> {
    let Some(m) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![(0usize, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        let Some(part) = m.parts.get(id) else {
            continue;
        };
        let ct = part.content_type();
        let subtype = ct
            .and_then(|c| c.subtype())
            .unwrap_or("plain")
            .to_ascii_lowercase();
        let is_text = ct.is_none_or(|c| c.ctype().eq_ignore_ascii_case("text"));
        let attachment = part
            .content_disposition()
            .is_some_and(|d| d.is_attachment());
        match &part.body {
            PartType::Multipart(children) if depth < 64 => {
                // Reverse so parts come out in message order.
                for &child in children.iter().rev() {
                    if child as usize > id {
                        stack.push((child as usize, depth + 1));
                    }
                }
            }
            PartType::Text(t) | PartType::Html(t)
                if is_text && !attachment && (subtype == "plain" || subtype == "html") =>
            {
                out.push(TextPart {
                    content_type: format!("text/{subtype}"),
                    html: subtype == "html",
                    text: t.replace("\r\n", "\n"),
                });
            }
            _ => {}
        }
    }
    out
}

fn has_banner(part: &TextPart, banner: &str) -> bool {
    let banner = collapse(banner);
    if banner.is_empty() {
        return true;
    }
    if collapse(&part.text).contains(&banner) {
        return true;
    }
    part.html && collapse(&html_text(&part.text)).contains(&banner)
}

/// Whitespace runs as one space, trimmed.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What an HTML part shows, roughly: tags removed (`<br>` as a line break), the common
/// entities decoded. Enough to find a banner's words in `<b>CAUTION:</b> text`.
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        match rest[lt..].find('>') {
            Some(gt) => {
                let tag = rest[lt + 1..lt + gt].trim().to_ascii_lowercase();
                if tag.starts_with("br") || tag.starts_with("/p") || tag.starts_with("/div") {
                    out.push('\n');
                }
                rest = &rest[lt + gt + 1..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    for (entity, c) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&nbsp;", " "),
        ("&amp;", "&"),
    ] {
        out = out.replace(entity, c);
    }
    out
}

/// The start of a part's text on one line, for the diff.
fn preview(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = flat.chars().take(50).collect();
    if flat.chars().count() > 50 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_prefixes_end_at_a_word() {
        let a = "add-banner (top, html) \"CAUTION\"";
        assert!(action_matches("add-banner", a));
        assert!(action_matches("add-banner (top", a));
        assert!(action_matches(a, a));
        assert!(!action_matches("add-ban", a));
        assert!(!action_matches("file-into J", "file-into Junk"));
        assert!(action_matches("file-into Junk", "file-into Junk"));
        assert!(!action_matches("", "drop"));
    }

    #[test]
    fn names_come_from_the_rule_directory() {
        assert_eq!(
            fixture_name(Path::new("plugins/banner/fixtures/external.toml")),
            "banner/external"
        );
        assert_eq!(fixture_name(Path::new("x/y/case.toml")), "y/case");
    }

    #[test]
    fn finds_banners_in_text_and_html_parts() {
        let raw = b"From: a@b.example\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nNOTE: a & b\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<div><b>NOTE:</b> a &amp;\r\n b</div><p>hi</p>\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nno\r\n--b--\r\n";
        let parts = displayed_parts(raw);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/plain");
        assert!(parts.iter().all(|p| has_banner(p, "NOTE: a & b")));
        assert!(!has_banner(&parts[1], "missing"));
    }
}
