//! Rule components compiled ahead of time (`sluice plugin precompile`) and shipped with the
//! host, so a cold start (a Lambda's empty `/tmp`) loads native code instead of running
//! Cranelift: tens of milliseconds per Rust rule, seconds per JavaScript or Python rule.
//!
//! Trust boundary: loading an artifact runs its machine code. Artifacts are read only from
//! directories the operator ships beside the host binary (a Lambda's package under
//! `/var/task`, a layer under `/opt`), named by the environment or the command line: never
//! from S3, never from the config (which may come from S3), never from the cache directory the
//! host writes. Each artifact carries the sha256 of the component it was compiled from, the
//! target it was compiled for and the engine compatibility hash; one that does not match this
//! host, or whose payload fails its checksum, is refused with a logged reason and the
//! component is compiled as if there were no artifact.
//!
//! Artifacts are compiled for the target's baseline CPU (no CPU features detected, since the
//! machine that compiles is not the one that runs them). A host loads them into its own engine,
//! whose CPU features are a superset; wasmtime checks that when it deserializes.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The extension of an artifact file: `<component sha256>.cwasm`.
pub const ARTIFACT_EXTENSION: &str = "cwasm";

/// The first line of every artifact; the version changes with the header's layout.
const MAGIC: &str = "SLUICE-PRECOMPILED 1";

/// The longest header read before the payload.
const MAX_HEADER: usize = 1024;

/// Why an artifact could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    /// The target triple is unknown, or this build has no code generator for it.
    #[error("cannot compile for {target}: {reason}")]
    Target {
        /// The target as given.
        target: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The bytes are not a component wasmtime can compile.
    #[error("{name}: not a valid component: {reason}")]
    Compile {
        /// The component's name (its file name).
        name: String,
        /// What wasmtime said.
        reason: String,
    },
}

/// The target this host runs on, as a triple (`x86_64-unknown-linux-gnu`).
pub fn host_target() -> String {
    target_lexicon::Triple::host().to_string()
}

