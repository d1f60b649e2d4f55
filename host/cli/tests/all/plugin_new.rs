//! `sluice plugin new`: the scaffolded rule crate tests, builds and loads as generated.

use std::path::PathBuf;
use std::process::Command;

use crate::scaffold::{assert_ok, run, text, workspace};

use sluice_engine::{EngineOptions, PoolingChoice, RuleEngine, RulePlugin, StepLimits};

/// Where the nested cargo builds go: reused between runs, and not the outer cargo's lock.
fn test_target_dir() -> PathBuf {
    workspace().join("target/plugin-new-test")
}

fn sluice(args: &[&str]) -> Command {
    crate::scaffold::sluice(args, "SLUICE_SDK", &test_target_dir().join("cache"))
}

#[test]
fn a_new_rust_rule_tests_builds_and_loads() {
    let _turn = crate::turn(module_path!());
    let base = test_target_dir();
    std::fs::create_dir_all(&base).unwrap();
    // Inside the workspace's tree on purpose: the new crate must not join the workspace.
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "rust",
        "tag-external",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin new");
    let out = text(&o.stdout);
    let dir = tmp.path().join("tag-external");
    for expected in [
        "created rust rule `tag-external`",
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        "next:",
        "cargo test",
        "sluice plugin build . --out target/plugins",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }

    // The SDK is the checkout's, by absolute path, and the README says where.
    let sdk = workspace().join("sdk/rust");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["dependencies"]["sluice-sdk"]["path"].as_str(),
        sdk.to_str()
    );
    assert!(manifest.contains_key("workspace"));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains(sdk.to_str().unwrap()), "{readme}");
    assert!(readme.contains("internal_domains"), "{readme}");

    // Resolve dependencies to the versions this workspace already uses (and has downloaded).
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = run(Command::new(&cargo)
        .args(["test", "--target-dir"])
        .arg(base.join("target"))
        .current_dir(&dir));
    assert_ok(&o, "cargo test in the new crate");
    let test_output = text(&o.stdout);
    assert!(
        test_output.contains("prefixes_mail_from_outside ... ok"),
        "{test_output}"
    );

    let out_dir = tmp.path().join("out");
    let o = run(sluice(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--target-dir",
        base.join("target").to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin build");
    let wasm = out_dir.join("tag-external.wasm");
    assert!(wasm.is_file(), "{}", text(&o.stdout));

    let engine = RuleEngine::new(EngineOptions {
        cache_dir: None,
        pooling: PoolingChoice::Off,
        ..Default::default()
    })
    .unwrap();
    let plugin = RulePlugin::load_file(&engine, "tag-external", &wasm).unwrap();
    assert!(
        !plugin.uses_wasi(),
        "a wasm32-unknown-unknown rule imports no WASI"
    );
    let limits = StepLimits::default();
    crate::scaffold::assert_config_is_validated(&engine, &plugin, &limits);

    crate::scaffold::assert_readme_flow(sluice, &dir, &wasm, &tmp.path().join("mail"));
}

#[test]
fn an_existing_non_empty_directory_is_refused() {
    let _turn = crate::turn(module_path!());
    let tmp = tempfile::tempdir().unwrap();
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "rust",
        "taken",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("already exists and is not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&taken).unwrap().count(),
        1,
        "nothing written"
    );
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).unwrap(),
        "mine"
    );

    // An empty directory is fine.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "rust",
        "empty",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert_ok(&o, "new into an empty directory");
    assert!(tmp.path().join("empty/src/lib.rs").is_file());
}

#[test]
fn bad_names_languages_and_sdk_paths_are_refused() {
    let _turn = crate::turn(module_path!());
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--lang", "cobol", "x"],
            "no template for language `cobol` (available: rust, js, python)",
        ),
        (
            &["--lang", "rust", "9lives"],
            "`9lives` is not a valid rust rule name: it must start with a letter",
        ),
        (&["--lang", "rust", "my.rule"], "'.' is not allowed"),
        (
            &["--lang", "rust", "x", "--sdk", "/nonexistent/sdk"],
            "no rust Sluice SDK at /nonexistent/sdk (from --sdk)",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["plugin", "new", "--dir", parent];
        full.extend_from_slice(args);
        let o = run(sluice(&full));
        assert!(!o.status.success(), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // $SLUICE_SDK is used when there is no --sdk, and --sdk wins over it.
    let o = run(
        sluice(&["plugin", "new", "--lang", "rust", "x", "--dir", parent])
            .env("SLUICE_SDK", "/nonexistent/env-sdk"),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("/nonexistent/env-sdk (from $SLUICE_SDK)"),
        "{}",
        text(&o.stderr)
    );
    let sdk = workspace().join("sdk/rust");
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "rust",
        "x",
        "--dir",
        parent,
        "--sdk",
        sdk.to_str().unwrap(),
    ])
    .env("SLUICE_SDK", "/nonexistent/env-sdk"));
    assert_ok(&o, "--sdk over $SLUICE_SDK");
    assert!(text(&o.stdout).contains("(from --sdk)"));
}
