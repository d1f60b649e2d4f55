//! `[store] kind = "dir"`: files under a directory, the same layout as `sluice run --out`
//! ([`sluice_chain::DirStore`]). A copy's name derives from the message id, so storing it
//! again overwrites it.

use sluice_chain::{DirStore, DirStoreError};

use crate::{BoxFuture, MailboxError, MailboxStore, StoreOutcome, StoreRequest};

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
