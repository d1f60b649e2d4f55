//! `[archive]`: messages kept as received before delivery, through `sluice deliver` (the same
//! pipeline as the daemon and the Lambda), searched with `sluice archive find` and read back
//! with `sluice archive get`; on moto, S3 Object Lock retention that refuses an early delete;
//! and a failed archive write tempfailing the message (`required = true`) or counted and
//! delivered past (`required = false`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sluice_aws::S3;
use sluice_tests::Moto;

/// A dir store and the given `[archive]` body, one domain with no steps.
fn config(dir: &Path, archive: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nkind = \"dir\"\npath = \"{}\"\n\n[archive]\n{archive}\n\n[[domain]]\nname = \"example.com\"\n",
            dir.join("mail").display()
        ),
    )
    .unwrap();
    path
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{}@x.example>\r\n\
         Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nX-Odd:  kept   as sent \r\n\r\nBody of {subject}.\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

fn sluice(args: &[&str], env: &[(&'static str, String)], stdin: &[u8]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(env.iter().cloned())
        .env("SLUICE_CACHE_DIR", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn deliver(config: &Path, id: &str, from: &str, to: &str, raw: &[u8]) -> Output {
    deliver_env(config, id, from, to, raw, &[])
}

fn deliver_env(
    config: &Path,
    id: &str,
    from: &str,
    to: &str,
    raw: &[u8],
    env: &[(&'static str, String)],
) -> Output {
    let from = format!("--mail-from={from}");
    let args = [
        "deliver",
        "--config",
        config.to_str().unwrap(),
        &from,
        "--rcpt",
        to,
        "--message-id",
        id,
    ];
    sluice(&args, env, raw)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn find(config: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "archive",
        "find",
        "--config",
        config.to_str().unwrap(),
        "--domain",
        "example.com",
    ];
    args.extend_from_slice(extra);
    let out = sluice(&args, &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    sluice_deliver_day(now)
}

/// The UTC day of `ms`, computed here without the code under test (civil-from-days).
fn sluice_deliver_day(ms: u64) -> String {
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn dir_archive_keeps_messages_as_received_once_and_finds_them() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = config(
        dir.path(),
        &format!(
            "kind = \"dir\"\npath = \"{}\"\ndomains = [\"example.com\"]",
            archive.display()
        ),
    );
    let m1 = message(
        "alice@sender.example",
        "carol@example.com",
        "Quarterly numbers",
    );
    let m2 = message("bob@other.example", "dave@example.com", "Lunch");
    for (id, from, to, raw) in [
        ("m1", "alice@sender.example", "carol@example.com", &m1),
        ("m2", "bob@other.example", "dave@example.com", &m2),
    ] {
        let out = deliver(&config, id, from, to, raw);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Archived byte for byte, and delivered.
    assert_eq!(std::fs::read(archive.join("m1.eml")).unwrap(), m1);
    assert!(dir
        .path()
        .join("mail/example.com/carol/INBOX/m1.eml")
        .exists());
    let record = archive
        .join("_index")
        .join(today())
        .join("example.com")
        .join("m1.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(record["from"], "alice@sender.example");
    assert_eq!(record["to"][0], "carol@example.com");
    assert_eq!(record["subject"], "Quarterly numbers");
    assert_eq!(record["size"], m1.len());

    // The MTA hands m1 over again: nothing is written twice.
    let before = std::fs::metadata(archive.join("m1.eml"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = deliver(
        &config,
        "m1",
        "alice@sender.example",
        "carol@example.com",
        &m1,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = std::fs::metadata(archive.join("m1.eml"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "the archived copy was rewritten");

    assert_eq!(find(&config, &[]), ["m1", "m2"]);
    assert_eq!(find(&config, &["--from", "ALICE@"]), ["m1"]);
    assert_eq!(find(&config, &["--to", "dave"]), ["m2"]);
    assert_eq!(find(&config, &["--subject", "lunch"]), ["m2"]);
    assert_eq!(
        find(&config, &["--since", &today(), "--until", &today()]),
        ["m1", "m2"]
    );
    assert!(find(&config, &["--until", "2000-01-01"]).is_empty());
    assert!(find(&config, &["--since", "2999-01-01"]).is_empty());
    let out = sluice(
        &[
            "archive",
            "find",
            "--config",
            config.to_str().unwrap(),
            "--domain",
            "example.com",
            "--json",
        ],
        &[],
        b"",
    );
    assert!(text(&out.stdout)
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    let out = sluice(
        &["archive", "get", "--config", config.to_str().unwrap(), "m1"],
        &[],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, m1);
    let out = sluice(
        &[
            "archive",
            "get",
            "--config",
            config.to_str().unwrap(),
            "nope",
        ],
        &[],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no message \"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failed_archive_write_tempfails_when_required_and_is_counted_past_when_not() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    // A file where the archive directory should be: every write fails.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let raw = message("alice@sender.example", "carol@example.com", "Hello");
    let inbox = dir.path().join("mail/example.com/carol/INBOX/h1.eml");

    let required = config(
        dir.path(),
        &format!(
            "kind = \"dir\"\npath = \"{}\"\ndomains = [\"*\"]",
            blocked.display()
        ),
    );
    let out = deliver(
        &required,
        "h1",
        "alice@sender.example",
        "carol@example.com",
        &raw,
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("4.3.0 "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("not archived"),
        "{}",
        text(&out.stderr)
    );
    assert!(!inbox.exists(), "delivered without an archive copy");

    let optional = config(
        dir.path(),
        &format!(
            "kind = \"dir\"\npath = \"{}\"\ndomains = [\"*\"]\nrequired = false",
            blocked.display()
        ),
    );
    // Its log says so (`deliver` logs nothing unless asked).
    let log = [
        ("SLUICE_LOG", "warn".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let out = deliver_env(
        &optional,
        "h1",
        "alice@sender.example",
        "carol@example.com",
        &raw,
        &log,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ARCHIVE FAILED"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&inbox).unwrap(), raw);
}

#[test]
fn s3_archive_locks_each_message_and_refuses_an_early_delete() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let rt = crate::common::rt();
    let s3 = S3::for_endpoint(&moto.endpoint, "us-east-1");
    rt.block_on(async {
        s3.client()
            .create_bucket()
            .bucket("vault")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .unwrap();
        s3.create_bucket("plain").await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let archive = |bucket: &str, required: bool| {
        format!(
            "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"journal\"\ndomains = [\"example.com\"]\nrequired = {required}\nretention = {{ mode = \"compliance\", days = 30 }}"
        )
    };
    let raw = message("alice@sender.example", "carol@example.com", "Audit me");
    let config = config(dir.path(), &archive("vault", true));
    let locked = config.clone();
    for _ in 0..2 {
        // The second run is a redelivery: no second locked version, no error.
        let out = deliver_env(
            &config,
            "s1",
            "alice@sender.example",
            "carol@example.com",
            &raw,
            &moto.env(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    rt.block_on(async {
        let c = s3.client();
        let head = c
            .head_object()
            .bucket("vault")
            .key("journal/s1.eml")
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("COMPLIANCE")
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (until - now - 30 * 86_400).abs() < 600,
            "retained until {until}, now {now}"
        );
        let versions = c
            .list_object_versions()
            .bucket("vault")
            .prefix("journal/s1.eml")
            .send()
            .await
            .unwrap();
        assert_eq!(versions.versions().len(), 1, "written once");
        let version = versions.versions()[0].version_id().unwrap().to_string();
        let refused = c
            .delete_object()
            .bucket("vault")
            .key("journal/s1.eml")
            .version_id(&version)
            .send()
            .await;
        assert!(refused.is_err(), "a locked version was deleted");
        let body = s3
            .get(&sluice_aws::S3Url::parse("s3://vault/journal/s1.eml").unwrap())
            .await
            .unwrap();
        assert_eq!(body.bytes, raw);
    });
    let out = sluice(
        &[
            "archive",
            "find",
            "--config",
            config.to_str().unwrap(),
            "--domain",
            "example.com",
            "--subject",
            "audit",
        ],
        &moto.env(),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("s1\t"),
        "{}",
        text(&out.stdout)
    );
    let out = sluice(
        &["archive", "get", "--config", config.to_str().unwrap(), "s1"],
        &moto.env(),
        b"",
    );
    assert_eq!(out.stdout, raw);

    // A bucket that is missing, or has no Object Lock for the retention asked: tempfail,
    // nothing delivered.
    for bucket in ["missing", "plain"] {
        let dir = tempfile::tempdir().unwrap();
        let config = self::config(dir.path(), &archive(bucket, true));
        let out = deliver_env(
            &config,
            "s2",
            "alice@sender.example",
            "carol@example.com",
            &raw,
            &moto.env(),
        );
        assert_eq!(
            out.status.code(),
            Some(75),
            "{bucket}: {}",
            text(&out.stderr)
        );
        if bucket == "plain" {
            assert!(
                text(&out.stderr).contains("ObjectLockConfiguration"),
                "{}",
                text(&out.stderr)
            );
            // `sluice check` says so before any mail does; the locked bucket passes.
            for (config, ok) in [(&config, false), (&locked, true)] {
                let check = sluice(
                    &["check", "--config", config.to_str().unwrap()],
                    &moto.env(),
                    b"",
                );
                assert_eq!(check.status.success(), ok, "{}", text(&check.stderr));
                assert_eq!(
                    text(&check.stderr).contains("has no Object Lock"),
                    !ok,
                    "{}",
                    text(&check.stderr)
                );
            }
        }
        assert!(!dir
            .path()
            .join("mail/example.com/carol/INBOX/s2.eml")
            .exists());
    }
}

/// docs/archive.md's configuration block is a config Sluice reads.
#[test]
fn the_documented_archive_section_reads() {
    let doc =
        std::fs::read_to_string(sluice_tests::workspace_root().join("docs/archive.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let text = format!("{block}\n[[domain]]\nname = \"example.com\"\n");
    let config = sluice_chain::ConfigFile::parse("archive.md", PathBuf::from("/etc/sluice"), text)
        .unwrap_or_else(|e| panic!("{e}"));
    let archive = config.archive.expect("[archive]");
    assert!(archive.required);
    assert_eq!(archive.domains, ["example.com"]);
}

/// The SES door: `sluice daemon` gets the same notification twice (SQS delivers at least
/// once); the message is archived once, under Object Lock, before its mailbox copy.
#[test]
fn the_daemon_archives_a_redelivered_notification_once() {
    let _turn = crate::turn(module_path!());
    let rt = crate::common::rt();
    let moto = Moto::start();
    let world = crate::common::World::new(&rt, &moto, &moto);
    rt.block_on(
        world
            .s3
            .client()
            .create_bucket()
            .bucket("journal")
            .object_lock_enabled_for_bucket(true)
            .send(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"s3\"\nbucket = \"mail\"\nprefix = \"mailboxes\"\n\n\
         [archive]\nkind = \"s3\"\nbucket = \"journal\"\ndomains = [\"*\"]\n\
         retention = { mode = \"governance\", days = 1 }\n\n\
         [[domain]]\nname = \"example.com\"\n",
    )
    .unwrap();
    world.put_message(&rt, "d1", "alice@example.com");
    let notice = crate::common::notification("d1", &["alice@example.com"], "PASS", "inbound");
    world.enqueue(&rt, &notice);
    world.enqueue(&rt, &notice);
    let out = crate::common::daemon(
        &moto.env(),
        &config,
        &world.queue,
        &["--max-messages", "2", "--visibility", "30"],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let received = crate::common::message("d1", "alice@example.com");
    assert_eq!(world.get(&rt, "s3://journal/d1.eml").unwrap(), received);
    assert!(world
        .get(&rt, "s3://mail/mailboxes/example.com/alice/INBOX/d1.eml")
        .is_some());
    rt.block_on(async {
        let versions = world
            .s3
            .client()
            .list_object_versions()
            .bucket("journal")
            .prefix("d1.eml")
            .send()
            .await
            .unwrap();
        assert_eq!(versions.versions().len(), 1, "archived twice");
        let head = world
            .s3
            .client()
            .head_object()
            .bucket("journal")
            .key("d1.eml")
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("GOVERNANCE")
        );
    });
    assert_eq!(world.left_in_queue(&rt), 0);
}

/// On a host serving several domains, each domain's index record names only its own
/// recipients; the message is archived once.
#[test]
fn each_domain_sees_its_own_recipients() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = config(
        dir.path(),
        &format!(
            "kind = \"dir\"\npath = \"{}\"\ndomains = [\"*\"]\n\n[[domain]]\nname = \"example.org\"",
            archive.display()
        ),
    );
    let raw = message("alice@sender.example", "carol@example.com", "Both");
    let out = sluice(
        &[
            "deliver",
            "--config",
            config.to_str().unwrap(),
            "--mail-from=alice@sender.example",
            "--rcpt",
            "carol@example.com",
            "--rcpt",
            "erin@example.org",
            "--message-id",
            "b1",
        ],
        &[],
        &raw,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record = |domain: &str| -> serde_json::Value {
        let path = archive
            .join("_index")
            .join(today())
            .join(domain)
            .join("b1.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(
        record("example.com")["to"],
        serde_json::json!(["carol@example.com"])
    );
    assert_eq!(
        record("example.org")["to"],
        serde_json::json!(["erin@example.org"])
    );
    let files: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    assert_eq!(files, ["b1.eml"]);
}

/// `as_delivered = true`: the copy a rule changed is kept too, after delivery, named in the
/// index record; the message as received stays as it came.
#[test]
fn as_delivered_keeps_the_changed_copy_beside_the_received_one() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = config(
        dir.path(),
        &format!(
            "kind = \"dir\"\npath = \"{}\"\ndomains = [\"example.com\"]\nas_delivered = true",
            archive.display()
        ),
    );
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "[[domain.step]]\nplugin = \"{}\"\nconfig = {{ tag = \"[EXT]\" }}\n",
        sluice_tests::rule("subject-tag").display()
    ));
    std::fs::write(&config, text_config).unwrap();
    let raw = message("alice@sender.example", "carol@example.com", "Tagged");
    let out = deliver(
        &config,
        "t1",
        "alice@sender.example",
        "carol@example.com",
        &raw,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(archive.join("t1.eml")).unwrap(), raw);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            archive
                .join("_index")
                .join(today())
                .join("example.com")
                .join("t1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let name = record["delivered"][0]
        .as_str()
        .expect("a delivered copy")
        .to_string();
    assert!(name.starts_with("t1.delivered-"), "{name}");
    let got = sluice(
        &[
            "archive",
            "get",
            "--config",
            config.to_str().unwrap(),
            &name,
        ],
        &[],
        b"",
    );
    assert!(got.status.success(), "{}", text(&got.stderr));
    let delivered = std::fs::read(dir.path().join("mail/example.com/carol/INBOX/t1.eml")).unwrap();
    assert_eq!(got.stdout, delivered);
    assert!(
        text(&delivered).contains("Subject: [EXT] Tagged"),
        "{}",
        text(&delivered)
    );
}
