//! Builds Rust rule crates into Sluice rule components.
//!
//! Used by `sluice plugin build DIR... --out DIR` and by the integration tests, which build
//! `plugins/*` and `tests/rules/*` from source.
//!
//! For each crate directory [`build_rules`]:
//! 1. reads `DIR/Cargo.toml`: the package name, that the library is a `cdylib`, and the
//!    target from `[package.metadata.sluice] target` (default [`DEFAULT_TARGET`],
//!    `wasm32-unknown-unknown`; [`WASIP2_TARGET`] for rules that need WASI);
//! 2. builds the crates with as few cargo runs as possible: one per (target, workspace), with
//!    `-p` for each crate; crates of different workspaces share `--target-dir` when one is
//!    given, so their dependencies are compiled once;
//! 3. turns each `wasm32-unknown-unknown` core module into a component in-process
//!    (`wit-component`, from the `component-type` custom section `wit-bindgen` embeds), or
//!    copies the `wasm32-wasip2` output, which already is a component;
//! 4. writes `<out_dir>/<package-name>.wasm` (via a temporary file and a rename, so a reader
//!    never sees half a component).
//!
//! ```no_run
//! use std::path::PathBuf;
//! let opts = sluice_build::BuildOptions::new("target/plugins");
//! let built = sluice_build::build_rules(&[PathBuf::from("plugins/banner")], &opts)?;
//! println!("{} -> {} ({} bytes)", built[0].name, built[0].path.display(), built[0].size);
//! # Ok::<(), sluice_build::BuildError>(())
//! ```
//!
//! Calling this from a test run by `cargo test`: pass a `target_dir` of its own (e.g.
//! `target/rules`), so the nested cargo never waits for the build-directory lock held by the
//! outer one.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

pub mod js;
pub mod python;
pub mod scaffold;

/// The target a rule crate builds for unless its manifest says otherwise: the component
/// imports nothing but `sluice:rules`, so the host needs no WASI context for it.
pub const DEFAULT_TARGET: &str = "wasm32-unknown-unknown";
/// The target for rules that need WASI (stdio, clocks, random ...); its output already is a
/// component.
pub const WASIP2_TARGET: &str = "wasm32-wasip2";

/// How many trailing lines of cargo's stderr a [`BuildError::Cargo`] keeps.
const STDERR_TAIL_LINES: usize = 60;

/// Options for [`build_rules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Where `<package-name>.wasm` components are written (created if missing).
    pub out_dir: PathBuf,
    /// cargo's `--target-dir`. `None`: each crate's workspace default (honouring
    /// `CARGO_TARGET_DIR`).
    pub target_dir: Option<PathBuf>,
    /// Build with `--release` (default `true`).
    pub release: bool,
    /// The cargo binary. `None`: `$CARGO` (set when running under cargo), else `cargo`.
    pub cargo: Option<PathBuf>,
}

impl BuildOptions {
    /// Release builds into `out_dir`, default target dir, default cargo.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            out_dir: out_dir.into(),
            target_dir: None,
            release: true,
            cargo: None,
        }
    }

    fn cargo(&self) -> PathBuf {
        self.cargo
            .clone()
            .or_else(|| std::env::var_os("CARGO").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("cargo"))
    }
}

impl Default for BuildOptions {
    /// Release builds into `target/plugins`.
    fn default() -> Self {
        BuildOptions::new("target/plugins")
    }
}

/// One built component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRule {
    /// The package name (`[package] name`).
    pub name: String,
    /// `<out_dir>/<name>.wasm`.
    pub path: PathBuf,
    /// The Rust target it was built for.
    pub target: String,
    /// Size of the component in bytes.
    pub size: u64,
}

