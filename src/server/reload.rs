//! Reloading the configuration while serving: on SIGHUP, and when gateway.toml or any file it
//! names (certificates, keys, CAs, secrets) changes. A reload builds a complete new snapshot and
//! swaps it in atomically; a config that fails validation keeps the running one, and every
//! error is logged with file:line:col and counted.
//!
//! Files are watched by polling their metadata (modification time, size, inode) and, for files
//! up to 1 MiB, a hash of their contents, every second:
//! portable, cheap for a handful of files, and it sees the symlink swap by which Kubernetes
//! updates mounted ConfigMaps and Secrets. The API keys file has its own watcher and is left out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tls::SniResolver;
use crate::config::Config;
use crate::fingerprint::{self, Fingerprint};
use crate::runtime::{Runtime, Snapshot};

/// How often watched files are checked.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a changed file must stay unchanged before it is read.
const SETTLE: Duration = Duration::from_millis(100);

/// Applies new configurations to a running gateway.
#[derive(Clone)]
pub struct Reloader {
    pub(super) runtime: Arc<Runtime>,
    pub(super) resolver: Arc<SniResolver>,
}

impl Reloader {
    /// Swaps in a snapshot built from `config`: new requests and TLS handshakes use it at once,
    /// requests in flight finish on the one they started with. Listener addresses cannot change
    /// without a restart; a config that changes them is refused.
    pub fn apply(&self, config: Config) -> Result<(), String> {
        let current = self.runtime.load();
        let (old, new) = (&current.config.server, &config.server);
        if old.http != new.http || old.https != new.https || current.config.admin != config.admin {
            return Err("listener addresses changed: restart the gateway to apply them".into());
        }
        if current.config.tls_min_version != config.tls_min_version {
            return Err("[tls] min_version changed: restart the gateway to apply it".into());
        }
        let certificates = config.certificates.clone();
        let snapshot = Snapshot::new(config, Some(&current))?;
        self.resolver.replace(&certificates);
        self.runtime.store(Arc::new(snapshot));
        Ok(())
    }

    /// Loads `path` and applies it, logging and counting the outcome. Returns whether the new
    /// configuration is in force.
    pub fn reload_file(&self, path: &Path) -> bool {
        self.try_reload(path).is_ok()
    }

    /// [`Reloader::reload_file`], returning on failure the files the rejected config names.
    fn try_reload(&self, path: &Path) -> Result<(), Vec<PathBuf>> {
        let outcome = Config::load(path)
            .map_err(|errors| {
                let reasons = errors.diagnostics.iter().map(ToString::to_string).collect();
                (reasons, errors.named)
            })
            .and_then(|config| {
                self.apply(config)
                    .map_err(|reason| (vec![reason], Vec::new()))
            });
        crate::metrics::config_reload(outcome.is_ok());
        match outcome {
            Ok(()) => {
                tracing::info!(config = %path.display(), "configuration reloaded");
                Ok(())
            }
            Err((reasons, named)) => {
                for reason in reasons {
                    tracing::error!(diagnostic = %reason, "reload failed; keeping the running configuration");
                }
                Err(named)
            }
        }
    }

    /// Reloads whenever the config file or a file it names differs from `baseline` (the
    /// versions the running configuration was read from), until the returned task is aborted.
    pub fn watch(self, path: PathBuf, baseline: Baseline) -> tokio::task::JoinHandle<()> {
        let mut seen = versions(watched(&path, &self.runtime.load()), &baseline.0);
        tokio::spawn(async move {
            // Files a rejected config names (a keys file that does not exist yet, say): their
            // appearing or changing is a reason to try that config again.
            let mut rejected_named: Vec<PathBuf> = Vec::new();
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let files = with(watched(&path, &self.runtime.load()), &rejected_named);
                let mut now = fingerprints(&files);
                if now == seen {
                    continue;
                }
                // A file being written shows up half-done: wait until it stops changing.
                for _ in 0..10 {
                    tokio::time::sleep(SETTLE).await;
                    let again = fingerprints(&files);
                    if again == now {
                        break;
                    }
                    now = again;
                }
                rejected_named = self.try_reload(&path).err().unwrap_or_default();
                // Remember what was read, not what is there now: a change made while reloading
                // is then seen at the next poll. Files the new config names join the watch.
                let next = with(watched(&path, &self.runtime.load()), &rejected_named);
                seen = versions(next, &now);
            }
        })
    }
}

/// The version of each of `files` as `known` has it, else as it is now: the map the next poll
/// compares against, with exactly the files it looks at.
fn versions(
    files: Vec<PathBuf>,
    known: &HashMap<PathBuf, Fingerprint>,
) -> HashMap<PathBuf, Fingerprint> {
    files
        .into_iter()
        .map(|file| {
            let version = match known.get(&file) {
                Some(read) => *read,
                None => fingerprint::with_contents(&file),
            };
            (file, version)
        })
        .collect()
}

/// `files` and, once each, the `extra` ones.
fn with(mut files: Vec<PathBuf>, extra: &[PathBuf]) -> Vec<PathBuf> {
    for file in extra {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    files
}

/// The config file and the files the running config names, but the API keys file.
fn watched(config_file: &Path, snapshot: &Snapshot) -> Vec<PathBuf> {
    let keys_file = snapshot
        .config
        .api_keys
        .as_ref()
        .and_then(|k| k.file.as_ref());
    std::iter::once(config_file.to_path_buf())
        .chain(
            snapshot
                .config
                .sources
                .iter()
                .filter(|p| Some(*p) != keys_file)
                .cloned(),
        )
        .collect()
}

fn fingerprints(files: &[PathBuf]) -> HashMap<PathBuf, Fingerprint> {
    files
        .iter()
        .map(|file| (file.clone(), fingerprint::with_contents(file)))
        .collect()
}

/// The versions of the config file and of the files it names, as they were when a
/// configuration was read: where the watcher starts from.
#[derive(Debug, Default)]
pub struct Baseline(HashMap<PathBuf, Fingerprint>);

impl Baseline {
    /// Takes the config file's version; call it *before* reading the file, so a change made
    /// while the gateway starts is seen as a change (at worst, one needless reload).
    pub fn before_reading(config_file: &Path) -> Baseline {
        Baseline(HashMap::from([(
            config_file.to_path_buf(),
            fingerprint::with_contents(config_file),
        )]))
    }

    /// Adds the versions of the files `config` names, which its loading has just read.
    pub fn with_sources(mut self, config: &Config) -> Baseline {
        for file in &config.sources {
            self.0
                .entry(file.clone())
                .or_insert_with(|| fingerprint::with_contents(file));
        }
        self
    }
}
