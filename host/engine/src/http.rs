//! Outgoing HTTP a step may make (`sluice:rules/http`, WIT 0.1.4).
//!
//! Nothing is granted by default: a step lists the URL prefixes it may call (`http = { allow
//! = [...] }` in its config), and the engine refuses any other URL before anything leaves the
//! process. The requests themselves are sent outside the engine, behind [`HttpClient`] (the
//! `sluice-http` crate), so the sandbox crate has no network code.

use std::time::{Duration, Instant};

/// Default for `max_response_kb`.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The most HTTP calls one step may make.
pub const MAX_HTTP_CALLS: usize = 16;
/// The largest request body a rule may send.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// One allowed URL prefix: scheme, host and port must be equal, and the path must start with
/// the prefix's path at a segment boundary (`https://h/v1/` allows `https://h/v1/score`, not
/// `https://h/v10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedUrl {
    /// As written in the config, for messages.
    pub text: String,
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl AllowedUrl {
    /// Parses one `allow` entry: an absolute `http` or `https` URL without user info, query or
    /// fragment.
    pub fn parse(text: &str) -> Result<AllowedUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let (scheme, host, port) = origin(&url).map_err(|e| format!("{text:?}: {e}"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?}: an allowed prefix has no query or fragment"
            ));
        }
        Ok(AllowedUrl {
            text: text.to_string(),
            scheme,
            host,
            port,
            path: url.path().to_string(),
        })
    }

    /// Whether this prefix allows `url`.
    fn allows(&self, url: &url::Url) -> bool {
        let Ok((scheme, host, port)) = origin(url) else {
            return false;
        };
        if scheme != self.scheme || host != self.host || port != self.port {
            return false;
        }
        let path = url.path();
        path == self.path
            || (path.starts_with(&self.path)
                && (self.path.ends_with('/') || path[self.path.len()..].starts_with('/')))
    }

    /// Whether this entry names an IP address literally (which lets a rule reach it even when
    /// it is link-local: the operator wrote it down).
    pub fn is_ip_literal(&self) -> bool {
        self.host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    }
}

/// Scheme, lower-case host and effective port of an `http`/`https` URL without user info.
fn origin(url: &url::Url) -> Result<(String, String, u16), String> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL with user info is refused".to_string());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?
        .to_ascii_lowercase();
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    Ok((scheme.to_string(), host, port))
}

/// What a step may do over HTTP (`http = { allow, timeout_ms, max_response_kb }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The prefixes it may call.
    pub allow: Vec<AllowedUrl>,
    /// Bound of one call (the step's deadline bounds it too).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl HttpGrant {
    /// The allow entry that permits `url`, if any.
    pub fn permits(&self, url: &url::Url) -> Option<&AllowedUrl> {
        self.allow.iter().find(|a| a.allows(url))
    }
}

/// A request a rule asked for, checked against its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// An upper-case method token.
    pub method: String,
    /// The absolute URL.
    pub url: url::Url,
    /// Header fields the rule set.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// A service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (any: 3xx, 4xx and 5xx are answers too).
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, at most the grant's `max_response_bytes`.
    pub body: Vec<u8>,
}

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    /// What went wrong, for the rule and the trace.
    pub message: String,
    /// The service may answer later (timeout, refused connection).
    pub temporary: bool,
}

impl HttpError {
    /// A failure that a retry may cure.
    pub fn temporary(message: impl Into<String>) -> HttpError {
        HttpError {
            message: message.into(),
            temporary: true,
        }
    }

    /// A failure that a retry will not cure.
    pub fn permanent(message: impl Into<String>) -> HttpError {
        HttpError {
            message: message.into(),
            temporary: false,
        }
    }
}

/// Sends the requests of granted steps.
pub trait HttpClient: Send + Sync {
    /// Sends `request`, which `grant` permits, and reads the whole response by `deadline`
    /// (already the earlier of the grant's timeout and the step's deadline). Must not follow
    /// redirects, must refuse a body over `grant.max_response_bytes`, and must not connect to
    /// a link-local or metadata address that the grant does not name literally.
    fn send(
        &self,
        grant: &HttpGrant,
        request: &HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, HttpError>;
}

/// How one call ended, for the trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum HttpResult {
    /// The service answered with this status.
    Answered {
        /// The HTTP status.
        status: u16,
        /// Body bytes received.
        bytes: usize,
    },
    /// The URL is not granted to the step (nothing was sent).
    Denied,
    /// No answer.
    Failed {
        /// Why.
        error: String,
        /// Whether a retry may cure it.
        temporary: bool,
    },
}

/// One `http.send` call of a step, in the step's report (and the trace).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HttpCall {
    /// The method.
    pub method: String,
    /// The URL, without its query (which may carry addresses).
    pub url: String,
    /// How it ended.
    #[serde(flatten)]
    pub result: HttpResult,
    /// Time the host spent on it, in microseconds.
    pub micros: u64,
}

/// Header fields the host sets itself (or that would let a rule split or smuggle requests).
const HOST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

