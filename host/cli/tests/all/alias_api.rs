//! `sluice alias api`: the alias verbs over HTTP on loopback, against a file directory and
//! DynamoDB (moto), checked with `sluice alias` itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};
use sluice_tests::Moto;

const TOKEN: &str = "s3cret-token-0123456789";

fn alias(config: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("alias")
        .args(args)
        .env("SLUICE_CONFIG", config)
        .envs(env.iter().cloned())
        .output()
        .expect("sluice runs")
}

/// The API server, stopped when dropped.
struct Api {
    child: Child,
    address: String,
}

impl Api {
    fn start(config: &Path, env: &[(&'static str, String)], token_file: &Path) -> Api {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["alias", "api", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(token_file)
            .env("SLUICE_CONFIG", config)
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("serving the alias API on http://")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        Api { child, address }
    }

    /// One request; returns (status, JSON body).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, value) = self.call(method, path, Some(TOKEN), body);
        assert!(status < 300, "{method} {path}: {status} {value}");
        (status, value)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("api-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The verbs, the same for every backend; `sluice alias` reads back what the API did.
fn session(config: &Path, env: &[(&'static str, String)], dir: &Path) {
    for args in [
        &["init"][..],
        &["serve", "example.com"],
        &["allow", "@example.net"],
    ] {
        let o = alias(config, env, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let api = Api::start(config, env, &token_file(dir));

    assert_eq!(
        api.call("GET", "/v1/aliases?domain=example.com", None, None)
            .0,
        401
    );
    assert_eq!(
        api.call(
            "GET",
            "/v1/aliases?domain=example.com",
            Some("s3cret-token-0123456780"),
            None
        )
        .0,
        401
    );

    let (status, record) = api.ok(
        "POST",
        "/v1/aliases",
        Some(json!({"address": "Info@Example.com", "to": ["alice@example.net"]})),
    );
    assert_eq!(status, 201);
    assert_eq!(record["address"], "info@example.com");
    assert_eq!(record["to"], json!(["alice@example.net"]));

    let (status, why) = api.call(
        "POST",
        "/v1/aliases",
        Some(TOKEN),
        Some(json!({"address": "info@example.com", "to": ["bob@example.net"]})),
    );
    assert_eq!(status, 409, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("already exists"),
        "{why}"
    );

    // The same refusals as the command line, as 422 (a destination not allowed).
    let (status, why) = api.call(
        "POST",
        "/v1/aliases",
        Some(TOKEN),
        Some(json!({"address": "x@example.com", "to": ["eve@elsewhere.example"]})),
    );
    assert_eq!(status, 422, "{why}");
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("sluice alias allow"),
        "{why}"
    );

    let (_, random) = api.ok(
        "POST",
        "/v1/aliases",
        Some(json!({"random": "example.com", "prefix": "shop", "to": ["alice@example.net"]})),
    );
    let random = random["address"].as_str().unwrap().to_string();
    assert!(
        random.starts_with("shop-") && random.ends_with("@example.com"),
        "{random}"
    );

    let (_, paused) = api.ok("POST", "/v1/aliases/info@example.com/pause", None);
    assert_eq!(
        (
            paused["changed"].clone(),
            paused["record"]["status"].clone()
        ),
        (json!(true), json!("paused"))
    );
    let (_, again) = api.ok("POST", "/v1/aliases/info%40example.com/pause", None);
    assert_eq!(again["changed"], json!(false));

    let (_, list) = api.ok("GET", "/v1/aliases?domain=example.com&status=paused", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, list) = api.ok("GET", "/v1/aliases?domain=example.com", None);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // The command line sees what the API did.
    let shown = alias(config, env, &["show", "info@example.com", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "paused");

    assert_eq!(
        api.ok("DELETE", &format!("/v1/aliases/{random}"), None).1["removed"],
        json!(random)
    );
    assert_eq!(
        api.call("GET", &format!("/v1/aliases/{random}"), Some(TOKEN), None)
            .0,
        404
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/v1/aliases/{random}"),
            Some(TOKEN),
            None
        )
        .0,
        404
    );
    assert_eq!(api.call("PUT", "/v1/aliases", Some(TOKEN), None).0, 405);
    assert_eq!(api.call("GET", "/v2/other", Some(TOKEN), None).0, 404);
    assert_eq!(
        api.call(
            "POST",
            "/v1/aliases",
            Some(TOKEN),
            Some(json!({"adress": "typo"}))
        )
        .0,
        400
    );
}

#[test]
fn the_alias_api_edits_a_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"\n",
    )
    .unwrap();
    session(&config, &[], dir.path());
}

#[test]
fn the_alias_api_edits_a_dynamodb_directory() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[directory.aliases]\nkind = \"dynamodb\"\ntable = \"sluice-aliases\"\n",
    )
    .unwrap();
    session(&config, &moto.env(), dir.path());
}

#[test]
fn a_token_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"\n",
    )
    .unwrap();
    assert!(alias(&config, &[], &["init"]).status.success());
    let token = token_file(dir.path());
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = alias(
        &config,
        &[],
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
