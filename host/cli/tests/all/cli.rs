//! The `sluice` command as a user runs it: exit codes, one-line errors, files on disk, JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_tests::fixtures;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-cli-test-cache"),
        )
        .output()
        .expect("sluice runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a config into `dir`; `{rule:NAME}` becomes the built rule's path.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, sluice_tests::expand(text)).unwrap();
    path
}

const DEMO: &str = r#"
[store]
kind = "dir"
path = "mail"

[[domain]]
name = "example.com"

[[domain.step]]
plugin = "{rule:banner}"
config = { text = "CAUTION: external sender", internal_domains = ["example.com"] }

[[domain.step]]
plugin = "{rule:junk}"
config = { score_header = "X-Spam-Score", score_threshold = 5.0 }
"#;

#[test]
fn run_writes_the_message_and_prints_json() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO);
    let msg = fixtures().join("alternative-attachment.eml");
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rcpt",
        "bob@example.com",
        "--message-id",
        "m-1",
        "--json",
        msg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["plugin"], "banner");
    assert_eq!(steps[0]["outcome"], "ok");
    assert!(steps[0]["micros"].as_u64().unwrap() > 0);
    assert!(
        steps[0]["actions"][0]["AddBanner"].is_object(),
        "{}",
        steps[0]
    );
    let d = &v["deliveries"][0];
    assert_eq!(d["recipient"], "bob@example.com");
    assert_eq!(d["kind"], "deliver");
    assert_eq!(d["folder"], "INBOX");
    // [store] path is relative to the config file.
    let expected = dir.path().join("mail/example.com/bob/INBOX/m-1.eml");
    assert_eq!(Path::new(d["path"].as_str().unwrap()), expected);
    let written = std::fs::read_to_string(&expected).unwrap();
    assert!(written.contains("CAUTION: external sender"));
}

#[test]
fn run_prints_a_readable_trace_and_is_idempotent() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO);
    let out = dir.path().join("out");
    let msg = fixtures().join("spam-score.eml");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        msg.to_str().unwrap(),
    ];
    let o = sluice(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("banner"), "{text}");
    assert!(text.contains("-> file-into Junk"), "{text}");
    assert!(text.contains("deliver"), "{text}");
    // The junk rule's log line, its level as a word (it was `level::info`).
    assert!(text.contains("log info: junk: "), "{text}");
    let files = walk;
    let first = files(&out);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with(out.join("example.com/bob/Junk")),
        "{first:?}"
    );
    // The id derives from the content: a second run rewrites the same file.
    let o = sluice(&args);
    assert!(o.status.success());
    assert_eq!(files(&out), first);
}

/// Every file under `root`, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                v.push(p)
            }
        }
    }
    v.sort();
    v
}

/// The record of `sluice run --json` for one recipient and kind.
fn delivery<'a>(v: &'a serde_json::Value, recipient: &str, kind: &str) -> &'a serde_json::Value {
    v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == recipient && d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record for {recipient}: {v:#}"))
}

