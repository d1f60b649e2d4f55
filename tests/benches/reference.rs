//! The four reference rules (alias, banner, junk, subject-tag) as a chain: compiled natively
//! into the host behind one bench-only trait, and as Wasm steps in fresh and warm instances;
//! then how a chain scales with its length and with the message's size.
//! `cargo bench -p sluice-tests --bench reference`; figures go in the README's table.
//!
//! The native chain is the floor the sandbox is measured against: the same rule crates'
//! decision functions, the same configs parsed once, the same edits applied by the host.
//! Beside it, the same four rules as Sieve scripts run by sieve-rs (Stalwart's interpreter,
//! a bench-only dependency), over the same messages in the same run: the yardstick of what a
//! mail server's built-in filter language costs.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_mail::{apply_edits, Banner, BannerFallback, Edit, Message, PartReplacement, Position};
use sluice_sdk::{Action, Context, ContextData, Verdicts};
use sluice_tests::reference::{
    json_to_inline_toml, reference_chain, ALIAS, BANNER, JUNK, SUBJECT_TAG,
};
use sluice_tests::{chains, empty_steps, engine, envelope, parse_and_process};

const RECIPIENT: &str = "info@example.com";

/// A rule compiled into the host: what a Wasm step does, without the sandbox.
trait NativeRule {
    fn evaluate(&self, msg: &Message, ctx: &Context<'_>) -> Vec<Action>;
}

struct NativeAlias(alias::Config);
struct NativeBanner(banner::Config);
struct NativeJunk(junk::Config);
struct NativeSubjectTag(subject_tag::Config);

impl NativeRule for NativeAlias {
    fn evaluate(&self, _msg: &Message, ctx: &Context<'_>) -> Vec<Action> {
        alias::route(ctx.recipients(), &self.0).unwrap()
    }
}

impl NativeRule for NativeBanner {
    fn evaluate(&self, msg: &Message, ctx: &Context<'_>) -> Vec<Action> {
        let c = &self.0;
        let authenticated = c.trust_from || ctx.verdicts().dmarc.passed();
        if !banner::is_external(
            msg.from_address().as_deref(),
            &c.internal_domains,
            authenticated,
        ) {
            return vec![];
        }
        let position = match c.position {
            banner::BannerPosition::Top => sluice_sdk::Position::Top,
            banner::BannerPosition::Bottom => sluice_sdk::Position::Bottom,
        };
        vec![Action::banner(c.text.clone(), c.html.clone(), position)]
    }
}

impl NativeRule for NativeJunk {
    fn evaluate(&self, msg: &Message, ctx: &Context<'_>) -> Vec<Action> {
        let score = self
            .0
            .score_header
            .as_deref()
            .and_then(|h| msg.header(h).first().and_then(|v| junk::first_number(v)));
        junk::decide(ctx.verdicts(), score, &self.0).0
    }
}

impl NativeRule for NativeSubjectTag {
    fn evaluate(&self, msg: &Message, ctx: &Context<'_>) -> Vec<Action> {
        let text = msg.text_body(4096).unwrap_or_default();
        subject_tag::decide(
            msg.from_address().as_deref(),
            &text,
            ctx.verdicts(),
            &self.0,
        )
    }
}

fn native_rules() -> Vec<Box<dyn NativeRule>> {
    use sluice_sdk::parse_config;
    // A Wasm step's log lines go to a buffer in the host; the native rules' lines are
    // formatted and kept too, not written to the terminal.
    sluice_sdk::log::set_native_sink(|_, line| {
        std::hint::black_box(line.to_owned());
    });
    vec![
        Box::new(NativeAlias(parse_config(ALIAS).unwrap())),
        Box::new(NativeBanner(parse_config(BANNER).unwrap())),
        Box::new(NativeJunk(parse_config(JUNK).unwrap())),
        Box::new(NativeSubjectTag(parse_config(SUBJECT_TAG).unwrap())),
    ]
}

/// The native chain: every rule in order (a `stop` or a disposition that ends the group ends
/// it), then the collected edits applied once, as the host does.
fn run_native(rules: &[Box<dyn NativeRule>], msg: &Message, ctx: &Context<'_>) -> Vec<u8> {
    let mut edits = Vec::new();
    'steps: for rule in rules {
        for action in rule.evaluate(msg, ctx) {
            match action {
                Action::AddHeader(h) => edits.push(Edit::AddHeader {
                    name: h.name,
                    value: h.value,
                }),
                Action::SetHeader(h) => edits.push(Edit::SetHeader {
                    name: h.name,
                    value: h.value,
                }),
                Action::RemoveHeader(n) => edits.push(Edit::RemoveHeader(n)),
                Action::PrefixSubject(p) => edits.push(Edit::PrefixSubject(p)),
                Action::AddBanner(b) => edits.push(Edit::AddBanner(Banner {
                    text: b.text,
                    html: b.html,
                    position: match b.position {
                        sluice_sdk::Position::Top => Position::Top,
                        sluice_sdk::Position::Bottom => Position::Bottom,
                    },
                })),
                Action::ReplacePart(r) => edits.push(Edit::ReplacePart(PartReplacement {
                    id: r.id,
                    text: r.text,
                })),
                Action::SetRecipients(_) | Action::AddRecipients(_) | Action::FileInto(_) => {}
                Action::Bounce(_) | Action::Drop | Action::Stop => break 'steps,
            }
        }
    }
    apply_edits(msg, &edits, BannerFallback::Wrap).unwrap_or_else(|_| msg.raw().to_vec())
}

