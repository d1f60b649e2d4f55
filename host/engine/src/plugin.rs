//! A loaded rule component: compiled once, pre-linked, validated against the world.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Store;

use crate::bindings::{v0_2, v0_2_0, RuleInstance, RulePre, WitTrack};
use crate::engine::{EngineError, RuleEngine};
use crate::precompiled::Lookup;
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
    /// Loaded from an artifact of `sluice plugin precompile` shipped with the host.
    Precompiled {
        /// Load time in microseconds (reading, checking and loading the artifact).
        micros: u64,
    },
}

/// A component pre-linked against the world of the track it implements.
pub(crate) enum TrackPre {
    V0_1(RulePre<StoreState>),
    V0_2(v0_2::RulePre<StoreState>),
    /// A rule built against 0.2.0: its `action` lacks 0.2.1's `replace-part`.
    V0_2_0(v0_2_0::RulePre<StoreState>),
}

impl TrackPre {
    fn instance_pre(&self) -> &wasmtime::component::InstancePre<StoreState> {
        match self {
            TrackPre::V0_1(pre) => pre.instance_pre(),
            TrackPre::V0_2(pre) => pre.instance_pre(),
            TrackPre::V0_2_0(pre) => pre.instance_pre(),
        }
    }

    pub(crate) fn track(&self) -> WitTrack {
        match self {
            TrackPre::V0_1(_) => WitTrack::V0_1,
            TrackPre::V0_2(_) | TrackPre::V0_2_0(_) => WitTrack::V0_2,
        }
    }
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
    pre: TrackPre,
    /// Where `evaluate` is among the component's exports.
    evaluate: ComponentExportIndex,
    uses_wasi: bool,
    /// Set once `evaluate` passed [`RuleInstance::check_type`] (on the first instance).
    evaluate_checked: std::sync::atomic::AtomicBool,
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

    /// Loads a component from bytes: from a shipped precompiled artifact or the compiled
    /// cache when a sound one exists, else compiled (and cached).
    pub fn load_bytes(
        engine: &RuleEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<RulePlugin, EngineError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (component, source) = load_component(engine, name, &sha256, bytes)?;

        let component_type = component.component_type();
        let uses_wasi = component_type
            .imports(&engine.engine)
            .any(|(import, _)| import.starts_with("wasi:"));
        let track = WitTrack::of_imports(component_type.imports(&engine.engine).map(|(i, _)| i));
        let wrong_world = |e: wasmtime::Error| EngineError::WrongWorld {
            plugin: name.to_string(),
            reason: format!("{e:#}"),
        };
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        // The 0.2 and 0.1 worlds differ in `evaluate`'s type: check against the rule's own.
        let pre = match track {
            WitTrack::V0_1 => TrackPre::V0_1(RulePre::new(pre).map_err(wrong_world)?),
            // 0.2.1 added a case to `action`: a rule built against 0.2.0 type-checks against
            // the frozen 0.2.0 world instead (the error names today's world when neither fits).
            WitTrack::V0_2 => match v0_2::RulePre::new(pre.clone()) {
                Ok(pre) => TrackPre::V0_2(pre),
                Err(e) => match v0_2_0::RulePre::new(pre) {
                    Ok(pre) => TrackPre::V0_2_0(pre),
                    Err(_) => return Err(wrong_world(e)),
                },
            },
        };
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
                evaluate_checked: std::sync::atomic::AtomicBool::new(false),
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

    pub(crate) fn pre(&self) -> &TrackPre {
        &self.inner.pre
    }

    /// The version of the rule world the component implements (`0.1` or `0.2`).
    pub fn wit_track(&self) -> WitTrack {
        self.inner.pre.track()
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
        let replace_part = matches!(self.inner.pre, TrackPre::V0_2(_));
        let rule = RuleInstance::new(evaluate, self.inner.pre.track(), replace_part);
        let checked = &self.inner.evaluate_checked;
        if !checked.load(std::sync::atomic::Ordering::Acquire) {
            rule.check_type(&*store)?;
            checked.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(rule)
    }
}

/// The compiled component for `bytes`: from a shipped precompiled artifact, else from the
/// compiled cache, else compiled now (and cached). Each load is logged with where it came from;
/// a refused artifact is logged with why.
fn load_component(
    engine: &RuleEngine,
    name: &str,
    sha256: &str,
    bytes: &[u8],
) -> Result<(Component, LoadSource), EngineError> {
    let started = Instant::now();
    let micros = || started.elapsed().as_micros() as u64;
    let ms = |micros: u64| micros as f64 / 1e3;
    let mut missing = None;
    if let Some(precompiled) = &engine.precompiled {
        match precompiled.get(&engine.engine, sha256) {
            Lookup::Loaded(component, path) => {
                let micros = micros();
                tracing::info!(
                    plugin = name,
                    from = "precompiled",
                    ms = ms(micros),
                    path = %path.display(),
                    "plugin loaded"
                );
                return Ok((component, LoadSource::Precompiled { micros }));
            }
            Lookup::Refused(why) => {
                tracing::warn!(
                    plugin = name,
                    sha256,
                    "precompiled artifact refused, using the cache or compiling: {why}"
                );
                missing = Some(why);
            }
            Lookup::Absent => missing = Some("no precompiled artifact".to_string()),
        }
    }
    if let Some(cache) = &engine.cache {
        if let Ok(component) = cache.get(&engine.engine, sha256) {
            let micros = micros();
            tracing::info!(
                plugin = name,
                from = "cache",
                ms = ms(micros),
                "plugin loaded"
            );
            return Ok((component, LoadSource::Cache { micros }));
        }
    }
    let component =
        Component::new(&engine.engine, bytes).map_err(|e| EngineError::InvalidComponent {
            plugin: name.to_string(),
            reason: format!("{e:#}"),
        })?;
    let micros = micros();
    match &missing {
        // With shipped artifacts, a compile is what they were meant to avoid: say why.
        Some(why) => tracing::info!(
            plugin = name,
            sha256,
            from = "compiled",
            ms = ms(micros),
            dirs = ?engine.precompiled_dirs(),
            "plugin compiled with Cranelift ({why})"
        ),
        None => tracing::info!(
            plugin = name,
            from = "compiled",
            ms = ms(micros),
            "plugin compiled with Cranelift"
        ),
    }
    if let Some(cache) = &engine.cache {
        match component.serialize() {
            Ok(serialized) => cache.put(sha256, &serialized),
            Err(e) => tracing::warn!(plugin = name, "cannot serialize: {e:#}"),
        }
    }
    Ok((component, LoadSource::Compiled { micros }))
}

impl std::fmt::Debug for RulePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulePlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("uses_wasi", &self.inner.uses_wasi)
            .field("wit_track", &self.inner.pre.track())
            .finish()
    }
}
