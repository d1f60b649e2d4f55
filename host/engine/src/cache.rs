//! On-disk cache of compiled components.
//!
//! Trust boundary: deserializing a compiled artifact runs its machine code, so the cache only
//! ever reads files this host wrote itself. Each entry is keyed by the component's sha256 and
//! the engine's precompile compatibility hash (wasmtime version, target, settings), and carries
//! a sha256 of its own payload: a truncated, corrupt or tampered entry is detected, removed
//! and recompiled, never loaded. Never point the cache directory at storage others can write.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"SLUICEC1";

/// Why a cache lookup did not produce a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMiss {
    /// No entry for this component and engine.
    Absent,
    /// An entry existed but failed its checksum or did not deserialize; it was removed.
    Rejected(String),
}

/// The default size bound of a cache directory.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// Where compiled plugins and fetched plugin bytes are cached when nothing says otherwise:
/// `$SLUICE_CACHE_DIR`, else `/tmp/sluice` in Lambda (the only writable place, kept between
/// invocations of a warm function), else `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::{Path, PathBuf};
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        return Some(PathBuf::from("/tmp/sluice"));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(Path::new(&dir).join("sluice"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").join("sluice"))
}

/// The compiled-component cache directory.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    compat: String,
    max_bytes: u64,
}

/// Removes the least recently used files of `dir` (by modification time, which a cache hit
/// refreshes) until the files in it take at most `max_bytes`. `keep` is never removed.
/// Errors are logged: a cache that cannot be trimmed still works.
pub fn evict_lru(dir: &Path, max_bytes: u64, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if Some(path.as_path()) == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total = total.saturating_sub(len);
                tracing::debug!(path = %path.display(), "evicted from cache");
            }
            Err(e) => tracing::warn!(path = %path.display(), "cannot evict: {e}"),
        }
    }
}

/// Marks a cache file as just used (for [`evict_lru`]).
pub fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

impl CompiledCache {
    /// A cache in `dir` for artifacts compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> CompiledCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompiledCache {
            dir,
            compat: format!("{:016x}", hasher.finish()),
            max_bytes: DEFAULT_CACHE_BYTES,
        }
    }

    /// Bounds the directory's size (least recently used entries go first).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> CompiledCache {
        self.max_bytes = max_bytes;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry for the component with this sha256 lives in.
    pub fn entry_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    /// Loads the compiled component for `sha256`, if a sound entry exists.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Result<Component, CacheMiss> {
        let path = self.entry_path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CacheMiss::Absent),
            Err(e) => return Err(CacheMiss::Rejected(format!("unreadable: {e}"))),
        };
        let reject = |why: String| {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(path = %path.display(), "compiled cache entry rejected: {why}");
            Err(CacheMiss::Rejected(why))
        };
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return reject("not a sluice cache entry".into());
        }
        let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
        if Sha256::digest(payload).as_slice() != sum {
            return reject("checksum mismatch (corrupt or modified)".into());
        }
        match deserialize(engine, payload) {
            Ok(component) => {
                touch(&path);
                Ok(component)
            }
            Err(e) => reject(format!("does not deserialize: {e:#}")),
        }
    }

    /// Stores a serialized component; failures are logged, never fatal (the cache is an
    /// optimisation).
    pub(crate) fn put(&self, sha256: &str, serialized: &[u8]) {
        if let Err(e) = self.try_put(sha256, serialized) {
            tracing::warn!(dir = %self.dir.display(), "cannot write compiled cache entry: {e}");
        }
    }

    fn try_put(&self, sha256: &str, serialized: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.entry_path(sha256);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut out = Vec::with_capacity(serialized.len() + 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&Sha256::digest(serialized));
        out.extend_from_slice(serialized);
        std::fs::write(&tmp, &out)?;
        std::fs::rename(&tmp, &path)?;
        evict_lru(&self.dir, self.max_bytes, Some(&path));
        Ok(())
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes came from `Component::serialize` of a
    // compatible engine. The payload was written by this host (see `put`) and its checksum
    // verified just now, and wasmtime itself checks the engine compatibility header.
    unsafe { Component::deserialize(engine, payload) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            std::fs::write(path(name), vec![0u8; 100]).unwrap();
            let f = std::fs::File::options()
                .append(true)
                .open(path(name))
                .unwrap();
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            f.set_modified(t).unwrap();
        }
        touch(&path("a")); // a is now the most recent
        evict_lru(dir.path(), 200, Some(&path("c")));
        assert!(path("a").exists(), "recently used");
        assert!(!path("b").exists(), "least recently used goes first");
        assert!(path("c").exists(), "kept");
    }
}
