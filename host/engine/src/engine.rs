//! The process-wide engine: wasmtime configuration, linker, epoch ticker, compiled cache.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Rule;
use crate::cache::CompiledCache;
use crate::precompiled::{base_config, check_not_writable, PrecompiledDirs};
use crate::state::StoreState;

/// Errors from building the engine or loading a plugin. Each names the plugin it is about.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    /// The plugin's bytes are not a component, or it does not compile.
    #[error("plugin {plugin}: not a valid rule component: {reason}")]
    InvalidComponent {
        /// The plugin's name in the config.
        plugin: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component's imports or exports do not match the `sluice:rules` world.
    #[error("plugin {plugin}: does not implement the sluice:rules `rule` world: {reason}")]
    WrongWorld {
        /// The plugin's name in the config.
        plugin: String,
        /// What did not match.
        reason: String,
    },
    /// The plugin file could not be read.
    #[error("plugin {plugin}: cannot read {path}: {source}")]
    Read {
        /// The plugin's name in the config.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rule's `validate-config` refused its configuration.
    #[error("plugin {plugin}: config refused by the rule: {reason}")]
    ConfigRefused {
        /// The plugin's name in the config.
        plugin: String,
        /// What the rule said.
        reason: String,
    },
    /// `validate-config` trapped or timed out.
    #[error("plugin {plugin}: validate-config failed: {reason}")]
    ValidateFailed {
        /// The plugin's name in the config.
        plugin: String,
        /// The trap or timeout.
        reason: String,
    },
}

/// Whether to use wasmtime's pooling instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingChoice {
    /// Use it when the address space reservation succeeds, else allocate on demand.
    #[default]
    Auto,
    /// Always allocate on demand.
    Off,
}

/// Engine settings. The defaults fit a daemon or a Lambda.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Size bound of the cache directory (default 512 MiB, least recently used go first).
    pub cache_max_bytes: u64,
    /// Pooling allocator choice (default: auto).
    pub pooling: PoolingChoice,
    /// Deadline granularity (default 1 ms): the epoch ticks at this interval.
    pub epoch_tick: Duration,
    /// Instances the pool keeps room for (default 1000: e.g. 250 messages in flight through
    /// chains of 4 steps). Beyond it, instantiation fails with a clear error.
    pub pool_instances: u32,
    /// The largest memory any step may be given (default 512 MiB); per-step caps are lower.
    pub max_memory_bytes: usize,
    /// Bytes of each pooled linear memory kept resident between messages (default 4 MiB).
    pub keep_resident_bytes: usize,
    /// Directories of artifacts made by `sluice plugin precompile`, shipped with the host
    /// (a Lambda's `/var/task/rules`, a layer's `/opt/sluice/rules`), searched in order before
    /// the cache; default none. Never a directory anyone but the operator's build writes:
    /// see `precompiled.rs`. One that overlaps `cache_dir` is refused.
    pub precompiled_dirs: Vec<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: None,
            cache_max_bytes: crate::cache::DEFAULT_CACHE_BYTES,
            pooling: PoolingChoice::Auto,
            epoch_tick: Duration::from_millis(1),
            pool_instances: 1000,
            max_memory_bytes: 512 * 1024 * 1024,
            keep_resident_bytes: 4 << 20,
            precompiled_dirs: Vec::new(),
        }
    }
}

/// Slots the pool keeps warm (with their memory's first [`EngineOptions::keep_resident_bytes`]
/// resident) after their instance is gone, for the next instance of the same rule.
pub const WARM_SLOTS: u32 = 100;

