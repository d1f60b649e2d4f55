//! A mirror of one stored mailbox into a Maildir (`sluice mailbox sync --maildir`), in the
//! Maildir++ layout Dovecot and Courier serve by default: `INBOX` is the Maildir itself,
//! folder `Junk` is `.Junk/`, `Archive/2026` is `.Archive.2026/`, non-ASCII names in
//! IMAP's modified UTF-7; a folder name with a `.` has no Maildir++ name and is reported.
//!
//! A copy's file name derives from its message id (`sluice.<escaped id>`), so a second sync
//! skips what is there, whatever flags the IMAP server has added since (`:2,S`) or whether it
//! moved the file from `new/` to `cur/`: the mirror only adds, and never changes or deletes
//! what a mail client did.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::mailboxes::{ReadError, StoredCopy, StoredMailboxes};
use crate::names::escape_segment;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Copies written into the Maildir.
    pub copied: usize,
    /// Copies already there.
    pub present: usize,
    /// The folders of the mailbox, as stored (`INBOX`, `Junk`, ...).
    pub folders: Vec<String>,
    /// Copies that could not be mirrored, with the reason (the rest still are).
    pub failed: Vec<(String, String)>,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The mailbox could not be listed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The Maildir could not be written.
    #[error("writing the Maildir at {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Mirrors every copy of `address` in `mailboxes` into the Maildir at `root` (created if
/// missing). Idempotent and incremental: only copies the Maildir lacks are read and written.
pub async fn sync_maildir(
    mailboxes: &StoredMailboxes,
    address: &str,
    root: &Path,
) -> Result<SyncReport, SyncError> {
    let copies = mailboxes.list(Some(address)).await?;
    let owner = Owner::of_parent(root)?;
    let mut report = SyncReport::default();
    let mut folder_dir: Option<(String, PathBuf, Vec<String>)> = None;
    for copy in copies {
        let folder = &copy.name.folder;
        if folder_dir.as_ref().map(|(name, ..)| name) != Some(folder) {
            let Some(dir) = maildir_folder(root, folder) else {
                report.failed.push((
                    copy.location.clone(),
                    format!("folder {folder:?} has no Maildir++ name (an empty level, or a '.', which Maildir++ reads as a level separator)"),
                ));
                continue;
            };
            make_maildir(&dir, &owner)?;
            let present = present_names(&dir)?;
            report.folders.push(folder.clone());
            folder_dir = Some((folder.clone(), dir, present));
        }
        let (_, dir, present) = folder_dir.as_ref().expect("set above");
        let Ok(base) = escape_segment("message id", &copy.name.message_id) else {
            report.failed.push((
                copy.location.clone(),
                "the message id cannot name a file".into(),
            ));
            continue;
        };
        let base = format!("sluice.{base}");
        if present.contains(&base) {
            report.present += 1;
            continue;
        }
        match mailboxes.get(&copy).await {
            Ok(bytes) => {
                write_new(dir, &base, &bytes, &copy, &owner)?;
                report.copied += 1;
            }
            Err(e) => report.failed.push((copy.location.clone(), e.to_string())),
        }
    }
    Ok(report)
}

/// The Maildir++ directory of `folder` under `root`, or `None` for a name that would make an
/// empty or ambiguous level (`a//b`, `v1.2`).
fn maildir_folder(root: &Path, folder: &str) -> Option<PathBuf> {
    if folder.eq_ignore_ascii_case("INBOX") {
        return Some(root.to_path_buf());
    }
    let mut name = String::from(".");
    for (i, level) in folder.split('/').enumerate() {
        // '.' is Maildir++'s level separator: a name with one would read as two levels.
        if level.is_empty() || level.contains('.') {
            return None;
        }
        if i > 0 {
            name.push('.');
        }
        name.push_str(&utf7_imap(level));
    }
    Some(root.join(name))
}

