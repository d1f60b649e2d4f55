//! What a `Store` holds while a message goes through a chain, and the host side of the WIT
//! imports (`message` resource, `host.log`).

use std::sync::Arc;
use std::time::Instant;

use sluice_mail::Message;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::sluice::rules::{host, http, lookup, recipients, types};
use crate::bindings::MessageRef;
use crate::http::{HttpCall, HttpClient, HttpResult};
use crate::lookup::{LookupCall, LookupResult, LookupTables, StepGrants};
use crate::step::{LogLine, RecipientRequest};
use crate::validate::validate_request;

/// How many bytes of stdout/stderr a WASI rule may write per message.
pub(crate) const STDIO_CAPACITY: usize = 256 * 1024;
/// How many log lines a step may emit before further ones are counted, not kept.
pub(crate) const MAX_LOG_LINES: usize = 100;
/// Longest log line kept, in bytes.
pub(crate) const MAX_LOG_LINE: usize = 2048;
/// How many bytes of log text a step may send to the host log and the trace; later lines are
/// counted, not kept or printed, so a rule cannot flood the host's log.
pub(crate) const MAX_LOG_BYTES: usize = 32 * 1024;
/// How many bytes of `recipients` requests (addresses, texts) a step may make the host keep.
pub(crate) const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Per-store state.
pub(crate) struct StoreState {
    pub(crate) table: ResourceTable,
    pub(crate) limiter: StepLimiter,
    /// Log lines of the step currently running.
    pub(crate) logs: Vec<LogLine>,
    /// Bytes of `logs` so far (bounded by [`MAX_LOG_BYTES`]).
    pub(crate) log_bytes: usize,
    pub(crate) dropped_logs: usize,
    /// The step currently running, for log tagging.
    pub(crate) step: Arc<str>,
    /// Created on first use, so rules that import no WASI pay nothing for it.
    pub(crate) wasi: Option<WasiState>,
    /// What the running step asked through the `recipients` interface.
    pub(crate) requests: Vec<RecipientRequest>,
    /// Bytes of `requests` so far (bounded by [`MAX_REQUEST_BYTES`]).
    pub(crate) request_bytes: usize,
    /// The first request the host refused, with its position: the step fails with it.
    pub(crate) request_error: Option<(usize, String)>,
    /// The tables this process serves, if any.
    pub(crate) tables: Option<Arc<dyn LookupTables>>,
    /// What the running step may use.
    pub(crate) grants: StepGrants,
    /// When the running step's deadline passes (lookups must answer by then).
    pub(crate) deadline: Instant,
    /// The running step's lookups, for its report.
    pub(crate) lookups: Vec<LookupCall>,
    /// Sends the requests of steps granted HTTP, if any step is.
    pub(crate) http: Option<Arc<dyn HttpClient>>,
    /// The running step's HTTP calls, for its report.
    pub(crate) http_calls: Vec<HttpCall>,
    /// The message's direction and authenticated sender (`flow`), set per message.
    pub(crate) flow: crate::flow::Flow,
    /// The running step's `context` getter calls (0.2 rules), for its report.
    pub(crate) context_reads: crate::step::ContextReads,
    /// The running step's context while it runs, when the step is granted `reply` (a reply
    /// must be from one of the group's recipients); `None` otherwise and between steps.
    pub(crate) reply_context: Option<Arc<types::Context>>,
}

pub(crate) struct WasiState {
    pub(crate) ctx: WasiCtx,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    /// How much of stdout/stderr has already been forwarded to the log.
    pub(crate) stdout_seen: usize,
    pub(crate) stderr_seen: usize,
}

impl WasiState {
    /// A WASI context with nothing in it: no files, no sockets, no environment, no arguments;
    /// stdout and stderr are captured and forwarded to the log after each step.
    fn sealed() -> WasiState {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        WasiState {
            ctx,
            stdout,
            stderr,
            stdout_seen: 0,
            stderr_seen: 0,
        }
    }
}

impl StoreState {
    pub(crate) fn new() -> StoreState {
        StoreState {
            table: ResourceTable::new(),
            limiter: StepLimiter::default(),
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            step: Arc::from(""),
            wasi: None,
            requests: Vec::new(),
            request_bytes: 0,
            request_error: None,
            tables: None,
            grants: StepGrants::default(),
            deadline: Instant::now(),
            lookups: Vec::new(),
            http: None,
            http_calls: Vec::new(),
            flow: crate::flow::Flow::default(),
            context_reads: crate::step::ContextReads::default(),
            reply_context: None,
        }
    }

    /// Clears what the previous step left (logs, requests).
    pub(crate) fn begin_step(&mut self, step: &str) {
        // A warm instance's store serves the same step every time: keep its name.
        if *self.step != *step {
            self.step = Arc::from(step);
        }
        self.logs.clear();
        self.log_bytes = 0;
        self.dropped_logs = 0;
        self.requests.clear();
        self.request_bytes = 0;
        self.request_error = None;
        self.lookups.clear();
        self.http_calls.clear();
        self.context_reads = crate::step::ContextReads::default();
    }

