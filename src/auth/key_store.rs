//! The API key table requests see, and the watcher that reloads it when the keys file changes.
//!
//! The watcher polls the file's metadata (modification time, size, inode) every second rather
//! than subscribing to file events: that also catches the symlink swap by which Kubernetes
//! updates a mounted Secret. A changed file is parsed in full and swapped in atomically; a bad
//! one is logged with file:line:col and the last good table stays.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;

use super::api_keys::{self, KeyTable};
use crate::config::ApiKeySettings;
use crate::fingerprint::{self, Fingerprint};

/// How often the keys file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The live API key table of one snapshot.
#[derive(Debug)]
pub struct KeyStore {
    /// The header keys arrive in.
    pub header: HeaderName,
    table: ArcSwap<KeyTable>,
}

impl KeyStore {
    /// Starts serving `settings.table` and, when there is a keys file, watching it.
    pub fn start(settings: &ApiKeySettings) -> Arc<KeyStore> {
        let store = Arc::new(KeyStore {
            header: settings.header.clone(),
            table: ArcSwap::new(settings.table.clone()),
        });
        if let Some(file) = &settings.file {
            tokio::spawn(watch(
                Arc::downgrade(&store),
                file.clone(),
                settings.file_version,
                settings.inline.clone(),
                settings.plans.clone(),
            ));
        }
        store
    }

    /// The current table.
    pub fn table(&self) -> arc_swap::Guard<Arc<KeyTable>> {
        self.table.load()
    }
}

/// Reloads `file` whenever it differs from `seen`, the version the running table was read from.
async fn watch(
    store: Weak<KeyStore>,
    file: PathBuf,
    mut seen: Fingerprint,
    inline: Arc<KeyTable>,
    plans: Arc<[String]>,
) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Some(store) = store.upgrade() else { return };
        let current = fingerprint::of(&file);
        if current == seen {
            continue;
        }
        seen = current;
        let path = file.clone();
        let plans = plans.clone();
        // Parsing a large file is blocking work; keep it off the request threads.
        let loaded = tokio::task::spawn_blocking(move || api_keys::load_file(&path, &plans)).await;
        match loaded {
            Ok(Ok(table)) => {
                let table = table.merged_with(&inline);
                tracing::info!(file = %file.display(), keys = table.len(), "API keys reloaded");
                store.table.store(Arc::new(table));
            }
            Ok(Err(diagnostics)) => {
                for diagnostic in diagnostics {
                    tracing::error!(%diagnostic, "API keys file rejected; keeping the last good keys");
                }
            }
            Err(error) => {
                tracing::error!(%error, "API keys reload failed; keeping the last good keys")
            }
        }
    }
}