impl EngineOptions {
    /// These options for a process limited to `limit_bytes` of memory (a Lambda function's
    /// memory size, a container's cgroup limit): what the pool keeps resident between
    /// messages, [`WARM_SLOTS`] x `keep_resident_bytes` (400 MiB with the defaults), is held
    /// to a quarter of it, so a 128 MB function keeps at most 32 MiB that way. The pool's
    /// address space reservation itself is virtual and costs no memory.
    pub fn within_memory(mut self, limit_bytes: Option<u64>) -> EngineOptions {
        if let Some(limit) = limit_bytes {
            let per_slot = (limit / 4 / u64::from(WARM_SLOTS)) as usize;
            // Whole pages; 0 returns every page to the kernel as the on-demand allocator does.
            let per_slot = per_slot / 4096 * 4096;
            self.keep_resident_bytes = self.keep_resident_bytes.min(per_slot);
        }
        self
    }
}

/// The memory this process may use, when something limits it: a Lambda function's memory
/// size (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, MB), else a cgroup v2 limit
/// (`/sys/fs/cgroup/memory.max`, e.g. a container's or a systemd unit's `MemoryMax=`).
pub fn process_memory_limit() -> Option<u64> {
    let lambda = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|mb| mb.trim().parse::<u64>().ok())
        .map(|mb| mb << 20);
    lambda.or_else(|| {
        std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|max| max.trim().parse::<u64>().ok())
    })
}

