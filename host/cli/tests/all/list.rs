//! `sluice list` as an operator runs it, and the `sender-lists` rule reading what it wrote:
//! a block added on the command line refuses the next message without a config change, and
//! its removal lets the next one through.

use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::{fixtures, Moto};

fn sluice(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CONFIG", config)
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-cli-test-cache"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("sluice runs")
}

fn ok(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = sluice(config, args, env);
    assert!(
        o.status.success(),
        "sluice {args:?}: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = sluice(config, args, env);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "sluice {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

/// A config whose `[directory.aliases]` is `directory` and whose one step is `sender-lists`
/// reading that directory's lists (and one pattern from its config).
fn config(dir: &Path, directory: &str) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    let text = format!(
        r#"
[store]
kind = "dir"
path = "mail"

{directory}

[[domain]]
name = "example.com"

[[domain.step]]
plugin = "{{rule:sender-lists}}"
lookups = ["aliases"]
config = {{ table = "aliases", block = ["*@*.bulk.example"], allow_needs_auth = false }}
"#
    );
    std::fs::write(&path, sluice_tests::expand(&text)).unwrap();
    path
}

/// `sluice run` of a plain message from `from`; the delivery kind of bob's copy.
fn run_from(config: &Path, out: &Path, from: &str, env: &[(&str, &str)]) -> String {
    let msg = fixtures().join("plain-lf.eml");
    let stdout = ok(
        config,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--rcpt",
            "bob@example.com",
            "--mail-from",
            from,
            "--out",
            out.to_str().unwrap(),
            "--json",
            msg.to_str().unwrap(),
        ],
        env,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let d = &v["deliveries"][0];
    assert_eq!(d["recipient"], "bob@example.com", "{v}");
    d["kind"].as_str().unwrap_or_default().to_string()
}

/// The operator's session, the same for every backend.
fn session(config: &Path, out: &Path, env: &[(&str, &str)]) {
    let list = |args: &[&str]| {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        ok(config, &all, env)
    };
    // Unlisted: delivered.
    assert_eq!(
        run_from(config, out, "news@mx.spam.example", env),
        "deliver"
    );

    assert_eq!(
        list(&["add", "block", "Spam.Example", ".spam.example"]),
        "added spam.example to block\nadded .spam.example to block\n"
    );
    assert_eq!(
        list(&["add", "allow", "ceo@spam.example"]),
        "added ceo@spam.example to allow\n"
    );
    assert_eq!(
        list(&["show"]),
        "block\t.spam.example\nallow\tceo@spam.example\nblock\tspam.example\n"
    );
    assert_eq!(
        list(&["show", "allow", "--json"]).trim(),
        r#"{"allow":["ceo@spam.example"],"block":[]}"#
    );
    // The rule reads the new entries on the next message: the subdomain is refused, the
    // more specific allow of the CEO wins over the domain's block, the config's pattern
    // still applies beside the directory.
    assert_eq!(run_from(config, out, "news@mx.spam.example", env), "bounce");
    assert_eq!(run_from(config, out, "ceo@spam.example", env), "deliver");
    assert_eq!(run_from(config, out, "x@eu.bulk.example", env), "bounce");

    // Refusals say what to do and change nothing.
    assert_eq!(
        refused(config, &["list", "rm", "allow", ".spam.example"], env),
        "sluice: .spam.example is on the block list, not allow: `sluice list rm block .spam.example` (nothing was removed)"
    );
    assert!(refused(
        config,
        &["list", "add", "block", "ok.example", "*@x.example"],
        env
    )
    .contains("put patterns in the step's `block`/`allow` config"),);
    assert!(
        !list(&["show"]).contains("ok.example"),
        "a refused add wrote nothing"
    );
    assert_eq!(
        list(&["rm", "block", ".spam.example"]),
        "removed .spam.example from block\n"
    );
    assert_eq!(
        list(&["add", "allow", "spam.example"]),
        "moved spam.example from block to allow\n"
    );
    assert_eq!(
        run_from(config, out, "news@mx.spam.example", env),
        "deliver"
    );
}

#[test]
fn lists_in_a_file_directory_steer_the_rule_without_a_config_change() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"",
    );
    ok(&config, &["alias", "init"], &[]);
    session(&config, &dir.path().join("out"), &[]);
    let file = std::fs::read_to_string(dir.path().join("aliases.toml")).unwrap();
    assert!(
        file.contains("[senders]\nallow = [\"ceo@spam.example\", \"spam.example\"]"),
        "{file}"
    );

    // A CSV directory holds aliases only: the refusal names the formats that can.
    let csv = self::config(
        dir.path(),
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.csv\"",
    );
    ok(&csv, &["alias", "init"], &[]);
    assert!(refused(&csv, &["list", "add", "block", "x.example"], &[]).contains(".toml or .json"));
}

#[test]
fn lists_in_dynamodb_steer_the_rule_without_a_config_change() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[directory.aliases]\nkind = \"dynamodb\"\ntable = \"sluice-aliases\"\ncache_ttl_s = 0",
    );
    let owned = moto.env();
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&config, &["alias", "init"], &env);
    session(&config, &dir.path().join("out"), &env);
}
