//! Shared helpers for Sluice's integration tests: rules built from source once per test
//! process, a shared engine, fixture and corpus locations.

pub mod classifier;
pub mod faults;
pub mod reference;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice_chain::{ConfigFile, Envelope, OutputMessage, ProcessResult, RuleChains};
use sluice_engine::{EngineOptions, RuleEngine, Verdict, Verdicts};
use sluice_mail::Message;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/fixtures/`.
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// Reads a fixture message.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The shared corpus (`$SLUICE_CORPUS`, default `../shared/corpus`), if present; see
/// [`sluice_corpus::corpus_dir`] (one line when absent, a failure under CI).
pub fn corpus_dir() -> Option<PathBuf> {
    sluice_corpus::corpus_dir("corpus checks")
}

/// Every rule crate the tests use: the reference plugins and the hostile test rules.
pub fn rule_crate_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = [
        "banner",
        "junk",
        "alias",
        "forward",
        "subject-tag",
        "size-limit",
        "sender-lists",
        "attachments",
        "headers",
        "bcc",
        "auto-reply",
    ]
    .iter()
    .map(|name| root.join("plugins").join(name))
    .collect();
    let mut rules: Vec<PathBuf> = std::fs::read_dir(root.join("tests").join("rules"))
        .expect("tests/rules exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    rules.sort();
    dirs.extend(rules);
    dirs
}

/// Builds every rule once per test process (cargo makes repeat builds cheap) and returns
/// name -> component path.
pub fn rules() -> &'static BTreeMap<String, PathBuf> {
    static RULES: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    RULES.get_or_init(|| {
        let root = workspace_root();
        let opts = sluice_build::BuildOptions {
            out_dir: root.join("target").join("test-rules"),
            target_dir: Some(root.join("target").join("rule-builds")),
            ..Default::default()
        };
        let built = sluice_build::build_rules(&rule_crate_dirs(), &opts)
            .unwrap_or_else(|e| panic!("building the test rules failed: {e}"));
        built.into_iter().map(|b| (b.name, b.path)).collect()
    })
}

/// The JavaScript and Python builds of `plugins/subject-tag` (`subject-tag-js`,
/// `subject-tag-python`), built once per test process with `sluice plugin build`'s code.
pub fn foreign_rules() -> &'static Vec<(String, PathBuf)> {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_foreign(
            "subject-tag in JavaScript and Python",
            &["plugins/subject-tag/js", "plugins/subject-tag/python"],
        )
    })
}

/// `plugins/subject-tag/js` and `plugins/subject-tag/python` built against WIT 0.1.5
/// (`wit/released/sluice-rules-0.1.5.wit`, the context as a record) into
/// `target/test-rules-0.1/`: interpreted components of the 0.1 track, which the host keeps
/// loading now that the SDKs build for 0.2. Built once per test process.
pub fn foreign_rules_0_1() -> &'static Vec<(String, PathBuf)> {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let opts = sluice_build::BuildOptions {
            out_dir: root.join("target").join("test-rules-0.1"),
            ..Default::default()
        };
        let wit = root.join("wit/released/sluice-rules-0.1.5.wit");
        let js = sluice_build::js::build_against(
            &root.join("plugins/subject-tag/js"),
            &opts,
            Some(&wit),
        );
        let python = sluice_build::python::build_against(
            &root.join("plugins/subject-tag/python"),
            &opts,
            Some(&wit),
        );
        [js, python]
            .into_iter()
            .map(|built| {
                let built = built.unwrap_or_else(|e| {
                    panic!("building subject-tag in JavaScript and Python against WIT 0.1.5 failed: {e}")
                });
                (built.name, built.path)
            })
            .collect()
    })
}

/// The probe rules of `tests/foreign-rules/` (`probe-js`, `probe-python`: `lookup.get` then
/// `http.send`, see its README), built once per test process like [`foreign_rules`].
pub fn probe_rules() -> &'static Vec<(String, PathBuf)> {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_foreign(
            "the probe rules in JavaScript and Python",
            &[
                "tests/foreign-rules/probe-js",
                "tests/foreign-rules/probe-python",
            ],
        )
    })
}

/// Builds JavaScript and Python rule directories (relative to the workspace) into
/// `target/test-rules/`, printing how long each took; returns (name, component) in order.
fn build_foreign(what: &str, dirs: &[&str]) -> Vec<(String, PathBuf)> {
    let root = workspace_root();
    let opts = sluice_build::BuildOptions {
        out_dir: root.join("target").join("test-rules"),
        target_dir: Some(root.join("target").join("rule-builds")),
        ..Default::default()
    };
    dirs.iter()
        .map(|dir| {
            let started = std::time::Instant::now();
            let built = sluice_build::build_rules(&[root.join(dir)], &opts)
                .unwrap_or_else(|e| {
                    panic!(
                        "building {what} failed: {e}\n\
                         (.ci/run installs the tools: `npm install --prefix sdk/js` and \
                         `.venv/bin/pip install -r sdk/python/requirements.txt`)"
                    )
                })
                .pop()
                .expect("one rule per directory");
            println!(
                "built {} ({}) from {dir} in {:.1} s",
                built.name,
                built.target,
                started.elapsed().as_secs_f64()
            );
            (built.name, built.path)
        })
        .collect()
}

/// The component path of a built rule, by package name.
pub fn rule(name: &str) -> PathBuf {
    rules()
        .get(name)
        .unwrap_or_else(|| panic!("no rule named {name}; built: {:?}", rules().keys()))
        .clone()
}

/// The raw corpus messages that parse, in file order (this repo's fixtures when the corpus is
/// absent): what the benchmarks run over.
pub fn corpus_messages() -> Vec<Vec<u8>> {
    let files = match corpus_dir() {
        Some(corpus) => sluice_corpus::corpus_files(&corpus, "eml", "eml"),
        None => sluice_corpus::corpus_files(&workspace_root().join("tests"), "fixtures", "eml"),
    };
    files
        .into_iter()
        .map(|p| std::fs::read(p).expect("a message"))
        .filter(|raw| Message::parse(raw.clone()).is_ok())
        .collect()
}

/// A config of one domain, `example.com`, whose chain is `n` empty Rust steps with the
/// given `instances` setting: the benches' measure of what a step itself costs.
pub fn empty_steps(n: usize, instances: &str) -> String {
    let mut toml = String::from("[[domain]]\nname = \"example.com\"\n");
    for _ in 0..n {
        toml.push_str(&format!(
            "[[domain.step]]\nplugin = \"{{rule:rule-empty}}\"\ninstances = \"{instances}\"\n"
        ));
    }
    toml
}

/// Parses each raw message and runs it through `chains`, as a bench's timed loop does.
pub fn parse_and_process(chains: &RuleChains, messages: &[Vec<u8>], envelope: &Envelope) {
    for raw in messages {
        let message = Arc::new(Message::parse(raw.clone()).expect("a corpus message"));
        std::hint::black_box(chains.process(engine(), message, envelope));
    }
}

/// A process-wide engine without a disk cache.
pub fn engine() -> &'static RuleEngine {
    static ENGINE: OnceLock<RuleEngine> = OnceLock::new();
    ENGINE.get_or_init(|| RuleEngine::new(EngineOptions::default()).expect("engine"))
}

/// Parses config text in which `{rule:NAME}` stands for the built component's path, and
/// loads its chains.
pub fn chains(toml_text: &str) -> RuleChains {
    try_chains(toml_text).unwrap_or_else(|e| panic!("config: {e}"))
}

/// Like [`chains`], returning the error.
pub fn try_chains(toml_text: &str) -> Result<RuleChains, sluice_chain::ConfigError> {
    let config = ConfigFile::parse("test.toml", PathBuf::from("."), expand(toml_text))?;
    RuleChains::load(engine(), &config)
}

/// Replaces `{rule:NAME}` with the path of the built rule (TOML-escaped).
pub fn expand(toml_text: &str) -> String {
    let mut out = toml_text.to_string();
    while let Some(start) = out.find("{rule:") {
        let end = start + out[start..].find('}').expect("closing brace");
        let name = out[start + 6..end].to_string();
        let path = rule(&name).display().to_string().replace('\\', "\\\\");
        out.replace_range(start..=end, &path);
    }
    out
}

/// Verdicts with every check unknown.
pub fn unknown_verdicts() -> Verdicts {
    Verdicts {
        spf: Verdict::Unknown,
        dkim: Verdict::Unknown,
        dmarc: Verdict::Unknown,
        spam: Verdict::Unknown,
        virus: Verdict::Unknown,
        dmarc_policy: None,
    }
}

/// An envelope for tests.
pub fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        message_id: "test-message".into(),
        mail_from: "sender@outside.example".into(),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        verdicts: unknown_verdicts(),
        received_at: 1_700_000_000_000,
        flow: sluice_engine::Flow::default(),
        skip_step: None,
    }
}

/// Parses bytes into a shared message.
pub fn message(raw: &[u8]) -> Arc<Message> {
    Arc::new(Message::parse(raw.to_vec()).expect("fixture parses"))
}

/// Runs the fixture message `name` for `recipients` through `chains` on the shared engine.
pub fn process(chains: &RuleChains, name: &str, recipients: &[&str]) -> ProcessResult {
    chains.process(engine(), message(&fixture(name)), &envelope(recipients))
}

/// The message group `group` delivers: the edited bytes, or `original` when nothing changed.
/// Panics when the group delivers nothing.
pub fn output_of(result: &ProcessResult, group: usize, original: &[u8]) -> Vec<u8> {
    match &result.groups[group].output {
        Some(OutputMessage::Edited(edited)) => edited.raw().to_vec(),
        Some(OutputMessage::Original) => original.to_vec(),
        None => panic!(
            "group {group} delivers nothing: {:#?}",
            result.groups[group]
        ),
    }
}

/// A moto server (the AWS emulator) on a free loopback port, stopped on drop.
///
/// Looks for `moto_server` in `$SLUICE_MOTO_SERVER`, then `<workspace>/.venv/bin/`
/// (`.ci/run` installs it there: `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'`).
pub struct Moto {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts the server and waits until it answers.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Moto::start_on(port)
    }

    /// What moto's SES "sent": `/moto-api/data.json` -> `ses.RawMessage` (each with `source`,
    /// `destinations`, `raw_data`).
    pub fn sent_raw_messages(&self) -> Vec<serde_json::Value> {
        let body = http_get(&self.endpoint, "/moto-api/data.json");
        let data: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("moto data.json is not JSON ({e}): {body:.200}"));
        data["ses"]["RawMessage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the server now (its state is gone).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("endpoint has a port")
    }

    /// Starts the server on `port` (e.g. to bring a stopped one back at the same address).
    pub fn start_on(port: u16) -> Moto {
        let server = std::env::var_os("SLUICE_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                workspace_root()
                    .join(".venv")
                    .join("bin")
                    .join("moto_server")
            });
        assert!(
            server.is_file(),
            "moto_server not found at {}: run `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'` in the workspace (or set SLUICE_MOTO_SERVER)",
            server.display()
        );
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        moto
    }

    /// Environment for a process that should talk to this server through the standard AWS
    /// configuration chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts the built banner and junk rules where `plugins/demo.toml` and the reference rules'