    /// Keeps and prints a rule's log line while the step is within its line and byte budget
    /// ([`MAX_LOG_LINES`], [`MAX_LOG_BYTES`], [`MAX_LOG_LINE`] per line); beyond it the line
    /// is only counted (the chain reports the count once per step).
    pub(crate) fn push_log(&mut self, level: Level, source: &'static str, text: &str) {
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes >= MAX_LOG_BYTES {
            self.dropped_logs += 1;
            return;
        }
        let text = preview(
            text.trim_end(),
            MAX_LOG_LINE.min(MAX_LOG_BYTES - self.log_bytes),
        );
        self.log_bytes += text.len();
        let step = &*self.step;
        // The trace keeps the line as written (it is the operator's own output); the process
        // log masks the addresses in it (see `sluice_telemetry::MaskedText`).
        let shown = sluice_telemetry::MaskedText(&text);
        match level {
            Level::Trace => tracing::trace!(step, source, "{shown}"),
            Level::Debug => tracing::debug!(step, source, "{shown}"),
            Level::Info => tracing::info!(step, source, "{shown}"),
            Level::Warn => tracing::warn!(step, source, "{shown}"),
            Level::Error => tracing::error!(step, source, "{shown}"),
        }
        self.logs.push(LogLine {
            level,
            source,
            text,
        });
    }

    /// Forwards what a WASI rule printed since the last call to the log, a line at a time.
    pub(crate) fn drain_stdio(&mut self) {
        let Some(wasi) = &mut self.wasi else { return };
        let out = wasi.stdout.contents();
        let err = wasi.stderr.contents();
        let new_out = out.get(wasi.stdout_seen..).unwrap_or_default().to_vec();
        let new_err = err.get(wasi.stderr_seen..).unwrap_or_default().to_vec();
        wasi.stdout_seen = out.len();
        wasi.stderr_seen = err.len();
        for line in String::from_utf8_lossy(&new_out).lines() {
            self.push_log(Level::Info, "stdout", line);
        }
        for line in String::from_utf8_lossy(&new_err).lines() {
            self.push_log(Level::Warn, "stderr", line);
        }
    }
}

use types::Level;

/// Enforces the running step's memory cap. A store is shared by the steps of a chain, so the
/// cap is set before each step; every memory is created by exactly one step's instance.
#[derive(Default)]
pub(crate) struct StepLimiter {
    pub(crate) memory_cap: usize,
    /// Set when a step asked for more than its cap, to name the failure precisely.
    pub(crate) memory_cap_hit: Option<usize>,
}

/// The most table elements a rule may have (function tables of real rules are far smaller).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_cap_hit = Some(desired);
            return Err(wasmtime::format_err!(
                "memory cap of {} MiB exceeded (asked for {} bytes)",
                self.memory_cap / (1024 * 1024),
                desired
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi.get_or_insert_with(WasiState::sealed);
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl StoreState {
    fn message_of(&self, handle: &Resource<MessageRef>) -> wasmtime::Result<Arc<Message>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

impl types::HostMessage for StoreState {
    fn header(&mut self, msg: Resource<MessageRef>, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(self.message_of(&msg)?.header(&name))
    }

    fn headers(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.message_of(&msg)?.headers())
    }

    fn header_names(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<String>> {
        Ok(self.message_of(&msg)?.header_names())
    }

    fn subject(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.message_of(&msg)?.subject())
    }

    fn from(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.message_of(&msg)?.from_address())
    }

    fn from_name(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.message_of(&msg)?.from_name())
    }

    fn size(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<u64> {
        Ok(self.message_of(&msg)?.size())
    }

    fn text_body(
        &mut self,
        msg: Resource<MessageRef>,
        max_bytes: u32,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.message_of(&msg)?.text_body(max_bytes as usize))
    }

    fn html_body(
        &mut self,
        msg: Resource<MessageRef>,
        max_bytes: u32,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.message_of(&msg)?.html_body(max_bytes as usize))
    }

    fn attachments(
        &mut self,
        msg: Resource<MessageRef>,
    ) -> wasmtime::Result<Vec<types::AttachmentInfo>> {
        Ok(self
            .message_of(&msg)?
            .attachments()
            .into_iter()
            .map(|a| types::AttachmentInfo {
                name: a.name,
                content_type: a.content_type,
                size: a.size,
            })
            .collect())
    }

    fn raw(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.message_of(&msg)?.raw().to_vec())
    }

    fn drop(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<()> {
        self.table.delete(msg)?;
        Ok(())
    }
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: Level, msg: String) -> wasmtime::Result<()> {
        self.push_log(level, "log", &msg);
        Ok(())
    }
}

