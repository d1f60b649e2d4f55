//! Write [Sluice](https://example.invalid/sluice) mail transport rules in Rust.
//!
//! A rule is a WebAssembly component implementing the `sluice:rules/rule` world
//! (`wit/rules.wit`). This crate wraps the `wit-bindgen` bindings so that a rule is one type
//! implementing [`Rule`] plus one [`export_rule!`] line:
//!
//! ```no_run
//! use sluice_sdk::prelude::*;
//!
//! /// Config: `tag` (string, default "[ext]"), `internal_domains` (list of domains).
//! #[derive(Deserialize, Default)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config { tag: Option<String>, internal_domains: Vec<String> }
//!
//! struct TagExternal;
//!
//! impl Rule for TagExternal {
//!     type Config = Config;
//!     fn evaluate(msg: &Message, ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
//!         let from = msg.from().unwrap_or_default();
//!         if is_in_domains(&from, &config.internal_domains) || ctx.verdicts().spf.failed() {
//!             return Ok(vec![]);
//!         }
//!         log::info!("tagging mail from {from}");
//!         Ok(vec![Action::prefix_subject(config.tag.as_deref().unwrap_or("[ext]"))])
//!     }
//! }
//!
//! sluice_sdk::export_rule!(TagExternal);
//! ```
//!
//! The crate of a rule must be a `cdylib` (and may also be an `rlib` so that its pure logic
//! can be unit-tested natively). Build it with
//! `cargo build --release --target wasm32-unknown-unknown` and turn the core module into a
//! component with `sluice plugin build DIR --out DIR` (or `wasm-tools component new`).
//! Built for `wasm32-unknown-unknown`, a rule imports nothing but `sluice:rules/host` and
//! `sluice:rules/types`; build for `wasm32-wasip2` (set
//! `[package.metadata.sluice] target = "wasm32-wasip2"`) only when the rule needs WASI.
//!
//! # What the SDK does for you
//! * **Config.** The step's `config` table arrives as JSON. [`export_rule!`] makes
//!   `validate-config` deserialize it into [`Rule::Config`] (then run [`Rule::check_config`])
//!   and return serde_json's message — which names the key and position — on failure, so a
//!   typo fails `sluice check`. `evaluate` reads it from the host (`context.config`, WIT 0.2)
//!   and deserializes it once per instance: a fresh instance (the default) for its one
//!   message, a warm one (`instances = "warm"`) once for its life, so a large table is
//!   neither copied into the rule nor parsed again for every message. A failure is a
//!   permanent [`RuleError`].
//! * **Context.** [`Context`] reads each field from the host on first use
//!   (`ctx.verdicts().spf`, `ctx.recipients()`), so a rule pays only for what it reads.
//! * **Allocation.** On wasm32 the default `arena` feature installs [`arena::RuleAllocator`]:
//!   the first 256 KiB a rule allocates per message come from the module's own zeroed data,
//!   so a fresh instance never has to grow its memory (which costs the host syscalls on every
//!   message). A crate with its own `#[global_allocator]` disables the feature.
//! * **Panics.** On `wasm32-unknown-unknown` there is no stderr, so a panic would be a bare
//!   trap. The exported functions install (once) a panic hook that sends the panic message
//!   through the host's log at level `error` before the instance traps.
//! * **Helpers.** [`log`] macros over the host's log import; constructors for [`Action`]
//!   ([`Action::add_header`], [`Action::banner_top`], [`Action::bounce`], ...) and
//!   [`RuleError`]; verdict predicates ([`Verdict::passed`], [`Verdict::failed`]); address
//!   helpers ([`domain_of`], [`local_part`], [`is_in_domains`]).
//!
//! # Testing rules natively
//! The WIT types (`Context`, `Verdicts`, `Action`, ...) are plain Rust values and can be built
//! in native unit tests. `Message` is a host resource and exists only inside the sandbox, so
//! keep the logic that needs testing in functions over strings and records. Outside wasm32 the
//! [`log`] macros print to stderr instead of calling the host.

#![warn(missing_docs)]