#[test]
fn relay_and_bounce_go_through_the_daemons_rules_into_the_outbox() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[relay]
kind = "ses"
from = "fwd@example.com"
allow_domains = ["partner.example"]
markers = "sent"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_recipients = ["friend@partner.example", "x@elsewhere.example"] } ] }
[[domain]]
name = "other.example"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { bounce = { code = 550, status = "5.1.1", text = "no such user" } } ] }
"#,
    );
    let out = dir.path().join("out");
    let msg = fixtures().join("plain-lf.eml");
    let run = |verdicts: &[&str]| {
        let mut args = vec![
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--rcpt",
            "bob@example.com",
            "--rcpt",
            "ghost@other.example",
            "--mail-from",
            "alice@sender.example",
            "--message-id",
            "m-2",
            "--json",
        ];
        for v in verdicts {
            args.extend(["--verdict", v]);
        }
        args.push(msg.to_str().unwrap());
        let o = sluice(&args);
        // x@elsewhere.example is refused by the config: kept, and the run says so (69).
        assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("UNDELIVERABLE: 1 recipient(s) (x@elsewhere.example)"),
            "{}",
            stderr(&o)
        );
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };

    let v = run(&["spf=pass", "dkim=pass"]);
    let kinds: Vec<(String, String)> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["recipient"].as_str().unwrap().into(),
                d["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("bob@example.com".into(), "deliver".into()),
            ("friend@partner.example".into(), "relay".into()),
            ("x@elsewhere.example".into(), "relay".into()),
            ("ghost@other.example".into(), "bounce".into()),
        ]
    );
    let stored = delivery(&v, "bob@example.com", "deliver");
    assert_eq!(stored["status"], "stored");
    assert!(std::path::Path::new(stored["path"].as_str().unwrap()).is_file());

    // The relayed copy: rewritten as the daemon sends it (From is the relay's address), its
    // envelope beside it.
    let relayed = delivery(&v, "friend@partner.example", "relay");
    assert_eq!(relayed["status"], "sent", "{relayed:#}");
    let eml = std::path::PathBuf::from(relayed["path"].as_str().unwrap());
    assert!(eml.starts_with(out.join("outbox/m-2")), "{eml:?}");
    let copy = std::fs::read_to_string(&eml).unwrap();
    assert!(copy.contains("fwd@example.com"), "{copy}");
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eml.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(envelope["recipients"][0], "friend@partner.example");
    assert_eq!(envelope["mail_from"], "fwd@example.com");

    // Outside allow_domains: refused, never sent, and (a policy refusal) not bounced, but
    // kept under _undeliverable/ in the output directory.
    let refused = delivery(&v, "x@elsewhere.example", "relay");
    let status = refused["status"].as_str().unwrap();
    assert!(
        status.starts_with("refused (not-allowed), UNDELIVERABLE, kept at "),
        "{refused:#}"
    );
    assert!(refused["path"].is_null());
    let kept = std::path::PathBuf::from(status.rsplit_once(" kept at ").unwrap().1);
    assert!(kept.starts_with(out.join("_undeliverable/m-2")), "{kept:?}");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        std::fs::read(&msg).unwrap(),
        "the copy is kept as the chain left it (unedited here)"
    );

    // The bounce is a real DSN to the envelope sender, from the null sender.
    let bounce = delivery(&v, "ghost@other.example", "bounce");
    let dsn = std::path::PathBuf::from(bounce["path"].as_str().unwrap());
    let text = std::fs::read_to_string(&dsn).unwrap();
    assert!(text.contains("multipart/report"), "{text}");
    assert!(text.contains("5.1.1"), "{text}");
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dsn.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(envelope["mail_from"], "<>");
    assert_eq!(envelope["recipients"][0], "alice@sender.example");

    // A second run of the same message writes the same files again (nothing "sent before").
    let files = walk;
    let before = files(&out);
    let again = run(&["spf=pass", "dkim=pass"]);
    assert_eq!(
        delivery(&again, "friend@partner.example", "relay")["status"],
        "sent"
    );
    assert_eq!(files(&out), before);

    // Unauthenticated mail: the DSN is suppressed (it would be backscatter), as in the daemon.
    std::fs::remove_dir_all(&out).unwrap();
    let v = run(&[]);
    let bounce = delivery(&v, "ghost@other.example", "bounce");
    assert!(
        bounce["status"].as_str().unwrap().starts_with("suppressed"),
        "{bounce:#}"
    );
    assert!(bounce["path"].is_null());
}

#[test]
fn without_a_relay_section_nothing_is_relayed_or_bounced() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-headers}"
config = { actions = [ { add_recipients = ["friend@partner.example"] } ] }
"#,
    );
    let out = dir.path().join("out");
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rcpt",
        "bob@example.com",
        "--json",
        fixtures().join("plain-lf.eml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        delivery(&v, "friend@partner.example", "relay")["status"]
            .as_str()
            .unwrap()
            .starts_with("refused (no-relay), UNDELIVERABLE, kept at "),
        "{v:#}"
    );
    assert!(!out.join("outbox").exists());
}

