//! Sluice's data path after the sandbox: configuration, rule chains per recipient group,
//! dispositions per recipient, and deliveries.
//!
//! `ConfigFile::read` -> `RuleChains::load` (once) -> `RuleChains::process` (per message)
//! -> a [`ProcessResult`] whose dispositions the dispatcher (`sluice-inbound`) delivers.

// Modules depend in one direction: `breaker`, `targets`, `sealing`, `deliver` <- `config` <- `trace`
// <- `chain` <- `reload`.
mod breaker;
mod chain;
mod config;
mod deliver;
mod reload;
mod sealing;
mod targets;
mod trace;

pub use breaker::{BreakerSettings, CircuitBreaker};
pub use chain::{
    domain_of, DomainChain, Envelope, PluginFetcher, PluginSources, RuleChains, SourceError, Step,
    DEFAULT_FOLDER, MAX_HANDOFFS,
};
pub use config::{
    BannerFallbackSetting, ConfigError, ConfigFile, DomainSection, EngineSection, InboundSection,
    Instances, MilterDefaultAction, MilterSection, OnError, PluginLocation, SourceFile, StepMode,
    StepSection, UnreachableAddress, WarmSection,
};
pub use deliver::{
    escape_segment, mailbox_segments, unescape_segment, DirStore, DirStoreError, SegmentError,
    MAX_SEGMENT_BYTES,
};
pub use reload::{ConfigSource, FileConfigSource, LiveChains, LoadedChains, ReloadOutcome};
pub use sealing::ArcSection;
pub use targets::{
    relay_allows, Credentials, LmtpStoreConfig, LmtpUser, RelayConfig, RelaySection,
    RelayTransport, SendGuarantee, ServerAddress, ServerConfig, SmtpStoreConfig, StoreConfig,
    StoreSection, TlsMode, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HOPS, DEFAULT_SERVER_TIMEOUT,
};
pub use trace::{
    Disposition, GroupOutcome, GroupResult, OutputMessage, ProcessResult, StepStatus, StepTrace,
};