/// One per process: compiles and caches rule components, instantiates them per message.
pub struct RuleEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) cache: Option<CompiledCache>,
    pub(crate) precompiled: Option<PrecompiledDirs>,
    pub(crate) epoch_tick: Duration,
    pub(crate) max_memory_bytes: usize,
    pooling: bool,
    ticker: Option<Ticker>,
    /// When the ticker started, and how many ticks it has given the engine: a deadline set
    /// while the ticker lags (a late wake-up it has not caught up yet) adds the lag, or the
    /// catch-up would end the step that many ticks early.
    epoch_start: Instant,
    epoch_given: Arc<std::sync::atomic::AtomicU64>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl RuleEngine {
    /// Builds the engine, trying the pooling allocator first when `opts.pooling` is `Auto`.
    pub fn new(opts: EngineOptions) -> Result<RuleEngine, EngineError> {
        if let Some(cache) = &opts.cache_dir {
            for dir in &opts.precompiled_dirs {
                check_not_writable(dir, cache).map_err(EngineError::Config)?;
            }
        }
        let mut engine = None;
        if opts.pooling == PoolingChoice::Auto {
            // First choice: reset a returning slot's dirty pages with memset, found with
            // PAGEMAP_SCAN (Linux >= 6.7), instead of madvise: the pages stay resident, so the
            // next message neither makes the syscall nor takes the page faults. Without
            // PAGEMAP_SCAN, keeping pages resident would memset them all on every reset, which
            // costs more than madvise, so the second choice is plain pooling.
            for scan in [true, false] {
                let mut pool = PoolingAllocationConfig::new();
                pool.total_component_instances(opts.pool_instances)
                    .total_core_instances(opts.pool_instances * 4)
                    .total_memories(opts.pool_instances * 2)
                    .total_tables(opts.pool_instances * 4)
                    .max_memories_per_component(16)
                    .max_tables_per_component(16)
                    .max_memory_size(opts.max_memory_bytes)
                    .max_core_instance_size(16 << 20)
                    .table_elements(100_000)
                    .max_unused_warm_slots(WARM_SLOTS);
                if scan {
                    pool.linear_memory_keep_resident(opts.keep_resident_bytes)
                        .table_keep_resident(64 << 10)
                        .pagemap_scan(Enabled::Yes);
                }
                let mut config = base_config();
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
                match Engine::new(&config) {
                    Ok(e) => {
                        engine = Some((e, true));
                        break;
                    }
                    Err(err) if scan => {
                        tracing::debug!("pooling with PAGEMAP_SCAN unavailable ({err:#})")
                    }
                    Err(err) => tracing::warn!(
                        "pooling allocator unavailable ({err:#}); allocating instances on demand"
                    ),
                }
            }
        }
        let (engine, pooling) = match engine {
            Some(e) => e,
            None => (
                Engine::new(&base_config()).map_err(|e| EngineError::Config(format!("{e:#}")))?,
                false,
            ),
        };

        let mut linker = Linker::<StoreState>::new(&engine);
        Rule::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| EngineError::Config(format!("{e:#}")))?;
        crate::bindings::v0_2::Rule::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| EngineError::Config(format!("{e:#}")))?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| EngineError::Config(format!("{e:#}")))?;

        let cache = opts.cache_dir.as_ref().map(|dir| {
            CompiledCache::new(dir.clone(), &engine).with_max_bytes(opts.cache_max_bytes)
        });

        let precompiled = (!opts.precompiled_dirs.is_empty())
            .then(|| PrecompiledDirs::new(opts.precompiled_dirs.clone()));

        let stop = Arc::new(AtomicBool::new(false));
        let epoch_start = Instant::now();
        let epoch_given = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            let given = epoch_given.clone();
            let tick = opts.epoch_tick;
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    // The epoch follows the wall clock, not the number of wake-ups: under CPU
                    // load a 1 ms sleep can take several, and counting wake-ups stretched a
                    // 100 ms deadline to 200-300 ms. After a late wake-up the epoch catches
                    // up at once, so a deadline overshoots by one scheduling delay at most.
                    let tick_nanos = tick.as_nanos().max(1);
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        let due = epoch_start.elapsed().as_nanos() / tick_nanos;
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                            given.fetch_add(1, Ordering::Release);
                        }
                    }
                })
                .map_err(|e| EngineError::Config(format!("cannot start the epoch ticker: {e}")))?
        };

        Ok(RuleEngine {
            engine,
            linker,
            cache,
            precompiled,
            epoch_tick: opts.epoch_tick,
            max_memory_bytes: opts.max_memory_bytes,
            pooling,
            ticker: Some(Ticker {
                stop,
                thread: Some(thread),
            }),
            epoch_start,
            epoch_given,
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The compiled-component cache, if enabled.
    pub fn cache(&self) -> Option<&CompiledCache> {
        self.cache.as_ref()
    }

    /// The directories searched for precompiled artifacts (empty: none).
    pub fn precompiled_dirs(&self) -> &[PathBuf] {
        self.precompiled.as_ref().map_or(&[], |p| p.dirs())
    }

    /// Epoch ticks for a deadline, counted from the epoch as it is at `now` (the caller's
    /// clock reading, so a step reads the clock once for its start and its deadline): rounded
    /// up, plus one because the current tick may be almost over, plus the ticks the ticker
    /// owes (it catches up at once after a late wake-up, which would otherwise end the step
    /// early).
    pub(crate) fn deadline_ticks(&self, timeout: Duration, now: Instant) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let due = (now.saturating_duration_since(self.epoch_start).as_nanos() / tick) as u64;
        let lag = due.saturating_sub(self.epoch_given.load(Ordering::Acquire));
        (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1 + lag
    }
}

impl Drop for RuleEngine {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_memory_limit_bounds_what_the_pool_keeps_resident() {
        let kept = |limit_mb: Option<u64>| {
            EngineOptions::default()
                .within_memory(limit_mb.map(|mb| mb << 20))
                .keep_resident_bytes
        };
        // No limit, or one large enough: the default 4 MiB per warm slot.
        assert_eq!(kept(None), 4 << 20);
        assert_eq!(kept(Some(2048)), 4 << 20);
        // Lambda's smallest and the template's range: a quarter of the memory over all
        // warm slots, in whole pages.
        for mb in [128u64, 256, 512, 1024] {
            let per_slot = kept(Some(mb)) as u64;
            assert_eq!(per_slot % 4096, 0);
            assert!(
                per_slot * u64::from(WARM_SLOTS) <= (mb << 20) / 4,
                "{mb} MB: {per_slot} x {WARM_SLOTS}"
            );
        }
        assert_eq!(kept(Some(128)), 331_776);
    }
}
