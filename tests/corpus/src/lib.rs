//! Where the tests find the shared corpus of real-world messages and SES event samples.
//!
//! One place for the rule every corpus test follows: the corpus is `$SLUICE_CORPUS` (a
//! relative path is relative to the workspace root), else `../shared/corpus` beside the
//! workspace. When it is absent the test prints one line and
//! skips its corpus part, except under CI (`CI` set), where a missing corpus is a failure:
//! CI has it, so its absence means the checks silently stopped running.

use std::path::{Path, PathBuf};

/// The corpus directory (with `eml/` and `ses/`), or `None` after printing one line saying
/// which `what` is skipped. Panics when `CI` is set and the corpus is missing.
pub fn corpus_dir(what: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("SLUICE_CORPUS") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => workspace_root().join(d),
        None => default_dir(),
    };
    if dir.join("eml").is_dir() || dir.join("ses").is_dir() {
        return Some(dir);
    }
    let line = format!(
        "corpus not found at {} (set SLUICE_CORPUS): {what} skipped",
        dir.display()
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{line}; under CI the corpus must be there");
    }
    println!("{line}");
    None
}

/// The files `<corpus>/<sub>/*.<ext>`, sorted by name (empty when the folder is missing).
pub fn corpus_files(dir: &Path, sub: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The workspace root (this crate lives in `tests/corpus`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/corpus` relative to the workspace root.
fn default_dir() -> PathBuf {
    workspace_root().join("../shared/corpus")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_beside_the_workspace() {
        let dir = default_dir();
        assert!(dir.ends_with("../shared/corpus"), "{}", dir.display());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert_eq!(
            std::fs::canonicalize(dir.parent().unwrap().parent().unwrap()).ok(),
            std::fs::canonicalize(workspace.join("..")).ok()
        );
    }
}
