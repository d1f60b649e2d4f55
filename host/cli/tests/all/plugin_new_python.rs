//! `sluice plugin new --lang python`: the scaffolded rule tests, builds and runs as generated.
//!
//! Needs componentize-py in the Python `sluice plugin build` uses (`$SLUICE_PYTHON`, else the
//! checkout's `.venv/bin/python`, else `python3`): `.venv/bin/pip install -r
//! sdk/python/requirements.txt`. Without it the test fails and says so.

use std::path::PathBuf;
use std::process::Command;

use crate::scaffold::{assert_ok, run, text, workspace};

use sluice_engine::{EngineOptions, PoolingChoice, RuleEngine, RulePlugin, StepLimits, WitTrack};

fn test_dir() -> PathBuf {
    workspace().join("target/plugin-new-python-test")
}

/// The interpreter `sluice plugin build` picks (see `sluice_build::python::python`).
fn python() -> PathBuf {
    sluice_build::python::python()
}

fn sluice(args: &[&str]) -> Command {
    crate::scaffold::sluice(args, "SLUICE_SDK_PYTHON", &test_dir().join("cache"))
}

/// Fails (never skips) when componentize-py is missing, saying how to install it.
fn require_componentize_py() {
    let python = python();
    let o = Command::new(&python)
        .arg(workspace().join("sdk/python/build.py"))
        .arg("--check-tool")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): create the venv and install the Python build tools: \
                 python3 -m venv .venv && .venv/bin/pip install -r sdk/python/requirements.txt",
                python.display()
            )
        });
    assert!(
        o.status.success(),
        "componentize-py is not installed for {}: run `.venv/bin/pip install -r \
         sdk/python/requirements.txt` in the checkout (or set $SLUICE_PYTHON):\n{}",
        python.display(),
        text(&o.stderr)
    );
}

#[test]
fn a_new_python_rule_tests_builds_and_runs() {
    let _turn = crate::turn(module_path!());
    require_componentize_py();
    let base = test_dir();
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "python",
        "tag-external",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin new");
    let out = text(&o.stdout);
    let dir = tmp.path().join("tag-external");
    for expected in [
        "created python rule `tag-external`",
        "pyproject.toml",
        "app.py",
        "tests/test_app.py",
        "fixtures/external.eml",
        "next:",
        "python3 -m unittest",
        "sluice plugin build . --out target/plugins",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    let sdk = workspace().join("sdk/python");
    let tests_init = std::fs::read_to_string(dir.join("tests/__init__.py")).unwrap();
    assert!(tests_init.contains(sdk.to_str().unwrap()), "{tests_init}");

    // The project's own tests, with plain Python (no componentize-py involved).
    let o = run(Command::new(python())
        .args(["-m", "unittest", "-v"])
        .env_remove("SLUICE_SDK_PYTHON")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&dir));
    assert_ok(&o, "python -m unittest in the new project");
    let test_output = text(&o.stderr);
    for expected in ["test_prefixes_mail_from_outside", "test_fixtures", "OK"] {
        assert!(test_output.contains(expected), "{test_output}");
    }

    let out_dir = tmp.path().join("out");
    let o = run(sluice(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin build");
    assert!(
        text(&o.stdout).contains("python (componentize-py)"),
        "{}",
        text(&o.stdout)
    );
    let wasm = out_dir.join("tag-external.wasm");
    assert!(wasm.is_file(), "{}", text(&o.stdout));

    let engine = RuleEngine::new(EngineOptions {
        cache_dir: Some(base.join("cache/compiled")),
        pooling: PoolingChoice::Off,
        ..Default::default()
    })
    .unwrap();
    let plugin = RulePlugin::load_file(&engine, "tag-external", &wasm).unwrap();
    // The template builds for the current track: the `context` resource of WIT 0.2.
    assert_eq!(plugin.wit_track(), WitTrack::V0_2);
    let limits = StepLimits {
        timeout: std::time::Duration::from_secs(5),
        memory_bytes: 256 << 20,
        ..StepLimits::default()
    };
    crate::scaffold::assert_config_is_validated(&engine, &plugin, &limits);

    crate::scaffold::assert_readme_flow(sluice, &dir, &wasm, &tmp.path().join("mail"));
}

#[test]
fn a_python_rule_without_app_py_names_what_is_missing() {
    let _turn = crate::turn(module_path!());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("pyproject.toml"),
        "[project]\nname = \"half\"\n",
    )
    .unwrap();
    let o = run(sluice(&[
        "plugin",
        "build",
        tmp.path().to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]));
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no app.py"), "{}", text(&o.stderr));
}
