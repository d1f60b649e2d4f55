//! What the three `sluice plugin new` tests (Rust, JavaScript, Python) share: running the
//! CLI, and checking a generated `tag-external` rule the same way whatever its language.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_engine::{RuleEngine, RulePlugin, StepLimits};

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `sluice` binary with `args`, its SDK override `sdk_env` removed (the test must use the
/// checkout's SDK) and its cache under `cache`.
pub fn sluice(args: &[&str], sdk_env: &str, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .env_remove(sdk_env)
        .env("SLUICE_CACHE_DIR", cache);
    cmd
}

/// Runs a command to completion.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    cmd.borrow_mut().output().expect("the command runs")
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command succeeded, else its output in the failure.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// The generated rule's config checks: a full config and an empty one pass, a typo and an
/// empty prefix are refused with serde's / the rule's words.
pub fn assert_config_is_validated(engine: &RuleEngine, plugin: &RulePlugin, limits: &StepLimits) {
    plugin
        .validate_config(
            engine,
            r#"{"prefix": "[EXT]", "internal_domains": ["example.com"]}"#,
            limits,
        )
        .unwrap();
    plugin.validate_config(engine, "{}", limits).unwrap();
    let typo = plugin
        .validate_config(engine, r#"{"prefx": "[EXT]"}"#, limits)
        .unwrap_err();
    assert!(typo.to_string().contains("unknown field `prefx`"), "{typo}");
    let empty = plugin
        .validate_config(engine, r#"{"prefix": ""}"#, limits)
        .unwrap_err();
    assert!(empty.to_string().contains("must not be empty"), "{empty}");
}

/// The README's flow in the generated project `dir`: its config and fixtures, with the built
/// component `wasm` where the config expects it, through `sluice run` (`cli` builds the
/// command). The external fixture gets the prefix, the internal one nothing.
pub fn assert_readme_flow(cli: impl Fn(&[&str]) -> Command, dir: &Path, wasm: &Path, mail: &Path) {
    std::fs::create_dir_all(dir.join("target/plugins")).unwrap();
    std::fs::copy(wasm, dir.join("target/plugins/tag-external.wasm")).unwrap();
    let config = dir.join("sluice.toml");
    for (fixture, expected_actions) in [
        ("external.eml", r#"[{"PrefixSubject":"[EXTERNAL]"}]"#),
        ("internal.eml", "[]"),
    ] {
        let o = run(cli(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            mail.to_str().unwrap(),
            "--json",
            dir.join("fixtures").join(fixture).to_str().unwrap(),
        ]));
        assert_ok(&o, fixture);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["steps"][0]["outcome"], "ok", "{fixture}: {v}");
        assert_eq!(
            v["steps"][0]["actions"].to_string(),
            expected_actions,
            "{fixture}"
        );
        if fixture == "external.eml" {
            let delivered = v["deliveries"][0]["path"].as_str().unwrap();
            let delivered = std::fs::read_to_string(delivered).unwrap();
            assert!(
                delivered.contains("Subject: [EXTERNAL] Invoice 2026-117"),
                "{delivered}"
            );
        }
    }
}