/// fixture configs expect them (`target/plugins/`, as `sluice plugin build ... --out
/// target/plugins` would). Copies through a temporary name so that another test process
/// never reads half a file. Returns the workspace root.
pub fn install_demo_plugins() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let root = workspace_root();
            let plugins = root.join("target").join("plugins");
            std::fs::create_dir_all(&plugins).expect("target/plugins");
            for name in [
                "banner",
                "junk",
                "alias",
                "forward",
                "size-limit",
                "sender-lists",
                "subject-tag",
                "attachments",
                "headers",
                "bcc",
                "auto-reply",
            ] {
                let dest = plugins.join(format!("{name}.wasm"));
                let tmp = plugins.join(format!(".{name}.wasm.{}", std::process::id()));
                std::fs::copy(rule(name), &tmp).expect("copy a built rule");
                std::fs::rename(&tmp, &dest).expect("rename into place");
            }
            root
        })
        .clone()
}

/// A plain HTTP/1.0 GET on loopback; returns the body (panics on a non-200 answer).
pub fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path}: {head}"
    );
    body.to_string()
}

/// The lines of a daemon's or the Lambda's log that show an address whole: an `@` followed by
/// a host name (its last label starting with a letter, so `@0.2.0` is a version, not a domain)
/// whose local part is not `***` (nor `"***"`, a masked quoted one). `@example.com` alone (an
/// allow list's entry) has no local part and is fine.
pub fn full_addresses(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| shows_full_address(line))
        .collect()
}

