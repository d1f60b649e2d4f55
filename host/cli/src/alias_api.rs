//! `sluice alias api`: the alias verbs of `sluice alias` as a small JSON API over HTTP, for a
//! self-hosted admin page or a script (the tacomail seed dispositions its aliases from one).
//!
//! Every request carries `Authorization: Bearer <token>`, the token read from a file only its
//! owner can read. The server is meant for loopback or a private network behind a TLS proxy:
//! it speaks plain HTTP/1.1, one request per connection, with bounded headers and bodies and
//! a read deadline, so a slow or hostile client holds one thread for at most that long.
//! Edits go through the same checks as the command line (`alias::Directory`).
//!
//! The routes and answers are `sluice_directory::admin`'s (shared with the alias API Lambda);
//! this module adds the transport: HTTP/1.1 parsing with bounds, the bearer token, and
//! 401, 408, 411, 413 and 431 for requests that never reach a route.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_directory::admin::{answer, percent_decode, route_name, Admin};

/// The largest request body taken (an alias with its destinations is well under 1 KB).
const MAX_BODY: usize = 64 * 1024;
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the bearer token: the file's first line, at least 16 characters, and the file not
/// readable by others (a token anyone on the box can read guards nothing).
pub(crate) fn read_token(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{}: the token file is readable by others: `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.len() < 16 {
        bail!(
            "{}: the token must be at least 16 characters (e.g. `head -c 24 /dev/urandom | base64 > {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(token)
}

/// Serves the API on `listen` until the process is stopped; prints the address bound first.
pub(crate) fn serve(directory: Admin, listen: SocketAddr, token: String) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    println!("serving the alias API on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shared = Arc::new((directory, token));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let (directory, token) = &*shared;
            if let Err(e) = connection(stream, directory, token) {
                eprintln!("alias api: connection: {e:#}");
            }
        });
    }
    Ok(())
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn connection(stream: TcpStream, directory: &Admin, token: &str) -> Result<()> {
    stream.set_read_timeout(Some(READ_DEADLINE))?;
    let mut out = stream.try_clone()?;
    let (status, body, route) = match read_request(&mut BufReader::new(stream)) {
        Ok(request) => {
            let route = route_name(&request.method, &request.path);
            let (status, body) = if !authorized(request.authorization.as_deref(), token) {
                (401, json!({"error": "missing or wrong bearer token"}))
            } else {
                answer(
                    directory,
                    &request.method,
                    &request.path,
                    &request.query,
                    &request.body,
                )
            };
            (status, body, route)
        }
        Err((status, why)) => (status, json!({"error": why}), "-".to_string()),
    };
    // The log names the route, never an address (as every Sluice log).
    eprintln!("alias api: {route} {status}");
    let body = serde_json::to_vec_pretty(&body)?;
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )?;
    out.write_all(&body)?;
    out.flush()?;
    Ok(())
}

fn read_request(reader: &mut impl BufRead) -> Result<Request, (u16, String)> {
    let bad = |why: &str| (400, why.to_string());
    let mut head_len = 0;
    let mut line = String::new();
    let mut next_line = |line: &mut String| -> Result<(), (u16, String)> {
        line.clear();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head_len.min(MAX_HEAD)) as u64)
            .read_line(line)
            .map_err(|e| (408, format!("reading the request: {e}")))?;
        head_len += n;
        if n == 0 || !line.ends_with('\n') {
            return Err((431, "request head too large or cut off".into()));
        }
        Ok(())
    };
    next_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        next_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad("malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err((411, "send the body with a Content-Length".into()));
        }
    }
    if length > MAX_BODY {
        return Err((413, format!("the body is over {MAX_BODY} bytes")));
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| (408, format!("reading the body: {e}")))?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    // The path is decoded per segment by the route (an address may hold an escaped `/`).
    percent_decode(path).map_err(|e| (400, e.to_string()))?;
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        body,
    })
}

/// Compares in time independent of where the two differ.
fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = "0123456789abcdef0123";
        assert!(authorized(Some("Bearer 0123456789abcdef0123"), token));
        assert!(!authorized(Some("Bearer 0123456789abcdef012"), token));
        assert!(!authorized(Some("Bearer 0123456789abcdef0124"), token));
        assert!(!authorized(Some("Basic 0123456789abcdef0123"), token));
        assert!(!authorized(None, token));
    }

    #[test]
    fn requests_parse_with_bounds() {
        let raw = b"POST /v1/aliases/a%40b.example/pause?x=1 HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}";
        let r = read_request(&mut &raw[..]).unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/aliases/a%40b.example/pause")
        );
        assert_eq!(r.query, "x=1");
        assert_eq!(r.body, b"{}");
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            read_request(&mut big.as_bytes()).err().map(|e| e.0),
            Some(413)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            read_request(&mut long.as_bytes()).err().map(|e| e.0),
            Some(431)
        );
        assert_eq!(
            route_name("GET", "/v1/aliases/bob@example.com"),
            "GET /v1/aliases/{address}"
        );
    }
}
