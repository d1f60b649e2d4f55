//! Sluice's data path after the sandbox: configuration, rule chains per recipient group,
//! dispositions per recipient, and deliveries.
//!
//! `ConfigFile::read` -> `RuleChains::load` (once) -> `RuleChains::process` (per message)
//! -> a [`ProcessResult`] whose dispositions the dispatcher (`sluice-inbound`) delivers.

// Modules depend in one direction: `breaker`, `sealing` <- `config` <- `trace` <- `chain` <-
// `reload` <- `s3_source`. `[store]` and `[relay]` are read by `sluice-deliver`.
mod breaker;
mod chain;
mod config;
mod reload;
mod s3_source;
mod sealing;
mod trace;

pub use breaker::{BreakerSettings, CircuitBreaker};
pub use chain::{
    domain_of, DomainChain, Envelope, PluginFetcher, PluginSources, RuleChains, SourceError, Step,
    MAX_HANDOFFS,
};
pub use config::{
    BannerFallbackSetting, ConfigError, ConfigFile, DomainSection, EngineSection, InboundSection,
    Instances, MilterDefaultAction, MilterSection, MilterVerdicts, OnError, PluginLocation,
    ScannerKind, ScannerSection, SourceFile, StepMode, StepSection, UnreachableAddress,
    WarmSection,
};
pub use reload::{ConfigSource, FileConfigSource, LiveChains, LoadedChains, ReloadOutcome};
pub use s3_source::{S3ConfigSource, S3Plugins};
pub use sealing::ArcSection;
pub use trace::{
    Disposition, GroupOutcome, GroupResult, OutputMessage, PlannedReply, ProcessResult,
    ReplySuppressed, StepStatus, StepTrace,
};
