//! Python rules: building a rule directory into a component, and the `plugin new` template.
//!
//! A Python rule directory holds `pyproject.toml` (`[project] name`: the component's name)
//! and `app.py`, the module componentize-py builds (it defines `WitWorld`, normally
//! `WitWorld = sluice_sdk.export(MyRule)`). [`build`] runs the SDK's build script:
//!
//! ```text
//! <python> <sdk>/build.py --rule <dir> --out <out_dir>/<name>.wasm [--wit <checkout>/wit/released/sluice-rules-0.2.1.wit]
//! ```
//!
//! which runs `componentize-py -d WIT -w rule componentize app -p <dir> -p <sdk>`.
//! `<sdk>` is `$SLUICE_SDK_PYTHON`, else `sdk/python` of the checkout `sluice` was built
//! from; `<python>` is `$SLUICE_PYTHON`, else the checkout's `.venv/bin/python` when it
//! exists, else `python3`. componentize-py comes from `sdk/python/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scaffold::Template;
use crate::{tail, BuildError, BuildOptions, BuiltRule, STDERR_TAIL_LINES};

/// What [`BuiltRule::target`] says for a Python rule.
pub const TARGET: &str = "python (componentize-py)";
/// Overrides the SDK directory (`sdk/python` of a checkout).
pub const SDK_ENV: &str = "SLUICE_SDK_PYTHON";
/// Overrides the Python interpreter that runs `build.py`.
pub const PYTHON_ENV: &str = "SLUICE_PYTHON";
/// How to get componentize-py.
pub const INSTALL_HINT: &str = "pip install -r sdk/python/requirements.txt";

/// The root of the checkout this crate was compiled from (`host/build/../..`).
const CHECKOUT_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The WIT Python rules are built against: the frozen 0.2.1 (the `context` resource, `parts()`, `replace-part`).
const PYTHON_WIT: &str = "wit/released/sluice-rules-0.2.1.wit";

/// Builds the Python rule in `dir` into `<opts.out_dir>/<name>.wasm`.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<BuiltRule, BuildError> {
    build_against(dir, opts, None)
}

