//! `[store] kind = "dir"`: files under a directory, `<path>/<domain>/<local-part>/<folder>/
//! <message-id>.eml` (the layout `sluice run --out` writes too). A copy's name derives from
//! the message id, so storing it again overwrites it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{
    read_section, resolve_dir, Checked, RecordsAt, StoreConfig, StoreContext, StoreKind,
    StoreTarget, TargetClients,
};
use crate::names::{mailbox_segments, SegmentError};
use crate::{BoxFuture, MailboxError, MailboxStore, SetupError, StoreOutcome, StoreRequest};

/// `[store] kind = "dir"`.
pub const KIND: StoreKind = StoreKind { name: "dir", read };

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirSection {
    /// The directory (relative to the config file).
    path: String,
}

/// `[store] kind = "dir"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStoreConfig {
    /// The directory, absolute.
    pub path: PathBuf,
}

fn read(table: toml::Table, context: &StoreContext<'_>) -> Checked<StoreConfig> {
    let section: DirSection = read_section("store", table)
        .map_err(|e| format!("{e} (kind = \"dir\" takes `path = \"DIR\"`)"))?;
    if section.path.is_empty() {
        return Err("store: kind = \"dir\" needs `path = \"DIR\"`".into());
    }
    Ok(Arc::new(DirStoreConfig {
        path: resolve_dir(&section.path, context.resolve),
    }))
}

impl StoreTarget for DirStoreConfig {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn home(&self) -> Option<RecordsAt> {
        Some(RecordsAt::Dir(self.path.clone()))
    }

    fn needs_delivered_log(&self) -> bool {
        false
    }

    fn delivered_at(&self) -> Option<&RecordsAt> {
        None
    }

    fn build(&self, _: &TargetClients) -> Result<Arc<dyn MailboxStore>, SetupError> {
        Ok(Arc::new(DirMailboxes::new(DirStore::new(
            self.path.clone(),
        ))))
    }
}

/// A delivery that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DirStoreError {
    /// The file could not be written (a retry may succeed).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The recipient, folder or message id cannot be a mailbox path (a retry cannot help).
    #[error(transparent)]
    Unstorable(#[from] SegmentError),
}

impl DirStoreError {
    /// A retry cannot succeed: the name itself cannot be stored.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DirStoreError::Unstorable(_))
    }
}

/// A mailbox store in a local directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

/// Writes `bytes` to `path` through a temporary file beside it, synced, then a rename: a
/// reader (or a retry after a crash) sees the whole file or none. The error names the path
/// that failed (the directory, the temporary file or the target). Shared by the directory
/// store, the directory archive and the quarantine.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(at(path))
}

impl DirStore {
    /// A store rooted at `root` (created on first delivery).
    pub fn new(root: PathBuf) -> DirStore {
        DirStore { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes one mailbox copy: `<root>/<domain>/<local-part>/<folder>/<message-id>.eml`, each
    /// segment escaped by [`escape_segment`].
    pub fn store(
        &self,
        recipient: &str,
        folder: &str,
        message_id: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, DirStoreError> {
        let mut path = self.root.clone();
        path.extend(mailbox_segments(recipient, folder, message_id)?);
        write_atomic(&path, bytes)
            .map_err(|(path, source)| DirStoreError::Write { path, source })?;
        Ok(path)
    }
}

/// Mailboxes in a local directory.
#[derive(Debug, Clone)]
pub struct DirMailboxes {
    store: DirStore,
}

impl DirMailboxes {
    /// Mailboxes under `store`'s root.
    pub fn new(store: DirStore) -> DirMailboxes {
        DirMailboxes { store }
    }
}

fn error(recipient: &str, e: DirStoreError) -> MailboxError {
    match e {
        DirStoreError::Unstorable(source) => MailboxError::Unstorable {
            recipient: recipient.to_string(),
            source,
        },
        DirStoreError::Write { path, source } => MailboxError::Io {
            path: path.display().to_string(),
            reason: source.to_string(),
        },
    }
}

impl MailboxStore for DirMailboxes {
    fn describe(&self) -> String {
        format!("dir {}", self.store.root().display())
    }

    fn overwrites(&self) -> bool {
        true
    }

    fn store<'a>(&'a self, request: StoreRequest<'a>) -> BoxFuture<'a, Vec<StoreOutcome>> {
        let store = self.store.clone();
        let root = self.store.root().display().to_string();
        let (id, bytes, copies) = (
            request.message_id.to_string(),
            request.bytes.to_vec(),
            request.copies.to_vec(),
        );
        Box::pin(async move {
            // File writes block: off the async threads.
            tokio::task::spawn_blocking(move || {
                copies
                    .into_iter()
                    .map(|copy| {
                        let result = store
                            .store(&copy.recipient, &copy.folder, &id, &bytes)
                            .map(|p| p.display().to_string())
                            .map_err(|e| error(&copy.recipient, e));
                        StoreOutcome { copy, result }
                    })
                    .collect()
            })
            .await
            .unwrap_or_else(|e| {
                request
                    .copies
                    .iter()
                    .map(|copy| StoreOutcome {
                        copy: copy.clone(),
                        result: Err(MailboxError::Io {
                            path: root.clone(),
                            reason: format!("the store task failed: {e}"),
                        }),
                    })
                    .collect()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_reads_and_resolves_the_path() {
        let s = crate::config::tests::store("kind = \"dir\"\npath = \"mail\"").unwrap();
        assert_eq!(s.kind(), "dir");
        assert_eq!(s.home(), Some(RecordsAt::Dir("/etc/sluice/mail".into())));
        assert!(!s.needs_delivered_log());
        let m = crate::config::tests::store("kind = \"dir\"").unwrap_err();
        assert!(m.contains("missing field `path`"), "{m}");
    }

    #[test]
    fn dir_store_refuses_and_separates() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_path_buf());
        let a = store.store("a/b@example.com", "INBOX", "m1", b"1").unwrap();
        let b = store.store("a_b@example.com", "INBOX", "m1", b"2").unwrap();
        let c = store
            .store("a\\b@example.com", "INBOX", "m1", b"3")
            .unwrap();
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_eq!(std::fs::read(&a).unwrap(), b"1");
        assert_eq!(std::fs::read(&b).unwrap(), b"2");
        assert!(a.starts_with(dir.path().join("example.com").join("a%2Fb")));
        let err = store
            .store(
                &format!("{}@example.com", "y".repeat(300)),
                "INBOX",
                "m1",
                b"4",
            )
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");
    }
}