/// A rule asking for more than this many recipient requests in one step is stopped: the
/// requests are kept in host memory, so the host bounds them itself.
pub(crate) const MAX_REQUESTS: usize = 1024;

impl StoreState {
    /// Checks a request when it is made, not after the step: the host keeps only valid
    /// requests within the step's count and byte budget, and stops the rule at the first one
    /// it refuses (the step then fails with that request's reason).
    fn request(&mut self, request: RecipientRequest) -> wasmtime::Result<()> {
        let index = self.requests.len();
        let size = request_bytes(&request);
        let refused = if index >= MAX_REQUESTS {
            Some(format!(
                "more than {MAX_REQUESTS} recipient requests in one step"
            ))
        } else if self.request_bytes + size > MAX_REQUEST_BYTES {
            Some(format!(
                "recipient requests of more than {} KiB in one step",
                MAX_REQUEST_BYTES / 1024
            ))
        } else {
            validate_request(&request).err()
        };
        if let Some(reason) = refused {
            let reason = preview(&reason, MAX_REASON);
            let message = format!("recipients request #{index} refused: {reason}");
            self.request_error = Some((index, reason));
            return Err(wasmtime::format_err!(message));
        }
        self.request_bytes += size;
        self.requests.push(request);
        Ok(())
    }
}

/// The bytes a request makes the host keep.
fn request_bytes(request: &RecipientRequest) -> usize {
    match request {
        RecipientRequest::Refuse { recipient, bounce } => {
            recipient.len() + bounce.status.len() + bounce.text.len()
        }
        RecipientRequest::Discard { recipient } => recipient.len(),
        RecipientRequest::Forward(f) => {
            f.to.iter().map(String::len).sum::<usize>()
                + f.from.as_ref().map_or(0, String::len)
                + f.subject_prefix.as_ref().map_or(0, String::len)
        }
        RecipientRequest::Reply(r) => {
            r.recipient.len() + r.text.len() + r.subject.as_ref().map_or(0, String::len)
        }
    }
}

/// Longest failure reason (invalid action or request, rule error) kept in the trace and log.
pub(crate) const MAX_REASON: usize = 512;