/// [`build`] against the WIT at `wit` (a `.wit` file or a directory) instead of the
/// checkout's 0.2.1: e.g. `wit/released/sluice-rules-0.1.5.wit`, for a component of the 0.1
/// track the host keeps loading (the SDK builds against 0.1.5 and 0.2).
pub fn build_against(
    dir: &Path,
    opts: &BuildOptions,
    wit: Option<&Path>,
) -> Result<BuiltRule, BuildError> {
    let foreign = |message: String| BuildError::Foreign {
        dir: dir.to_path_buf(),
        message,
    };
    let name = read_project_name(dir)?;
    if !dir.join("app.py").is_file() {
        return Err(foreign(
            "no app.py: the module componentize-py builds (it must define `WitWorld`, e.g. \
             `WitWorld = sluice_sdk.export(MyRule)`)"
                .into(),
        ));
    }
    let sdk = sdk_dir();
    let script = sdk.join("build.py");
    if !script.is_file() {
        return Err(foreign(format!(
            "no Python SDK build script at {} (set ${SDK_ENV} to the sdk/python directory of a \
             Sluice checkout)",
            script.display()
        )));
    }
    let python = python();
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| BuildError::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    let out = opts.out_dir.join(format!("{name}.wasm"));
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--rule")
        .arg(dir)
        .arg("--out")
        .arg(&out);
    match wit {
        Some(wit) => {
            cmd.arg("--wit").arg(wit);
        }
        None => {
            let wit = Path::new(CHECKOUT_ROOT).join(PYTHON_WIT);
            if wit.is_file() {
                // The contract of the host this crate belongs to.
                cmd.arg("--wit").arg(wit);
            }
        }
    }
    let output = cmd.output().map_err(|e| {
        foreign(format!(
            "could not run {}: {e} (set ${PYTHON_ENV} to a Python 3 with componentize-py: \
             {INSTALL_HINT})",
            python.display()
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = format!("{stdout}\n{stderr}");
        return Err(foreign(format!(
            "{} {} failed ({}):\n{}",
            python.display(),
            script.display(),
            output.status,
            tail(text.trim(), STDERR_TAIL_LINES)
        )));
    }
    let size = std::fs::metadata(&out)
        .map_err(|source| BuildError::Io {
            path: out.clone(),
            source,
        })?
        .len();
    Ok(BuiltRule {
        name,
        path: out,
        target: TARGET.to_string(),
        size,
    })
}

/// The SDK directory: `$SLUICE_SDK_PYTHON`, else the checkout's `sdk/python`.
pub fn sdk_dir() -> PathBuf {
    match std::env::var_os(SDK_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(CHECKOUT_ROOT).join("sdk/python"),
    }
}

/// The interpreter for `build.py`: `$SLUICE_PYTHON`, else the checkout's
/// `.venv/bin/python` if it exists, else `python3`.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = Path::new(CHECKOUT_ROOT).join(".venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// `[project] name` of `dir/pyproject.toml`, checked with [`check_name`].
pub fn read_project_name(dir: &Path) -> Result<String, BuildError> {
    let path = dir.join("pyproject.toml");
    if !path.is_file() {
        return Err(BuildError::MissingManifest {
            dir: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    parse_project_name(&text, &path)
}

/// `[project] name` of the text of a `pyproject.toml` found at `path`.
pub fn parse_project_name(text: &str, path: &Path) -> Result<String, BuildError> {
    let bad = |message: String| BuildError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let name = table
        .get("project")
        .ok_or_else(|| bad("no [project] table".into()))?
        .get("name")
        .ok_or_else(|| bad("[project] has no `name`".into()))?
        .as_str()
        .ok_or_else(|| bad("[project] name is not a string".into()))?;
    check_name(name).map_err(|reason| bad(format!("[project] name `{name}`: {reason}")))?;
    Ok(name.to_string())
}

/// A rule name that works as a directory, a file stem and a step name: ASCII letters,
/// digits, `-` and `_`, starting with a letter, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::scaffold::check_rule_name(name)?;
    // The modules componentize-py generates or the SDK provides would shadow the rule's.
    let module = name.replace('-', "_");
    if ["app", "sluice_sdk", "wit_world", "componentize_py_types"].contains(&module.as_str()) {
        return Err("it clashes with a module of the build".into());
    }
    Ok(())
}

/// The SDK directory must hold the `sluice_sdk` package and `build.py`.
fn check_sdk(dir: &Path) -> Result<(), String> {
    for needed in ["sluice_sdk/__init__.py", "build.py"] {
        if !dir.join(needed).is_file() {
            return Err(format!("{} is missing", dir.join(needed).display()));
        }
    }
    Ok(())
}

/// The `sluice plugin new --lang python` template (from `host/build/templates/python/`).
pub const TEMPLATE: Template = Template {
    lang: "python",
    summary:
        "a Python rule using sluice_sdk and componentize-py (prefixes the Subject of external mail)",
    sdk_dir: "sdk/python",
    sdk_env: SDK_ENV,
    check_sdk,
    check_name,
    files: &[
        crate::template_file!("python", "pyproject.toml", "pyproject.toml.tmpl"),
        crate::template_file!("python", "app.py", "app.py.tmpl"),
        crate::template_file!("python", "tests/__init__.py", "tests/__init__.py.tmpl"),
        crate::template_file!("python", "tests/test_app.py", "tests/test_app.py.tmpl"),
        crate::template_file!("python", "README.md", "README.md.tmpl"),
        crate::template_file!("python", "sluice.toml", "sluice.toml.tmpl"),
        crate::template_file!("python", ".gitignore", "gitignore.tmpl"),
        crate::template_file!("python", "fixtures/external.eml", "fixtures/external.eml"),
        crate::template_file!("python", "fixtures/internal.eml", "fixtures/internal.eml"),
    ],
    next_steps: &[
        "python3 -m unittest -v",
        "sluice plugin build . --out target/plugins",
        "sluice run --config sluice.toml fixtures/external.eml",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(text: &str) -> Result<String, BuildError> {
        parse_project_name(text, Path::new("r/pyproject.toml"))
    }

    #[test]
    fn reads_the_project_name() {
        let text =
            "[project]\nname = \"subject-tag-python\"\nversion = \"0.1.0\"\n[tool.x]\na = 1\n";
        assert_eq!(name_of(text).unwrap(), "subject-tag-python");
    }

    #[test]
    fn refuses_manifests_without_a_usable_name() {
        for (text, why) in [
            ("[tool.poetry]\nname = \"a\"\n", "no [project] table"),
            ("[project]\nversion = \"1\"\n", "has no `name`"),
            ("[project]\nname = 3\n", "not a string"),
            ("[project]\nname = \"my rule\"\n", "' ' is not allowed"),
            ("[project]\nname = \"../x\"\n", "'.' is not allowed"),
            ("[project]\nname = \"2x\"\n", "start with a letter"),
            ("[project]\nname = \"wit-world\"\n", "clashes"),
            ("[project\nname = \"a\"", "r/pyproject.toml: "),
        ] {
            let err = name_of(text).unwrap_err();
            assert!(matches!(err, BuildError::Manifest { .. }), "{text}: {err}");
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn checks_names() {
        for good in ["tag-external", "rule_2", "A"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-x", "a/b", "crème", "app", "sluice-sdk"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn a_directory_without_pyproject_or_app_is_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-py-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = BuildOptions::new(dir.join("out"));
        assert!(matches!(
            build(&dir, &opts),
            Err(BuildError::MissingManifest { .. })
        ));
        std::fs::write(dir.join("pyproject.toml"), "[project]\nname = \"r\"\n").unwrap();
        let err = build(&dir, &opts).unwrap_err();
        assert!(err.to_string().contains("no app.py"), "{err}");
        assert!(!dir.join("out").exists(), "nothing built");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_template_is_a_python_rule_project() {
        let manifest = TEMPLATE
            .files
            .iter()
            .find(|f| f.path == "pyproject.toml")
            .unwrap();
        let text = manifest.text.replace("{{name}}", "tag-external");
        assert_eq!(name_of(&text).unwrap(), "tag-external");
        assert!(TEMPLATE.files.iter().any(|f| f.path == "app.py"));
        let sdk = Path::new(CHECKOUT_ROOT).join("sdk/python");
        assert_eq!(check_sdk(&sdk), Ok(()));
        assert!(check_sdk(Path::new(CHECKOUT_ROOT)).is_err());
    }
}
