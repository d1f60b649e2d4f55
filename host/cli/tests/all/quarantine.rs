//! `[quarantine]` end to end through `sluice deliver`: the junk rule files a high-score message
//! into `Quarantine`, which keeps it out of the mailbox in the quarantine directory with its
//! record; `sluice quarantine list`, `show`, `release` (the chain again without the
//! quarantining step, once; or the kept copy elsewhere), `delete` and `purge`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sluice_tests::rule;

/// Runs `sluice` with the compiled-plugin cache shared by this file's runs (a fresh cache
/// compiles the rule again each time).
fn sluice(args: &[&str], stdin: &[u8]) -> Output {
    sluice_env(args, stdin, &[])
}

fn sluice_env(args: &[&str], stdin: &[u8], env: &[(&'static str, String)]) -> Output {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", cache.path())
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn message(subject: &str, score: &str) -> Vec<u8> {
    format!(
        "From: <mallory@spam.example>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\n\
         X-Spam-Score: {score}\r\nMessage-ID: <{subject}@spam.example>\r\n\r\nBuy now.\r\n"
    )
    .into_bytes()
}

fn quarantine(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["quarantine", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    sluice(&all, b"")
}

#[test]
fn a_quarantined_copy_stays_out_of_the_mailbox_until_released() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let held = dir.path().join("held");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
kind = "dir"
path = "{mail}"

[quarantine]
kind = "dir"
path = "{held}"
days = 10

[[domain]]
name = "example.com"
[[domain.step]]
name = "spam-score"
plugin = "{junk}"
config = {{ folder = "Quarantine", score_header = "X-Spam-Score", score_threshold = 5.0 }}
"#,
            mail = mail.display(),
            held = held.display(),
            junk = rule("junk").display()
        ),
    )
    .unwrap();
    let deliver = |id: &str, raw: &[u8]| {
        let out = sluice(
            &[
                "deliver",
                "--config",
                config.to_str().unwrap(),
                "--mail-from=mallory@spam.example",
                "--rcpt",
                "alice@example.com",
                "--message-id",
                id,
            ],
            raw,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let spam = message("offer", "9.5");
    let said = deliver("q1", &spam);
    assert!(said.contains("quarantined=1"), "{said}");
    deliver("ok1", &message("hello", "0.1"));
    let alice = mail.join("example.com/alice");
    assert!(alice.join("INBOX/ok1.eml").exists());
    assert!(!alice.join("INBOX/q1.eml").exists());
    assert!(
        !alice.join("Quarantine").exists(),
        "the copy reached the mailbox"
    );

    // list: one entry, from this domain, by the spam-score step.
    let out = quarantine(&config, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let cols: Vec<&str> = lines[0].split('\t').collect();
    let id = cols[0].to_string();
    assert!(id.starts_with("q1."), "{id}");
    assert_eq!(
        &cols[2..6],
        ["example.com", "mallory@spam.example", "spam-score", "offer"]
    );
    assert!(text(&quarantine(&config, &["list", "--domain", "other.org"]).stdout).is_empty());
    assert!(text(&quarantine(&config, &["list", "--since", "2999-01-01"]).stdout).is_empty());

    // show: why, which step, verdicts, recipients, trace; --message: the copy itself.
    let out = quarantine(&config, &["show", &id]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["step"], "spam-score");
    assert!(
        record["reason"].as_str().unwrap().contains("9.5"),
        "{record}"
    );
    assert_eq!(record["recipients"][0], "alice@example.com");
    assert_eq!(record["verdicts"]["spf"], "unknown", "{record}");
    assert_eq!(record["trace"][0][0], "spam-score");
    let kept = quarantine(&config, &["show", &id, "--message"]).stdout;
    assert_eq!(kept, spam);

    // A retry of the same message writes the same entry, not a second one.
    deliver("q1", &spam);
    assert_eq!(
        text(&quarantine(&config, &["list"]).stdout).lines().count(),
        1
    );

    // release: into alice's INBOX, recorded; a second release to her is refused; --to
    // sends a copy elsewhere.
    let out = quarantine(&config, &["release", &id, "--emf"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"Released\":1"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(alice.join("INBOX/q1.eml")).unwrap(), spam);
    let record: serde_json::Value =
        serde_json::from_slice(&quarantine(&config, &["show", &id]).stdout).unwrap();
    assert_eq!(record["released"][0]["to"][0], "alice@example.com");
    let again = quarantine(&config, &["release", &id]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("released to alice@example.com already"));
    let out = quarantine(&config, &["release", &id, "--to", "bob@example.com"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(mail.join("example.com/bob/INBOX/q1.eml").exists());
    assert!(text(&quarantine(&config, &["list"]).stdout).contains("(released)"));

    // delete, then an unknown id is an error.
    let out = quarantine(&config, &["delete", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&quarantine(&config, &["list"]).stdout).is_empty());
    assert!(
        std::fs::read_dir(&held).unwrap().next().is_none(),
        "files left behind"
    );
    let out = quarantine(&config, &["delete", &id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no entry"),
        "{}",
        text(&out.stderr)
    );

    // purge: an entry older than `days` (10) goes, a fresh one stays.
    deliver("q2", &message("older", "7"));
    deliver("q3", &message("newer", "7"));
    let ids: Vec<String> = text(&quarantine(&config, &["list"]).stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let old = ids.iter().find(|i| i.starts_with("q2.")).unwrap();
    let path = held.join(format!("{old}.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let eleven_days_ago = record["quarantined_at"].as_u64().unwrap() - 11 * 86_400_000;
    record["quarantined_at"] = eleven_days_ago.into();
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = quarantine(&config, &["purge"]);
    assert!(
        text(&out.stdout).starts_with("purged 1 entry"),
        "{}",
        text(&out.stdout)
    );
    let left = text(&quarantine(&config, &["list"]).stdout);
    assert!(
        left.starts_with("q3.") && left.lines().count() == 1,
        "{left}"
    );
}

/// A release runs the message as received through the chain as it is now, without the step
/// that quarantined it: a step the operator added since applies, the quarantining step is
/// skipped (said in the output), and the copy the first run made (with its banner) is not
/// what is delivered. `--as-kept` delivers that copy instead.
#[test]
fn a_release_runs_the_chain_again_without_the_quarantining_step() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let held = dir.path().join("held");
    let config = dir.path().join("sluice.toml");
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
[store]
kind = "dir"
path = "{mail}"

[quarantine]
kind = "dir"
path = "{held}"

[[domain]]
name = "example.com"
[[domain.step]]
name = "spam-score"
plugin = "{junk}"
config = {{ folder = "Quarantine", score_header = "X-Spam-Score", score_threshold = 5.0 }}
[[domain.step]]
name = "warn"
plugin = "{banner}"
config = {{ text = "EXTERNAL SENDER", internal_domains = ["example.com"] }}
{extra}"#,
                mail = mail.display(),
                held = held.display(),
                junk = rule("junk").display(),
                banner = rule("banner").display(),
            ),
        )
        .unwrap()
    };
    write_config("");
    let spam = message("deal", "8");
    let out = sluice(
        &[
            "deliver",
            "--config",
            config.to_str().unwrap(),
            "--mail-from=mallory@spam.example",
            "--rcpt",
            "alice@example.com",
            "--message-id",
            "r1",
        ],
        &spam,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&quarantine(&config, &["list"]).stdout);
    let id = listed.split('\t').next().unwrap().to_string();
    // The kept copy is the chain's (bannered); the message as received is kept beside it.
    let kept = quarantine(&config, &["show", &id, "--message"]).stdout;
    assert!(text(&kept).contains("EXTERNAL SENDER"));
    assert_eq!(
        std::fs::read(held.join(format!("{id}.received.eml"))).unwrap(),
        spam
    );

    // The operator adds a subject tag, then releases: the chain runs again without the
    // quarantining step; the banner and the new tag are both applied to the message as
    // received.
    write_config(&format!(
        "[[domain.step]]\nname = \"tag\"\nplugin = \"{}\"\nconfig = {{ tag = \"[RELEASED]\", internal_domains = [\"example.com\"] }}\n",
        rule("subject-tag").display()
    ));
    let out = quarantine(&config, &["release", &id]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(
        said.contains("step spam-score (example.com): skipped (released from quarantine"),
        "{said}"
    );
    assert!(said.contains("step tag (example.com): ok"), "{said}");
    let inbox = mail.join("example.com/alice/INBOX/r1.eml");
    let delivered = text(&std::fs::read(&inbox).unwrap());
    assert!(
        delivered.contains("Subject: [RELEASED] deal"),
        "{delivered}"
    );
    assert_eq!(
        delivered.matches("EXTERNAL SENDER").count(),
        1,
        "{delivered}"
    );
    assert!(!mail.join("example.com/alice/Quarantine").exists());
    let record: serde_json::Value =
        serde_json::from_slice(&quarantine(&config, &["show", &id]).stdout).unwrap();
    assert_eq!(
        record["released"][0]["to"][0], "alice@example.com",
        "{record}"
    );

    // --as-kept (to another address, as --to implies): the first run's copy, untagged.
    let out = quarantine(&config, &["release", &id, "--to", "bob@example.com"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bob = std::fs::read(mail.join("example.com/bob/INBOX/r1.eml")).unwrap();
    assert_eq!(bob, kept);

    // Deleting the entry removes all three files.
    assert!(quarantine(&config, &["delete", &id]).status.success());
    assert!(
        std::fs::read_dir(&held).unwrap().next().is_none(),
        "files left behind"
    );
}

#[test]
fn s3_quarantine_keeps_releases_and_deletes() {
    let _turn = crate::turn(module_path!());
    let moto = sluice_tests::Moto::start();
    let rt = crate::common::rt();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    rt.block_on(s3.create_bucket("held")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
kind = "dir"
path = "{mail}"

[quarantine]
kind = "s3"
bucket = "held"
prefix = "quarantine"
folder = "Held"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{junk}"
config = {{ folder = "Held", score_header = "X-Spam-Score", score_threshold = 5.0 }}
"#,
            mail = mail.display(),
            junk = rule("junk").display()
        ),
    )
    .unwrap();
    let env = moto.env();
    let cfg = config.to_str().unwrap();
    let spam = message("s3offer", "8");
    let out = sluice_env(
        &[
            "deliver",
            "--config",
            cfg,
            "--mail-from=mallory@spam.example",
            "--rcpt",
            "alice@example.com",
            "--message-id",
            "s1",
        ],
        &spam,
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!mail.join("example.com/alice").exists());
    let keys = crate::common::sent::list_keys(&rt, &s3, "held");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("quarantine/s1.")),
        "{keys:?}"
    );
    let out = sluice_env(&["quarantine", "--config", cfg, "list"], b"", &env);
    let id = text(&out.stdout).split('\t').next().unwrap().to_string();
    assert!(
        id.starts_with("s1."),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = sluice_env(&["quarantine", "--config", cfg, "release", &id], b"", &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(mail.join("example.com/alice/INBOX/s1.eml")).unwrap(),
        spam
    );
    let out = sluice_env(&["quarantine", "--config", cfg, "delete", &id], b"", &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(crate::common::sent::list_keys(&rt, &s3, "held").is_empty());
}

/// docs/quarantine.md's configuration block is a config Sluice reads.
#[test]
fn the_documented_quarantine_section_reads() {
    let doc =
        std::fs::read_to_string(sluice_tests::workspace_root().join("docs/quarantine.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let config = sluice_chain::ConfigFile::parse(
        "quarantine.md",
        std::path::PathBuf::from("/etc/sluice"),
        block.to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let q = config.quarantine.expect("[quarantine]");
    assert_eq!((q.folder.as_str(), q.days), ("Quarantine", 30));
}