/// The engine configuration every artifact and every host shares: what changes compiled code.
/// The pooling allocator and the epoch ticker's interval do not (wasmtime's docs for
/// `PoolingAllocationConfig`), so they are not here.
pub(crate) fn base_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// A stable digest of wasmtime's compatibility hash: `DefaultHasher` is not guaranteed to
/// give the same answer from one Rust release to the next, and the binary that compiles the
/// artifacts (`sluice`) need not be built by the same toolchain as the one that loads them.
pub(crate) fn engine_hash(engine: &Engine) -> String {
    struct Stable(Sha256);
    impl Hasher for Stable {
        fn finish(&self) -> u64 {
            // Unused: the whole digest is read below.
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Stable(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

/// An engine that compiles for `target` with the baseline CPU of that target.
fn baseline_engine(target: &str) -> Result<Engine, PrecompileError> {
    let err = |reason: String| PrecompileError::Target {
        target: target.to_string(),
        reason,
    };
    let mut config = base_config();
    config.target(target).map_err(|e| err(format!("{e:#}")))?;
    Engine::new(&config).map_err(|e| err(format!("{e:#}")))
}

/// Compiles components for one target.
pub struct Precompiler {
    engine: Engine,
    target: String,
    engine_hash: String,
}

/// One compiled component, ready to write to `<dir>/<file_name()>`.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The sha256 of the component, lower-case hex.
    pub component_sha256: String,
    /// Header and payload.
    pub bytes: Vec<u8>,
}

impl Artifact {
    /// The file name a host looks the artifact up by.
    pub fn file_name(&self) -> String {
        format!("{}.{ARTIFACT_EXTENSION}", self.component_sha256)
    }
}

impl Precompiler {
    /// A compiler for `target` (a triple such as `aarch64-unknown-linux-gnu`), or for this
    /// host's target when `None`.
    pub fn new(target: Option<&str>) -> Result<Precompiler, PrecompileError> {
        let target = target.map(str::to_string).unwrap_or_else(host_target);
        let engine = baseline_engine(&target)?;
        // The triple as wasmtime understands it (`aarch64-linux` -> `aarch64-unknown-linux`),
        // which is what a host compares with its own.
        let target = target
            .parse::<target_lexicon::Triple>()
            .map(|t| t.to_string())
            .unwrap_or(target);
        Ok(Precompiler {
            engine_hash: engine_hash(&engine),
            engine,
            target,
        })
    }

    /// The target, as a host on it names itself.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The engine compatibility hash written into each artifact.
    pub fn engine_hash(&self) -> &str {
        &self.engine_hash
    }

    /// Compiles `component` (named `name` in errors) into an artifact.
    pub fn precompile(&self, name: &str, component: &[u8]) -> Result<Artifact, PrecompileError> {
        let payload =
            self.engine
                .precompile_component(component)
                .map_err(|e| PrecompileError::Compile {
                    name: name.to_string(),
                    reason: format!("{e:#}"),
                })?;
        let component_sha256 = hex::encode(Sha256::digest(component));
        let header = Header {
            component_sha256: component_sha256.clone(),
            target: self.target.clone(),
            engine: self.engine_hash.clone(),
            payload_sha256: hex::encode(Sha256::digest(&payload)),
        };
        let mut bytes = header.to_text().into_bytes();
        bytes.extend_from_slice(&payload);
        Ok(Artifact {
            component_sha256,
            bytes,
        })
    }
}

/// What an artifact says about itself, in text so `head -6 FILE.cwasm` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    component_sha256: String,
    target: String,
    engine: String,
    payload_sha256: String,
}

impl Header {
    fn to_text(&self) -> String {
        format!(
            "{MAGIC}\ncomponent-sha256: {}\ntarget: {}\nengine: {}\npayload-sha256: {}\n\n",
            self.component_sha256, self.target, self.engine, self.payload_sha256
        )
    }

    /// Splits an artifact into its header and payload.
    fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), String> {
        let window = &bytes[..bytes.len().min(MAX_HEADER)];
        let end = window
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("not a sluice precompiled artifact (no header)")?;
        let text = std::str::from_utf8(&window[..end])
            .map_err(|_| "not a sluice precompiled artifact (header is not text)")?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!(
                "not a sluice precompiled artifact (first line is not {MAGIC:?})"
            ));
        }
        let mut field = |name: &str| -> Result<String, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(": "))
                .map(str::to_string)
                .ok_or_else(|| format!("header has no {name:?} line where expected"))
        };
        let header = Header {
            component_sha256: field("component-sha256")?,
            target: field("target")?,
            engine: field("engine")?,
            payload_sha256: field("payload-sha256")?,
        };
        Ok((header, &bytes[end + 2..]))
    }
}

/// What a lookup in the shipped directories found.
pub(crate) enum Lookup {
    /// A sound artifact, loaded; from this file.
    Loaded(Component, PathBuf),
    /// No artifact for this component.
    Absent,
    /// An artifact was there but not usable: why (the file is named in the text).
    Refused(String),
}

/// The directories of shipped artifacts a host reads.
#[derive(Debug)]
pub(crate) struct PrecompiledDirs {
    dirs: Vec<PathBuf>,
    target: String,
    /// The hash an artifact for this host must carry: that of a baseline engine for this
    /// host's target with the shared settings. Built on the first artifact found.
    expected: OnceLock<Result<String, String>>,
}

