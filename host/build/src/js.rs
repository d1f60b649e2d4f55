//! JavaScript rules: building a rule directory into a component, and the `plugin new` template.
//!
//! A JavaScript rule is a directory with a `package.json` (`name`, and `main`, default
//! `rule.js`) whose entry module imports the Sluice JavaScript SDK (`sdk/js/sluice.js`) and
//! exports `validateConfig` and `evaluate`. [`build`] runs the SDK's build script:
//!
//! ```text
//! node <sdk>/build.mjs --rule DIR --out <out_dir>/<name>.wasm --wit <the host's WIT>
//! ```
//!
//! which inlines the SDK into the rule (one ES module) and calls componentize-js with every
//! WASI feature disabled, so the component imports nothing but `sluice:rules/*`.
//!
//! * `<sdk>` is `$SLUICE_SDK_JS`, else `sdk/js` of the checkout `sluice` was built from
//!   ([`crate::scaffold::find_sdk`]); it needs its `node_modules` (`npm install --prefix sdk/js`).
//! * `node` is `$SLUICE_NODE`, else `node` on `PATH` (Node.js 20 or later).
//! * The WIT is the one this crate was compiled with (embedded), so the component matches the
//!   host that builds it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::scaffold::Template;
use crate::{BuildError, BuildOptions, BuiltRule};

/// What `BuiltRule::target` says for JavaScript rules.
pub const TARGET: &str = "js (componentize-js)";

/// The environment variable naming the `node` binary.
pub const NODE_ENV: &str = "SLUICE_NODE";

/// The WIT handed to componentize-js: the frozen 0.2.1 (the `context` resource, `parts()`, `replace-part`).
const RULES_WIT: &str = include_str!("../../../wit/released/sluice-rules-0.2.1.wit");

/// How many trailing lines of the build script's stderr an error keeps.
const STDERR_TAIL_LINES: usize = 30;

/// What [`read_package`] learns from a rule's `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsPackage {
    /// `name`: the component is `<name>.wasm`.
    pub name: String,
    /// `main`, default `rule.js`, relative to the rule directory.
    pub main: String,
}

#[derive(Deserialize)]
struct PackageJson {
    name: Option<serde_json::Value>,
    main: Option<serde_json::Value>,
}

/// Reads `dir/package.json`.
pub fn read_package(dir: &Path) -> Result<JsPackage, BuildError> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    parse_package(&text, &path)
}

/// Parses the text of a rule's `package.json` found at `path`.
pub fn parse_package(text: &str, path: &Path) -> Result<JsPackage, BuildError> {
    let bad = |message: String| BuildError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let pkg: PackageJson =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let name = match pkg.name {
        Some(serde_json::Value::String(name)) => name,
        Some(_) => return Err(bad("`name` must be a string".into())),
        None => {
            return Err(bad(
                "no `name` (the component is written as <name>.wasm)".into()
            ))
        }
    };
    check_name(&name)
        .map_err(|reason| bad(format!("`name` {name:?} is not a rule name: {reason}")))?;
    let main = match pkg.main {
        None => "rule.js".to_string(),
        Some(serde_json::Value::String(main)) if !main.trim().is_empty() => main,
        Some(_) => return Err(bad("`main` must name the rule's entry module".into())),
    };
    Ok(JsPackage { name, main })
}

/// A rule name for JavaScript (also the `.wasm` file name): ASCII letters, digits, `-` and
/// `_`, starting with a letter, at most 64 characters — a crate name's rules (npm scopes such
/// as `@org/x` are not allowed).
pub fn check_name(name: &str) -> Result<(), String> {
    crate::scaffold::check_rule_name(name)?;
    Ok(())
}

/// The SDK directory must hold the JavaScript SDK: `build.mjs`, `sluice.js`, `package.json`.
pub fn check_sdk(dir: &Path) -> Result<(), String> {
    for file in ["build.mjs", "sluice.js", "package.json"] {
        if !dir.join(file).is_file() {
            return Err(format!(
                "{} is missing (not the sdk/js directory of a Sluice checkout)",
                dir.join(file).display()
            ));
        }
    }
    Ok(())
}

