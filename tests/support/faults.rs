//! A fault-injecting HTTP/1.1 proxy between the real AWS SDK clients and moto server: real
//! network faults, not mocks.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards each request to the upstream
//! endpoint (moto), unless a [`Rule`] of its plan matches the request and its [`When`]
//! fires; then it applies the rule's [`Fault`]:
//!
//! - [`Fault::Reply`]: answers at once with a status and the service's error body (S3's
//!   `<Error><Code>SlowDown</Code>…`, SES v2's `TooManyRequestsException` JSON) and does not
//!   forward: the service never saw the request;
//! - [`Fault::Stall`]: reads the request and never answers (until the client gives up): a
//!   client without a timeout hangs here;
//! - [`Fault::LoseAnswer`]: forwards the request (the write happens), then answers 500 or
//!   closes the connection without a word: the case where a naive retry does it twice.
//!
//! Requests are matched by service and operation ([`Target`]): S3 by method, bucket,
//! key prefix and whether the write is conditional (`If-None-Match`), path-style; SES v2
//! sends by `POST /v2/email/outbound-emails`; SQS by `X-Amz-Target` (JSON protocol) or
//! `Action=` (query protocol). Every rule counts what it matched and injected, so a test
//! can print the figures and assert that each fault really happened.
//!
//! One request per connection: every answer carries `Connection: close`, so request framing
//! is all the proxy parses (`Content-Length`, chunked, `Expect: 100-continue`); an answer is
//! passed on byte for byte. Plain threads, no async runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which requests a rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An S3 object request (path-style `/bucket/key`).
    S3 {
        /// `GET`, `PUT`, `HEAD`, `DELETE`.
        method: String,
        /// The bucket.
        bucket: String,
        /// Keys that start with this (empty: every key).
        key_prefix: String,
        /// `Some(true)`: only conditional writes (`If-None-Match`, a claim); `Some(false)`:
        /// only the others; `None`: both.
        conditional: Option<bool>,
    },
    /// An SES v2 `SendEmail` (`POST /v2/email/outbound-emails`).
    SesSend,
    /// An SQS action (`ReceiveMessage`, `DeleteMessage`, ...).
    Sqs(String),
}

impl Target {
    /// S3 `method` on keys of `bucket` under `key_prefix`, conditional or not.
    pub fn s3(method: &str, bucket: &str, key_prefix: &str) -> Target {
        Target::S3 {
            method: method.to_ascii_uppercase(),
            bucket: bucket.to_string(),
            key_prefix: key_prefix.to_string(),
            conditional: None,
        }
    }

    /// Only conditional writes (`true`: claims made with `If-None-Match: *`) or only the
    /// others (`false`). For S3 targets; others are returned as they are.
    pub fn conditional(mut self, yes: bool) -> Target {
        if let Target::S3 { conditional, .. } = &mut self {
            *conditional = Some(yes);
        }
        self
    }

    fn matches(&self, req: &Request) -> bool {
        match self {
            Target::S3 {
                method,
                bucket,
                key_prefix,
                conditional,
            } => {
                if req.service() != Service::S3 || req.method != *method {
                    return false;
                }
                let Some((b, key)) = req.path.trim_start_matches('/').split_once('/') else {
                    return false;
                };
                b == bucket
                    && percent_decode(key).starts_with(key_prefix.as_str())
                    && conditional.is_none_or(|c| c == req.header("if-none-match").is_some())
            }
            Target::SesSend => req.method == "POST" && req.path == "/v2/email/outbound-emails",
            Target::Sqs(action) => req.sqs_action().as_deref() == Some(action.as_str()),
        }
    }
}

/// What a rule does to a request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, headers and body; the request is not forwarded.
    Reply {
        /// The HTTP status.
        status: u16,
        /// Extra headers (`Content-Type` and `Content-Length` are added).
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
        /// `Content-Type`.
        content_type: String,
    },
    /// Never answer; the request is not forwarded.
    Stall,
    /// Forward the request, then throw the answer away: answer 500 with the service's
    /// error body (`Some`), or close the connection without answering (`None`).
    LoseAnswer(Option<Box<Fault>>),
}

