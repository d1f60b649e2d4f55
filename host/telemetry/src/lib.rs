//! Sluice's logs, set up once per process: the daemon, the CLI and the Lambda write the same
//! events (tracing, with the SES message id, domain, step, outcome and timings as fields) either
//! as text for a terminal or as one JSON object per line, which CloudWatch Logs Insights
//! indexes field by field (`filter message_id = "…"`).

mod mask;
pub mod metrics;

pub use mask::{mask_addresses, MaskedEvent, MaskingWriter};

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-03T11:00:00Z  INFO message done message_id=… outcome=…`, for people.
    Text,
    /// `{"timestamp":"…","level":"INFO","message":"message done","message_id":"…",…}`, one
    /// object per line, fields at the top level, for Logs Insights and `jq`.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(TelemetryError::UnknownFormat(s.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Where the log goes, which decides the decorations a text log gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    /// A terminal or a file: timestamps; colour only when stderr is a terminal.
    Terminal,
    /// CloudWatch via the Lambda runtime: no colour codes (shown as garbage there) and no
    /// timestamp in text (CloudWatch adds its own).
    CloudWatch,
}

/// What cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `--log-format` / `SLUICE_LOG_FORMAT` named something else.
    #[error("unknown log format {0:?}: use \"text\" or \"json\"")]
    UnknownFormat(String),
    /// `SLUICE_LOG_ADDRESSES` named something else.
    #[error(
        "SLUICE_LOG_ADDRESSES={0:?}: use \"domain\" (the default: ***@example.com) or \"full\""
    )]
    UnknownAddressSetting(String),
    /// `--log` / `SLUICE_LOG` / `RUST_LOG` is not a tracing filter.
    #[error("bad log filter {filter:?} ({reason}): use a level (error, warn, info, debug, trace) or directives such as \"info,sluice_inbound=debug\"")]
    BadFilter {
        /// The filter as given.
        filter: String,
        /// What the filter parser said.
        reason: String,
    },
}

/// The log filter, with an error that says what a valid one looks like.
pub fn filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(directives).map_err(|e| TelemetryError::BadFilter {
        filter: directives.to_string(),
        reason: e.to_string(),
    })
}

/// Whether log events show whole addresses: off unless `SLUICE_LOG_ADDRESSES=full` (a
/// debug setting), so that logs shipped to CloudWatch hold domains, not people.
static FULL_ADDRESSES: AtomicBool = AtomicBool::new(false);

/// Shows (`true`) or masks (`false`, the default) the local part of addresses in the log.
pub fn show_full_addresses(show: bool) {
    FULL_ADDRESSES.store(show, Ordering::Relaxed);
}

/// Whether [`show_full_addresses`] is on.
pub fn full_addresses() -> bool {
    FULL_ADDRESSES.load(Ordering::Relaxed)
}

/// Reads `SLUICE_LOG_ADDRESSES` (`domain`, the default, or `full`).
pub fn addresses_from_env() -> Result<(), TelemetryError> {
    match std::env::var("SLUICE_LOG_ADDRESSES").as_deref() {
        Err(_) | Ok("domain") => show_full_addresses(false),
        Ok("full") => show_full_addresses(true),
        Ok(other) => return Err(TelemetryError::UnknownAddressSetting(other.to_string())),
    }
    Ok(())
}

/// An address as log events show it: `***@example.com` (the domain is what an operator
/// needs to see which chain ran), or whole with [`show_full_addresses`].
/// `tracing::warn!(recipient = %Address(rcpt), …)`.
pub struct Address<'a>(pub &'a str);

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full_addresses() {
            return f.write_str(self.0);
        }
        match self.0.rsplit_once('@') {
            Some((_, domain)) => write!(f, "***@{domain}"),
            None => f.write_str("***"),
        }
    }
}

/// A list of addresses, each shown as [`Address`]: `[***@a.example, ***@b.example]`.
pub struct Addresses<'a>(pub &'a [String]);

impl fmt::Display for Addresses<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, address) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", Address(address))?;
        }
        f.write_str("]")
    }
}

/// Free text (a rule's own log line, an error printed outside tracing) as the log shows it:
/// every `local@domain` in it becomes `***@domain` (see [`mask_addresses`]), unless
/// [`show_full_addresses`]. The log's writer masks every event anyway; this is for text
/// that reaches stderr some other way, and it states the intent where the text is logged.
pub struct MaskedText<'a>(pub &'a str);

impl fmt::Display for MaskedText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full_addresses() {
            return f.write_str(self.0);
        }
        f.write_str(&mask_addresses(self.0))
    }
}

/// Installs the process's log subscriber, writing to stderr. Call once, first thing in
/// `main`; a second call leaves the first subscriber in place.
///
/// It also replaces the panic hook with one that masks the panic's message the same way: a
/// panic (an `expect` on an error that names an address) is written to the same stderr.
pub fn init(format: LogFormat, sink: LogSink, filter: EnvFilter) {
    let ansi = sink == LogSink::Terminal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let installed = tracing::subscriber::set_global_default(subscriber(
        format,
        sink,
        filter,
        ansi,
        std::io::stderr,
    ));
    if installed.is_ok() {
        mask_panics();
    }
}

/// Panics print as the standard hook prints them (thread, location, message, a backtrace
/// when `RUST_BACKTRACE` asks for one), with addresses masked; with full addresses on, the
/// standard hook prints them.
fn mask_panics() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if full_addresses() {
            return standard(info);
        }
        let thread = std::thread::current();
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        let text = panic_text(
            thread.name().unwrap_or("<unnamed>"),
            &location,
            info.payload_as_str().unwrap_or("Box<dyn Any>"),
            (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
                .then(|| backtrace.to_string()),
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }));
}

/// What [`mask_panics`]'s hook writes.
fn panic_text(thread: &str, location: &str, message: &str, backtrace: Option<String>) -> String {
    let mut text = format!(
        "thread '{thread}' panicked at {location}:\n{}\n",
        mask_addresses(message)
    );
    match backtrace {
        Some(trace) => text.push_str(&format!("stack backtrace:\n{}\n", mask_addresses(&trace))),
        None => text.push_str(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        ),
    }
    text
}

/// The subscriber [`init`] installs, writing to `writer` (tests pass a buffer) through a
/// [`MaskingWriter`]: the one place every event's text (message, fields, errors' `Display`,
/// text or JSON) passes on its way out, so addresses are masked there whatever logged them.
pub fn subscriber<W>(
    format: LogFormat,
    sink: LogSink,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskingWriter(writer))
        .with_target(false);
    match (format, sink) {
        (LogFormat::Json, _) => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        (LogFormat::Text, LogSink::Terminal) => Box::new(builder.with_ansi(ansi).finish()),
        (LogFormat::Text, LogSink::CloudWatch) => {
            Box::new(builder.with_ansi(false).without_time().finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_from_their_names() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(" Text ".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let e = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(matches!(e, TelemetryError::UnknownFormat(ref f) if f == "yaml"));
        assert!(e.to_string().contains("\"text\" or \"json\""), "{e}");
        assert_eq!(
            LogFormat::Json.to_string().parse::<LogFormat>().unwrap(),
            LogFormat::Json
        );
    }

    #[test]
    fn a_bad_filter_says_what_a_good_one_looks_like() {
        assert!(filter("info,sluice_inbound=debug").is_ok());
        let e = filter("info,=[").unwrap_err();
        assert!(matches!(e, TelemetryError::BadFilter { .. }), "{e}");
        assert!(e.to_string().contains("use a level"), "{e}");
    }

    /// The JSON events carry their fields at the top level, as Logs Insights expects.
    #[test]
    fn json_events_have_their_fields_at_the_top_level() {
        let _setting = address_setting();
        let text = captured(LogFormat::Json, false, || {
            let span = tracing::info_span!("invoke", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!(message_id = "m-1", chain_us = 42u64, "message done");
            tracing::debug!("below the filter");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(event["message"], "message done");
        assert_eq!(event["message_id"], "m-1");
        assert_eq!(event["chain_us"], 42);
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["span"]["request_id"], "r-1");
        assert!(event["timestamp"].is_string(), "{event}");
    }

    #[test]
    fn text_for_cloudwatch_has_no_colour_and_no_timestamp() {
        let _setting = address_setting();
        let text = captured(LogFormat::Text, true, || {
            tracing::warn!(message_id = "m-2", "copy not stored, will be retried")
        });
        assert_eq!(
            text.trim(),
            "WARN copy not stored, will be retried message_id=\"m-2\""
        );
    }

    /// Held by the tests that read or change the process-wide address setting, which the
    /// test harness's threads share.
    static ADDRESS_SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn address_setting() -> std::sync::MutexGuard<'static, ()> {
        ADDRESS_SETTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An error as the pipeline's are: its `Display` names the address.
    #[derive(Debug, thiserror::Error)]
    #[error("storing message m-1 for {0} in INBOX: dispatch failure")]
    struct StoreError(String);

    /// Events whose message, fields and error all hold addresses, as the issue found them.
    fn log_addresses() {
        let err = StoreError("alice@example.com".into());
        tracing::warn!(
            error = %err,
            claim = "sent/m-1/aaaa…@store.test",
            "copy not stored, will be retried"
        );
        tracing::error!(
            step = "alias",
            "step failed: invalid address \"v2@gmail.example.\": trailing dot"
        );
        let owner = "host-1";
        tracing::error!(
            "UNCONFIRMED SEND: forward to bob@gmail.example was claimed 31 s ago by {owner}"
        );
    }

    #[test]
    fn text_events_are_masked_in_message_fields_and_errors() {
        let _setting = address_setting();
        let text = captured(LogFormat::Text, false, log_addresses);
        assert_eq!(
            text,
            " WARN copy not stored, will be retried \
             error=storing message m-1 for ***@example.com in INBOX: dispatch failure \
             claim=\"sent/m-1/***@store.test\"\n\
             ERROR step failed: invalid address \"***@gmail.example.\": trailing dot \
             step=\"alias\"\n\
             ERROR UNCONFIRMED SEND: forward to ***@gmail.example was claimed 31 s ago by \
             host-1\n"
        );
    }

    #[test]
    fn json_events_are_masked_and_stay_json() {
        let _setting = address_setting();
        let text = captured(LogFormat::Json, false, log_addresses);
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(events.len(), 3, "{text}");
        assert_eq!(
            events[0]["error"],
            "storing message m-1 for ***@example.com in INBOX: dispatch failure"
        );
        assert_eq!(events[0]["claim"], "sent/m-1/***@store.test");
        assert_eq!(
            events[1]["message"],
            "step failed: invalid address \"***@gmail.example.\": trailing dot"
        );
        assert_eq!(
            events[2]["message"],
            "UNCONFIRMED SEND: forward to ***@gmail.example was claimed 31 s ago by host-1"
        );
    }

    #[test]
    fn full_addresses_leave_the_log_as_written() {
        let _setting = address_setting();
        show_full_addresses(true);
        let text = captured(LogFormat::Text, false, log_addresses);
        show_full_addresses(false);
        for whole in [
            "for alice@example.com in",
            "sent/m-1/aaaa…@store.test",
            "\"v2@gmail.example.\"",
            "to bob@gmail.example was",
        ] {
            assert!(text.contains(whole), "{whole} in {text}");
        }
    }

    /// An address cut across two writes is masked whole, and the event goes out in one
    /// write, when the writer is dropped.
    #[test]
    fn a_masked_event_is_written_whole() {
        use std::io::Write as _;
        let _setting = address_setting();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let mut event = MaskedEvent::new(SharedBuffer(out.clone()));
        event.write_all(b"relay refused for ali").unwrap();
        event.write_all(b"ce@exa").unwrap();
        assert!(out.lock().unwrap().is_empty());
        event.write_all(b"mple.com\n").unwrap();
        drop(event);
        assert_eq!(
            String::from_utf8(out.lock().unwrap().clone()).unwrap(),
            "relay refused for ***@example.com\n"
        );
    }

    #[test]
    fn a_panic_message_is_masked() {
        let text = panic_text(
            "main",
            "host/cli/src/daemon.rs:10:5",
            "called `Result::unwrap()` on an `Err` value: invalid address \"v2@gmail.example.\"",
            None,
        );
        assert_eq!(
            text,
            "thread 'main' panicked at host/cli/src/daemon.rs:10:5:\n\
             called `Result::unwrap()` on an `Err` value: invalid address \"***@gmail.example.\"\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
        );
    }

    #[test]
    fn masked_text_follows_the_setting() {
        let _setting = address_setting();
        let line = "forwarding to \"v2\"@gmail.example and aaaa…@store.test";
        assert_eq!(
            MaskedText(line).to_string(),
            "forwarding to \"***\"@gmail.example and ***@store.test"
        );
        show_full_addresses(true);
        assert_eq!(MaskedText(line).to_string(), line);
        show_full_addresses(false);
    }

    #[test]
    fn addresses_show_their_domain_unless_asked() {
        let _setting = address_setting();
        let list = ["alice@example.com".to_string(), "bob@b.example".to_string()];
        assert_eq!(Address("alice@example.com").to_string(), "***@example.com");
        assert_eq!(Address("postmaster").to_string(), "***");
        assert_eq!(Address("").to_string(), "***");
        assert_eq!(
            Addresses(&list).to_string(),
            "[***@example.com, ***@b.example]"
        );
        assert_eq!(Addresses(&[]).to_string(), "[]");
        show_full_addresses(true);
        assert_eq!(
            Address("alice@example.com").to_string(),
            "alice@example.com"
        );
        assert_eq!(
            Addresses(&list).to_string(),
            "[alice@example.com, bob@b.example]"
        );
        show_full_addresses(false);
    }

    /// What `log` writes through the CloudWatch subscriber of `format` at level info.
    fn captured(format: LogFormat, ansi: bool, log: impl FnOnce()) -> String {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let subscriber = subscriber(
            format,
            LogSink::CloudWatch,
            filter("info").unwrap(),
            ansi,
            move || SharedBuffer(sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, log);
        let bytes = lines.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// A writer into memory that the test reads back.
    struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for SharedBuffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
