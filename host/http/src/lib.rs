//! The HTTP client behind `sluice:rules/http` (WIT 0.1.4): what a step granted `http = {
//! allow = [...] }` sends.
//!
//! The engine has already checked the URL against the step's allow-list; this crate adds the
//! guards that need the network: it never follows a redirect (a 3xx goes back to the rule as
//! it is), it refuses a host name that resolves to a link-local, unspecified or cloud metadata
//! address (only an allow entry that names the address itself reaches one), it connects to
//! exactly the addresses it checked (no second lookup that DNS rebinding could answer
//! differently), and it stops reading at the grant's `max_response_kb`.
//!
//! Blocking by design: rules run on blocking threads, and a call must end by the step's
//! deadline, which `ureq`'s per-request timeout bounds (connect, send and read). A name
//! lookup itself is the system resolver's and is not bounded by it.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use sluice_engine::{HttpClient, HttpError, HttpGrant, HttpRequest, HttpResponse};

/// Turns `host:port` into addresses (the system resolver, or a stand-in in tests).
pub type Resolve = dyn Fn(&str) -> std::io::Result<Vec<SocketAddr>> + Send + Sync;

/// Sends rules' requests; one per process, so connections to a service are reused.
#[derive(Clone)]
pub struct HttpService {
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpService")
    }
}

impl Default for HttpService {
    fn default() -> Self {
        HttpService::new()
    }
}

impl HttpService {
    /// A client that resolves names with the system resolver.
    pub fn new() -> HttpService {
        HttpService::with_resolver(Arc::new(|netloc: &str| {
            netloc.to_socket_addrs().map(|a| a.collect())
        }))
    }

    /// A client that resolves names with `resolve` (then applies the address guard).
    pub fn with_resolver(resolve: Arc<Resolve>) -> HttpService {
        let guarded = move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            // An IP literal reaches the engine only when an allow entry names it: the
            // operator wrote that address down, so it is not guarded.
            if let Ok(addr) = netloc.parse::<SocketAddr>() {
                return Ok(vec![addr]);
            }
            let addrs = resolve(netloc)?;
            if let Some(bad) = addrs.iter().find(|a| is_restricted(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{netloc} resolves to {}, a link-local, unspecified or metadata address that rules may not reach (an allow entry naming the address itself permits it)",
                        bad.ip()
                    ),
                ));
            }
            Ok(addrs)
        };
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .resolver(guarded)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpService { agent }
    }
}

/// Addresses a rule never reaches through a name: link-local (which holds the cloud metadata
/// services, 169.254.169.254 and 169.254.170.2 on AWS), AWS's IPv6 metadata address, and the
/// unspecified addresses (which connect to the local host).
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return restricted_v4(v4);
            }
            v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn restricted_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local() || ip.is_unspecified() || ip.octets()[0] == 0
}

