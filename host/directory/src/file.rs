//! A directory kept in one file (`kind = "file"`): read once, served from memory, written
//! through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::format::{DirectoryFile, FileFormat};
use crate::{AliasRecord, AliasStore, DirectoryError, DirectorySettings, SenderList};

/// How often reads look whether the file changed on disk (an edit by `sluice alias` or by
/// hand), so a running host picks it up without a restart.
const RECHECK: Duration = Duration::from_secs(1);

/// A directory file (`.toml`, `.json` or `.csv`), kept in memory.
///
/// Every write reads the file again, applies the change and replaces the file atomically
/// (a temporary file renamed over it), in the same format: a host that counts uses does not
/// undo an edit `sluice alias` made meanwhile. Comments in a hand-written file are not kept.
/// Reads answer from memory, reloading when the file changed on disk (checked at most once
/// a second); a file that no longer parses keeps the last good contents until it is fixed.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    format: FileFormat,
    state: RwLock<Contents>,
    /// Serialises writers within the process; taken before `state`.
    writing: Mutex<()>,
    checked: Mutex<Instant>,
}

#[derive(Debug, Clone, Default)]
struct Contents {
    settings: DirectorySettings,
    aliases: BTreeMap<String, AliasRecord>,
    senders: BTreeMap<String, SenderList>,
    /// The file's modification time and length when read, to notice changes.
    stamp: Option<(SystemTime, u64)>,
}

impl Contents {
    fn from_file(file: DirectoryFile, stamp: Option<(SystemTime, u64)>) -> Contents {
        Contents {
            settings: file.settings,
            aliases: file
                .aliases
                .into_iter()
                .map(|r| (r.address.clone(), r))
                .collect(),
            senders: file.senders,
            stamp,
        }
    }