impl Fault {
    /// An S3 error answer: `503 SlowDown`, `500 InternalError`, ...
    pub fn s3(status: u16, code: &str) -> Fault {
        Fault::Reply {
            status,
            headers: vec![],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by the test's fault proxy</Message>\
                 <RequestId>FAULTPROXY</RequestId></Error>"
            ),
            content_type: "application/xml".into(),
        }
    }

    /// An SES v2 (REST JSON) error answer: `429 TooManyRequestsException`,
    /// `500 InternalFailure`, `503 ServiceUnavailable`.
    pub fn ses(status: u16, code: &str) -> Fault {
        Fault::Reply {
            status,
            headers: vec![("x-amzn-ErrorType".into(), format!("{code}:"))],
            body: format!("{{\"message\":\"injected by the test's fault proxy ({code})\"}}"),
            content_type: "application/json".into(),
        }
    }

    /// An SQS (JSON protocol) error answer.
    pub fn sqs(status: u16, code: &str) -> Fault {
        Fault::Reply {
            status,
            headers: vec![("x-amzn-query-error".into(), format!("{code};Receiver"))],
            body: format!(
                "{{\"__type\":\"com.amazonaws.sqs#{code}\",\"message\":\"injected by the test's fault proxy\"}}"
            ),
            content_type: "application/x-amz-json-1.0".into(),
        }
    }

    /// Forward, then answer with `reply` (one of the error answers above) instead.
    pub fn lose_answer_with(reply: Fault) -> Fault {
        Fault::LoseAnswer(Some(Box::new(reply)))
    }

    /// Forward, then close the connection without answering.
    pub fn lose_answer_by_closing() -> Fault {
        Fault::LoseAnswer(None)
    }

    /// A short name for summaries: `503`, `stall`, `lost+500`, `lost+close`.
    pub fn kind(&self) -> String {
        match self {
            Fault::Reply { status, .. } => status.to_string(),
            Fault::Stall => "stall".into(),
            Fault::LoseAnswer(Some(reply)) => format!("lost+{}", reply.kind()),
            Fault::LoseAnswer(None) => "lost+close".into(),
        }
    }
}

/// When a rule fires, counting only the requests its [`Target`] matches.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// On the n-th matching request (1-based) only.
    Nth(u64),
    /// On every k-th matching request (k, 2k, 3k, ...).
    Every(u64),
    /// On each matching request with this probability, from a seeded generator (the same
    /// seed and request order fire the same way).
    Chance {
        /// 0.0 - 1.0.
        p: f64,
        /// The generator's seed.
        seed: u64,
    },
}

/// One entry of a plan: a named target, when, and what.
#[derive(Debug, Clone)]
pub struct Rule {
    /// For summaries and [`FaultProxy::injected`].
    pub name: String,
    /// Which requests.
    pub target: Target,
    /// Which of them.
    pub when: When,
    /// What happens to them.
    pub fault: Fault,
    /// The most injections (None: no limit).
    pub limit: Option<u64>,
}

impl Rule {
    /// A rule without a limit.
    pub fn new(name: &str, target: Target, when: When, fault: Fault) -> Rule {
        Rule {
            name: name.to_string(),
            target,
            when,
            fault,
            limit: None,
        }
    }

    /// Fires at most `n` times.
    pub fn times(mut self, n: u64) -> Rule {
        self.limit = Some(n);
        self
    }
}

/// What a rule did so far.
#[derive(Debug, Clone)]
pub struct RuleCount {
    /// The rule's name.
    pub name: String,
    /// [`Fault::kind`].
    pub kind: String,
    /// Requests its target matched.
    pub matched: u64,
    /// Faults it injected.
    pub injected: u64,
    /// `METHOD path` of each request it injected into, in order.
    pub requests: Vec<String>,
    /// Of its lost answers, those the upstream had answered with a 2xx (the write happened);
    /// a lost answer to a write the upstream refused (a claim that existed already) is a
    /// plain error to the client.
    pub landed: u64,
}

struct RuleState {
    rule: Rule,
    rng: u64,
    count: RuleCount,
}

impl RuleState {
    /// Counts a matching request; whether the rule fires on it.
    fn fires(&mut self, what: &str) -> bool {
        self.count.matched += 1;
        let n = self.count.matched;
        if self
            .rule
            .limit
            .is_some_and(|limit| self.count.injected >= limit)
        {
            return false;
        }
        let fire = match self.rule.when {
            When::Nth(k) => n == k,
            When::Every(k) => k > 0 && n.is_multiple_of(k),
            When::Chance { p, .. } => {
                self.rng = splitmix(self.rng);
                ((self.rng >> 11) as f64 / (1u64 << 53) as f64) < p
            }
        };
        if fire {
            self.count.injected += 1;
            self.count.requests.push(what.to_string());
        }
        fire
    }
}

fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<RuleState>>,
    stopping: AtomicBool,
    forwarded: std::sync::atomic::AtomicU64,
}

