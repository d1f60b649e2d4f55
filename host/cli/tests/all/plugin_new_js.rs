//! `sluice plugin new --lang js`: the scaffolded JavaScript rule tests (`node --test`),
//! builds (componentize-js through `sdk/js/build.mjs`) and runs as generated.
//!
//! Needs Node.js 20+ (`$SLUICE_NODE` or `node` on PATH) and the SDK's dependencies:
//! `npm install --prefix sdk/js`. Without them the tests fail and say so.

use std::path::PathBuf;
use std::process::Command;

use crate::scaffold::{assert_ok, run, text, workspace};

use sluice_engine::{EngineOptions, PoolingChoice, RuleEngine, RulePlugin, StepLimits, WitTrack};

fn sdk() -> PathBuf {
    workspace().join("sdk/js")
}

/// Where the test's files go: inside the workspace's `target/`, reused between runs.
fn test_dir() -> PathBuf {
    workspace().join("target/plugin-new-js-test")
}

fn node() -> PathBuf {
    std::env::var_os("SLUICE_NODE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "node".into())
}

/// Fails (never skips) when the JavaScript toolchain is missing, saying what to run.
fn require_js_toolchain() {
    let componentize = sdk().join("node_modules/@bytecodealliance/componentize-js/package.json");
    assert!(
        componentize.is_file(),
        "the JavaScript SDK's dependencies are not installed ({} is missing): run \
         `npm install --prefix sdk/js` in the Sluice checkout",
        componentize.display()
    );
    let version = Command::new(node()).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "`{}` does not run ({version:?}): install Node.js 20 or later, or set $SLUICE_NODE",
        node().display()
    );
}

fn sluice(args: &[&str]) -> Command {
    crate::scaffold::sluice(args, "SLUICE_SDK_JS", &test_dir().join("cache"))
}

#[test]
fn a_new_js_rule_tests_builds_and_runs() {
    let _turn = crate::turn(module_path!());
    require_js_toolchain();
    let base = test_dir();
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let o = run(sluice(&[
        "plugin",
        "new",
        "--lang",
        "js",
        "tag-external",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin new --lang js");
    let out = text(&o.stdout);
    let dir = tmp.path().join("tag-external");
    for expected in [
        "created js rule `tag-external`",
        "package.json",
        "rule.js",
        "rule.test.js",
        "fixtures/external.eml",
        "next:",
        "node --test",
        "sluice plugin build . --out target/plugins",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }

    // The SDK is the checkout's, by absolute path.
    let rule = std::fs::read_to_string(dir.join("rule.js")).unwrap();
    let import = format!("{}/sluice.js", sdk().display());
    assert!(rule.contains(&import), "{rule}");
    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    assert_eq!(package["name"], "tag-external");
    assert_eq!(package["main"], "rule.js");

    // The project's own tests, under plain node.
    let o = run(Command::new(node()).arg("--test").current_dir(&dir));
    assert_ok(&o, "node --test in the new rule");
    let tests = text(&o.stdout);
    assert!(
        tests.contains("ok 1 - prefixes mail from outside"),
        "{tests}"
    );
    assert!(tests.contains("# fail 0"), "{tests}");

    let out_dir = tmp.path().join("out");
    let o = run(sluice(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    assert_ok(&o, "sluice plugin build");
    let built = text(&o.stdout);
    assert!(
        built.contains("built tag-external (js (componentize-js), "),
        "{built}"
    );
    let wasm = out_dir.join("tag-external.wasm");
    assert!(wasm.is_file(), "{built}");

    let engine = RuleEngine::new(EngineOptions {
        cache_dir: Some(base.join("cache")),
        pooling: PoolingChoice::Off,
        ..Default::default()
    })
    .unwrap();
    let plugin = RulePlugin::load_file(&engine, "tag-external", &wasm).unwrap();
    // The template builds for the current track: the `context` resource of WIT 0.2.
    assert_eq!(plugin.wit_track(), WitTrack::V0_2);
    assert!(
        !plugin.uses_wasi(),
        "componentize-js with every feature disabled imports no WASI"
    );
    let limits = StepLimits::default();
    crate::scaffold::assert_config_is_validated(&engine, &plugin, &limits);

    crate::scaffold::assert_readme_flow(sluice, &dir, &wasm, &tmp.path().join("mail"));
}

/// Mistakes in a rule are reported as one line naming the file (and line) to fix, before
/// componentize-js runs.
#[test]
fn build_errors_name_what_to_fix() {
    let _turn = crate::turn(module_path!());
    require_js_toolchain();
    let base = test_dir();
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let rule = tmp.path().join("broken");
    std::fs::create_dir_all(&rule).unwrap();
    std::fs::write(
        rule.join("package.json"),
        r#"{"name": "broken", "type": "module"}"#,
    )
    .unwrap();
    let import = format!(
        "import {{ defineRule }} from '{}/sluice.js';\n",
        sdk().display()
    );
    let exports =
        "export const { validateConfig, evaluate } = defineRule({ evaluate: () => [] });\n";
    let cases = [
        (
            format!("{import}\nconst x = ;\n{exports}"),
            "rule.js:3:11: syntax error",
        ),
        (
            format!("{import}import {{ y }} from './helpers.js';\n{exports}"),
            "may import only the Sluice SDK",
        ),
        (
            format!("{import}export const evaluate = () => [];\n"),
            "does not export validateConfig",
        ),
    ];
    for (source, expected) in cases {
        std::fs::write(rule.join("rule.js"), &source).unwrap();
        std::fs::write(rule.join("helpers.js"), "export const y = 1;\n").unwrap();
        let o = run(sluice(&[
            "plugin",
            "build",
            rule.to_str().unwrap(),
            "--out",
            tmp.path().join("out").to_str().unwrap(),
        ]));
        assert!(!o.status.success(), "{source}");
        let err = text(&o.stderr);
        assert!(err.contains(expected), "{source}\n--- stderr\n{err}");
        assert!(err.contains(rule.to_str().unwrap()), "{err}");
    }

    // A name that cannot be a file name is refused from package.json.
    std::fs::write(rule.join("package.json"), r#"{"name": "@org/rule"}"#).unwrap();
    let o = run(sluice(&[
        "plugin",
        "build",
        rule.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not a rule name"),
        "{}",
        text(&o.stderr)
    );
}
