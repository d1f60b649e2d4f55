//! `[archive] kind = "dir"`: the archive in a directory of this machine (self-hosted setups;
//! retention is the file system's business there).

use std::path::{Path, PathBuf};

use super::{domain_segment, names, ArchiveError, ArchiveQuery, ArchiveRecord};

/// A directory archive.
#[derive(Debug, Clone)]
pub struct DirArchive {
    /// The directory.
    pub root: PathBuf,
}

/// [`crate::store::dir::write_atomic`], its failure as this module's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    crate::store::dir::write_atomic(path, bytes).map_err(|(at, e)| io(&at)(e))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl DirArchive {
    /// Writes each index record, then the message; nothing when the message is there
    /// already (its records were written before it).
    pub fn put(
        &self,
        id: &str,
        bytes: &[u8],
        records: &mut [ArchiveRecord],
    ) -> Result<String, ArchiveError> {
        let path = self.root.join(names(id)?.0);
        let location = path.display().to_string();
        if path.exists() {
            return Ok(location);
        }
        for record in records.iter_mut() {
            record.location = location.clone();
        }
        self.put_records(records)?;
        write_atomic(&path, bytes)?;
        Ok(location)
    }

    /// Writes `<name>.eml` unless it exists.
    pub fn put_message(&self, name: &str, bytes: &[u8]) -> Result<String, ArchiveError> {
        let path = self.root.join(names(name)?.0);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(path.display().to_string())
    }

    /// Writes (or rewrites) each index record of message `records[..].id`.
    pub fn put_records(&self, records: &[ArchiveRecord]) -> Result<(), ArchiveError> {
        for record in records {
            let at = self
                .root
                .join("_index")
                .join(&record.date)
                .join(domain_segment(&record.domain)?)
                .join(names(&record.id)?.1);
            let text = serde_json::to_vec(record).map_err(|e| ArchiveError::Index {
                path: at.display().to_string(),
                reason: e.to_string(),
            })?;
            write_atomic(&at, &text)?;
        }
        Ok(())
    }

    /// The records of the days and domain asked, filtered.
    pub fn find(&self, query: &ArchiveQuery) -> Result<Vec<ArchiveRecord>, ArchiveError> {
        let index = self.root.join("_index");
        let domain = domain_segment(&query.domain)?;
        let mut out = Vec::new();
        let days = match std::fs::read_dir(&index) {
            Ok(days) => days,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&index)(e)),
        };
        for day in days {
            let day = day.map_err(io(&index))?;
            let name = day.file_name().to_string_lossy().into_owned();
            if !query.wants_day(&name) {
                continue;
            }
            let dir = day.path().join(&domain);
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files {
                let path = file.map_err(io(&dir))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let text = std::fs::read(&path).map_err(io(&path))?;
                let record: ArchiveRecord =
                    serde_json::from_slice(&text).map_err(|e| ArchiveError::Index {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if query.matches(&record) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// The message's bytes.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.root.join(names(id)?.0);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ArchiveError::NotFound(id.to_string()),
            _ => io(&path)(e),
        })
    }
}
