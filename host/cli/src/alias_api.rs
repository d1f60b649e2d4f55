//! `sluice alias api`: the alias verbs of `sluice alias` as a small JSON API over HTTP, for a
//! self-hosted admin page or a script (the tacomail seed dispositions its aliases from one).
//!
//! Every request carries `Authorization: Bearer <token>`, the token read from a file only its
//! owner can read. The server is meant for loopback or a private network behind a TLS proxy:
//! it speaks plain HTTP/1.1, one request per connection, with bounded headers and bodies and
//! a read deadline, so a slow or hostile client holds one thread for at most that long.
//! Edits go through the same checks as the command line (`alias::Directory`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/aliases?domain=D[&status=S]` | 200, the domain's records |
//! | `GET /v1/aliases/{address}` | 200 the record, 404 |
//! | `POST /v1/aliases` `{"address"` or `"random": DOMAIN, "prefix", "to": [..], "status", "replace"}` | 201 (200 replaced), 409 exists |
//! | `POST /v1/aliases/{address}/pause` (`resume`, `ignore`) | 200 `{"record", "changed"}` |
//! | `DELETE /v1/aliases/{address}` | 200 `{"removed"}`, 404 |
//!
//! Errors are `{"error": "..."}` with 400 (bad input), 401 (token), 404, 405, 409, 413 (body
//! over 64 KB), 422 (a domain not served, a destination not allowed), 503 (the directory's
//! backend is down: try again).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sluice_directory::{DirectoryError, Status};

use crate::alias::{AddRequest, Added, Directory, Refusal};

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
pub(crate) fn serve(directory: Directory, listen: SocketAddr, token: String) -> Result<()> {
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
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn connection(stream: TcpStream, directory: &Directory, token: &str) -> Result<()> {
    stream.set_read_timeout(Some(READ_DEADLINE))?;
    let mut out = stream.try_clone()?;
    let (status, body, route) = match read_request(&mut BufReader::new(stream)) {
        Ok(request) => {
            let route = route_name(&request.method, &request.path);
            let (status, body) = if !authorized(request.authorization.as_deref(), token) {
                (401, json!({"error": "missing or wrong bearer token"}))
            } else {
                answer(directory, &request)
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
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect::<Result<Vec<_>, (u16, String)>>()?;
    Ok(Request {
        method,
        path: path.to_string(),
        query,
        authorization,
        body,
    })
}

fn percent_decode(s: &str) -> Result<String, (u16, String)> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or((400, "bad %-escape in the URL".to_string()))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| (400, "the URL is not UTF-8".into()))
}

/// Compares in time independent of where the two differ.
fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The route for the log: the path with the address left out.
fn route_name(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "aliases"] => format!("{method} /v1/aliases"),
        ["v1", "aliases", _] => format!("{method} /v1/aliases/{{address}}"),
        ["v1", "aliases", _, verb] => format!("{method} /v1/aliases/{{address}}/{verb}"),
        _ => format!("{method} (unknown path)"),
    }
}

fn answer(directory: &Directory, request: &Request) -> (u16, Value) {
    match route(directory, request) {
        Ok(answer) => answer,
        Err(e) => (status_of(&e), json!({"error": format!("{e:#}")})),
    }
}

fn route(directory: &Directory, request: &Request) -> Result<(u16, Value)> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let address = |raw: &str| percent_decode(raw).map_err(|(_, why)| anyhow::anyhow!(why));
    let method = request.method.as_str();
    Ok(match (method, segments.as_slice()) {
        ("GET", ["v1", "aliases"]) => {
            let param = |name: &str| {
                request
                    .query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
            };
            let Some(domain) = param("domain") else {
                return Ok((
                    400,
                    json!({"error": "name the domain: /v1/aliases?domain=example.com"}),
                ));
            };
            let status = match param("status") {
                None => None,
                Some(s) => Some(
                    serde_json::from_value::<Status>(json!(s))
                        .map_err(|_| anyhow::anyhow!("status {s:?}: active, paused or ignored"))?,
                ),
            };
            (200, json!(directory.records(domain, status)?))
        }
        ("POST", ["v1", "aliases"]) => {
            let req: AddRequest = serde_json::from_slice(&request.body)
                .map_err(|e| anyhow::anyhow!("the body is not an alias to add: {e}"))?;
            let Added { record, replaced } = directory.add(req)?;
            (if replaced { 200 } else { 201 }, json!(record))
        }
        ("GET", ["v1", "aliases", a]) => (200, json!(directory.get(&address(a)?)?)),
        ("DELETE", ["v1", "aliases", a]) => {
            (200, json!({"removed": directory.remove(&address(a)?)?}))
        }
        ("POST", ["v1", "aliases", a, verb]) => {
            let status = match *verb {
                "pause" => Status::Paused,
                "resume" => Status::Active,
                "ignore" => Status::Ignored,
                other => {
                    return Ok((
                        404,
                        json!({"error": format!("no action {other:?}: pause, resume or ignore")}),
                    ))
                }
            };
            let (record, changed) = directory.set_status(&address(a)?, status)?;
            (200, json!({"record": record, "changed": changed}))
        }
        (_, ["v1", "aliases"] | ["v1", "aliases", _] | ["v1", "aliases", _, _]) => (
            405,
            json!({"error": format!("{method} is not served here")}),
        ),
        _ => (
            404,
            json!({"error": "no such path: the API is under /v1/aliases"}),
        ),
    })
}

fn status_of(e: &anyhow::Error) -> u16 {
    if let Some(refusal) = e.downcast_ref::<Refusal>() {
        return match refusal {
            Refusal::NotFound(_) => 404,
            Refusal::Exists(_) => 409,
        };
    }
    match e.downcast_ref::<DirectoryError>() {
        Some(DirectoryError::Unavailable(_)) => 503,
        Some(DirectoryError::Refused(_)) => 422,
        Some(DirectoryError::Invalid(_)) | None => 400,
    }
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
        assert_eq!(r.query, vec![("x".to_string(), "1".to_string())]);
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