/// Whether the SDK's npm dependencies are installed; the error says how to install them.
pub fn check_sdk_installed(sdk: &Path) -> Result<(), String> {
    let componentize = sdk.join("node_modules/@bytecodealliance/componentize-js/package.json");
    if componentize.is_file() {
        Ok(())
    } else {
        Err(format!(
            "the JavaScript SDK's dependencies are not installed (no {}): run `npm install --prefix {}`",
            componentize.display(),
            sdk.display()
        ))
    }
}

/// The `node` binary: `$SLUICE_NODE`, else `node`.
pub fn node() -> PathBuf {
    std::env::var_os(NODE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// The JavaScript SDK `sluice` uses: `$SLUICE_SDK_JS`, else the checkout's `sdk/js`.
pub fn sdk_dir() -> Result<PathBuf, String> {
    crate::scaffold::find_sdk(&TEMPLATE, None)
        .map(|(path, _)| path)
        .map_err(|e| e.to_string())
}

/// Builds the JavaScript rule in `dir` into `<opts.out_dir>/<name>.wasm`.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<BuiltRule, BuildError> {
    build_against(dir, opts, None)
}

/// [`build`] against the WIT at `wit` (a `.wit` file or a directory holding `rules.wit`)
/// instead of the embedded one: e.g. `wit/released/sluice-rules-0.1.5.wit`, for a component
/// of the 0.1 track the host keeps loading (the SDK builds against 0.1.5 and 0.2).
pub fn build_against(
    dir: &Path,
    opts: &BuildOptions,
    wit: Option<&Path>,
) -> Result<BuiltRule, BuildError> {
    let foreign = |message: String| BuildError::Foreign {
        dir: dir.to_path_buf(),
        message,
    };
    let package = read_package(dir)?;
    let sdk = sdk_dir().map_err(foreign)?;
    check_sdk_installed(&sdk).map_err(foreign)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| BuildError::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    let out = std::path::absolute(opts.out_dir.join(format!("{}.wasm", package.name))).map_err(
        |source| BuildError::Io {
            path: opts.out_dir.clone(),
            source,
        },
    )?;
    // The embedded WIT goes to a temporary directory, removed when `embedded` drops.
    let embedded;
    let wit_path: &Path = match wit {
        Some(path) => path,
        None => {
            embedded = WitDir::write().map_err(|source| BuildError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
            &embedded.0
        }
    };
    let node = node();
    let output = Command::new(&node)
        .arg(sdk.join("build.mjs"))
        .arg("--rule")
        .arg(dir)
        .arg("--out")
        .arg(&out)
        .arg("--wit")
        .arg(wit_path)
        .output()
        .map_err(|e| {
            foreign(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "`{}` not found: install Node.js 20 or later, or set ${NODE_ENV}",
                    node.display()
                )
            } else {
                format!("could not run {}: {e}", node.display())
            })
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(foreign(failure_message(
            &stderr,
            &output.status.to_string(),
        )));
    }
    let size = std::fs::metadata(&out)
        .map_err(|source| BuildError::Io {
            path: out.clone(),
            source,
        })?
        .len();
    Ok(BuiltRule {
        name: package.name,
        path: out,
        target: TARGET.to_string(),
        size,
    })
}

/// The build script's `error: ...` line when it wrote one (its own, clear errors), else the
/// tail of its stderr.
fn failure_message(stderr: &str, status: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .collect();
    if errors.len() == 1 {
        return errors[0].to_string();
    }
    format!(
        "building the JavaScript rule failed ({status}):\n{}",
        crate::tail(stderr.trim_end(), STDERR_TAIL_LINES)
    )
}

/// A temporary directory holding `rules.wit`, removed on drop.
struct WitDir(PathBuf);

impl WitDir {
    fn write() -> std::io::Result<WitDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sluice-wit-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let dir = WitDir(dir);
        std::fs::write(dir.0.join("rules.wit"), RULES_WIT)?;
        Ok(dir)
    }
}

