//! `sluice test`: the reference rules' fixtures pass; a wrong fixture fails with a diff; a
//! broken fixture fails with its file and line.

use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::install_demo_plugins;

fn sluice_test(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("test")
        .args(args)
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-cli-test-cache"),
        )
        .output()
        .expect("sluice runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The summary line, which must be alone on its line.
fn summary(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .rev()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", text(o)))
        .to_string()
}

#[test]
fn the_reference_rule_fixtures_pass() {
    let _turn = crate::turn(module_path!());
    let root = install_demo_plugins();
    let o = sluice_test(&[
        &root.join("plugins/banner/fixtures"),
        &root.join("plugins/junk/fixtures"),
        &root.join("plugins/alias/fixtures"),
        &root.join("plugins/forward/fixtures"),
        &root.join("plugins/size-limit/fixtures"),
        &root.join("plugins/sender-lists/fixtures"),
        &root.join("plugins/subject-tag/fixtures"),
        &root.join("plugins/attachments/fixtures"),
        &root.join("plugins/headers/fixtures"),
        &root.join("plugins/bcc/fixtures"),
        &root.join("plugins/auto-reply/fixtures"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "banner/external-alternative",
        "banner/internal",
        "banner/already-bannered",
        "banner/image-only",
        "junk/spam-fail",
        "junk/virus-fail",
        "junk/dmarc-reject",
        "junk/dmarc-quarantine",
        "junk/spam-score",
        "banner/spoofed-internal",
        "junk/clean",
        "alias/mixed-group",
        "alias/plus-address",
        "alias/alias-chain",
        "alias/unknown",
        "alias/catch-all",
        "forward/copy",
        "forward/not-listed",
        "forward/spam",
        "forward/redirect",
        "forward/redirect-partial",
        "size-limit/over-domain-limit",
        "size-limit/recipient-limit",
        "size-limit/recipient-raised",
        "sender-lists/allowed-but-forged",
        "sender-lists/allowed-partner",
        "sender-lists/blocked-domain",
        "sender-lists/blocked-envelope",
        "sender-lists/blocked-pattern",
        "sender-lists/blocked-subdomain",
        "sender-lists/blocked-by-directory",
        "sender-lists/unlisted",
        // Outbound mail (issue 32): the reference uses for mail local users send.
        "banner/outbound-disclaimer",
        "banner/outbound-as-received",
        "subject-tag/outbound-external",
        "subject-tag/outbound-internal",
        "attachments/executable",
        "attachments/document",
        // Issue 36: strip (replace-part, WIT 0.2.1), sniffing, zips.
        "attachments/strip-exe",
        "attachments/renamed-exe",
        "attachments/zip-exe",
        "attachments/encrypted-zip",
        "headers/outbound-received",
        "headers/inbound-keeps-received",
        "bcc/outbound-copy",
        "auto-reply/away",
        "auto-reply/mailing-list",
        "auto-reply/outside-window",
        "auto-reply/dropped",
    ] {
        assert!(
            out.lines().any(|l| l == format!("ok   {name}")),
            "{name} missing:\n{out}"
        );
    }
    // The configs next to the fixtures are not fixtures.
    assert!(!out.contains("sluice"), "{out}");
    assert_eq!(summary(&o), "49 passed, 0 failed");
}

/// A fixture directory in a temp dir using the junk rule.
fn temp_fixtures(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plugin = root.join("target/plugins/junk.wasm");
    std::fs::write(
        dir.path().join("sluice.toml"),
        format!(
            "[[domain]]\nname = \"example.com\"\n\n[[domain.step]]\nplugin = {:?}\n",
            plugin.display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(
        root.join("plugins/junk/fixtures/spam-fail.eml"),
        dir.path().join("spam.eml"),
    )
    .unwrap();
    dir
}

#[test]
fn a_wrong_fixture_fails_with_a_diff_naming_the_field() {
    let _turn = crate::turn(module_path!());
    let root = install_demo_plugins();
    let dir = temp_fixtures(&root);
    // Spam fail goes to Junk, not INBOX; and the actions are right, so only deliveries differ.
    std::fs::write(
        dir.path().join("spam.toml"),
        r#"
rcpt = ["bob@example.com"]
verdicts = { spam = "fail" }

[expect]
actions = ["file-into Junk"]
deliveries = [{ recipient = "bob@example.com", kind = "deliver", folder = "INBOX" }]
"#,
    )
    .unwrap();
    let o = sluice_test(&[dir.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let name = format!("{}/spam", dir.path().file_name().unwrap().to_string_lossy());
    assert!(out.lines().any(|l| l == format!("FAIL {name}")), "{out}");
    assert!(out.contains("expect.deliveries:"), "{out}");
    assert!(
        out.contains("expected: bob@example.com deliver INBOX"),
        "{out}"
    );
    assert!(
        out.contains("actual:   bob@example.com deliver Junk"),
        "{out}"
    );
    assert!(!out.contains("expect.actions"), "{out}");
    assert_eq!(summary(&o), "0 passed, 1 failed");

    // The single-file form runs just that fixture.
    let o = sluice_test(&[&dir.path().join("spam.toml")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(summary(&o), "0 passed, 1 failed");
}

#[test]
fn a_broken_fixture_reports_file_and_line() {
    let _turn = crate::turn(module_path!());
    let root = install_demo_plugins();
    let dir = temp_fixtures(&root);
    std::fs::write(
        dir.path().join("a-good.toml"),
        "message = \"spam.eml\"\nrcpt = [\"bob@example.com\"]\n\n[expect]\nactions = []\n",
    )
    .unwrap();
    // Line 4 has a typo'd key.
    std::fs::write(
        dir.path().join("b-typo.toml"),
        "message = \"spam.eml\"\nrcpt = [\"bob@example.com\"]\n[expect]\nactoins = []\n",
    )
    .unwrap();
    // Line 2 is not TOML.
    std::fs::write(
        dir.path().join("c-syntax.toml"),
        "message = \"spam.eml\"\nrcpt = [\"bob@example.com\"\n",
    )
    .unwrap();
    // A missing message is one line naming it.
    std::fs::write(
        dir.path().join("d-missing.toml"),
        "rcpt = [\"bob@example.com\"]\n[expect]\nactions = []\n",
    )
    .unwrap();
    let o = sluice_test(&[dir.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let typo = dir.path().join("b-typo.toml");
    assert!(
        out.contains(&format!("{}:4: unknown field `actoins`", typo.display())),
        "{out}"
    );
    let syntax = dir.path().join("c-syntax.toml");
    assert!(out.contains(&format!("{}:", syntax.display())), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("c-syntax.toml:"))
        .unwrap_or_else(|| panic!("{out}"));
    let after = line.split("c-syntax.toml:").nth(1).unwrap();
    let n: usize = after
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a line number");
    assert!((2..=3).contains(&n), "{line}");
    assert!(out.contains("cannot read message"), "{out}");
    assert!(out.contains("d-missing.eml"), "{out}");
    assert_eq!(summary(&o), "1 passed, 3 failed");
}