impl HttpClient for HttpService {
    fn send(
        &self,
        grant: &HttpGrant,
        request: &HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, HttpError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(HttpError::temporary(
                "no time left before the step's deadline",
            ));
        }
        let mut call = self
            .agent
            .request_url(&request.method, &request.url)
            .timeout(timeout);
        for (name, value) in &request.headers {
            call = call.set(name, value);
        }
        let answer = match &request.body {
            Some(body) => call.send_bytes(body),
            None => call.call(),
        };
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t, timeout)),
        };
        let status = response.status();
        let mut headers = Vec::new();
        for name in response.headers_names() {
            for value in response.all(&name) {
                headers.push((name.to_ascii_lowercase(), value.to_string()));
            }
        }
        let limit = grant.max_response_bytes;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(limit as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| read_error(&e, timeout))?;
        if body.len() > limit {
            return Err(HttpError::permanent(format!(
                "the response is larger than the step's max_response_kb ({} KiB)",
                limit / 1024
            )));
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// A failure before any response: refused by the address guard (permanent), or the network
/// (temporary).
fn transport_error(t: &ureq::Transport, timeout: std::time::Duration) -> HttpError {
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io {
        Some(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            HttpError::permanent(e.to_string())
        }
        Some(e) if is_timeout(e) => timed_out(timeout),
        // Said without the URL: the engine names the URL once, in the trace and the error.
        Some(e) => HttpError::temporary(format!("{}: {e}", t.kind())),
        None => HttpError::temporary(match t.message() {
            Some(m) => format!("{}: {m}", t.kind()),
            None => t.kind().to_string(),
        }),
    }
}

fn read_error(e: &std::io::Error, timeout: std::time::Duration) -> HttpError {
    if is_timeout(e) {
        timed_out(timeout)
    } else {
        HttpError::temporary(format!("reading the response: {e}"))
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn timed_out(timeout: std::time::Duration) -> HttpError {
    HttpError::temporary(format!(
        "no answer within {} ms (the grant's timeout_ms or the step's deadline, whichever is earlier)",
        timeout.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Duration;

    use sluice_engine::AllowedUrl;

    fn grant(allow: &str, max_response_bytes: usize) -> HttpGrant {
        HttpGrant {
            allow: vec![AllowedUrl::parse(allow).unwrap()],
            timeout: Duration::from_secs(2),
            max_response_bytes,
        }
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url::Url::parse(url).unwrap(),
            headers: vec![],
            body: None,
        }
    }

    /// GETs `url`, granted with this response cap, with two seconds to answer.
    fn fetch(url: &str, max_response_bytes: usize) -> Result<HttpResponse, HttpError> {
        HttpService::new().send(
            &grant(url, max_response_bytes),
            &get(url),
            Instant::now() + Duration::from_secs(2),
        )
    }

    /// Serves one connection with `response`, and returns what the client sent.
    fn serve_once(response: String) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, handle)
    }

    #[test]
    fn restricted_addresses() {
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "0.0.0.0",
            "fe80::1",
            "fd00:ec2::254",
            "::",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_restricted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.5", "192.168.1.1", "::1", "2001:db8::1"] {
            assert!(!is_restricted(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_name_that_resolves_to_the_metadata_address_is_refused_without_connecting() {
        let service = HttpService::with_resolver(Arc::new(|_: &str| {
            Ok(vec!["169.254.169.254:80".parse().unwrap()])
        }));
        let g = grant("http://metadata.test/", 1024);
        let err = service
            .send(
                &g,
                &get("http://metadata.test/latest/meta-data/"),
                Instant::now() + Duration::from_secs(2),
            )
            .unwrap_err();
        assert!(!err.temporary, "{err:?}");
        assert!(err.message.contains("resolves to 169.254.169.254"), "{err}");
    }

    #[test]
    fn redirects_are_returned_not_followed() {
        let (port, server) = serve_once(
            "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
        );
        let url = format!("http://127.0.0.1:{port}/");
        let response = fetch(&url, 1024).unwrap();
        assert_eq!(response.status, 302);
        assert!(response.headers.contains(&(
            "location".to_string(),
            "http://169.254.169.254/".to_string()
        )));
        let sent = server.join().unwrap();
        assert!(sent.starts_with("GET / HTTP/1.1\r\n"), "{sent}");
    }

    #[test]
    fn a_response_over_the_cap_is_refused() {
        let body = "x".repeat(2048);
        let (port, server) = serve_once(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{body}"
        ));
        let url = format!("http://127.0.0.1:{port}/");
        let err = fetch(&url, 16).unwrap_err();
        server.join().unwrap();
        assert!(
            !err.temporary && err.message.contains("max_response_kb"),
            "{err:?}"
        );
    }

    #[test]
    fn error_statuses_are_answers() {
        let (port, server) = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy".to_string(),
        );
        let url = format!("http://127.0.0.1:{port}/");
        let response = fetch(&url, 1024).unwrap();
        server.join().unwrap();
        assert_eq!((response.status, response.body), (503, b"busy".to_vec()));
    }

    #[test]
    fn https_to_a_server_that_does_not_speak_tls_is_a_temporary_error() {
        // Builds the TLS client config (rustls with both crypto providers in the build, as
        // the AWS SDK brings aws-lc-rs) and fails the handshake cleanly.
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\n\r\n".to_string());
        let url = format!("https://127.0.0.1:{port}/");
        let err = fetch(&url, 1024).unwrap_err();
        let _ = server.join();
        assert!(err.temporary, "{err:?}");
        assert!(
            !err.message.contains("127.0.0.1"),
            "the engine adds the URL: {err}"
        );
    }

    #[test]
    fn a_silent_service_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let started = Instant::now();
        let err = HttpService::new()
            .send(
                &grant(&url, 1024),
                &get(&url),
                Instant::now() + Duration::from_millis(150),
            )
            .unwrap_err();
        let took = started.elapsed();
        drop(listener);
        assert!(err.temporary, "{err:?}");
        assert!(err.message.contains("no answer within"), "{err}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}
