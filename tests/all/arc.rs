//! ARC sets (`[arc]`) on the copies the chain changed (a banner) and on relayed copies (a
//! forward), checked by dkimpy, an ARC implementation independent of the one that seals
//! (mail-auth), with the key served by a DNS stand-in (`tests/support/arc_verify.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sluice_chain::{ConfigFile, Envelope, RuleChains};
use sluice_engine::Verdict;
use sluice_inbound::Dispatcher;
use sluice_mail::Message;
use sluice_tests::{corpus_dir, engine, expand, fixture, unknown_verdicts, workspace_root};

const KEY: &str = "tests/fixtures/arc/test-key.pem";

/// Banner for every example.com recipient; bob's mail is also forwarded to a partner.
fn config(key: &Path) -> ConfigFile {
    let text = format!(
        r#"
[relay]
kind = "ses"
from = "forwarder@example.com"
allow_domains = ["partner.example"]
# Not used: the local dispatcher claims sends under its own directory.
markers = "unused-claims"

[arc]
domain = "example.com"
selector = "arc2026"
key_file = "{key}"
authserv_id = "mx.example.com"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:banner}}"
config = {{ text = "This message came from outside the organisation." }}
[[domain.step]]
plugin = "{{rule:forward}}"
config = {{ to = ["carol@partner.example"], recipients = ["bob"] }}
"#,
        key = key.display()
    );
    ConfigFile::parse("arc.toml", PathBuf::from("."), expand(&text)).expect("config")
}

fn passing_envelope(id: &str) -> Envelope {
    let mut verdicts = unknown_verdicts();
    verdicts.spf = Verdict::Pass;
    verdicts.dkim = Verdict::Pass;
    verdicts.dmarc = Verdict::Pass;
    verdicts.dmarc_policy = Some("reject".into());
    Envelope {
        message_id: id.into(),
        mail_from: "alice@sender.example".into(),
        recipients: vec!["bob@example.com".into(), "dave@example.com".into()],
        verdicts,
        received_at: 1_700_000_000_000,
        flow: sluice_engine::Flow::default(),
        skip_step: None,
    }
}

/// Runs `raw` through the chain and delivers locally into `out`: mailbox copies under
/// `out/example.com/…`, relayed copies in `out/outbox`.
fn deliver(
    config: &ConfigFile,
    chains: &RuleChains,
    raw: &[u8],
    id: &str,
    out: &Path,
) -> sluice_inbound::Handled {
    let message = Arc::new(Message::parse(raw.to_vec()).expect("parses"));
    let envelope = passing_envelope(id);
    let result = chains.process(engine(), message.clone(), &envelope);
    let dispatcher = Dispatcher::local(config, out, &out.join("claims"));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(dispatcher.deliver(config, &envelope, &message, &result))
        .expect("delivered")
}

/// Every `.eml` under `dir`, sorted.
fn emls(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "eml") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// One verdict of dkimpy's `arc_verify`.
#[derive(Debug)]
struct Verified {
    file: String,
    cv: String,
    reason: String,
    instances: u64,
}