/// The proxy; stops accepting on drop (stalled connections are let go too).
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: give it to the client as its endpoint.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`),
    /// applying `plan`: rules are asked in order, the first that fires injects, and the
    /// later ones whose target matches count the request as matched only.
    pub fn start(upstream: &str, plan: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rules: Mutex::new(
                plan.into_iter()
                    .map(|rule| RuleState {
                        rng: match rule.when {
                            When::Chance { seed, .. } => seed,
                            _ => 0,
                        },
                        count: RuleCount {
                            name: rule.name.clone(),
                            kind: rule.fault.kind(),
                            matched: 0,
                            injected: 0,
                            requests: Vec::new(),
                            landed: 0,
                        },
                        rule,
                    })
                    .collect(),
            ),
            stopping: AtomicBool::new(false),
            forwarded: Default::default(),
        });
        let accepting = shared.clone();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        std::thread::spawn(move || {
            while !accepting.stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let shared = accepting.clone();
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            if let Err(e) = serve(&shared, conn) {
                                // A client that gave up (a timeout) is expected here.
                                if std::env::var_os("SLUICE_FAULTS_DEBUG").is_some() {
                                    eprintln!("fault proxy: {e}");
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FaultProxy { endpoint, shared }
    }

    /// What each rule matched and injected, in plan order.
    pub fn counts(&self) -> Vec<RuleCount> {
        self.shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.count.clone())
            .collect()
    }

    /// Faults the rule called `name` injected (panics on an unknown name).
    pub fn injected(&self, name: &str) -> u64 {
        self.counts()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no rule named {name} in the plan"))
            .injected
    }

    /// Lost answers of the rule called `name` whose write the upstream had accepted (see
    /// [`RuleCount::landed`]).
    pub fn landed(&self, name: &str) -> u64 {
        self.counts()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no rule named {name} in the plan"))
            .landed
    }

    /// Requests passed to the upstream (lost answers included).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// `name kind injected/matched, ...` for a one-line report.
    pub fn summary(&self) -> String {
        self.counts()
            .iter()
            .map(|c| format!("{} ({}) {}/{}", c.name, c.kind, c.injected, c.matched))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
    }
}

/// One parsed request: its head as received and its body (de-chunked framing kept as sent).
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    /// The body bytes exactly as they came (chunked framing included).
    raw_body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Service {
    S3,
    Ses,
    Sqs,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn sqs_action(&self) -> Option<String> {
        if let Some(target) = self.header("x-amz-target") {
            return target.strip_prefix("AmazonSQS.").map(str::to_string);
        }
        let form = String::from_utf8_lossy(&self.raw_body);
        form.split('&')
            .chain(self.query.split('&'))
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_string)
    }

    fn service(&self) -> Service {
        if self.path.starts_with("/v2/email/") {
            Service::Ses
        } else if self.sqs_action().is_some() {
            Service::Sqs
        } else {
            Service::S3
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// Reads one line (up to `\n`) of a head.
fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io_err("connection closed"));
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let line = read_line(r)?;
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        raw_body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        req.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("expect"));
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(r)?;
            req.raw_body.extend_from_slice(size_line.as_bytes());
            req.raw_body.extend_from_slice(b"\r\n");
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io_err(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let t = read_line(r)?;
                    req.raw_body.extend_from_slice(t.as_bytes());
                    req.raw_body.extend_from_slice(b"\r\n");
                    if t.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            req.raw_body.extend_from_slice(&chunk);
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io_err(format!("bad Content-Length {len:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        req.raw_body = body;
    }
    Ok(req)
}

/// Sends the request upstream with `Connection: close` and returns the whole answer.
fn forward(shared: &Shared, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(&shared.upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!(
        "{} {}{}{} HTTP/1.1\r\n",
        req.method,
        req.path,
        if req.query.is_empty() { "" } else { "?" },
        req.query
    );
    for (n, v) in &req.headers {
        if !n.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.raw_body)?;
    up.flush()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    Ok(answer)
}

/// `answer` with its `Connection` header replaced by `Connection: close`.
fn closing(answer: &[u8]) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("connection"));
        if !is_connection {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer[end + 4..]);
    bytes
}

fn reply_bytes(fault: &Fault, head_only: bool) -> Vec<u8> {
    let Fault::Reply {
        status,
        headers,
        body,
        content_type,
    } = fault
    else {
        return Vec::new();
    };
    let reason = match status {
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = if head_only { "" } else { body.as_str() };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amz-request-id: FAULTPROXY\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn serve(shared: &Shared, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    let req = read_request(&mut reader)?;
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        let mut chosen = None;
        for (i, state) in rules.iter_mut().enumerate() {
            if !state.rule.target.matches(&req) {
                continue;
            }
            if chosen.is_some() {
                // An earlier rule took this request: counted as matched, never as injected.
                state.count.matched += 1;
            } else if state.fires(&req.describe()) {
                chosen = Some((i, state.rule.fault.clone()));
            }
        }
        chosen
    };
    let (rule, fault) = match fault {
        Some((i, f)) => (Some(i), Some(f)),
        None => (None, None),
    };
    let head_only = req.method == "HEAD";
    match fault {
        None => {
            let answer = forward(shared, &req)?;
            conn.write_all(&closing(&answer))?;
        }
        Some(reply @ Fault::Reply { .. }) => conn.write_all(&reply_bytes(&reply, head_only))?,
        Some(Fault::Stall) => {
            // Hold the connection until the client gives up (or the proxy stops).
            conn.set_read_timeout(Some(Duration::from_millis(200)))?;
            let until = Instant::now() + Duration::from_secs(600);
            let mut sink = [0u8; 1024];
            while Instant::now() < until && !shared.stopping.load(Ordering::Relaxed) {
                match reader.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        Some(Fault::LoseAnswer(reply)) => {
            let answer = forward(shared, &req)?;
            // `HTTP/1.1 200 OK`: the status is the second word.
            let landed = answer
                .split(|b| *b == b' ')
                .nth(1)
                .is_some_and(|code| code.first() == Some(&b'2'));
            if let (true, Some(i)) = (landed, rule) {
                shared.rules.lock().unwrap()[i].count.landed += 1;
            }
            if let Some(reply) = reply {
                conn.write_all(&reply_bytes(&reply, head_only))?;
            }
        }
    }
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            raw_body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn targets_tell_services_and_operations_apart() {
        let claim = request(
            "PUT",
            "/markers/sent/m-1/relay-ab.json?x-id=PutObject",
            &[("If-None-Match", "*")],
            "{}",
        );
        let confirm = request("PUT", "/markers/sent/m-1/relay-ab.json", &[], "{}");
        let get = request("GET", "/inbound/incoming/m%2D1?x-id=GetObject", &[], "");
        let send = request("POST", "/v2/email/outbound-emails", &[], "{}");
        let receive = request(
            "POST",
            "/",
            &[("X-Amz-Target", "AmazonSQS.ReceiveMessage")],
            "{}",
        );
        let claims = Target::s3("put", "markers", "sent/").conditional(true);
        assert!(claims.matches(&claim));
        assert!(!claims.matches(&confirm));
        assert!(Target::s3("PUT", "markers", "")
            .conditional(false)
            .matches(&confirm));
        assert!(Target::s3("GET", "inbound", "incoming/m-").matches(&get));
        assert!(!Target::s3("GET", "mail", "").matches(&get));
        assert!(Target::SesSend.matches(&send));
        assert!(!Target::SesSend.matches(&get));
        assert!(Target::Sqs("ReceiveMessage".into()).matches(&receive));
        assert!(!Target::Sqs("DeleteMessage".into()).matches(&receive));
        assert!(!Target::s3("POST", "", "").matches(&receive));
        assert_eq!(receive.service(), Service::Sqs);
        assert_eq!(send.service(), Service::Ses);
    }

    #[test]
    fn rules_fire_on_the_nth_every_kth_or_by_chance_within_their_limit() {
        let state = |when: When, limit: Option<u64>| RuleState {
            rng: match when {
                When::Chance { seed, .. } => seed,
                _ => 0,
            },
            rule: Rule {
                limit,
                ..Rule::new("r", Target::SesSend, when, Fault::Stall)
            },
            count: RuleCount {
                name: "r".into(),
                kind: "stall".into(),
                matched: 0,
                injected: 0,
                requests: vec![],
                landed: 0,
            },
        };
        let fired = |s: &mut RuleState| (0..12).filter(|_| s.fires("x")).count();
        assert_eq!(fired(&mut state(When::Nth(3), None)), 1);
        assert_eq!(fired(&mut state(When::Every(4), None)), 3);
        assert_eq!(fired(&mut state(When::Every(1), Some(2))), 2);
        let a = fired(&mut state(When::Chance { p: 0.5, seed: 7 }, None));
        assert_eq!(a, fired(&mut state(When::Chance { p: 0.5, seed: 7 }, None)));
        assert!((1..12).contains(&a), "{a}");
        assert_eq!(fired(&mut state(When::Chance { p: 0.0, seed: 7 }, None)), 0);
    }

    #[test]
    fn answers_are_made_to_close_the_connection() {
        let a =
            closing(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(
            String::from_utf8(a).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        assert_eq!(percent_decode("a%2Fb%40c"), "a/b@c");
    }
}
