//! The JavaScript and Python SDKs' own unit tests (`node --test`, `python -m unittest`), run
//! from the workspace's test command so CI runs them with everything else.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command, what: &str, install: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {install}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
}

#[test]
fn the_javascript_sdk_tests_pass() {
    let sdk = root().join("sdk/js");
    assert!(
        sdk.join("node_modules").is_dir(),
        "sdk/js has no node_modules: run `npm install --prefix sdk/js`"
    );
    run(
        Command::new("node")
            .arg("--test")
            .arg("test/")
            .current_dir(&sdk),
        "node --test sdk/js/test/",
        "install Node.js 20+",
    );
}

#[test]
fn the_python_sdk_tests_pass() {
    let venv_python = root().join(".venv/bin/python");
    let python = if venv_python.is_file() {
        venv_python
    } else {
        PathBuf::from("python3")
    };
    run(
        Command::new(python)
            .args(["-m", "unittest", "discover", "-s", "tests", "-t", "."])
            .current_dir(root().join("sdk/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "python -m unittest in sdk/python",
        "install Python 3 (and `pip install -r sdk/python/requirements.txt` in .venv)",
    );
}