/// IMAP's modified UTF-7 (RFC 3501 5.1.3), how Maildir++ folders store non-ASCII names.
fn utf7_imap(name: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Who the mail under a Maildir belongs to: the owner of its nearest existing parent.
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of_parent(root: &Path) -> Result<Owner, SyncError> {
        use std::os::unix::fs::MetadataExt;
        let mut at = root;
        loop {
            match std::fs::metadata(at) {
                Ok(meta) => {
                    return Ok(Owner {
                        uid: meta.uid(),
                        gid: meta.gid(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                    Some(parent) => at = parent,
                    None => {
                        return Err(SyncError::Write {
                            path: root.to_path_buf(),
                            source: e,
                        })
                    }
                },
                Err(source) => {
                    return Err(SyncError::Write {
                        path: at.to_path_buf(),
                        source,
                    })
                }
            }
        }
    }

    /// Gives `path` (just created) to the owner when it came out as root's: only root can,
    /// and only a root process creates root's files.
    fn claim(&self, path: &Path) -> Result<(), SyncError> {
        use std::os::unix::fs::MetadataExt;
        let err = |source| SyncError::Write {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::symlink_metadata(path).map_err(err)?;
        if meta.uid() == 0 && (self.uid, self.gid) != (0, 0) {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(err)?;
        }
        Ok(())
    }
}

fn make_maildir(dir: &Path, owner: &Owner) -> Result<(), SyncError> {
    // Each level made one by one, so each new one can be given to the owner.
    let mut missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    missing.reverse();
    for path in missing {
        std::fs::create_dir(path).map_err(|source| SyncError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        owner.claim(path)?;
    }
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        if !path.exists() {
            std::fs::create_dir(&path).map_err(|source| SyncError::Write {
                path: path.clone(),
                source,
            })?;
            owner.claim(&path)?;
        }
    }
    Ok(())
}

/// The base names (before `:2,FLAGS`) of the messages in a Maildir folder's `new/` and `cur/`.
fn present_names(dir: &Path) -> Result<Vec<String>, SyncError> {
    let mut names = Vec::new();
    for sub in ["new", "cur"] {
        let path = dir.join(sub);
        let entries = std::fs::read_dir(&path).map_err(|source| SyncError::Write {
            path: path.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.split(':').next().unwrap_or(name).to_string());
            }
        }
    }
    Ok(names)
}

/// Writes one message the Maildir way: into `tmp/`, synced, then renamed into `new/`, with
/// the time it was stored as its modification time (what IMAP servers show as the received
/// date).
fn write_new(
    dir: &Path,
    base: &str,
    bytes: &[u8],
    copy: &StoredCopy,
    owner: &Owner,
) -> Result<(), SyncError> {
    let tmp = dir.join("tmp").join(base);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Write { path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(bytes).map_err(err(&tmp))?;
    if copy.stored_ms > 0 {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(copy.stored_ms as u64);
        file.set_modified(when).map_err(err(&tmp))?;
    }
    file.sync_all().map_err(err(&tmp))?;
    drop(file);
    owner.claim(&tmp)?;
    let new = dir.join("new").join(base);
    std::fs::rename(&tmp, &new).map_err(err(&new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_take_maildir_plus_plus_names() {
        let root = Path::new("/m");
        assert_eq!(maildir_folder(root, "INBOX"), Some(root.to_path_buf()));
        assert_eq!(maildir_folder(root, "Junk"), Some(root.join(".Junk")));
        assert_eq!(
            maildir_folder(root, "Archive/2026"),
            Some(root.join(".Archive.2026"))
        );
        assert_eq!(maildir_folder(root, "v1.2"), None);
        assert_eq!(maildir_folder(root, "/x"), None);
        assert_eq!(maildir_folder(root, "a//b"), None);
        assert_eq!(maildir_folder(root, ".hidden"), None);
    }

    #[test]
    fn non_ascii_names_are_modified_utf7() {
        // RFC 3501's own example.
        assert_eq!(
            utf7_imap("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(utf7_imap("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(utf7_imap("A&B"), "A&-B");
    }
}