fn sdk_context() -> Context<'static> {
    Context::from(ContextData {
        domain: "example.com".into(),
        recipients: vec![RECIPIENT.into()],
        mail_from: "a@outside.example".into(),
        verdicts: Verdicts::unknown(),
        received_at: 0,
        message_id: "bench".into(),
        config: String::new(),
    })
}

/// The four reference rules in Sieve, with the configs of `sluice_tests::reference` written
/// in: the same decisions on the same inputs. `alias` redirects `info@` to `bob@` (Sluice
/// rewrites the recipient); `banner` cannot put text into the body in Sieve (no RFC extension
/// edits a body part), so it adds a header where the banner would go; `junk` files by the score
/// header; `subject-tag` prefixes the Subject, adds `X-Sluice-Auth` (the verdicts are unknown
/// here, as in the Wasm chain) and files by keyword. sieve-rs applies the header edits to its
/// own copy of the message; a new message it builds (`CreatedMessage`) is collected.
const SIEVE_RULES: [(&str, &str); 4] = [
    (
        "alias",
        r#"require ["envelope"];
if envelope :localpart :is "to" "info" { redirect "bob@example.com"; }
"#,
    ),
    (
        "banner",
        r#"require ["editheader"];
if not address :domain :is "from" "example.com" {
  addheader :last "X-Sluice-Banner" "External sender: be careful with links.";
}
"#,
    ),
    (
        "junk",
        r#"require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" { fileinto "Junk"; }
"#,
    ),
    (
        "subject-tag",
        r#"require ["editheader", "variables", "body", "fileinto"];
if not address :domain :is "from" "example.com" {
  set "subject" "";
  if header :matches "Subject" "*" { set "subject" "${1}"; }
  deleteheader "Subject";
  addheader :last "Subject" "[EXT] ${subject}";
  addheader :last "X-Sluice-Auth" "spf=unknown dkim=unknown dmarc=unknown";
  if body :text :contains ["invoice", "unsubscribe"] {
    addheader :last "X-Sluice-Keywords" "found";
    fileinto "Review";
  }
}
"#,
    ),
];