#[test]
fn check_warns_of_destinations_the_relay_refuses() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[relay]
kind = "ses"
from = "fwd@example.com"
allow_domains = ["partner.example", ".gmail.example"]
markers = "sent"
[[domain]]
name = "example.com"
[[domain.step]]
name = "redirect"
plugin = "{rule:rule-headers}"
config = { actions = [ { add_recipients = ["friend@partner.example", "me@home.gmail.example", "bob@example.com", "x@elsewhere.example"] } ] }
"#,
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains(&format!("{}:9:", config.display()))
            && warnings[0]
                .contains("step redirect of domain example.com names x@elsewhere.example")
            && warnings[0].contains("not in [relay] allow_domains"),
        "{out}"
    );
}

#[test]
fn a_config_error_is_one_line_with_file_line_and_key() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{rule:banner}\"\ntimeout = 5\n",
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:5:", config.display())), "{err}");
    assert!(err.contains("timeout"), "{err}");
}

#[test]
fn a_rule_config_typo_fails_check() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{rule:banner}\"\nconfig = { txt = \"x\" }\n",
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(":4: domain \"example.com\" step 1 (banner)"),
        "{err}"
    );
    assert!(err.contains("unknown field `txt`"), "{err}");
}

#[test]
fn check_prints_the_chains() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO);
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("ok (1 domain(s)"), "{text}");
    assert!(text.contains("domain example.com"));
    assert!(
        text.contains("1. banner") && text.contains("2. junk"),
        "{text}"
    );
}

#[test]
fn missing_plugin_and_bad_message_are_clear_errors() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"nope.wasm\"\n",
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(":4:") && err.contains("nope.wasm") && err.contains("cannot read"),
        "{err}"
    );

    let config = write_config(dir.path(), DEMO);
    let empty = dir.path().join("empty.eml");
    std::fs::write(&empty, b"").unwrap();
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rcpt",
        "bob@example.com",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("empty.eml") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn tempfail_exits_75_and_delivers_nothing() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{rule:rule-trap}\"\non_error = \"tempfail\"\n",
    );
    let out = dir.path().join("out");
    let msg = fixtures().join("plain-lf.eml");
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        msg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(75), "{}", stdout(&o));
    assert!(stdout(&o).contains("TEMPFAIL"));
    assert!(!out.join("example.com").exists());
}

