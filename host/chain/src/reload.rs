//! Chains that follow their config: the daemon (every N seconds) and the Lambda (at most
//! every N seconds) ask [`LiveChains::reload_if_changed`]; when the config's version (S3
//! ETag, or a local file's size and mtime) changed, the new config and all its plugins are
//! loaded and type-checked first, and only then swapped in, whole. A config that fails to
//! load is reported and the previous chains keep serving.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sluice_engine::RuleEngine;

use crate::chain::{PluginSources, RuleChains, SourceError};
use crate::config::{ConfigError, ConfigFile};

/// Where a config comes from, with a cheap version check.
pub trait ConfigSource: Send + Sync {
    /// For messages: the path or URL.
    fn name(&self) -> &str;
    /// A value that changes whenever the config does (ETag, size + mtime).
    fn version(&self) -> Result<Option<String>, SourceError>;
    /// Reads and parses the config, with the version it had.
    fn read(&self) -> Result<(ConfigFile, Option<String>), ConfigError>;
}

/// A local config file's metadata could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {source}")]
struct FileUnreadable {
    name: String,
    #[source]
    source: std::io::Error,
}

/// A local config file; its version is its length and modification time.
pub struct FileConfigSource {
    path: std::path::PathBuf,
    name: String,
}

impl FileConfigSource {
    /// A source for this file.
    pub fn new(path: impl Into<std::path::PathBuf>) -> FileConfigSource {
        let path = path.into();
        FileConfigSource {
            name: path.display().to_string(),
            path,
        }
    }
}

impl ConfigSource for FileConfigSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> Result<Option<String>, SourceError> {
        let meta = std::fs::metadata(&self.path).map_err(|source| FileUnreadable {
            name: self.name.clone(),
            source,
        })?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Some(format!("{}-{modified}", meta.len())))
    }

    fn read(&self) -> Result<(ConfigFile, Option<String>), ConfigError> {
        let version = self.version().ok().flatten();
        Ok((ConfigFile::read(&self.path)?, version))
    }
}

/// One loaded config and its chains.
#[derive(Debug)]
pub struct LoadedChains {
    /// The config.
    pub config: ConfigFile,
    /// Its chains, ready to run.
    pub chains: RuleChains,
    /// The config's version when it was read.
    pub version: Option<String>,
}

/// What [`LiveChains::reload_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Checked too recently; nothing asked.
    NotDue,
    /// Same version: nothing to do.
    Unchanged,
    /// The new config loaded and replaced the old one.
    Reloaded {
        /// The new version.
        version: Option<String>,
    },
    /// The new config (or the version check) failed; the old chains keep serving.
    Refused {
        /// Why, with file, line and step where they apply.
        error: String,
    },
}

/// The chains currently serving, swapped whole when the config changes.
pub struct LiveChains<'a> {
    engine: &'a RuleEngine,
    source: &'a dyn ConfigSource,
    plugins: PluginSources<'a>,
    current: RwLock<Arc<LoadedChains>>,
    interval: Duration,
    last_check: Mutex<Instant>,
}

impl<'a> LiveChains<'a> {
    /// Loads the config once; an error here means there is nothing to serve.
    pub fn load(
        engine: &'a RuleEngine,
        source: &'a dyn ConfigSource,
        plugins: PluginSources<'a>,
        interval: Duration,
    ) -> Result<LiveChains<'a>, ConfigError> {
        let (config, version) = source.read()?;
        LiveChains::load_from(engine, source, plugins, interval, config, version)
    }

    /// Like [`LiveChains::load`], from a config the caller already read from `source` (e.g.
    /// to size the engine from its `[engine]` section) at `version`.
    pub fn load_from(
        engine: &'a RuleEngine,
        source: &'a dyn ConfigSource,
        plugins: PluginSources<'a>,
        interval: Duration,
        config: ConfigFile,
        version: Option<String>,
    ) -> Result<LiveChains<'a>, ConfigError> {
        let chains = RuleChains::load_with(engine, &config, &plugins)?;
        Ok(LiveChains {
            engine,
            source,
            plugins,
            current: RwLock::new(Arc::new(LoadedChains {
                config,
                chains,
                version,
            })),
            interval,
            last_check: Mutex::new(Instant::now()),
        })
    }

    /// The chains serving now. Hold the `Arc` for the whole message: a reload never changes
    /// the chains under a message in flight.
    pub fn current(&self) -> Arc<LoadedChains> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the config's version if the interval has passed since the last check, and
    /// reloads when it changed.
    pub fn reload_if_due(&self) -> ReloadOutcome {
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < self.interval {
                return ReloadOutcome::NotDue;
            }
            *last = Instant::now();
        }
        self.reload_if_changed()
    }

    /// Checks the config's version now, and reloads when it changed.
    pub fn reload_if_changed(&self) -> ReloadOutcome {
        let current = self.current();
        let version = match self.source.version() {
            Ok(v) => v,
            Err(error) => {
                tracing::warn!(
                    config = self.source.name(),
                    "cannot check the config: {error}"
                );
                return ReloadOutcome::Refused {
                    error: error.to_string(),
                };
            }
        };
        if version.is_some() && version == current.version {
            return ReloadOutcome::Unchanged;
        }
        let loaded = self.source.read().and_then(|(config, version)| {
            let chains = RuleChains::load_with(self.engine, &config, &self.plugins)?;
            Ok(LoadedChains {
                config,
                chains,
                version,
            })
        });
        match loaded {
            Ok(loaded) => {
                let version = loaded.version.clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                tracing::info!(config = self.source.name(), ?version, "config reloaded");
                ReloadOutcome::Reloaded { version }
            }
            Err(e) => {
                let error = e.to_string();
                tracing::error!(
                    config = self.source.name(),
                    "new config refused, the previous one keeps serving: {error}"
                );
                ReloadOutcome::Refused { error }
            }
        }
    }
}