/// Checks what a rule asked for: a method token, an absolute URL the grant permits, header
/// fields without CR/LF that the host does not set itself, a bounded body. `Err` carries the
/// message for the rule, and whether the URL was denied (for the trace).
pub(crate) fn check_request(
    grant: Option<&HttpGrant>,
    step: &str,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
) -> Result<HttpRequest, (String, bool)> {
    let bad = |m: String| Err((m, false));
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method) || method.bytes().any(|b| b.is_ascii_lowercase()) {
        return bad(format!(
            "http: method {method:?} is not an upper-case token such as GET or POST"
        ));
    }
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return bad(format!("http: {url:?} is not an absolute URL: {e}")),
    };
    if let Err(e) = origin(&parsed) {
        return bad(format!("http: {url:?}: {e}"));
    }
    let Some(grant) = grant else {
        return Err((
            format!(
                "http: step {step:?} is not granted HTTP: add `http = {{ allow = [\"{}\"] }}` to the step in the config",
                prefix_hint(&parsed)
            ),
            true,
        ));
    };
    if grant.permits(&parsed).is_none() {
        let allowed: Vec<&str> = grant.allow.iter().map(|a| a.text.as_str()).collect();
        return Err((
            format!(
                "http: {} is not granted to step {step:?} (it may call {}): add \"{}\" to the step's `http.allow`",
                without_query(&parsed),
                allowed.join(", "),
                prefix_hint(&parsed)
            ),
            true,
        ));
    }
    for (name, value) in &headers {
        if !is_token(name) {
            return bad(format!("http: header name {name:?} is not a token"));
        }
        if HOST_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return bad(format!("http: header {name:?} is set by the host"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return bad(format!(
                "http: header {name:?} has CR, LF or NUL in its value"
            ));
        }
    }
    if let Some(b) = &body {
        if b.len() > MAX_REQUEST_BODY {
            return bad(format!(
                "http: request body of {} bytes is over the {} KiB limit",
                b.len(),
                MAX_REQUEST_BODY / 1024
            ));
        }
    }
    Ok(HttpRequest {
        method: method.to_string(),
        url: parsed,
        headers,
        body,
    })
}

/// `scheme://host:port/` of a URL, to suggest as an allow entry.
fn prefix_hint(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_path("/");
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The URL without query and fragment, for messages and the trace.
pub(crate) fn without_query(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str]) -> HttpGrant {
        HttpGrant {
            allow: allow
                .iter()
                .map(|a| AllowedUrl::parse(a).unwrap())
                .collect(),
            timeout: Duration::from_millis(200),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    fn permitted(g: &HttpGrant, url: &str) -> bool {
        g.permits(&url::Url::parse(url).unwrap()).is_some()
    }

    #[test]
    fn prefixes_match_origin_and_whole_path_segments() {
        let g = grant(&[
            "https://classifier.internal:8443/v1/",
            "http://127.0.0.1:9000/score",
        ]);
        assert!(permitted(
            &g,
            "https://classifier.internal:8443/v1/score?x=1"
        ));
        assert!(permitted(&g, "https://CLASSIFIER.internal:8443/v1/"));
        assert!(!permitted(&g, "https://classifier.internal:8443/v10"));
        assert!(
            !permitted(&g, "https://classifier.internal/v1/score"),
            "other port"
        );
        assert!(
            !permitted(&g, "http://classifier.internal:8443/v1/score"),
            "other scheme"
        );
        assert!(!permitted(&g, "https://classifier.internal.evil:8443/v1/"));
        assert!(permitted(&g, "http://127.0.0.1:9000/score"));
        assert!(permitted(&g, "http://127.0.0.1:9000/score/deep"));
        assert!(!permitted(&g, "http://127.0.0.1:9000/scores"));
        assert!(!permitted(&g, "http://127.0.0.1:9001/score"));
        // Dot segments are resolved before matching, so they cannot climb out of the prefix.
        assert!(!permitted(
            &g,
            "https://classifier.internal:8443/v1/../admin"
        ));
        assert!(!permitted(&g, "http://user@127.0.0.1:9000/score"));
    }

    #[test]
    fn allow_entries_are_checked() {
        for bad in ["ftp://h/", "not a url", "https://h/?q=1", "https://u:p@h/"] {
            assert!(AllowedUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(AllowedUrl::parse("http://169.254.169.254/")
            .unwrap()
            .is_ip_literal());
        assert!(AllowedUrl::parse("http://[fd00:ec2::254]/")
            .unwrap()
            .is_ip_literal());
        assert!(!AllowedUrl::parse("http://metadata.internal/")
            .unwrap()
            .is_ip_literal());
    }

    #[test]
    fn requests_are_checked_before_anything_is_sent() {
        let g = grant(&["http://127.0.0.1:9000/"]);
        let check = |method: &str, url: &str, headers: Vec<(String, String)>| {
            check_request(Some(&g), "classify", method, url, headers, None)
        };
        assert!(check("POST", "http://127.0.0.1:9000/score", vec![]).is_ok());
        let (m, denied) = check("GET", "http://10.0.0.1/", vec![]).unwrap_err();
        assert!(
            denied && m.contains("not granted to step \"classify\""),
            "{m}"
        );
        assert!(m.contains("add \"http://10.0.0.1/\""), "{m}");
        let (m, denied) = check("get", "http://127.0.0.1:9000/", vec![]).unwrap_err();
        assert!(!denied && m.contains("upper-case token"), "{m}");
        let smuggle = vec![("X-A".to_string(), "1\r\nHost: evil".to_string())];
        assert!(check("GET", "http://127.0.0.1:9000/", smuggle).is_err());
        let host = vec![("Host".to_string(), "evil".to_string())];
        assert!(check("GET", "http://127.0.0.1:9000/", host)
            .unwrap_err()
            .0
            .contains("set by the host"));
        let (m, denied) = check_request(
            None,
            "classify",
            "GET",
            "http://127.0.0.1:9000/",
            vec![],
            None,
        )
        .unwrap_err();
        assert!(denied && m.contains("is not granted HTTP"), "{m}");
        assert!(check("GET", "file:///etc/passwd", vec![]).is_err());
    }
}