/// The four scripts compiled once, and the main script that includes them in chain order
/// (RFC 6609), as a user's active script would.
struct SieveChain {
    runtime: sieve::Runtime,
    main: Arc<sieve::Sieve>,
    rules: Vec<(&'static str, Arc<sieve::Sieve>)>,
}

impl SieveChain {
    fn new() -> SieveChain {
        let compiler = sieve::Compiler::new();
        let compile = |text: &str| Arc::new(compiler.compile(text.as_bytes()).unwrap());
        let mut main = String::from("require [\"include\"];\n");
        for (name, _) in SIEVE_RULES {
            main.push_str(&format!("include :personal \"{name}\";\n"));
        }
        SieveChain {
            runtime: sieve::Runtime::new(),
            main: compile(&main),
            rules: SIEVE_RULES
                .iter()
                .map(|(name, text)| (*name, compile(text)))
                .collect(),
        }
    }

    /// Parses `raw` (sieve-rs parses with mail-parser too) and runs the chain; returns how
    /// many actions it took, and the edited message if there is one.
    fn run(&self, raw: &[u8]) -> (usize, Option<Vec<u8>>) {
        use sieve::{Envelope, Event, Input, Script};
        let mut instance = self.runtime.filter(raw);
        instance.set_envelope(Envelope::From, "a@outside.example");
        instance.set_envelope(Envelope::To, RECIPIENT);
        let mut input = Input::script("main", self.main.clone());
        let (mut actions, mut edited) = (0, None);
        while let Some(result) = instance.run(input) {
            input = match result.expect("the reference scripts run") {
                Event::IncludeScript { name, .. } => {
                    let wanted = match &name {
                        Script::Personal(n) | Script::Global(n) => n.as_str(),
                    };
                    let (_, script) = self
                        .rules
                        .iter()
                        .find(|(n, _)| *n == wanted)
                        .expect("an included rule");
                    Input::script(name.clone(), script.clone())
                }
                Event::CreatedMessage { message, .. } => {
                    edited = Some(message);
                    true.into()
                }
                Event::Keep { .. }
                | Event::Discard
                | Event::Reject { .. }
                | Event::FileInto { .. }
                | Event::SendMessage { .. }
                | Event::Notify { .. } => {
                    actions += 1;
                    true.into()
                }
                // No mailbox, list, duplicate or function lookups in these scripts.
                _ => false.into(),
            };
        }
        (actions, edited)
    }
}

fn bench_reference_chain(c: &mut Criterion) {
    let msgs = sluice_tests::corpus_messages();
    let env = envelope(&[RECIPIENT]);
    let native = native_rules();
    let ctx = sdk_context();
    let fresh = chains(&reference_chain("fresh"));
    let warm = chains(&reference_chain("warm"));
    let sieve = SieveChain::new();
    // Every message ends with at least one action (a keep, file or redirect).
    assert!(
        msgs.iter().all(|raw| sieve.run(raw).0 > 0),
        "the Sieve chain acts on every message"
    );

    // The native and the Wasm rows must do the same work: the same messages edited, into the
    // same bytes.
    let (mut edited, mut differ) = (0, 0);
    for raw in &msgs {
        let m = Arc::new(Message::parse(raw.clone()).unwrap());
        let native_out = run_native(&native, &m, &ctx);
        let result = warm.process(engine(), m.clone(), &env);
        let wasm_out = result.groups.iter().find_map(|g| match &g.output {
            Some(sluice_chain::OutputMessage::Edited(e)) => Some(e.raw().to_vec()),
            _ => None,
        });
        assert_eq!(result.groups.len(), 1, "one recipient group");
        edited += usize::from(wasm_out.is_some());
        differ += usize::from(wasm_out.unwrap_or_else(|| raw.clone()) != native_out);
    }
    eprintln!(
        "{edited} of {} messages edited by the Wasm chain; {differ} differ from the native chain's",
        msgs.len()
    );
    let mut g = c.benchmark_group("reference chain (alias, banner, junk, subject-tag)");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for raw in &msgs {
                std::hint::black_box(Message::parse(raw.clone()).unwrap());
            }
        })
    });
    g.bench_function("parse + native rules + edits", |b| {
        b.iter(|| {
            for raw in &msgs {
                let m = Message::parse(raw.clone()).unwrap();
                std::hint::black_box(run_native(&native, &m, &ctx));
            }
        })
    });
    // The decisions without the edits: what the native row spends on editing is the
    // difference, and the Wasm rows pay the same edits.
    g.bench_function("parse + native rules, decisions only", |b| {
        b.iter(|| {
            for raw in &msgs {
                let m = Message::parse(raw.clone()).unwrap();
                for rule in &native {
                    std::hint::black_box(rule.evaluate(&m, &ctx));
                }
            }
        })
    });
    g.bench_function("sieve-rs: parse + 4 Sieve scripts + header edits", |b| {
        b.iter(|| {
            for raw in &msgs {
                std::hint::black_box(sieve.run(raw));
            }
        })
    });
    for (name, chain) in [
        ("parse + wasm steps, fresh", &fresh),
        ("parse + wasm steps, warm", &warm),
    ] {
        g.bench_function(name, |b| b.iter(|| parse_and_process(chain, &msgs, &env)));
    }
    g.finish();
}