#[test]
fn plugin_build_refuses_a_directory_without_a_crate() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let o = sluice(&[
        "plugin",
        "build",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Cargo.toml"), "{}", stderr(&o));
}

#[test]
fn the_demo_config_checks() {
    let _turn = crate::turn(module_path!());
    // plugins/demo.toml points at target/plugins, which `demo.sh` fills; put them there.
    let root = sluice_tests::install_demo_plugins();
    let o = sluice(&[
        "check",
        "--config",
        root.join("plugins/demo.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn without_address_space_for_the_pool_it_falls_back_to_on_demand() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO);
    let msg = fixtures().join("alternative-attachment.eml");
    // 16 GiB of address space: far too little for the pool (thousands of 4 GiB memory
    // reservations), enough for on-demand instances one at a time.
    let script = format!(
        "ulimit -v 16777216 && exec '{}' run --config '{}' --out '{}' --rcpt bob@example.com '{}'",
        env!("CARGO_BIN_EXE_sluice"),
        config.display(),
        dir.path().join("out").display(),
        msg.display()
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pooling allocator unavailable"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("add-banner"), "{}", stdout(&o));
    assert!(dir.path().join("out/example.com/bob/INBOX").is_dir());
}

#[test]
fn check_prints_the_directories_and_each_steps_grants() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aliases.toml"),
        "[aliases]\n\"info@example.com\" = { to = \"alice@example.com\" }\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"\n\
         [[domain]]\nname = \"example.com\"\n\
         [[domain.step]]\nplugin = \"{rule:alias}\"\nlookups = [\"aliases\"]\nconfig = { mailboxes = [\"alice\"], directory = \"aliases\" }\n\
         [[domain.step]]\nplugin = \"{rule:banner}\"\nconfig = { text = \"x\" }\n\
         [[domain.step]]\nplugin = \"{rule:banner}\"\nname = \"classify\"\ntimeout_ms = 300\nconfig = { text = \"y\" }\n\
         http = { allow = [\"https://classifier.internal:8443/v1/\"], timeout_ms = 250, max_response_kb = 8 }\n",
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}{out}", stderr(&o));
    assert!(
        out.contains("directory aliases: file aliases.toml"),
        "{out}"
    );
    let grants: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("grants:"))
        .map(str::trim)
        .collect();
    assert_eq!(
        grants,
        [
            "grants: lookups=[aliases]",
            "grants: none",
            "grants: http=[https://classifier.internal:8443/v1/] timeout=250ms max_response=8KiB"
        ],
        "{out}"
    );
}

/// `sluice run --outbound`: the sending domain's `[[outbound]]` chain runs (not the
/// `[[domain]]` one), every recipient is relayed by the MTA, the message as it leaves is
/// written under `outgoing/`; `sluice check` lists the outbound chain.
#[test]
fn run_outbound_runs_the_senders_outbound_chain() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:banner}"
config = { text = "CAUTION: external sender", internal_domains = ["example.com"] }

[[outbound]]
name = "example.com"
[[outbound.step]]
plugin = "{rule:banner}"
config = { disclaimer = { text = "Sent from example.com: confidential." } }
[[outbound.step]]
plugin = "{rule:bcc}"
config = { to = ["archive@example.com"] }
"#,
    );
    let msg = dir.path().join("sent.eml");
    std::fs::write(
        &msg,
        "Received: from laptop by submit.example.com\r\nFrom: Bob <bob@example.com>\r\n\
         To: x@partner.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--outbound",
        "--auth-sender",
        "bob@example.com",
        "--message-id",
        "o-1",
        "--out",
        out.to_str().unwrap(),
        "--json",
        msg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v:#}");
    assert_eq!(groups[0]["domain"], "example.com");
    let kinds: Vec<(String, String)> = groups[0]["dispositions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["recipient"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("x@partner.test".to_string(), "relay".to_string()),
            ("archive@example.com".to_string(), "relay".to_string())
        ],
        "{v:#}"
    );
    let sent = std::fs::read_to_string(out.join("outgoing/o-1.eml")).unwrap();
    assert!(
        sent.contains("Sent from example.com: confidential."),
        "{sent}"
    );
    assert!(!sent.contains("CAUTION"), "{sent}");
    // The same message received: the [[domain]] chain, the warning banner.
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rcpt",
        "bob@example.com",
        "--out",
        out.to_str().unwrap(),
        msg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("archive@example.com"),
        "{}",
        stdout(&o)
    );
    let o = sluice(&["check", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("(1 domain(s), 1 outbound,"), "{text}");
    assert!(text.contains("\noutbound example.com\n"), "{text}");
}

/// `sluice run` shows an automatic reply as a `reply` record, and writes it to the outbox
/// with a null envelope sender and the RFC 3834 fields.
#[test]
fn an_auto_reply_goes_to_the_outbox_with_a_null_sender() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[relay]
kind = "ses"
from = "fwd@example.com"
markers = "sent"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:auto-reply}"
reply = { once_per_days = 7 }
config = { recipients = { "bob@example.com" = { text = "Away until Monday." } } }
"#,
    );
    let out = dir.path().join("out");
    let msg = fixtures().join("plain-lf.eml");
    let o = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rcpt",
        "bob@example.com",
        "--mail-from",
        "alice@sender.example",
        "--message-id",
        "m-r",
        "--json",
        msg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        delivery(&v, "bob@example.com", "deliver")["status"],
        "stored"
    );
    let reply = delivery(&v, "alice@sender.example", "reply");
    let status = reply["status"].as_str().unwrap();
    assert!(
        status.starts_with("auto-reply from bob@example.com: sent"),
        "{reply:#}"
    );
    let eml = std::path::PathBuf::from(reply["path"].as_str().unwrap());
    let text = std::fs::read_to_string(&eml).unwrap();
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    assert!(text.contains("Away until Monday."), "{text}");
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eml.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(envelope["mail_from"], "<>", "MAIL FROM:<>");
    assert_eq!(envelope["recipients"][0], "alice@sender.example");
}