/// At most `max` bytes of `text`: when longer, its start and its end with the number of bytes
/// cut between them (so "… it is 20000000 bytes long, the limit is 8192" survives). Whatever
/// a rule made up is bounded before the host prints or keeps it.
pub(crate) fn preview(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!(" …[{} bytes cut]… ", text.len());
    let room = max.saturating_sub(marker.len());
    let mut head = room * 3 / 4;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (room - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{marker}{}", &text[..head], &text[tail..])
}

impl StoreState {
    /// `reply.send` (0.2.1): checks the request against the step's grant and its group, and
    /// records it like a `recipients` request. `Err` inside is the rule error the rule gets.
    pub(crate) fn reply(
        &mut self,
        asked: crate::reply::ReplyRequest,
    ) -> wasmtime::Result<Result<(), types::RuleError>> {
        let no_recipients: &[String] = &[];
        let recipients = self
            .reply_context
            .as_ref()
            .map_or(no_recipients, |c| c.recipients.as_slice());
        let earlier: Vec<crate::reply::ReplyRequest> = self
            .requests
            .iter()
            .filter_map(|r| match r {
                RecipientRequest::Reply(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        match crate::reply::check_reply(
            self.grants.reply.as_ref(),
            &self.step,
            recipients,
            &earlier,
            asked,
        ) {
            Ok(request) => {
                self.request(RecipientRequest::Reply(request))?;
                Ok(Ok(()))
            }
            Err(message) => Ok(Err(types::RuleError {
                message: preview(&message, MAX_REASON),
                temporary: false,
            })),
        }
    }
}

impl recipients::Host for StoreState {
    fn refuse(&mut self, recipient: String, bounce: types::Bounce) -> wasmtime::Result<()> {
        self.request(RecipientRequest::Refuse { recipient, bounce })
    }

    fn discard(&mut self, recipient: String) -> wasmtime::Result<()> {
        self.request(RecipientRequest::Discard { recipient })
    }

    fn forward(&mut self, request: recipients::ForwardRequest) -> wasmtime::Result<()> {
        self.request(RecipientRequest::Forward(request))
    }
}

/// The most lookups one step may make (each is kept for the trace).
pub(crate) const MAX_LOOKUPS: usize = 1024;
/// Longest table name or key kept in the trace.
const MAX_LOOKUP_KEY: usize = 256;

impl lookup::Host for StoreState {
    fn get(
        &mut self,
        table: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, types::RuleError>> {
        let started = Instant::now();
        let refused = |message: String| types::RuleError {
            message,
            temporary: false,
        };
        let (result, answer) = if !self.grants.may_read(&table) {
            let message = format!(
                "table {:?} is not granted to step {:?}: add `lookups = [{:?}]` to the step in the config",
                preview(&table, MAX_LOOKUP_KEY),
                &*self.step,
                preview(&table, MAX_LOOKUP_KEY)
            );
            (LookupResult::Denied, Err(refused(message)))
        } else if self.lookups.len() >= MAX_LOOKUPS {
            let message = format!("more than {MAX_LOOKUPS} lookups in one step");
            (
                LookupResult::Failed {
                    error: message.clone(),
                    temporary: false,
                },
                Err(refused(message)),
            )
        } else {
            let answer = match &self.tables {
                Some(tables) => tables.get(&table, &key, self.deadline),
                None => Err(crate::lookup::LookupError::permanent(format!(
                    "no directory named {table:?} is configured"
                ))),
            };
            match answer {
                Ok(Some(value)) => (LookupResult::Found, Ok(Some(value))),
                Ok(None) => (LookupResult::Missing, Ok(None)),
                Err(e) => {
                    let message =
                        preview(&format!("lookup in {table:?}: {}", e.message), MAX_REASON);
                    (
                        LookupResult::Failed {
                            error: message.clone(),
                            temporary: e.temporary,
                        },
                        Err(types::RuleError {
                            message,
                            temporary: e.temporary,
                        }),
                    )
                }
            }
        };
        if self.lookups.len() < MAX_LOOKUPS {
            self.lookups.push(LookupCall {
                table: preview(&table, MAX_LOOKUP_KEY),
                key: preview(&key, MAX_LOOKUP_KEY),
                result,
                micros: started.elapsed().as_micros() as u64,
            });
        }
        Ok(answer)
    }
}

impl http::Host for StoreState {
    fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, types::RuleError>> {
        let started = Instant::now();
        let method = preview(&req.method, 32);
        let shown_url = match url::Url::parse(&req.url) {
            Ok(u) => preview(&crate::http::without_query(&u), MAX_LOOKUP_KEY),
            Err(_) => preview(&req.url, MAX_LOOKUP_KEY),
        };
        let fail = |message: String, temporary: bool| {
            (
                HttpResult::Failed {
                    error: message.clone(),
                    temporary,
                },
                Err(types::RuleError { message, temporary }),
            )
        };
        let (result, answer) = if self.http_calls.len() >= crate::http::MAX_HTTP_CALLS {
            fail(
                format!(
                    "http: more than {} calls in one step",
                    crate::http::MAX_HTTP_CALLS
                ),
                false,
            )
        } else {
            match crate::http::check_request(
                self.grants.http.as_deref(),
                &self.step,
                &req.method,
                &req.url,
                req.headers,
                req.body,
            ) {
                Err((message, true)) => (
                    HttpResult::Denied,
                    Err(types::RuleError {
                        message: preview(&message, MAX_REASON),
                        temporary: false,
                    }),
                ),
                Err((message, false)) => fail(preview(&message, MAX_REASON), false),
                Ok(request) => {
                    let grant = self
                        .grants
                        .http
                        .clone()
                        .expect("checked: the step has a grant");
                    let deadline = self.deadline.min(started + grant.timeout);
                    let sent = match &self.http {
                        Some(client) if Instant::now() < deadline => {
                            client.send(&grant, &request, deadline)
                        }
                        Some(_) => Err(crate::http::HttpError::temporary(
                            "http: the step's deadline has passed",
                        )),
                        None => Err(crate::http::HttpError::permanent(
                            "http: this host was started without an HTTP client",
                        )),
                    };
                    match sent {
                        Ok(response) => (
                            HttpResult::Answered {
                                status: response.status,
                                bytes: response.body.len(),
                            },
                            Ok(http::Response {
                                status: response.status,
                                headers: response.headers,
                                body: response.body,
                            }),
                        ),
                        Err(e) => fail(
                            preview(&format!("http: {shown_url}: {}", e.message), MAX_REASON),
                            e.temporary,
                        ),
                    }
                }
            }
        };
        if self.http_calls.len() < crate::http::MAX_HTTP_CALLS {
            self.http_calls.push(HttpCall {
                method,
                url: shown_url,
                result,
                micros: started.elapsed().as_micros() as u64,
            });
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_keep_both_ends_within_the_bound() {
        assert_eq!(preview("short", 10), "short");
        let long = format!("start {} end: it is 2000 bytes long", "é".repeat(1000));
        for max in [40, 100, 512] {
            let p = preview(&long, max);
            assert!(p.len() <= max, "{max}: {} bytes", p.len());
            assert!(p.starts_with("start"), "{p}");
            assert!(p.contains(&format!("{} bytes cut", long.len())), "{p}");
        }
        assert!(preview(&long, 512).ends_with("bytes long"));
    }
}