/// Why a build failed. Every variant names the crate (or directory) concerned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The directory has no rule manifest.
    #[error(
        "{}: not a rule directory: expected Cargo.toml (Rust), package.json (JavaScript) or pyproject.toml (Python)",
        dir.display()
    )]
    MissingManifest {
        /// The directory given.
        dir: PathBuf,
    },
    /// `Cargo.toml` could not be read or lacks what a rule crate needs.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The crate does not build a `cdylib`, so there is no `.wasm` to take.
    #[error(
        "{}: crate `{name}` is not a cdylib; add `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
        path.display()
    )]
    NotCdylib {
        /// Package name.
        name: String,
        /// The manifest.
        path: PathBuf,
    },
    /// `[package.metadata.sluice] target` names a target this crate cannot turn into a rule.
    #[error(
        "crate `{name}`: unsupported target `{target}` (use `{DEFAULT_TARGET}` or `{WASIP2_TARGET}`)"
    )]
    UnsupportedTarget {
        /// Package name.
        name: String,
        /// The target asked for.
        target: String,
    },
    /// Two crates would write the same `<out_dir>/<name>.wasm`.
    #[error("two crates are named `{name}`: {} and {}", first.display(), second.display())]
    DuplicateName {
        /// The package name.
        name: String,
        /// One manifest.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// The Rust standard library for the target is not installed.
    #[error("the Rust target `{target}` is not installed: run `rustup target add {target}`")]
    MissingTarget {
        /// The target.
        target: String,
    },
    /// cargo could not be started.
    #[error("could not run {}: {source}", cargo.display())]
    Spawn {
        /// The cargo binary.
        cargo: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `cargo metadata` failed or printed something unexpected.
    #[error("cargo metadata for {}: {message}", manifest.display())]
    Metadata {
        /// The manifest asked about.
        manifest: PathBuf,
        /// What went wrong (with cargo's stderr).
        message: String,
    },
    /// `cargo build` failed.
    #[error("cargo build of {crates} for {target} failed ({status}):\n{stderr_tail}")]
    Cargo {
        /// The crates of that cargo invocation, comma-separated.
        crates: String,
        /// The target.
        target: String,
        /// The exit status.
        status: String,
        /// The last lines of cargo's stderr.
        stderr_tail: String,
    },
    /// cargo succeeded but reported no `.wasm` for the crate.
    #[error("cargo reported no .wasm artifact for crate `{name}`")]
    NoArtifact {
        /// Package name.
        name: String,
    },
    /// `wit-component` could not turn the core module into a component (typically: the crate
    /// does not use `sluice_sdk::export_rule!`, so the module has no `component-type` section,
    /// or it imports something outside the WIT world).
    #[error("crate `{name}`: turning {} into a component failed: {message}", module.display())]
    Componentize {
        /// Package name.
        name: String,
        /// The core module.
        module: PathBuf,
        /// wit-component's error chain.
        message: String,
    },
    /// A JavaScript or Python rule did not build (the language's tool failed, or is missing).
    #[error("{}: {message}", dir.display())]
    Foreign {
        /// The rule directory.
        dir: PathBuf,
        /// What failed, with the tool's output and what to install or fix.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What [`read_manifest`] learns from a rule crate's `Cargo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleManifest {
    /// The `Cargo.toml`.
    pub manifest_path: PathBuf,
    /// `[package] name`.
    pub name: String,
    /// The library's name (`[lib] name`, else the package name with `-` -> `_`): the stem of
    /// the `.wasm` cargo writes.
    pub lib_name: String,
    /// `[package.metadata.sluice] target`, default [`DEFAULT_TARGET`].
    pub target: String,
}

#[derive(Deserialize)]
struct CargoToml {
    package: Option<PackageSection>,
    lib: Option<LibSection>,
}

#[derive(Deserialize)]
struct PackageSection {
    name: Option<String>,
    #[serde(default)]
    metadata: Option<MetadataSection>,
}

#[derive(Deserialize)]
struct MetadataSection {
    sluice: Option<SluiceSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SluiceSection {
    target: Option<String>,
}

#[derive(Deserialize)]
struct LibSection {
    name: Option<String>,
    #[serde(rename = "crate-type", alias = "crate_type")]
    crate_type: Option<Vec<String>>,
}

/// Reads `dir/Cargo.toml`.
pub fn read_manifest(dir: &Path) -> Result<RuleManifest, BuildError> {
    let path = dir.join("Cargo.toml");
    if !path.is_file() {
        return Err(BuildError::MissingManifest {
            dir: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    parse_manifest(&text, &path)
}

/// Parses the text of a rule crate's `Cargo.toml` found at `manifest_path`.
pub fn parse_manifest(text: &str, manifest_path: &Path) -> Result<RuleManifest, BuildError> {
    let bad = |message: String| BuildError::Manifest {
        path: manifest_path.to_path_buf(),
        message,
    };
    let toml: CargoToml = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let package = toml
        .package
        .ok_or_else(|| bad("no [package] section (a workspace root is not a rule crate)".into()))?;
    let name = package
        .name
        .ok_or_else(|| bad("[package] has no `name`".into()))?;
    let target = package
        .metadata
        .and_then(|m| m.sluice)
        .and_then(|s| s.target)
        .unwrap_or_else(|| DEFAULT_TARGET.to_string());
    if target != DEFAULT_TARGET && target != WASIP2_TARGET {
        return Err(BuildError::UnsupportedTarget { name, target });
    }
    let lib = toml.lib.unwrap_or(LibSection {
        name: None,
        crate_type: None,
    });
    if !lib
        .crate_type
        .unwrap_or_default()
        .iter()
        .any(|t| t == "cdylib")
    {
        return Err(BuildError::NotCdylib {
            name,
            path: manifest_path.to_path_buf(),
        });
    }
    let lib_name = lib.name.unwrap_or_else(|| name.replace('-', "_"));
    Ok(RuleManifest {
        manifest_path: manifest_path.to_path_buf(),
        name,
        lib_name,
        target,
    })
}

/// The language of a rule directory, by its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLang {
    /// `Cargo.toml`.
    Rust,
    /// `package.json` (and no `Cargo.toml`).
    Js,
    /// `pyproject.toml` (and no `Cargo.toml`).
    Python,
}

/// Which language `dir` holds a rule in, if any.
pub fn rule_lang(dir: &Path) -> Option<RuleLang> {
    if dir.join("Cargo.toml").is_file() {
        Some(RuleLang::Rust)
    } else if dir.join("package.json").is_file() {
        Some(RuleLang::Js)
    } else if dir.join("pyproject.toml").is_file() {
        Some(RuleLang::Python)
    } else {
        None
    }
}

/// Builds the rules in `dirs` (Rust crates, JavaScript or Python rule directories) and writes
/// one component per rule to `opts.out_dir`. Returns them in the order of `dirs` (a directory
/// given twice is built once).
pub fn build_rules(dirs: &[PathBuf], opts: &BuildOptions) -> Result<Vec<BuiltRule>, BuildError> {
    let mut rust_dirs = Vec::new();
    for dir in dirs {
        if matches!(rule_lang(dir), Some(RuleLang::Rust) | None) {
            rust_dirs.push(dir.clone());
        }
    }
    let mut rust = build_rust_rules(&rust_dirs, opts)?.into_iter();
    let mut built: Vec<BuiltRule> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let key = canonical(dir);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let rule = match rule_lang(dir) {
            Some(RuleLang::Js) => js::build(dir, opts)?,
            Some(RuleLang::Python) => python::build(dir, opts)?,
            _ => match rust.next() {
                Some(rule) => rule,
                None => continue,
            },
        };
        if let Some(other) = built.iter().find(|b| b.name == rule.name) {
            return Err(BuildError::DuplicateName {
                name: rule.name.clone(),
                first: other.path.clone(),
                second: dir.clone(),
            });
        }
        built.push(rule);
    }
    Ok(built)
}

/// [`build_rules`] for Rust crates only.
fn build_rust_rules(dirs: &[PathBuf], opts: &BuildOptions) -> Result<Vec<BuiltRule>, BuildError> {
    let mut crates: Vec<RuleManifest> = Vec::new();
    for dir in dirs {
        let mut manifest = read_manifest(dir)?;
        manifest.manifest_path = canonical(&manifest.manifest_path);
        if crates
            .iter()
            .any(|c| c.manifest_path == manifest.manifest_path)
        {
            continue;
        }
        if let Some(other) = crates.iter().find(|c| c.name == manifest.name) {
            return Err(BuildError::DuplicateName {
                name: manifest.name,
                first: other.manifest_path.clone(),
                second: manifest.manifest_path,
            });
        }
        crates.push(manifest);
    }

    // Group by target, then by workspace: one cargo invocation per group.
    let mut modules: Vec<Option<PathBuf>> = vec![None; crates.len()];
    let mut targets: Vec<&str> = crates.iter().map(|c| c.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    for target in targets {
        let mut pending: Vec<usize> = (0..crates.len())
            .filter(|&i| crates[i].target == target)
            .collect();
        while let Some(&first) = pending.first() {
            let members = workspace_members(&crates[first].manifest_path, opts)?;
            let (group, rest): (Vec<usize>, Vec<usize>) = pending
                .iter()
                .partition(|&&i| i == first || members.contains(&crates[i].manifest_path));
            let group_crates: Vec<&RuleManifest> = group.iter().map(|&i| &crates[i]).collect();
            let artifacts = cargo_build(&group_crates, target, opts)?;
            for (&i, artifact) in group.iter().zip(artifacts) {
                modules[i] = Some(artifact);
            }
            pending = rest;
        }
    }

    std::fs::create_dir_all(&opts.out_dir).map_err(|source| BuildError::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    crates
        .iter()
        .zip(modules)
        .map(|(krate, module)| {
            let module = module.ok_or_else(|| BuildError::NoArtifact {
                name: krate.name.clone(),
            })?;
            write_component(krate, &module, &opts.out_dir)
        })
        .collect()
}

/// The canonical manifest paths of the packages in the workspace of `manifest`.
fn workspace_members(manifest: &Path, opts: &BuildOptions) -> Result<HashSet<PathBuf>, BuildError> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .cargo_path(opts.cargo())
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .map_err(|e| BuildError::Metadata {
            manifest: manifest.to_path_buf(),
            message: match e {
                cargo_metadata::Error::CargoMetadata { stderr } => tail(&stderr, STDERR_TAIL_LINES),
                other => other.to_string(),
            },
        })?;
    Ok(metadata
        .packages
        .iter()
        .map(|p| canonical(p.manifest_path.as_std_path()))
        .collect())
}

/// Runs one `cargo build` for crates of one workspace and returns each crate's `.wasm`, in
/// the order of `crates`.
fn cargo_build(
    crates: &[&RuleManifest],
    target: &str,
    opts: &BuildOptions,
) -> Result<Vec<PathBuf>, BuildError> {
    let cargo = opts.cargo();
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--message-format",
        "json-render-diagnostics",
        "--target",
        target,
    ]);
    cmd.arg("--manifest-path").arg(&crates[0].manifest_path);
    for krate in crates {
        cmd.args(["-p", &krate.name]);
    }
    if opts.release {
        cmd.arg("--release");
    }
    if let Some(dir) = &opts.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    let output = cmd.output().map_err(|source| BuildError::Spawn {
        cargo: cargo.clone(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("target may not be installed") {
            return Err(BuildError::MissingTarget {
                target: target.to_string(),
            });
        }
        return Err(BuildError::Cargo {
            crates: crates
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            target: target.to_string(),
            status: output.status.to_string(),
            stderr_tail: tail(&stderr, STDERR_TAIL_LINES),
        });
    }
    let artifacts = wasm_artifacts(&String::from_utf8_lossy(&output.stdout));
    crates
        .iter()
        .map(|krate| {
            artifacts
                .iter()
                .find(|(manifest, _)| *manifest == krate.manifest_path)
                .map(|(_, wasm)| wasm.clone())
                .ok_or_else(|| BuildError::NoArtifact {
                    name: krate.name.clone(),
                })
        })
        .collect()
}

/// `(canonical manifest path, .wasm path)` of every cdylib in cargo's JSON messages.
fn wasm_artifacts(json_lines: &str) -> Vec<(PathBuf, PathBuf)> {
    cargo_metadata::Message::parse_stream(json_lines.as_bytes())
        .filter_map(|m| match m {
            Ok(cargo_metadata::Message::CompilerArtifact(a)) => Some(a),
            _ => None,
        })
        .filter(|a| a.target.kind.contains(&cargo_metadata::TargetKind::CDyLib))
        .filter_map(|a| {
            let wasm = a
                .filenames
                .into_iter()
                .find(|f| f.extension() == Some("wasm"))?;
            Some((
                canonical(a.manifest_path.as_std_path()),
                wasm.into_std_path_buf(),
            ))
        })
        .collect()
}

/// Turns the built `.wasm` into `<out_dir>/<name>.wasm`.
fn write_component(
    krate: &RuleManifest,
    module: &Path,
    out_dir: &Path,
) -> Result<BuiltRule, BuildError> {
    let bytes = std::fs::read(module).map_err(|source| BuildError::Io {
        path: module.to_path_buf(),
        source,
    })?;
    let component = if is_component(&bytes) {
        bytes
    } else if !has_component_type(&bytes) {
        return Err(BuildError::Componentize {
            name: krate.name.clone(),
            module: module.to_path_buf(),
            message: "the module has no `component-type` custom section, so it exports no rule: \
                      does the crate call `sluice_sdk::export_rule!`?"
                .into(),
        });
    } else {
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&bytes)
            .and_then(|encoder| encoder.encode())
            .map_err(|e| BuildError::Componentize {
                name: krate.name.clone(),
                module: module.to_path_buf(),
                message: format!("{e:#}"),
            })?
    };
    let component = strip_dwarf(&component).map_err(|e| BuildError::Componentize {
        name: krate.name.clone(),
        module: module.to_path_buf(),
        message: format!("stripping debug info: {e}"),
    })?;
    let path = out_dir.join(format!("{}.wasm", krate.name));
    let tmp = out_dir.join(format!(".{}.wasm.{}.tmp", krate.name, std::process::id()));
    std::fs::write(&tmp, &component)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(BuiltRule {
        name: krate.name.clone(),
        path,
        target: krate.target.clone(),
        size: component.len() as u64,
    })
}

/// Removes the DWARF custom sections (`.debug_*`) from a module or component, nested ones
/// included, keeping everything else byte for byte (the `name` section stays, so traps still
/// show function names). The workspace's release profile keeps line tables, and the
/// precompiled std brings its own: about 1.9 MB of a 2 MB rule, which the host would
/// otherwise hash, cache and load for nothing.
fn strip_dwarf(wasm: &[u8]) -> Result<Vec<u8>, wasmparser::BinaryReaderError> {
    use wasmparser::{Chunk, Parser, Payload};

    let mut out = Vec::with_capacity(wasm.len());
    let mut parser = Parser::new(0);
    let mut pos = 0;
    loop {
        let (payload, consumed) = match parser.parse(&wasm[pos..], true)? {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            Chunk::NeedMoreData(_) => unreachable!("all data is given (eof = true)"),
        };
        match &payload {
            Payload::End(_) => break,
            Payload::CustomSection(c) if c.name().starts_with(".debug_") => pos += consumed,
            // These three report only their header as consumed; the body follows.
            Payload::ModuleSection {
                unchecked_range: body,
                ..
            }
            | Payload::ComponentSection {
                unchecked_range: body,
                ..
            } => {
                let (id, body) = (wasm[pos], body.start as usize..body.end as usize);
                let inner = strip_dwarf(&wasm[body.clone()])?;
                out.push(id);
                push_leb128(&mut out, inner.len());
                out.extend_from_slice(&inner);
                // The parent parser has already stepped over the body.
                pos = body.end;
            }
            Payload::CodeSectionStart {
                unchecked_range: body,
                ..
            } => {
                out.extend_from_slice(&wasm[pos..body.end as usize]);
                parser.skip_section();
                pos = body.end as usize;
            }
            _ => {
                out.extend_from_slice(&wasm[pos..pos + consumed]);
                pos += consumed;
            }
        }
    }
    Ok(out)
}

fn push_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Whether a core module carries the `component-type:*` custom section(s) `wit-bindgen`
/// embeds to describe the world it implements. Without them `wit-component` happily builds
/// an empty component that exports nothing.
fn has_component_type(module: &[u8]) -> bool {
    wasmparser::Parser::new(0).parse_all(module).any(|payload| {
        matches!(payload, Ok(wasmparser::Payload::CustomSection(c)) if c.name().starts_with("component-type"))
    })
}

/// Whether `bytes` is a component (binary layer 1) rather than a core module (layer 0).
fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The last `n` lines of `text`, noting how many were cut.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        let _ = writeln!(out, "[... {skip} earlier lines]");
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleManifest, BuildError> {
        parse_manifest(text, Path::new("x/Cargo.toml"))
    }

    #[test]
    fn reads_name_lib_name_and_default_target() {
        let m = parse(
            r#"
            [package]
            name = "rule-empty"
            version.workspace = true
            [package.metadata.other]
            x = 1
            [lib]
            crate-type = ["cdylib", "rlib"]
            "#,
        )
        .unwrap();
        assert_eq!(m.name, "rule-empty");
        assert_eq!(m.lib_name, "rule_empty");
        assert_eq!(m.target, DEFAULT_TARGET);
    }

    #[test]
    fn reads_the_sluice_target_and_lib_name() {
        let m = parse(
            r#"
            [package]
            name = "rule-stdio"
            [package.metadata.sluice]
            target = "wasm32-wasip2"
            [lib]
            name = "stdio_rule"
            crate-type = ["cdylib"]
            "#,
        )
        .unwrap();
        assert_eq!(
            (m.target.as_str(), m.lib_name.as_str()),
            (WASIP2_TARGET, "stdio_rule")
        );
    }

    #[test]
    fn refuses_what_is_not_a_rule_crate() {
        let not_cdylib = parse("[package]\nname = \"a\"\n[lib]\ncrate-type = [\"rlib\"]\n");
        assert!(matches!(not_cdylib, Err(BuildError::NotCdylib { .. })));
        assert!(matches!(
            parse("[package]\nname = \"a\"\n"),
            Err(BuildError::NotCdylib { .. })
        ));
        let workspace = parse("[workspace]\nmembers = []\n").unwrap_err();
        assert!(
            workspace.to_string().contains("no [package]"),
            "{workspace}"
        );
        let target = parse(
            "[package]\nname = \"a\"\n[package.metadata.sluice]\ntarget = \"wasm32-wasip1\"\n",
        );
        assert!(matches!(target, Err(BuildError::UnsupportedTarget { .. })));
        let typo = parse("[package]\nname = \"a\"\n[package.metadata.sluice]\ntarget_ = \"x\"\n");
        assert!(typo
            .unwrap_err()
            .to_string()
            .contains("unknown field `target_`"));
        let broken = parse("[package\nname = 1").unwrap_err();
        assert!(broken.to_string().starts_with("x/Cargo.toml: "), "{broken}");
    }

    #[test]
    fn a_directory_without_manifest_is_named() {
        let dir = std::env::temp_dir().join(format!("sluice-build-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = build_rules(
            std::slice::from_ref(&dir),
            &BuildOptions::new(dir.join("out")),
        )
        .unwrap_err();
        assert!(matches!(err, BuildError::MissingManifest { .. }));
        assert!(err.to_string().contains("not a rule directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_cdylib_artifacts_in_cargo_json() {
        // As cargo 1.95 prints them (`--message-format json`).
        let artifact = |name: &str, kinds: &str, files: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","package_id":"path+file:///nonexistent/{name}#0.1.0","manifest_path":"/nonexistent/{name}/Cargo.toml","target":{{"kind":[{kinds}],"crate_types":[{kinds}],"name":"{name}","src_path":"/nonexistent/{name}/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true}},"profile":{{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false}},"features":[],"filenames":[{files}],"executable":null,"fresh":false}}"#
            )
        };
        let lines = [
            artifact("a", r#""cdylib","rlib""#, r#""/t/liba.rlib","/t/a.wasm""#),
            artifact("serde", r#""lib""#, r#""/t/libserde.rlib""#),
            r#"{"reason":"build-finished","success":true}"#.to_string(),
            "not json".to_string(),
        ]
        .join("\n");
        let lines = lines.as_str();
        assert_eq!(
            wasm_artifacts(lines),
            vec![(
                PathBuf::from("/nonexistent/a/Cargo.toml"),
                PathBuf::from("/t/a.wasm")
            )]
        );
    }

    #[test]
    fn tells_components_from_modules() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(!is_component(b"\0asm"));
    }

    fn custom(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        let mut section = vec![0, body.len() as u8];
        section.extend(body);
        section
    }

    #[test]
    fn strips_dwarf_from_modules_and_nested_modules() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend([1, 1, 0]); // empty type section
        module.extend(custom(".debug_info", b"dwarf"));
        module.extend([10, 1, 0]); // empty code section
        module.extend(custom("name", b"\0\0"));
        let mut expected = b"\0asm\x01\0\0\0".to_vec();
        expected.extend([1, 1, 0, 10, 1, 0]);
        expected.extend(custom("name", b"\0\0"));
        assert_eq!(strip_dwarf(&module).unwrap(), expected);

        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.extend([1, module.len() as u8]);
        component.extend(&module);
        component.extend(custom(".debug_line", b"x"));
        let mut expected_component = b"\0asm\x0d\0\x01\0".to_vec();
        expected_component.extend([1, expected.len() as u8]);
        expected_component.extend(&expected);
        assert_eq!(strip_dwarf(&component).unwrap(), expected_component);
        assert!(strip_dwarf(b"\0asm\x01\0\0\0\x01\x05").is_err());
    }

    #[test]
    fn keeps_the_tail_of_stderr() {
        let text = (1..=5)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(tail(&text, 2), "[... 3 earlier lines]\n4\n5");
        assert_eq!(tail("a\nb", 5), "a\nb");
    }
}