impl PrecompiledDirs {
    pub(crate) fn new(dirs: Vec<PathBuf>) -> PrecompiledDirs {
        PrecompiledDirs {
            dirs,
            target: host_target(),
            expected: OnceLock::new(),
        }
    }

    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn expected_hash(&self) -> Result<&str, String> {
        self.expected
            .get_or_init(|| {
                baseline_engine(&self.target)
                    .map(|e| engine_hash(&e))
                    .map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The first artifact for the component with `sha256` in the directories, in order.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Lookup {
        for dir in &self.dirs {
            let path = dir.join(format!("{sha256}.{ARTIFACT_EXTENSION}"));
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Lookup::Refused(format!("{}: unreadable: {e}", path.display())),
            };
            return match self.check_and_load(engine, sha256, &bytes) {
                Ok(component) => Lookup::Loaded(component, path),
                Err(why) => Lookup::Refused(format!("{}: {why}", path.display())),
            };
        }
        Lookup::Absent
    }

    fn check_and_load(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        let (header, payload) = Header::parse(bytes)?;
        if header.component_sha256 != sha256 {
            return Err(format!(
                "compiled from another component (sha256 {})",
                header.component_sha256
            ));
        }
        if header.target != self.target {
            return Err(format!(
                "compiled for {}, this host is {} (run `sluice plugin precompile --target {}`)",
                header.target, self.target, self.target
            ));
        }
        let expected = self.expected_hash()?;
        if header.engine != expected {
            return Err(format!(
                "compiled by an engine this host's does not match (engine hash {}, this host's \
                 {expected}: another wasmtime version or engine settings); precompile again with \
                 the `sluice` of this release",
                header.engine
            ));
        }
        if hex::encode(Sha256::digest(payload)) != header.payload_sha256 {
            return Err("payload checksum mismatch (truncated, corrupt or modified)".into());
        }
        deserialize(engine, payload).map_err(|e| format!("does not load: {e:#}"))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires bytes from `Engine::precompile_component` of a compatible
    // engine. The payload comes from a directory shipped with the host (see the module's
    // trust boundary), its checksum and its engine hash were verified just now, and wasmtime
    // itself checks the target, settings and CPU features against this engine.
    unsafe { Component::deserialize(engine, payload) }
}

/// Refuses a shipped directory that is, or is inside, or contains a directory the host
/// writes (`writable`): its files would be trusted as shipped code.
pub fn check_not_writable(precompiled: &Path, writable: &Path) -> Result<(), String> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (a, b) = (canon(precompiled), canon(writable));
    if a.starts_with(&b) || b.starts_with(&a) {
        return Err(format!(
            "precompiled directory {} overlaps the cache directory {}, which this host writes: \
             precompiled code is only read from a directory shipped with the host",
            precompiled.display(),
            writable.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            component_sha256: "ab".repeat(32),
            target: "aarch64-unknown-linux-gnu".into(),
            engine: "0123456789abcdef0123456789abcdef".into(),
            payload_sha256: "cd".repeat(32),
        }
    }

    #[test]
    fn header_round_trips_and_is_readable_text() {
        let mut bytes = header().to_text().into_bytes();
        bytes.extend_from_slice(b"\x7fELF payload");
        let (parsed, payload) = Header::parse(&bytes).unwrap();
        assert_eq!(parsed, header());
        assert_eq!(payload, b"\x7fELF payload");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("SLUICE-PRECOMPILED 1\ncomponent-sha256: abab"));
        assert!(text.contains("\ntarget: aarch64-unknown-linux-gnu\n"));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (bytes, why) in [
            (&b"\x7fELF raw wasmtime output"[..], "no header"),
            (&b"SLUICEC1 a cache entry\n\n"[..], "first line"),
            (
                &b"SLUICE-PRECOMPILED 1\ntarget: x\n\n"[..],
                "component-sha256",
            ),
        ] {
            let err = Header::parse(bytes).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn the_engine_hash_follows_the_target_and_not_the_caller() {
        let host = Precompiler::new(None).unwrap();
        assert_eq!(host.target(), host_target());
        let again = Precompiler::new(Some(&host_target())).unwrap();
        assert_eq!(host.engine_hash(), again.engine_hash());
        let dirs = PrecompiledDirs::new(vec![]);
        assert_eq!(dirs.expected_hash().unwrap(), host.engine_hash());
        let err = Precompiler::new(Some("nonsense-target")).err().unwrap();
        assert!(err
            .to_string()
            .starts_with("cannot compile for nonsense-target"));
    }

    #[test]
    fn a_directory_the_host_writes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert!(check_not_writable(&cache.join("rules"), &cache).is_err());
        assert!(check_not_writable(dir.path(), &cache).is_err());
        assert!(check_not_writable(&dir.path().join("rules"), &cache).is_ok());
    }
}