mod actions;
pub mod address;
pub mod arena;
pub mod context;
pub mod flow;
pub mod http;
pub mod log;
pub mod lookup;
pub mod recipients;
pub mod reply;

/// The `wit-bindgen` bindings of the `rule` world. Use the names in [`prelude`] instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "rule",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use address::{check_address, domain_of, is_in_domains, local_part};
pub use bindings::sluice::rules::types::{
    Action, ArchiveInfo, AttachmentInfo, Banner, Bounce, Header, Level, Message, PartInfo,
    PartReplacement, Position, RuleError, Verdict, Verdicts,
};
pub use context::{Context, ContextData};
/// Re-exported so rules can use `sluice_sdk::serde_json::Value` as a free-form config.
pub use serde_json;
/// The host's limits on actions (`facts::MAX_RECIPIENTS_PER_ACTION`, `facts::MAX_BANNER_BYTES`,
/// ...) and its address check, the same crate the host uses.
pub use sluice_facts as facts;

pub mod config;

/// Everything a rule usually needs: `use sluice_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::address::{check_address, domain_of, is_in_domains, local_part};
    pub use crate::flow::{self, Direction};
    pub use crate::http;
    pub use crate::log;
    pub use crate::lookup;
    pub use crate::recipients::{self, Forward};
    pub use crate::reply::{self, Reply};
    pub use crate::{
        Action, ArchiveInfo, AttachmentInfo, Banner, Bounce, Context, ContextData, Header, Level,
        Message, NoConfig, PartInfo, PartReplacement, Position, Rule, RuleError, Verdict, Verdicts,
    };
    pub use serde::Deserialize;
}

/// A mail rule. Implement it on a unit struct and export it with [`export_rule!`].
pub trait Rule {
    /// The step's config. It arrives as the JSON form of the step's `config` TOML table (`{}`
    /// when the step has none; an empty string is treated as "use `Default`"). Use
    /// `#[serde(deny_unknown_fields)]` so that typos are reported by `sluice check`.
    type Config: serde::de::DeserializeOwned + Default;

    /// Checks a parsed config beyond what serde can express (e.g. "`text` must not be
    /// empty"). Called by `validate-config` (when the host loads the chain) and before every
    /// `evaluate`. The default accepts everything.
    fn check_config(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Decides what to do with `msg` for the recipient group described by `ctx`. `config` is
    /// borrowed because a warm instance keeps it for the next message.
    fn evaluate(
        msg: &Message,
        ctx: &Context<'_>,
        config: &Self::Config,
    ) -> Result<Vec<Action>, RuleError>;
}

/// A config for rules that take none: accepts `{}` and rejects any key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Parses a step config the way [`export_rule!`] does: serde_json, with an empty (or
/// whitespace-only) string meaning `C::default()`. The error is serde_json's message, e.g.
/// ``unknown field `txt`, expected one of `text`, `html` at line 1 column 6``.
pub fn parse_config<C: serde::de::DeserializeOwned + Default>(json: &str) -> Result<C, String> {
    if json.trim().is_empty() {
        return Ok(C::default());
    }
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// Exports a [`Rule`] as the component's `validate-config` and `evaluate`.
///
/// ```no_run
/// # use sluice_sdk::prelude::*;
/// struct Nothing;
/// impl Rule for Nothing {
///     type Config = NoConfig;
///     fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
///         Ok(vec![])
///     }
/// }
/// sluice_sdk::export_rule!(Nothing);
/// ```
///
/// Use it once per crate. The component exports are only emitted when compiling for wasm32,
/// so the crate's native unit tests (and native `rlib` users) link without symbol clashes.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        const _: () = {
            #[allow(dead_code)]
            struct __SluiceRuleExport;

            ::std::thread_local! {
                static __SLUICE_CONFIG: $crate::__private::ConfigCache<
                    <$rule as $crate::Rule>::Config,
                > = $crate::__private::ConfigCache::new();
            }

            impl $crate::bindings::Guest for __SluiceRuleExport {
                fn validate_config(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::validate_config::<$rule>(&config)
                }

                fn evaluate(
                    msg: &$crate::Message,
                    ctx: &$crate::bindings::sluice::rules::types::Context,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Action>, $crate::RuleError>
                {
                    __SLUICE_CONFIG
                        .with(|cache| $crate::__private::evaluate::<$rule>(msg, ctx, cache))
                }
            }

            // The exports and the `component-type` section describing them (with the
            // exports) exist only on wasm32.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::export!(__SluiceRuleExport with_types_in $crate::bindings);
        };
    };
}