impl Drop for WitDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `sluice plugin new --lang js` template (files from `host/build/templates/js/`).
pub const TEMPLATE: Template = Template {
    lang: "js",
    summary: "a JavaScript rule using sdk/js (prefixes the Subject of external mail)",
    sdk_dir: "sdk/js",
    sdk_env: "SLUICE_SDK_JS",
    check_sdk,
    check_name,
    files: &[
        crate::template_file!("js", "package.json", "package.json.tmpl"),
        crate::template_file!("js", "rule.js", "rule.js.tmpl"),
        crate::template_file!("js", "rule.test.js", "rule.test.js.tmpl"),
        crate::template_file!("js", "README.md", "README.md.tmpl"),
        crate::template_file!("js", "sluice.toml", "sluice.toml.tmpl"),
        crate::template_file!("js", ".gitignore", "gitignore.tmpl"),
        crate::template_file!("js", "fixtures/external.eml", "fixtures/external.eml"),
        crate::template_file!("js", "fixtures/internal.eml", "fixtures/internal.eml"),
    ],
    next_steps: &[
        "node --test",
        "sluice plugin build . --out target/plugins",
        "sluice run --config sluice.toml fixtures/external.eml",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsPackage, BuildError> {
        parse_package(text, Path::new("r/package.json"))
    }

    #[test]
    fn reads_name_and_main() {
        let p = parse(r#"{"name": "subject-tag-js", "main": "src/main.js", "type": "module"}"#)
            .unwrap();
        assert_eq!(
            p,
            JsPackage {
                name: "subject-tag-js".into(),
                main: "src/main.js".into()
            }
        );
        assert_eq!(parse(r#"{"name": "a"}"#).unwrap().main, "rule.js");
    }

    #[test]
    fn refuses_bad_manifests_and_names() {
        for (text, why) in [
            ("{", "not valid JSON"),
            ("{}", "no `name`"),
            (r#"{"name": 3}"#, "must be a string"),
            (r#"{"name": "@org/rule"}"#, "'@' is not allowed"),
            (r#"{"name": "9lives"}"#, "start with a letter"),
            (r#"{"name": "a", "main": ""}"#, "`main`"),
            (r#"{"name": "a", "main": 1}"#, "`main`"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("r/package.json: "), "{text}: {err}");
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_name("").is_err());
        assert_eq!(check_name("tag_external-2"), Ok(()));
    }

    #[test]
    fn keeps_the_build_scripts_own_error_line() {
        let stderr = "npm warn something\nerror: rule.js:3:9: syntax error: Unexpected token\n";
        assert_eq!(
            failure_message(stderr, "exit status: 1"),
            "rule.js:3:9: syntax error: Unexpected token"
        );
        let crash = "Error: boom\n    at x (y.js:1:1)\n";
        let msg = failure_message(crash, "exit status: 1");
        assert!(
            msg.contains("exit status: 1") && msg.contains("at x (y.js:1:1)"),
            "{msg}"
        );
    }

    #[test]
    fn the_checkouts_sdk_is_recognised() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/js");
        assert_eq!(check_sdk(&sdk), Ok(()));
        let err = check_sdk(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err();
        assert!(err.contains("build.mjs"), "{err}");
        let err = check_sdk_installed(Path::new("/nonexistent/sdk/js")).unwrap_err();
        assert!(
            err.contains("npm install --prefix /nonexistent/sdk/js"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_package_json_is_an_io_error_naming_it() {
        let err = read_package(Path::new("/nonexistent/rule")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/rule/package.json"),
            "{err}"
        );
    }

    #[test]
    fn the_template_package_is_a_rule_package() {
        let file = TEMPLATE
            .files
            .iter()
            .find(|f| f.path == "package.json")
            .unwrap();
        let text = file.text.replace("{{name}}", "tag-external");
        let p = parse(&text).unwrap();
        assert_eq!(p.name, "tag-external");
        assert_eq!(p.main, "rule.js");
        let rule = TEMPLATE.files.iter().find(|f| f.path == "rule.js").unwrap();
        assert!(
            rule.text.contains("{{sdk_path}}/sluice.js"),
            "{}",
            rule.text
        );
    }
}
