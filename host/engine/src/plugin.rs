//! A loaded rule component: compiled once, pre-linked, validated against the world.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Store;

use crate::bindings::{RuleInstance, RulePre};
use crate::cache::CacheMiss;
use crate::engine::{EngineError, RuleEngine};
use crate::state::StoreState;
use crate::step::RuleRuntime;

/// Where a plugin's compiled code came from, and how long loading took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum LoadSource {
    /// Compiled with Cranelift now.
    Compiled {
        /// Compile time in microseconds.
        micros: u64,
    },
    /// Read back from the compiled cache.
    Cache {
        /// Load time in microseconds.
        micros: u64,
    },
}

/// A rule component ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct RulePlugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    // Shared: every message's trace names the plugin, and a reference count is cheaper
    // than two string copies per step.
    name: Arc<str>,
    sha256: Arc<str>,
    pre: RulePre<StoreState>,
    /// Where `evaluate` is among the component's exports.
    evaluate: ComponentExportIndex,
    uses_wasi: bool,
    source: LoadSource,
    size: u64,
    runtime: RuleRuntime,
}

impl RulePlugin {
    /// Loads a component file.
    pub fn load_file(
        engine: &RuleEngine,
        name: &str,
        path: &Path,
    ) -> Result<RulePlugin, EngineError> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Read {
            plugin: name.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        RulePlugin::load_bytes(engine, name, &bytes)
    }

    /// Loads a component from bytes: from the compiled cache when a sound entry exists,
    /// else compiled (and cached).
    pub fn load_bytes(
        engine: &RuleEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<RulePlugin, EngineError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let cached = match &engine.cache {
            Some(cache) => cache.get(&engine.engine, &sha256),
            None => Err(CacheMiss::Absent),
        };
        let (component, source) = match cached {
            Ok(component) => (
                component,
                LoadSource::Cache {
                    micros: started.elapsed().as_micros() as u64,
                },
            ),
            Err(_) => {
                let component = Component::new(&engine.engine, bytes).map_err(|e| {
                    EngineError::InvalidComponent {
                        plugin: name.to_string(),
                        reason: format!("{e:#}"),
                    }
                })?;
                let micros = started.elapsed().as_micros() as u64;
                if let Some(cache) = &engine.cache {
                    match component.serialize() {
                        Ok(serialized) => cache.put(&sha256, &serialized),
                        Err(e) => tracing::warn!(plugin = name, "cannot serialize: {e:#}"),
                    }
                }
                (component, LoadSource::Compiled { micros })
            }
        };

        let uses_wasi = component
            .component_type()
            .imports(&engine.engine)
            .any(|(import, _)| import.starts_with("wasi:"));
        let wrong_world = |e: wasmtime::Error| EngineError::WrongWorld {
            plugin: name.to_string(),
            reason: format!("{e:#}"),
        };
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = RulePre::new(pre).map_err(wrong_world)?;
        // `RulePre::new` found and type-checked it, so it is there.
        let evaluate = component
            .get_export_index(None, "evaluate")
            .ok_or_else(|| wrong_world(wasmtime::format_err!("no export `evaluate`")))?;
        Ok(RulePlugin {
            inner: Arc::new(PluginInner {
                name: name.into(),
                sha256: sha256.into(),
                pre,
                evaluate,
                uses_wasi,
                source,
                size: bytes.len() as u64,
                runtime: RuleRuntime::detect(bytes),
            }),
        })
    }

    /// The plugin's name (as given when loading).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The sha256 of the component bytes, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// [`RulePlugin::name`] as a shared string, for records kept per message.
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.inner.name)
    }

    /// [`RulePlugin::sha256`] as a shared string, for records kept per message.
    pub fn shared_sha256(&self) -> Arc<str> {
        Arc::clone(&self.inner.sha256)
    }

    /// What the rule runs on (native Wasm, or a JavaScript/Python interpreter inside it).
    pub fn runtime(&self) -> RuleRuntime {
        self.inner.runtime
    }

    /// Whether the component imports WASI (and so gets a sealed WASI context per message).
    pub fn uses_wasi(&self) -> bool {
        self.inner.uses_wasi
    }

    /// Where the compiled code came from.
    pub fn source(&self) -> &LoadSource {
        &self.inner.source
    }

    /// Component size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    pub(crate) fn pre(&self) -> &RulePre<StoreState> {
        &self.inner.pre
    }

    /// A new instance of the rule in `store`.
    pub(crate) fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<RuleInstance> {
        let instance = self.inner.pre.instance_pre().instantiate(&mut *store)?;
        let evaluate = instance
            .get_func(&mut *store, self.inner.evaluate)
            .ok_or_else(|| wasmtime::format_err!("the instance has no `evaluate` function"))?;
        Ok(RuleInstance::new(evaluate))
    }
}

impl std::fmt::Debug for RulePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulePlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("uses_wasi", &self.inner.uses_wasi)
            .finish()
    }
}
