//! Outgoing HTTP to the services the step is granted (`sluice:rules/http`, WIT 0.1.4).
//!
//! A step may call only the URL prefixes its config lists (`http = { allow =
//! ["https://classifier.internal:8443/"] }`); anything else answers `Err` and nothing is sent.
//! The host never follows redirects (a 3xx comes back as it is), caps the response body and
//! bounds the call by the grant's `timeout_ms` and the step's deadline. A failed call is an
//! ordinary rule error: return it with `?` and the step's `on_error` applies.
//!
//! ```no_run
//! use sluice_sdk::http;
//! # fn f() -> Result<(), sluice_sdk::RuleError> {
//! let answer = http::post_json("https://classifier.internal:8443/v1/score", r#"{"subject":"hi"}"#)?;
//! if answer.status == 200 && answer.text().contains("\"spam\":true") {
//!     // file it into Junk
//! }
//! # Ok(()) }
//! ```
//!
//! Outside wasm32 (native unit tests) the services are a thread-local test double: answer a
//! URL prefix with [`respond`], make one fail with [`fail`], and see what was sent with
//! [`take_sent`].

use crate::RuleError;

/// A request: an upper-case method, an absolute URL, header fields and an optional body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute `http(s)` URL.
    pub url: String,
    /// Header fields (the host sets `Host`, `Content-Length` and `Connection`).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// A service's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The HTTP status (3xx, 4xx and 5xx are answers too).
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (at most the grant's `max_response_kb`).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header field (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` and waits for the whole response.
pub fn send(request: Request) -> Result<Response, RuleError> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::sluice::rules::http as wit;
        wit::send(&wit::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        })
        .map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        double::send(request)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, RuleError> {
    send(Request {
        method: "GET".into(),
        url: url.into(),
        ..Request::default()
    })
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, json: &str) -> Result<Response, RuleError> {
    send(Request {
        method: "POST".into(),
        url: url.into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(json.as_bytes().to_vec()),
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub use double::{clear, fail, respond, take_sent};

#[cfg(not(target_arch = "wasm32"))]
mod double {
    use std::cell::RefCell;

    use super::{Request, Response};
    use crate::RuleError;

    #[derive(Default)]
    struct Services {
        /// (URL prefix, answer), longest prefix wins.
        answers: Vec<(String, Result<Response, RuleError>)>,
        sent: Vec<Request>,
    }

    thread_local! {
        static SERVICES: RefCell<Services> = RefCell::new(Services::default());
    }

    pub(super) fn send(request: Request) -> Result<Response, RuleError> {
        SERVICES.with(|s| {
            let mut s = s.borrow_mut();
            let answer = s
                .answers
                .iter()
                .filter(|(prefix, _)| request.url.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, answer)| answer.clone());
            let url = request.url.clone();
            s.sent.push(request);
            answer.unwrap_or_else(|| {
                Err(RuleError {
                    message: format!("http: {url} is not granted to this step (test double: call http::respond first)"),
                    temporary: false,
                })
            })
        })
    }

    /// Answers every request whose URL starts with `prefix` with `status` and `body`, for this
    /// thread's tests.
    pub fn respond(prefix: &str, status: u16, body: &str) {
        let response = Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        SERVICES.with(|s| {
            s.borrow_mut()
                .answers
                .push((prefix.to_string(), Ok(response)))
        });
    }

    /// Makes every request whose URL starts with `prefix` fail with `error` (e.g. a service
    /// that times out: `RuleError::temporary(...)`).
    pub fn fail(prefix: &str, error: RuleError) {
        SERVICES.with(|s| {
            s.borrow_mut()
                .answers
                .push((prefix.to_string(), Err(error)))
        });
    }

    /// Empties the double (answers, failures and the record of what was sent).
    pub fn clear() {
        SERVICES.with(|s| *s.borrow_mut() = Services::default());
    }

    /// The requests sent since the last call.
    pub fn take_sent() -> Vec<Request> {
        SERVICES.with(|s| std::mem::take(&mut s.borrow_mut().sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_double_answers_by_longest_prefix_and_refuses_the_rest() {
        clear();
        respond("https://c.internal/", 200, "generic");
        respond("https://c.internal/v1/score", 200, r#"{"spam":true}"#);
        fail("https://slow.internal/", RuleError::temporary("timed out"));
        let r = post_json("https://c.internal/v1/score", "{}").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"spam":true}"#));
        assert_eq!(get("https://c.internal/other").unwrap().text(), "generic");
        assert!(get("https://slow.internal/x").unwrap_err().temporary);
        assert!(!get("https://elsewhere/").unwrap_err().temporary);
        let sent = take_sent();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            sent[0].headers,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
    }
}