/// dkimpy's verdict on each file, with the TXT record for the test key as the only DNS.
fn verify(files: &[PathBuf]) -> Vec<Verified> {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run ./test.sh setup (it installs dkimpy from requirements-test.txt)",
        python.display()
    );
    let pem = std::fs::read_to_string(workspace_root().join(KEY)).unwrap();
    let sealer = sluice_arc::Sealer::new(&pem, "example.com", "arc2026", None).unwrap();
    let (name, record) = sealer.dns_record();
    let output = Command::new(python)
        .arg(workspace_root().join("tests/support/arc_verify.py"))
        .arg(&name)
        .arg(&record)
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "arc_verify.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Verified {
                file: v["file"].as_str().unwrap().to_string(),
                cv: v["cv"].as_str().unwrap_or_default().to_string(),
                reason: v["reason"].as_str().unwrap_or_default().to_string(),
                instances: v["instances"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

fn header_of(path: &Path, name: &str) -> Option<String> {
    let raw = std::fs::read(path).unwrap();
    let message = mail_parser::MessageParser::default().parse(&raw)?;
    message
        .header_raw(name)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether Sluice's test key sealed this copy (the top ARC-Seal is `d=example.com s=arc2026`).
fn sealed_by_us(path: &Path) -> bool {
    header_of(path, "ARC-Seal")
        .is_some_and(|seal| seal.contains("d=example.com") && seal.contains("s=arc2026"))
}

#[test]
fn a_bannered_copy_and_a_forwarded_copy_verify_with_dkimpy() {
    // A multipart message with an attachment, and one with bare LF line ends.
    for name in ["alternative-attachment.eml", "plain-lf.eml"] {
        let out = tempfile::tempdir().unwrap();
        let config = config(&workspace_root().join(KEY));
        let chains = RuleChains::load(engine(), &config).unwrap();
        let handled = deliver(&config, &chains, &fixture(name), "arc-1", out.path());
        assert!(handled.arc.unsealed.is_empty(), "{name}: {:?}", handled.arc);
        // One sealed message for the group's mailbox copies, one for the relayed copy.
        assert_eq!(handled.arc.sealed, 2, "{name}: {}", handled.summary);

        let files = emls(out.path());
        let (relayed, mailbox): (Vec<_>, Vec<_>) = files
            .iter()
            .cloned()
            .partition(|p| p.starts_with(out.path().join("outbox")));
        assert_eq!(mailbox.len(), 2, "{name}: bob and dave: {files:?}");
        assert_eq!(relayed.len(), 1, "{name}: the copy to carol: {files:?}");
        for v in verify(&files) {
            assert_eq!(v.cv, "pass", "{name}: {}: {}", v.file, v.reason);
            assert_eq!(v.instances, 1, "{}", v.file);
        }
        for copy in &files {
            assert_eq!(
                header_of(copy, "ARC-Authentication-Results").unwrap(),
                "i=1; mx.example.com; spf=pass smtp.mailfrom=alice@sender.example; dkim=pass; dmarc=pass header.from=outside.example policy.dmarc=reject",
                "{name}: {}",
                copy.display()
            );
            let text = std::fs::read_to_string(copy).unwrap();
            assert!(
                text.contains("came from outside"),
                "{name}: the banner is in the sealed copy"
            );
        }
        // The relayed copy is sealed as rewritten: the forwarder's From is what is signed.
        assert!(header_of(&relayed[0], "From")
            .unwrap()
            .contains("forwarder@example.com"));
    }
}

#[test]
fn a_copy_changed_after_sealing_fails_verification() {
    let out = tempfile::tempdir().unwrap();
    let config = config(&workspace_root().join(KEY));
    let chains = RuleChains::load(engine(), &config).unwrap();
    deliver(
        &config,
        &chains,
        &fixture("alternative-attachment.eml"),
        "arc-2",
        out.path(),
    );
    let copy = emls(out.path())
        .into_iter()
        .find(|p| !p.starts_with(out.path().join("outbox")))
        .unwrap();
    let sealed = std::fs::read_to_string(&copy).unwrap();
    let tampered = out.path().join("tampered.eml");
    std::fs::write(
        &tampered,
        sealed.replacen("outside the organisation", "inside the organisation", 1),
    )
    .unwrap();
    assert_ne!(std::fs::read(&tampered).unwrap(), sealed.as_bytes());
    let v = verify(&[copy, tampered]);
    assert_eq!(v[0].cv, "pass", "{}", v[0].reason);
    assert_eq!(
        v[1].cv, "fail",
        "a changed body must break the message signature"
    );
}

#[test]
fn an_unchanged_copy_is_not_sealed() {
    let out = tempfile::tempdir().unwrap();
    let key = workspace_root().join(KEY);
    let text = format!(
        "[arc]\ndomain = \"example.com\"\nselector = \"arc2026\"\nkey_file = \"{}\"\n[[domain]]\nname = \"example.com\"\n",
        key.display()
    );
    let config = ConfigFile::parse("arc.toml", PathBuf::from("."), text).unwrap();
    let chains = RuleChains::load(engine(), &config).unwrap();
    let raw = fixture("internal.eml");
    let handled = deliver(&config, &chains, &raw, "arc-3", out.path());
    assert_eq!(handled.arc.sealed, 0);
    for copy in emls(out.path()) {
        assert_eq!(std::fs::read(copy).unwrap(), raw, "delivered as received");
    }
}

#[test]
fn arc_config_errors_say_what_to_fix() {
    for (arc, expect) in [
        ("domain = \"example.com\"\nselector = \"s\"\n", "openssl genrsa"),
        (
            "domain = \"example.com\"\nselector = \"s\"\nkey_file = \"/nonexistent/arc.key\"\n",
            "/nonexistent/arc.key",
        ),
        (
            "domain = \"example.com\"\nselector = \"s\"\nkey_env = \"SLUICE_TEST_NO_SUCH_VAR\"\n",
            "SLUICE_TEST_NO_SUCH_VAR",
        ),
        (
            "domain = \"example.com\"\nselector = \"s\"\nkey_file = \"tests/fixtures/arc/small-key.pem\"\n",
            "512 bits",
        ),
        (
            "domain = \"example.com\"\nselector = \"s\"\nkey_file = \"tests/fixtures/arc/README.md\"\n",
            "not an RSA private key",
        ),
        ("domain = \"example.com\"\nselektor = \"s\"\n", "selektor"),
    ] {
        let text = format!("# arc\n[arc]\n{arc}");
        let e = ConfigFile::parse("arc.toml", workspace_root(), text).unwrap_err();
        assert!(e.to_string().contains(expect), "{expect}: {e}");
        assert!(e.line >= 2, "{e}");
    }
}

/// Every corpus message through banner + forward: each sealed copy verifies with dkimpy; a
/// message that already carries an ARC chain is delivered unsealed, with the reason.
#[test]
fn corpus_messages_verify_after_a_banner_and_a_forward() {
    let Some(corpus) = corpus_dir() else { return };
    let config = config(&workspace_root().join(KEY));
    let chains = RuleChains::load(engine(), &config).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (mut sealed, mut existing, mut messages) = (0, 0, 0);
    for (i, path) in sluice_corpus::corpus_files(&corpus, "eml", "eml")
        .iter()
        .enumerate()
    {
        let raw = std::fs::read(path).unwrap();
        if Message::parse(raw.clone()).is_err() {
            continue;
        }
        messages += 1;
        let handled = deliver(&config, &chains, &raw, &format!("corpus-{i}"), out.path());
        sealed += handled.arc.sealed;
        for why in &handled.arc.unsealed {
            assert!(
                matches!(**why, sluice_arc::SealError::ExistingChain(_)),
                "{}: {why}",
                path.display()
            );
            existing += 1;
        }
    }
    let files = emls(out.path());
    let results = verify(&files);
    let passed = results.iter().filter(|v| v.cv == "pass").count();
    let ours = files.iter().filter(|f| sealed_by_us(f)).count();
    assert_eq!(
        ours, passed,
        "every copy Sluice sealed, and only those, verify"
    );
    for v in &results {
        // A copy that carried a chain before is delivered as it was: dkimpy judges that
        // chain with keys this test does not serve, so only Sluice's own sets must pass.
        if sealed_by_us(Path::new(&v.file)) {
            assert_eq!(v.cv, "pass", "{}: {}", v.file, v.reason);
        }
    }
    println!(
        "arc corpus: {messages} messages, {sealed} sealed, {existing} unsealed (ARC chain already present), {passed} of {} copies verified by dkimpy",
        files.len()
    );
    assert!(sealed > 0 && passed > 0);
}