    fn to_file(&self) -> DirectoryFile {
        DirectoryFile {
            settings: self.settings.clone(),
            aliases: self.aliases.values().cloned().collect(),
            senders: self.senders.clone(),
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl FileStore {
    /// Reads the file; its extension says the format. A missing file is an error that says
    /// how to create it.
    pub fn open(path: &Path) -> Result<FileStore, DirectoryError> {
        let format = FileFormat::from_path(path)?;
        if !path.exists() {
            return Err(DirectoryError::Invalid(format!(
                "{} does not exist: create it with `sluice alias init` (or fix `path`)",
                path.display()
            )));
        }
        let stamp = stamp(path);
        let file = DirectoryFile::read(path)?;
        Ok(FileStore {
            path: path.to_path_buf(),
            format,
            state: RwLock::new(Contents::from_file(file, stamp)),
            writing: Mutex::new(()),
            checked: Mutex::new(Instant::now()),
        })
    }

    /// Creates an empty directory file (refusing to replace one) and opens it.
    pub fn create(path: &Path) -> Result<FileStore, DirectoryError> {
        let format = FileFormat::from_path(path)?;
        if path.exists() {
            return Err(DirectoryError::Refused(format!(
                "{} already exists",
                path.display()
            )));
        }
        write_atomically(path, &DirectoryFile::default().render(format))?;
        FileStore::open(path)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Reads the file again now.
    pub fn reload(&self) -> Result<(), DirectoryError> {
        let stamp = stamp(&self.path);
        let file = DirectoryFile::read(&self.path)?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) =
            Contents::from_file(file, stamp);
        Ok(())
    }

    /// Reloads when the file changed on disk, at most once per [`RECHECK`].
    fn refresh(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.elapsed() < RECHECK {
                return;
            }
            *checked = Instant::now();
        }
        let now = stamp(&self.path);
        let known = self.read().stamp;
        if now.is_some() && now != known {
            // A file that does not parse (half an edit) keeps the last good contents.
            let _ = self.reload();
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Contents> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the file, applies `change` and writes it back; then serves the result.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<T, DirectoryError>,
    ) -> Result<T, DirectoryError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut contents = match DirectoryFile::read(&self.path) {
            Ok(file) => Contents::from_file(file, None),
            Err(e) => {
                return Err(e.within("cannot update it, fix the file first"));
            }
        };
        let out = change(&mut contents)?;
        write_atomically(&self.path, &contents.to_file().render(self.format))?;
        contents.stamp = stamp(&self.path);
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = contents;
        Ok(out)
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`: readers see
/// the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), DirectoryError> {
    use std::io::Write;
    let failed = |e: std::io::Error| {
        DirectoryError::Unavailable(format!("{}: cannot write it: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(failed)
}

impl AliasStore for FileStore {
    fn get(&self, address: &str) -> Result<Option<AliasRecord>, DirectoryError> {
        self.refresh();
        Ok(self.read().aliases.get(address).cloned())
    }

    fn list(&self, domain: &str) -> Result<Vec<AliasRecord>, DirectoryError> {
        self.refresh();
        let domain = domain.to_ascii_lowercase();
        Ok(self
            .read()
            .aliases
            .values()
            .filter(|r| r.domain() == domain)
            .cloned()
            .collect())
    }

    fn put(&self, record: &AliasRecord) -> Result<(), DirectoryError> {
        self.update(|c| {
            c.aliases.insert(record.address.clone(), record.clone());
            Ok(())
        })
    }

    fn remove(&self, address: &str) -> Result<bool, DirectoryError> {
        self.update(|c| Ok(c.aliases.remove(address).is_some()))
    }

    fn settings(&self) -> Result<DirectorySettings, DirectoryError> {
        self.refresh();
        Ok(self.read().settings.clone())
    }

    fn put_settings(&self, settings: &DirectorySettings) -> Result<(), DirectoryError> {
        if !self.format.keeps_settings() {
            return Err(DirectoryError::Refused(format!(
                "{}: a CSV directory holds aliases only: keep it in a .toml or .json file to have settings (domains, destinations)",
                self.path.display()
            )));
        }
        self.update(|c| {
            c.settings = settings.clone().normalized();
            Ok(())
        })
    }

    fn record_uses(&self, uses: &[(String, u64)], at: u64) -> Result<(), DirectoryError> {
        if uses.is_empty() {
            return Ok(());
        }
        self.update(|c| {
            // An alias removed meanwhile stays removed.
            for (address, count) in uses {
                if let Some(record) = c.aliases.get_mut(address) {
                    record.uses = record.uses.saturating_add(*count);
                    record.last_used = Some(at);
                }
            }
            Ok(())
        })
    }

    fn keeps_settings(&self) -> bool {
        self.format.keeps_settings()
    }

    fn sender_before(
        &self,
        entry: &str,
        _deadline: Instant,
    ) -> Result<Option<SenderList>, DirectoryError> {
        self.refresh();
        Ok(self.read().senders.get(entry).copied())
    }

    fn senders(&self) -> Result<Vec<(String, SenderList)>, DirectoryError> {
        self.refresh();
        Ok(self
            .read()
            .senders
            .iter()
            .map(|(e, l)| (e.clone(), *l))
            .collect())
    }

    fn put_sender(
        &self,
        entry: &str,
        list: SenderList,
    ) -> Result<Option<SenderList>, DirectoryError> {
        if !self.format.keeps_settings() {
            return Err(DirectoryError::Refused(format!(
                "{}: a CSV directory holds aliases only: keep sender lists in a .toml or .json directory",
                self.path.display()
            )));
        }
        self.update(|c| Ok(c.senders.insert(entry.to_string(), list)))
    }

    fn remove_sender(&self, entry: &str) -> Result<Option<SenderList>, DirectoryError> {
        self.update(|c| Ok(c.senders.remove(entry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    fn settings() -> DirectorySettings {
        DirectorySettings {
            domains: vec!["example.com".into()],
            destinations: vec!["@example.net".into()],
        }
    }

    #[test]
    fn writes_go_through_to_the_file_in_its_format() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["toml", "json", "csv"] {
            let path = dir.path().join(format!("aliases.{ext}"));
            let store = FileStore::create(&path).unwrap();
            assert!(store.list("example.com").unwrap().is_empty());
            let mut record = AliasRecord::new("info@example.com", vec!["a@example.net".into()], 10);
            store.put(&record).unwrap();
            store
                .put(&AliasRecord::new("x@example.org", vec![], 11))
                .unwrap();
            record.status = Status::Paused;
            store.put(&record).unwrap();
            store
                .record_uses(
                    &[
                        ("info@example.com".into(), 2),
                        ("gone@example.com".into(), 1),
                    ],
                    50,
                )
                .unwrap();
            assert!(store.remove("x@example.org").unwrap());
            assert!(!store.remove("x@example.org").unwrap());
            let reopened = FileStore::open(&path).unwrap();
            let got = reopened.get("info@example.com").unwrap().unwrap();
            assert_eq!(got.status, Status::Paused, "{ext}");
            assert_eq!((got.uses, got.last_used), (2, Some(50)), "{ext}");
            assert_eq!(reopened.get("gone@example.com").unwrap(), None);
            assert_eq!(reopened.list("example.com").unwrap(), vec![got]);
            if ext == "csv" {
                assert!(!store.keeps_settings());
                let err = store.put_settings(&settings()).unwrap_err();
                assert!(matches!(err, DirectoryError::Refused(_)), "{err}");
            } else {
                store.put_settings(&settings()).unwrap();
                assert_eq!(
                    FileStore::open(&path).unwrap().settings().unwrap(),
                    settings()
                );
            }
            let far = Instant::now() + Duration::from_secs(5);
            if ext == "csv" {
                let err = store
                    .put_sender("spam.example", SenderList::Block)
                    .unwrap_err();
                assert!(err.to_string().contains(".toml or .json"), "{err}");
            } else {
                assert_eq!(
                    store.put_sender("spam.example", SenderList::Block).unwrap(),
                    None
                );
                assert_eq!(
                    store
                        .put_sender("partner.example", SenderList::Allow)
                        .unwrap(),
                    None
                );
                assert_eq!(
                    store.put_sender("spam.example", SenderList::Allow).unwrap(),
                    Some(SenderList::Block),
                    "moving an entry says where it was"
                );
                assert_eq!(
                    store.remove_sender("partner.example").unwrap(),
                    Some(SenderList::Allow)
                );
                assert_eq!(store.remove_sender("partner.example").unwrap(), None);
                let reopened = FileStore::open(&path).unwrap();
                assert_eq!(
                    reopened.sender_before("spam.example", far).unwrap(),
                    Some(SenderList::Allow),
                    "{ext}"
                );
                assert_eq!(reopened.senders().unwrap().len(), 1, "{ext}");
                // An alias edit keeps the lists, and the lists keep the aliases.
                assert!(reopened.get("info@example.com").unwrap().is_some());
            }
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty());
        }
    }

    #[test]
    fn a_write_keeps_what_another_process_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.toml");
        let host = FileStore::create(&path).unwrap();
        let admin = FileStore::open(&path).unwrap();
        admin
            .put(&AliasRecord::new("new@example.com", vec![], 1))
            .unwrap();
        host.record_uses(&[("new@example.com".into(), 1)], 9)
            .unwrap();
        let got = FileStore::open(&path)
            .unwrap()
            .get("new@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(got.uses, 1);
    }

    #[test]
    fn open_says_how_to_fix_a_missing_or_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.toml");
        let err = FileStore::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("does not exist: create it with `sluice alias init` (or fix `path`)"),
            "{err}"
        );
        std::fs::write(&path, "[aliases]\n\"a@b.c\" = { status = \"x\" }\n").unwrap();
        let err = FileStore::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: line 2: ", path.display())),
            "{err}"
        );
        assert!(matches!(
            FileStore::create(&path).unwrap_err(),
            DirectoryError::Refused(_)
        ));
    }

    #[test]
    fn reads_pick_up_a_changed_file_and_keep_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.csv");
        std::fs::write(&path, "address\na@example.com\n").unwrap();
        let store = FileStore::open(&path).unwrap();
        std::fs::write(&path, "address\na@example.com\nb@example.com\n").unwrap();
        *store.checked.lock().unwrap() = Instant::now() - RECHECK;
        assert!(store.get("b@example.com").unwrap().is_some());
        std::fs::write(&path, "address\n\"broken\n").unwrap();
        *store.checked.lock().unwrap() = Instant::now() - RECHECK;
        assert!(store.get("b@example.com").unwrap().is_some());
        assert!(store.reload().is_err());
    }
}
