//! The alias API as a Lambda behind a function URL (`SLUICE_MODE=alias-api`): the same routes
//! and answers as `sluice alias api` (`sluice_directory::admin`), for the serverless setup.
//!
//! The function URL's `AWS_IAM` auth is the authentication: a caller signs its requests with
//! SigV4 and needs `lambda:InvokeFunctionUrl` on this function, so no token is read here. The
//! function edits the `[directory.NAME]` (`SLUICE_DIRECTORY`, default `aliases`) of the
//! config `SLUICE_CONFIG` names; its role may write that table and nothing else.

use serde_json::{json, Value};
use sluice_chain::{ConfigSource, FileConfigSource, S3ConfigSource};
use sluice_directory::admin::{answer, route_name, Admin};

/// The largest request body taken.
const MAX_BODY: usize = 64 * 1024;

/// Opens the directory (blocking: reads the config and may open a DynamoDB client).
pub fn start(config: &str, directory: &str) -> Result<Admin, String> {
    let s3;
    let source: Box<dyn ConfigSource> = if config.starts_with("s3://") {
        s3 = sluice_aws::BlockingS3::from_env().map_err(|e| format!("SLUICE_CONFIG: {e}"))?;
        Box::new(S3ConfigSource::new(&s3, config).map_err(|e| format!("SLUICE_CONFIG: {e}"))?)
    } else {
        Box::new(FileConfigSource::new(config))
    };
    let (file, _) = source.read().map_err(|e| format!("SLUICE_CONFIG: {e}"))?;
    let Some(section) = file.directories.get(directory) else {
        return Err(format!(
            "{config} has no [directory.{directory}] section: the alias API edits that directory (SLUICE_DIRECTORY names another)"
        ));
    };
    let store = sluice_directory::open(directory, section, &file.source.base_dir)
        .map_err(|e| e.to_string())?;
    Ok(Admin {
        name: directory.to_string(),
        store,
    })
}

/// Answers one function URL event (payload format 2.0) with its HTTP response; anything
/// else is an error that names what this function takes.
pub fn respond(admin: &Admin, event: &Value) -> Result<Value, String> {
    let Some(method) = event
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
    else {
        return Err(
            "this function serves the alias API (SLUICE_MODE=alias-api): it takes function URL events (payload 2.0), not this event"
                .into(),
        );
    };
    let path = event["rawPath"].as_str().unwrap_or("/");
    let query = event["rawQueryString"].as_str().unwrap_or("");
    let body = match (event["body"].as_str(), event["isBase64Encoded"].as_bool()) {
        (None, _) => Vec::new(),
        (Some(text), Some(true)) => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Ok(http(
                        400,
                        json!({"error": format!("body: bad base64: {e}")}),
                    ))
                }
            }
        }
        (Some(text), _) => text.as_bytes().to_vec(),
    };
    let (status, value) = if body.len() > MAX_BODY {
        (
            413,
            json!({"error": format!("the body is over {MAX_BODY} bytes")}),
        )
    } else {
        answer(admin, method, path, query, &body)
    };
    tracing::info!(route = %route_name(method, path), status, "alias api");
    Ok(http(status, value))
}

fn http(status: u16, body: Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}