fn bench_chain_length(c: &mut Criterion) {
    let msg = Arc::new(Message::parse(sluice_tests::corpus_messages().remove(0)).unwrap());
    let env = envelope(&["bob@example.com"]);
    let mut g = c.benchmark_group("chain length (empty steps, one message)");
    for n in [1usize, 2, 4, 8, 16] {
        for instances in ["fresh", "warm"] {
            let chain = chains(&empty_steps(n, instances));
            g.bench_with_input(BenchmarkId::new(instances, n), &n, |b, _| {
                b.iter(|| std::hint::black_box(chain.process(engine(), msg.clone(), &env)))
            });
        }
    }
    g.finish();
}

/// A message of about `size` bytes: a text/plain part that large (`big_text`), or a short
/// text part next to a base64 attachment that large.
fn sized_message(size: usize, big_text: bool) -> Vec<u8> {
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let head = "From: Someone <someone@outside.example>\r\nTo: bob@example.com\r\n\
Subject: sized\r\nMessage-ID: <sized@outside.example>\r\nMIME-Version: 1.0\r\n";
    let mut m = String::from(head);
    if big_text {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        while m.len() < size {
            m.push_str(line);
        }
        return m.into_bytes();
    }
    m.push_str("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n--b\r\n");
    m.push_str("Content-Type: application/octet-stream; name=\"data.bin\"\r\n");
    m.push_str("Content-Disposition: attachment; filename=\"data.bin\"\r\n");
    m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let b64_line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    while m.len() < size {
        m.push_str(b64_line);
    }
    m.push_str("--b--\r\n");
    m.into_bytes()
}

fn bench_message_size(c: &mut Criterion) {
    let banner = chains(&format!(
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{rule:banner}}\"\nconfig = {}\n",
        json_to_inline_toml(BANNER)
    ));
    let env = envelope(&["bob@example.com"]);
    let mut g = c.benchmark_group("message size (parse + banner step + edits)");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    for size in [2_000usize, 100_000, 1_000_000, 25_000_000] {
        for (shape, big_text) in [
            ("large text part", true),
            ("small text + attachment", false),
        ] {
            let raw = sized_message(size, big_text);
            g.throughput(Throughput::Bytes(raw.len() as u64));
            g.bench_with_input(BenchmarkId::new(shape, size), &raw, |b, raw| {
                b.iter(|| {
                    let m = Arc::new(Message::parse(raw.clone()).unwrap());
                    let result = banner.process(engine(), m, &env);
                    assert!(!result.tempfailed());
                    std::hint::black_box(result)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_reference_chain,
    bench_chain_length,
    bench_message_size
);
criterion_main!(benches);
