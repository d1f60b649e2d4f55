//! `POST /runtime/init/error`: lambda_runtime reports init errors only for its own SnapStart
//! hooks, so a failure before the runtime starts is posted here, by hand (one small request).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Posts `message` as the function's init error to `AWS_LAMBDA_RUNTIME_API`, if set (it is not
/// when the binary runs outside Lambda). Failures to report are printed, never fatal.
pub fn report(message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    if let Err(e) = post(&api, message) {
        eprintln!("sluice-lambda: could not report the init error to {api}: {e}");
    }
}

fn post(api: &str, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({
        "errorType": "Sluice.InitError",
        "errorMessage": message,
    })
    .to_string();
    let mut stream = TcpStream::connect(api)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: Sluice.InitError\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // Wait for the status line so the report is in before the process exits.
    let mut status = [0u8; 12];
    stream.read_exact(&mut status)?;
    Ok(())
}