/// Implementation details of [`export_rule!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::bindings::sluice::rules::types::Context as ContextHandle;
    use crate::{Action, Context, Level, Message, Rule, RuleError};

    pub fn validate_config<R: Rule>(json: &str) -> Result<(), String> {
        install_panic_hook();
        let config = crate::parse_config::<R::Config>(json)?;
        R::check_config(&config)
    }

    pub fn evaluate<R: Rule>(
        msg: &Message,
        handle: &ContextHandle,
        cache: &ConfigCache<R::Config>,
    ) -> Result<Vec<Action>, RuleError> {
        install_panic_hook();
        let ctx = Context::from_host(handle);
        let config = cache
            .get_or_parse(
                || ctx.config_json(),
                |json| {
                    let config = crate::parse_config::<R::Config>(json)?;
                    R::check_config(&config).map(|()| config)
                },
            )
            .map_err(|e| RuleError::permanent(format!("invalid config: {e}")))?;
        R::evaluate(msg, &ctx, &config)
    }

    /// The instance's parsed config. The host never runs one instance for two steps (WIT
    /// 0.2, `context.config`), so the config text is the same on every call: it is read
    /// from the host and parsed (and checked) on the first call only — once per message for
    /// a fresh instance, once per life for a warm one.
    pub struct ConfigCache<C> {
        parsed: RefCell<Option<Rc<C>>>,
    }

    impl<C> ConfigCache<C> {
        pub const fn new() -> Self {
            ConfigCache {
                parsed: RefCell::new(None),
            }
        }

        /// The kept config, else `parse(read())` (kept when it succeeds; an error is not
        /// kept, so the next call reads and reports it again).
        pub fn get_or_parse<'t>(
            &self,
            read: impl FnOnce() -> &'t str,
            parse: impl FnOnce(&str) -> Result<C, String>,
        ) -> Result<Rc<C>, String> {
            if let Some(config) = self.parsed.borrow().as_ref() {
                return Ok(config.clone());
            }
            let config = Rc::new(parse(read())?);
            *self.parsed.borrow_mut() = Some(config.clone());
            Ok(config)
        }
    }

    impl<C> Default for ConfigCache<C> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Routes panic messages to the host log: on wasm32-unknown-unknown stderr goes nowhere.
    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                // One line: "rule panicked at src/lib.rs:13:9: <message>".
                let message = info
                    .payload_as_str()
                    .unwrap_or("(non-string panic payload)");
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                crate::log::write(Level::Error, &format!("rule panicked{at}: {message}"));
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::__private::ConfigCache;
    use std::cell::Cell;

    #[test]
    fn the_config_cache_reads_and_parses_once_per_instance() {
        let reads = Cell::new(0);
        let parses = Cell::new(0);
        let read = |text: &'static str| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                text
            }
        };
        let parse = |json: &str| {
            parses.set(parses.get() + 1);
            if json == "bad" {
                Err("not JSON".to_string())
            } else {
                Ok(json.len())
            }
        };
        let cache = ConfigCache::<usize>::new();
        assert_eq!(
            cache.get_or_parse(read("bad"), parse).unwrap_err(),
            "not JSON"
        );
        assert!(cache.get_or_parse(read("bad"), parse).is_err());
        assert_eq!((reads.get(), parses.get()), (2, 2), "an error is not kept");
        assert_eq!(*cache.get_or_parse(read("{}"), parse).unwrap(), 2);
        assert_eq!(*cache.get_or_parse(read("{}"), parse).unwrap(), 2);
        assert_eq!(*cache.get_or_parse(read("{}"), parse).unwrap(), 2);
        assert_eq!(
            (reads.get(), parses.get()),
            (3, 3),
            "the text is read from the host and parsed once"
        );
    }
}
