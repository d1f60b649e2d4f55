//! Deliveries to a local directory (the `dir` store): mailboxes and an outbox.
//!
//! Layout: `<root>/<domain>/<local-part>/<folder>/<message-id>.eml` for local recipients;
//! `<root>/outbox/<message-id>-<domain>.relay.eml` (+ `.relay.json` with the envelope) for
//! relayed copies; `<root>/outbox/<message-id>-<domain>.bounce.json` for bounces. Names derive
//! from the message id only, so processing the same message twice rewrites the same files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sluice_mail::Message;

use crate::chain::{Envelope, OutputMessage};
use crate::trace::{Disposition, GroupOutcome, ProcessResult};

/// A delivery that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct DeliveryError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// What was done for one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    /// The recipient.
    pub recipient: String,
    /// `deliver`, `relay`, `bounce`, `drop` or `tempfail`.
    pub kind: &'static str,
    /// The folder, for `deliver`.
    pub folder: Option<String>,
    /// The file written, if any.
    pub path: Option<PathBuf>,
}

/// A mailbox store in a local directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

/// Makes a string safe as one path component: no separators, no leading dot, no controls.
fn path_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.starts_with('.') || out.is_empty() {
        out.insert(0, '_');
    }
    out.truncate(out.floor_char_boundary(200));
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    let err = |source| DeliveryError {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
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

    /// Writes one mailbox copy: `<root>/<domain>/<local-part>/<folder>/<message-id>.eml`.
    pub fn store(
        &self,
        recipient: &str,
        folder: &str,
        message_id: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, DeliveryError> {
        let (local, domain) = recipient.rsplit_once('@').unwrap_or((recipient, ""));
        let path = self
            .root
            .join(path_component(&domain.to_ascii_lowercase()))
            .join(path_component(&local.to_ascii_lowercase()))
            .join(path_component(folder))
            .join(format!("{}.eml", path_component(message_id)));
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// Writes every group's deliveries. Stops at the first write error (the caller retries
    /// the whole message; names are stable so a retry overwrites, never duplicates).
    pub fn deliver(
        &self,
        result: &ProcessResult,
        original: &Message,
        envelope: &Envelope,
    ) -> Result<Vec<DeliveryRecord>, DeliveryError> {
        let id = path_component(&result.message_id);
        let mut records = Vec::new();
        for group in &result.groups {
            if let GroupOutcome::Tempfail { .. } = group.outcome {
                records.extend(group.recipients.iter().map(|r| DeliveryRecord {
                    recipient: r.clone(),
                    kind: "tempfail",
                    folder: None,
                    path: None,
                }));
                continue;
            }
            let bytes: &[u8] = match &group.output {
                Some(OutputMessage::Edited(b)) => b,
                _ => original.raw(),
            };
            let group_tag = path_component(&group.domain.replace('*', "any"));
            let mut relay_to = Vec::new();
            let mut bounced = Vec::new();
            for d in &group.dispositions {
                match d {
                    Disposition::Deliver { recipient, folder } => {
                        let path = self.store(recipient, folder, &result.message_id, bytes)?;
                        records.push(DeliveryRecord {
                            recipient: recipient.clone(),
                            kind: "deliver",
                            folder: Some(folder.clone()),
                            path: Some(path),
                        });
                    }
                    Disposition::Relay { recipient, .. } => relay_to.push(recipient.clone()),
                    Disposition::Bounce { .. } => bounced.push(d),
                    Disposition::Drop { recipient } => records.push(DeliveryRecord {
                        recipient: recipient.clone(),
                        kind: "drop",
                        folder: None,
                        path: None,
                    }),
                }
            }
            let outbox = self.root.join("outbox");
            if !relay_to.is_empty() {
                let path = outbox.join(format!("{id}-{group_tag}.relay.eml"));
                write_atomic(&path, bytes)?;
                let envelope_json = serde_json::json!({
                    "mail_from": envelope.mail_from,
                    "recipients": relay_to,
                });
                write_atomic(
                    &path.with_extension("json"),
                    serde_json::to_string_pretty(&envelope_json)
                        .unwrap_or_default()
                        .as_bytes(),
                )?;
                records.extend(relay_to.iter().map(|r| DeliveryRecord {
                    recipient: r.clone(),
                    kind: "relay",
                    folder: None,
                    path: Some(path.clone()),
                }));
            }
            if !bounced.is_empty() {
                let path = outbox.join(format!("{id}-{group_tag}.bounce.json"));
                let json = serde_json::json!({
                    "to": envelope.mail_from,
                    "message_id": result.message_id,
                    "recipients": bounced,
                });
                write_atomic(
                    &path,
                    serde_json::to_string_pretty(&json)
                        .unwrap_or_default()
                        .as_bytes(),
                )?;
                records.extend(bounced.iter().map(|d| DeliveryRecord {
                    recipient: d.recipient().to_string(),
                    kind: "bounce",
                    folder: None,
                    path: Some(path.clone()),
                }));
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::path_component;

    #[test]
    fn path_components_cannot_escape() {
        assert_eq!(path_component("../etc"), "_.._etc");
        assert_eq!(path_component("a/b"), "a_b");
        assert_eq!(path_component(".."), "_..");
        assert_eq!(path_component(""), "_");
        assert_eq!(path_component("INBOX"), "INBOX");
        // Cut on a character boundary, never in the middle of one (that would panic).
        let long = "é".repeat(150);
        assert!(path_component(&long).len() <= 200);
    }
}