fn shows_full_address(line: &str) -> bool {
    line.match_indices('@').any(|(at, _)| {
        let host: String = line[at + 1..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '.')
            .collect();
        let host = host.trim_end_matches('.');
        let is_host = host.starts_with(char::is_alphanumeric)
            && host
                .rsplit('.')
                .next()
                .is_some_and(|label| label.starts_with(char::is_alphabetic));
        let before = line[..at].trim_end_matches(['"', '\\']);
        let no_local_part = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || "<>()[]{},;:=/`".contains(c));
        is_host && !no_local_part && !before.ends_with("***")
    })
}

/// Asserts that no line of `log` shows an address whole (see [`full_addresses`]): the daemon
/// and the Lambda mask local parts in every line they log. `what` names the log in the
/// message. Returns the number of lines scanned (printed too, for `--nocapture`).
pub fn assert_no_full_address(what: &str, log: &str) -> usize {
    let leaks = full_addresses(log);
    assert!(
        leaks.is_empty(),
        "{what}: {} log line(s) show a full address:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    let lines = log.lines().count();
    println!("{what}: no full address in {lines} log lines");
    lines
}

#[cfg(test)]
mod tests {
    use super::full_addresses;

    #[test]
    fn the_log_scan_finds_whole_addresses_and_passes_masked_ones() {
        let leaks = [
            r#"ERROR step failed: invalid address "v2@gmail.example.": trailing dot"#,
            "WARN copy not stored error=aaaa…@store.test: dispatch failure",
            r#"{"error":"storing message m-1 for alice@example.com in INBOX"}"#,
            "ERROR UNCONFIRMED SEND: forward to bob@gmail.example was claimed",
            r#"{"message":"to \"john doe\"@example.com"}"#,
        ];
        for line in leaks {
            assert_eq!(full_addresses(line), [line]);
        }
        let fine = [
            r#"ERROR step failed: invalid address "***@gmail.example.": trailing dot"#,
            "WARN copy not stored error=***@store.test: dispatch failure",
            r#"{"message":"to \"***\"@example.com","recipient":"***@example.com"}"#,
            r#"allow_domains ["@gmail.example"], component wasi:cli/environment@0.2.0"#,
            "a @ b, nothing@ here",
        ];
        assert!(full_addresses(&fine.join("\n")).is_empty());
    }
}
