//! The real `sluice-lambda` binary against a Runtime API server written here (HTTP/1.1 by hand,
//! one thread per connection), as Lambda would run it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One request the function made to the API other than `/next`.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    body: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, String)>,
    posts: Vec<Post>,
}

/// A Runtime API: hands out the queued events on `/next` (and holds the request open once they
/// are gone, as Lambda does between invocations) and records every POST.
struct RuntimeApi {
    addr: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl RuntimeApi {
    fn start(events: &[String]) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        {
            let mut s = state.0.lock().unwrap();
            for (i, event) in events.iter().enumerate() {
                s.queue
                    .push_back((format!("request-{}", i + 1), event.clone()));
            }
        }
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = shared.clone();
                thread::spawn(move || serve(stream, &shared));
            }
        });
        RuntimeApi { addr, state }
    }

    fn posts(&self) -> Vec<Post> {
        self.state.0.lock().unwrap().posts.clone()
    }

    /// The POST that answered `request-N` (its response or error).
    fn answer(&self, n: usize) -> Option<Post> {
        let prefix = format!("/2018-06-01/runtime/invocation/request-{n}/");
        self.posts()
            .into_iter()
            .find(|p| p.path.starts_with(&prefix))
    }
}

fn serve(stream: TcpStream, state: &(Mutex<State>, Condvar)) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut content_length = 0usize;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)
        } else {
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let next = state.0.lock().unwrap().queue.pop_front();
            let Some((id, event)) = next else {
                // No more events: hold the request open until the test kills the function.
                thread::sleep(Duration::from_secs(3600));
                return;
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 300_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:sluice\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0\r\n\r\n",
                event.len()
            );
            if writer.write_all(head.as_bytes()).is_err()
                || writer.write_all(event.as_bytes()).is_err()
            {
                return;
            }
        } else if method == "POST" {
            {
                let mut s = state.0.lock().unwrap();
                s.posts.push(Post {
                    path: path.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                state.1.notify_all();
            }
            let reply = "{\"status\":\"OK\"}";
            let head = format!(
                "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                reply.len()
            );
            if writer.write_all(head.as_bytes()).is_err()
                || writer.write_all(reply.as_bytes()).is_err()
            {
                return;
            }
        } else {
            let _ = writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let size =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    return body;
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// What a run of the function left behind.
struct Run {
    api: RuntimeApi,
    /// `Some` if the function exited on its own (it is killed once every event is answered).
    exit: Option<ExitStatus>,
    output: String,
    /// Peak resident memory before the function was stopped.
    peak_rss_kib: Option<u64>,
}

impl Run {
    fn response(&self, n: usize) -> Value {
        let post = self.api.answer(n).unwrap_or_else(|| {
            panic!(
                "request-{n} was not answered; posts: {:?}\n{}",
                self.api.posts(),
                self.output
            )
        });
        assert!(
            post.path.ends_with("/response"),
            "request-{n} failed: {} {}\n{}",
            post.path,
            post.body,
            self.output
        );
        serde_json::from_str(&post.body).unwrap()
    }

    fn error(&self, n: usize) -> Value {
        let post = self.api.answer(n).unwrap_or_else(|| {
            panic!(
                "request-{n} was not answered; posts: {:?}\n{}",
                self.api.posts(),
                self.output
            )
        });
        assert!(
            post.path.ends_with("/error"),
            "request-{n} did not fail: {} {}",
            post.path,
            post.body
        );
        serde_json::from_str(&post.body).unwrap()
    }
}

/// Runs the built binary with `env` against a Runtime API that serves `events`, until every
/// event is answered, the function exits, or `timeout` passes.
fn run_function(env: &[(&str, String)], events: &[String], timeout: Duration) -> Run {
    run_binary(
        Path::new(env!("CARGO_BIN_EXE_sluice-lambda")),
        env,
        events,
        timeout,
    )
}

/// [`run_function`] with another build of the function (a release `bootstrap`).
fn run_binary(binary: &Path, env: &[(&str, String)], events: &[String], timeout: Duration) -> Run {
    let api = RuntimeApi::start(events);
    let mut command = function_command(binary);
    for name in [
        "SLUICE_CONFIG",
        "SLUICE_RELOAD_SECONDS",
        "SLUICE_CACHE_DIR",
        "SLUICE_PRECOMPILED_DIR",
        "LAMBDA_TASK_ROOT",
        "AWS_PROFILE",
    ] {
        command.env_remove(name);
    }
    command
        .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "sluice")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/03/03/[$LATEST]test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/sluice")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the sluice-lambda binary starts");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let exit = wait(&api, &mut child, events.len(), timeout);
    let peak_rss_kib = peak_rss_kib(child.id());
    if exit.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        out.join().unwrap(),
        err.join().unwrap()
    );
    // Every test's function log (stdout: EMF metrics and the runtime's lines; stderr: the
    // log) holds no address whole.
    sluice_tests::assert_no_full_address("sluice-lambda", &output);
    Run {
        api,
        exit,
        output,
        peak_rss_kib,
    }
}

/// The function to run: the binary cargo built for this test, or the one `SLUICE_LAMBDA_BOOTSTRAP`
/// names (`.ci/run` points it at the `bootstrap` that `sam build` wrote), started through
/// `SLUICE_LAMBDA_RUNNER` when set (`qemu-aarch64-static -L /usr/aarch64-linux-gnu` for the
/// arm64 one). The whole suite then runs against that bootstrap.
fn function_command(binary: &Path) -> Command {
    let bootstrap = std::env::var("SLUICE_LAMBDA_BOOTSTRAP")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| binary.display().to_string());
    let runner = std::env::var("SLUICE_LAMBDA_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(&bootstrap);
            command
        }
        None => Command::new(&bootstrap),
    }
}

/// Whether the function runs under an emulator (`SLUICE_LAMBDA_RUNNER`).
fn emulated() -> bool {
    !std::env::var("SLUICE_LAMBDA_RUNNER")
        .unwrap_or_default()
        .trim()
        .is_empty()
}

/// The process's peak resident memory (`VmHWM`), while it still runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn wait(
    api: &RuntimeApi,
    child: &mut Child,
    events: usize,
    timeout: Duration,
) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let (lock, changed) = &*api.state;
    let mut state = lock.lock().unwrap();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let answered = state
            .posts
            .iter()
            .filter(|p| p.path.starts_with("/2018-06-01/runtime/invocation/"))
            .count();
        if answered >= events || Instant::now() >= deadline {
            return None;
        }
        state = changed
            .wait_timeout(state, Duration::from_millis(100))
            .unwrap()
            .0;
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ses")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A config in the form the pipeline reads; `AWS_ENDPOINT_URL` decides where its buckets are.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        "[inbound]\nbucket = \"sluice-inbound\"\nprefix = \"incoming/\"\n\n\
         [store]\nkind = \"s3\"\nbucket = \"sluice-mail\"\nprefix = \"mail\"\n\n\
         [[domain]]\nname = \"example.com\"\n",
    )
    .unwrap();
    path
}

/// Env for a function whose AWS calls cannot reach anything (nothing listens on port 9).
fn offline_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SLUICE_CONFIG", write_config(dir).display().to_string()),
        ("SLUICE_CACHE_DIR", dir.join("cache").display().to_string()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_MAX_ATTEMPTS", "1".into()),
    ]
}

#[test]
fn missing_config_is_an_init_error_naming_sluice_config() {
    let run = run_function(
        &[],
        &[fixture("ses-invoke.json").to_string()],
        Duration::from_secs(30),
    );
    let status = run
        .exit
        .unwrap_or_else(|| panic!("the function kept running\n{}", run.output));
    assert!(!status.success(), "{}", run.output);
    assert!(
        run.output.contains("SLUICE_CONFIG is not set"),
        "{}",
        run.output
    );
    let posts = run.api.posts();
    let init = posts
        .iter()
        .find(|p| p.path == "/2018-06-01/runtime/init/error")
        .unwrap_or_else(|| panic!("no /init/error post: {posts:?}\n{}", run.output));
    let body: Value = serde_json::from_str(&init.body).unwrap();
    assert_eq!(body["errorType"], "Sluice.InitError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("SLUICE_CONFIG"),
        "{body}"
    );
    assert!(
        run.api.answer(1).is_none(),
        "no invocation after a failed init"
    );
}

#[test]
fn garbage_events_fail_with_a_clear_message_and_the_function_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        "this is not json".to_string(),
        json!({"hello": "world"}).to_string(),
        json!({"Records": [{"eventSource": "aws:s3"}]}).to_string(),
    ];
    let run = run_function(&offline_env(dir.path()), &events, Duration::from_secs(60));
    assert!(
        run.exit.is_none(),
        "the function exited: {:?}\n{}",
        run.exit,
        run.output
    );

    let not_json = run.error(1);
    let message = not_json["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("failed to deserialize the incoming data") && message.contains("line 1"),
        "{not_json}"
    );
    assert_eq!(
        run.error(2),
        json!({
            "errorType": "Sluice.BadEvent",
            "errorMessage": "unrecognised Lambda event: no Records array; top-level keys: hello",
        })
    );
    let s3 = run.error(3);
    assert!(
        s3["errorMessage"].as_str().unwrap().contains("\"aws:s3\""),
        "{s3}"
    );
}

#[test]
fn sqs_batch_reports_the_unreadable_record_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut batch = fixture("sqs-sns-envelope.json");
    let mut bad = batch["Records"][0].clone();
    bad["messageId"] = "ffffffff-0000-4000-8000-0000000000bd".into();
    bad["body"] = "{not json".into();
    batch["Records"].as_array_mut().unwrap().push(bad);
    let mut events = vec![batch.to_string()];
    let corpus = sluice_tests::corpus_dir()
        .map(|c| c.join("ses/sqs-batch-with-bad-record.json"))
        .unwrap_or_default();
    let with_corpus = corpus.is_file();
    if with_corpus {
        events.push(std::fs::read_to_string(&corpus).unwrap());
    } else {
        println!(
            "skipping the corpus SQS batch: {} does not exist",
            corpus.display()
        );
    }

    let run = run_function(&offline_env(dir.path()), &events, Duration::from_secs(120));
    println!("{}", run.output); // shown with --nocapture: the per-message log lines
    assert!(
        run.exit.is_none(),
        "the function exited: {:?}\n{}",
        run.exit,
        run.output
    );

    let failed = |n: usize| -> Vec<String> {
        run.response(n)["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("no batchItemFailures: {}", run.response(n)))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
            .collect()
    };
    // The good record cannot be fetched here (no S3), so it fails too; the point is that the
    // unreadable one is reported, by its SQS message id, rather than deleted.
    assert!(
        failed(1).contains(&"ffffffff-0000-4000-8000-0000000000bd".to_string()),
        "{:?}",
        failed(1)
    );
    assert!(
        run.output.contains("ffffffff-0000-4000-8000-0000000000bd")
            && run.output.contains("not JSON"),
        "the unreadable record is logged with its id and the parse error\n{}",
        run.output
    );
    if with_corpus {
        assert!(
            failed(2).contains(&"0c1d2e3f-0000-4000-8000-000000000002".to_string()),
            "{:?}",
            failed(2)
        );
    }
}

const MESSAGE: &str = "Return-Path: <carol@remote.test>\r\nFrom: Carol Remote <carol@remote.test>\r\n\
To: dave@example.com, erin@example.com\r\nSubject: End to end\r\nMessage-ID: <e2e-1@remote.test>\r\n\
Date: Tue, 03 Mar 2026 08:30:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n\
Through the Lambda runtime.\r\n";

/// Creates the inbound and mailbox buckets and stores [`MESSAGE`] under each id, as the SES
/// receipt rule's S3 action would.
fn store_incoming(rt: &tokio::runtime::Runtime, s3: &sluice_aws::S3, ids: &[&str]) {
    rt.block_on(async {
        s3.create_bucket("sluice-inbound").await.unwrap();
        s3.create_bucket("sluice-mail").await.unwrap();
        for id in ids {
            let url =
                sluice_aws::S3Url::parse(&format!("s3://sluice-inbound/incoming/{id}")).unwrap();
            s3.put(&url, MESSAGE.as_bytes().to_vec(), "message/rfc822")
                .await
                .unwrap();
        }
    });
}

#[test]
fn end_to_end_against_moto() {
    let moto = sluice_tests::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    let url = |u: String| sluice_aws::S3Url::parse(&u).unwrap();
    let (sqs_id, ses_id) = ("e2esqss3action0000001", "e2esesinvoke000000002");
    store_incoming(&rt, &s3, &[sqs_id, ses_id]);

    // An S3-action notification (raw message delivery) for dave, and a direct invoke for erin.
    let mut notification = fixture("notification-s3.json");
    notification["mail"]["messageId"] = sqs_id.into();
    notification["receipt"]["recipients"] = json!(["dave@example.com"]);
    notification["receipt"]["action"]["bucketName"] = "sluice-inbound".into();
    notification["receipt"]["action"]["objectKey"] = format!("incoming/{sqs_id}").into();
    let mut sqs = fixture("sqs-raw-delivery.json");
    sqs["Records"][0]["body"] = notification.to_string().into();
    let mut invoke = fixture("ses-invoke.json");
    invoke["Records"][0]["ses"]["mail"]["messageId"] = ses_id.into();
    invoke["Records"][0]["ses"]["receipt"]["recipients"] = json!(["erin@example.com"]);

    let dir = tempfile::tempdir().unwrap();
    let mut env = moto.env();
    env.push((
        "SLUICE_CONFIG",
        write_config(dir.path()).display().to_string(),
    ));
    env.push((
        "SLUICE_CACHE_DIR",
        dir.path().join("cache").display().to_string(),
    ));
    let run = run_function(
        &env,
        &[sqs.to_string(), invoke.to_string()],
        Duration::from_secs(120),
    );
    assert!(
        run.exit.is_none(),
        "the function exited: {:?}\n{}",
        run.exit,
        run.output
    );

    assert_eq!(
        run.response(1),
        json!({"batchItemFailures": []}),
        "{}",
        run.output
    );
    assert_eq!(
        run.response(2),
        json!({"disposition": "CONTINUE"}),
        "{}",
        run.output
    );
    // The cold-start figure an operator looks for in the logs (the README's performance table
    // quotes it from this test, run in release).
    let cold = run
        .output
        .lines()
        .find(|l| l.contains("cold start: first invocation handled"))
        .unwrap_or_else(|| panic!("no cold-start line:\n{}", run.output));
    // The Lambda logs JSON by default: the figure is a field Logs Insights can chart.
    let event: Value = serde_json::from_str(cold).unwrap_or_else(|e| panic!("{e}: {cold}"));
    assert!(
        event["since_start_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{cold}"
    );
    assert_eq!(event["level"], "INFO", "{cold}");
    eprintln!("{cold}");
    assert_eq!(
        run.output
            .matches("cold start: first invocation handled")
            .count(),
        1,
        "logged once, not per invocation:\n{}",
        run.output
    );
    rt.block_on(async {
        for (local, id) in [("dave", sqs_id), ("erin", ses_id)] {
            let key = format!("s3://sluice-mail/mail/example.com/{local}/INBOX/{id}.eml");
            let stored = s3
                .get(&url(key.clone()))
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}\n{}", run.output));
            let text = String::from_utf8_lossy(&stored.bytes);
            assert!(
                text.contains("Subject: End to end")
                    && text.contains("Through the Lambda runtime."),
                "{key}:\n{text}"
            );
        }
    });
}

/// An SQS batch through the function with the alias rule reading a DynamoDB directory
/// (moto): the active alias is delivered to its destination, the ignored one discarded, and
/// each counts a use, written before the invocation answers.
#[test]
fn sqs_batch_routed_by_a_dynamodb_alias_directory() {
    use sluice_directory::{AliasRecord, AliasStore, DynamoStore, Status};
    let moto = sluice_tests::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    let url = |u: String| sluice_aws::S3Url::parse(&u).unwrap();
    let store = DynamoStore::for_endpoint(&moto.endpoint, "us-east-1", "aliases").unwrap();
    store.create_table().unwrap();
    store
        .put(&AliasRecord::new(
            "shop-k3x9@example.com",
            vec!["dave@example.com".into()],
            1,
        ))
        .unwrap();
    store
        .put(&AliasRecord {
            status: Status::Ignored,
            ..AliasRecord::new("list-z2@example.com", vec![], 1)
        })
        .unwrap();
    let ids = ["dirshop00000000000001", "dirlist00000000000002"];
    store_incoming(&rt, &s3, &ids);
    let mut sqs = fixture("sqs-raw-delivery.json");
    let template = sqs["Records"][0].clone();
    let records: Vec<Value> = ids
        .iter()
        .zip(["shop-k3x9@example.com", "list-z2@example.com"])
        .enumerate()
        .map(|(i, (id, rcpt))| {
            let mut notification = fixture("notification-s3.json");
            notification["mail"]["messageId"] = (*id).into();
            notification["receipt"]["recipients"] = json!([rcpt]);
            notification["receipt"]["action"]["bucketName"] = "sluice-inbound".into();
            notification["receipt"]["action"]["objectKey"] = format!("incoming/{id}").into();
            let mut record = template.clone();
            record["body"] = notification.to_string().into();
            record["messageId"] = format!("sqs-record-{i}").into();
            record
        })
        .collect();
    sqs["Records"] = Value::Array(records);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[inbound]\nbucket = \"sluice-inbound\"\nprefix = \"incoming/\"\n\n\
             [store]\nkind = \"s3\"\nbucket = \"sluice-mail\"\nprefix = \"mail\"\n\n\
             [directory.aliases]\nkind = \"dynamodb\"\ntable = \"aliases\"\n\n\
             [[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{}\"\n\
             lookups = [\"aliases\"]\n{}config = {{ mailboxes = [\"dave\"], directory = \"aliases\" }}\n",
            sluice_tests::rule("alias").display(),
            // An emulated function (arm64 under qemu, `.ci/ship`) runs the rule and its
            // lookup many times slower than the 100 ms default deadline allows.
            if emulated() { "timeout_ms = 5000\n" } else { "" }
        ),
    )
    .unwrap();
    let mut env = moto.env();
    env.push(("SLUICE_CONFIG", config.display().to_string()));
    env.push((
        "SLUICE_CACHE_DIR",
        dir.path().join("cache").display().to_string(),
    ));
    let run = run_function(&env, &[sqs.to_string()], Duration::from_secs(120));
    assert!(run.exit.is_none(), "exited: {:?}\n{}", run.exit, run.output);
    assert_eq!(
        run.response(1),
        json!({"batchItemFailures": []}),
        "{}",
        run.output
    );
    rt.block_on(async {
        let key = format!(
            "s3://sluice-mail/mail/example.com/dave/INBOX/{}.eml",
            ids[0]
        );
        assert!(
            s3.get(&url(key.clone())).await.is_ok(),
            "{key} missing:\n{}",
            run.output
        );
        let key = format!(
            "s3://sluice-mail/mail/example.com/list-z2/INBOX/{}.eml",
            ids[1]
        );
        assert!(s3.get(&url(key.clone())).await.is_err(), "{key} stored");
    });
    for address in ["shop-k3x9@example.com", "list-z2@example.com"] {
        let got = store.get(address).unwrap().unwrap();
        assert_eq!(got.uses, 1, "{address}: {got:?}\n{}", run.output);
    }
    // The pooling allocator (the default, `[engine] pooling = "auto"`) reserves terabytes of
    // address space for its slots; only what instances touch becomes resident, so the function
    // stays well inside Lambda's smallest memory size (128 MB). Under an emulator the figure is
    // the emulator's own, so it is only printed.
    let emulated = emulated();
    let peak = run.peak_rss_kib.expect("the function's /proc status");
    println!(
        "peak resident memory: {} MiB{}",
        peak / 1024,
        if emulated { " (emulated)" } else { "" }
    );
    if !emulated {
        assert!(
            !run.output.contains("pooling allocator unavailable"),
            "the pool is in use here:\n{}",
            run.output
        );
        assert!(peak < 128 * 1024, "peak RSS {peak} KiB\n{}", run.output);
    }
    // Metrics in CloudWatch Embedded Metric Format on stdout, one object per line: per
    // message and domain, and per step.
    let emf: Vec<Value> = run
        .output
        .lines()
        .filter(|l| l.starts_with("{\"_aws\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let messages: Vec<&Value> = emf.iter().filter(|v| v["Step"].is_null()).collect();
    assert_eq!(messages.len(), 2, "{}", run.output);
    assert!(messages.iter().all(|v| v["Domain"] == "example.com"
        && v["Received"] == 1
        && v["Bytes"].as_u64() > Some(0)));
    let total = |name: &str| {
        messages
            .iter()
            .filter_map(|v| v[name].as_u64())
            .sum::<u64>()
    };
    assert_eq!(
        (total("Delivered"), total("Dropped"), total("Tempfailed")),
        (1, 1, 0),
        "{}",
        run.output
    );
    let steps: Vec<&Value> = emf.iter().filter(|v| v["Step"] == "alias").collect();
    assert_eq!(steps.len(), 2, "{}", run.output);
    assert!(steps
        .iter()
        .all(|v| v["StepOk"] == 1 && v["StepMicros"].is_u64()));
}

/// Every event sample of the shared corpus (`ses/`) through the function against moto: the
/// SES direct invoke, the S3-action and SNS-content notifications (as SQS bodies, and the SNS
/// one also as an SNS event), and the SQS batch with a bad record. The message is the corpus's
/// `message-0001.eml`, which SES stored under the S3 action's key.
#[test]
fn every_corpus_event_sample_through_the_function() {
    let Some(corpus) = sluice_tests::corpus_dir() else {
        return;
    };
    let ses = corpus.join("ses");
    let sample = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(ses.join(name)).unwrap()).unwrap()
    };
    let moto = sluice_tests::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    let s3_notice = sample("notification-s3-action.json");
    let action = &s3_notice["receipt"]["action"];
    let (bucket, key) = (
        action["bucketName"].as_str().unwrap().to_string(),
        action["objectKey"].as_str().unwrap().to_string(),
    );
    let id = s3_notice["mail"]["messageId"].as_str().unwrap().to_string();
    rt.block_on(async {
        s3.create_bucket(&bucket).await.unwrap();
        s3.create_bucket("sluice-mail").await.unwrap();
        let url = sluice_aws::S3Url::parse(&format!("s3://{bucket}/{key}")).unwrap();
        let raw = std::fs::read(ses.join("message-0001.eml")).unwrap();
        s3.put(&url, raw, "message/rfc822").await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let prefix = key.strip_suffix(id.as_str()).unwrap_or("incoming/");
    std::fs::write(
        &config,
        format!(
            "[inbound]\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\n\n\
             [store]\nkind = \"s3\"\nbucket = \"sluice-mail\"\nprefix = \"mail\"\n\n\
             [[domain]]\nname = \"example.com\"\n"
        ),
    )
    .unwrap();
    let sqs_of = |body: &Value| {
        let mut event = fixture("sqs-raw-delivery.json");
        event["Records"][0]["body"] = body.to_string().into();
        event
    };
    let sns_notice = sample("notification-sns-content.json");
    let sns_event = json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:ses-inbound:sub",
        "Sns": {"Type": "Notification", "MessageId": "sns-1", "Message": sns_notice.to_string()},
    }]});
    let bad_batch = sample("sqs-batch-with-bad-record.json");
    let events = [
        sample("lambda-ses-invoke.json"),
        sqs_of(&s3_notice),
        sqs_of(&sns_notice),
        sns_event,
        bad_batch.clone(),
    ];
    let mut env = moto.env();
    env.push(("SLUICE_CONFIG", config.display().to_string()));
    env.push((
        "SLUICE_CACHE_DIR",
        dir.path().join("cache").display().to_string(),
    ));
    let events: Vec<String> = events.iter().map(Value::to_string).collect();
    let run = run_function(&env, &events, Duration::from_secs(120));
    assert!(run.exit.is_none(), "exited: {:?}\n{}", run.exit, run.output);
    assert_eq!(
        run.response(1),
        json!({"disposition": "CONTINUE"}),
        "{}",
        run.output
    );
    assert_eq!(
        run.response(2),
        json!({"batchItemFailures": []}),
        "{}",
        run.output
    );
    assert_eq!(
        run.response(3),
        json!({"batchItemFailures": []}),
        "{}",
        run.output
    );
    assert_eq!(run.response(4), json!({"handled": 1}), "{}", run.output);
    let bad_id = bad_batch["Records"][1]["messageId"].clone();
    assert_eq!(
        run.response(5),
        json!({"batchItemFailures": [{"itemIdentifier": bad_id}]}),
        "only the unreadable record is reported:\n{}",
        run.output
    );
    rt.block_on(async {
        for local in ["info", "bob"] {
            let key = format!("s3://sluice-mail/mail/example.com/{local}/INBOX/{id}.eml");
            let stored = s3
                .get(&sluice_aws::S3Url::parse(&key).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}\n{}", run.output));
            assert!(String::from_utf8_lossy(&stored.bytes).contains("Numbers attached soon."));
        }
    });
}

/// Setup "your SMTP server" through the Lambda: an SQS batch whose messages go to an MTA on
/// loopback (aiosmtpd) with the envelope SES received. A deferred recipient fails only its
/// record (`batchItemFailures`); when SQS delivers that record again, the copies already
/// handed over are not handed over twice.
#[test]
fn sqs_batch_into_an_smtp_server() {
    let Some(sink) = sluice_mailservers::SmtpSink::start() else {
        return;
    };
    let moto = sluice_tests::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    let url = |u: String| sluice_aws::S3Url::parse(&u).unwrap();
    let (ok_id, defer_id) = ("smtpstore0000000001", "smtpstore0000000002");
    rt.block_on(async {
        s3.create_bucket("sluice-inbound").await.unwrap();
        s3.create_bucket("sluice-mail").await.unwrap();
        for id in [ok_id, defer_id] {
            s3.put(
                &url(format!("s3://sluice-inbound/incoming/{id}")),
                MESSAGE.as_bytes().to_vec(),
                "message/rfc822",
            )
            .await
            .unwrap();
        }
    });
    let record = |id: &str, rcpts: &[&str], sqs_id: &str| {
        let mut n = fixture("notification-s3.json");
        n["mail"]["messageId"] = id.into();
        n["receipt"]["recipients"] = json!(rcpts);
        n["receipt"]["action"]["bucketName"] = "sluice-inbound".into();
        n["receipt"]["action"]["objectKey"] = format!("incoming/{id}").into();
        n["receipt"]["spfVerdict"]["status"] = "PASS".into();
        n["receipt"]["spamVerdict"]["status"] = "PASS".into();
        n["receipt"]["virusVerdict"]["status"] = "PASS".into();
        let mut r = fixture("sqs-raw-delivery.json")["Records"][0].clone();
        r["messageId"] = sqs_id.into();
        r["body"] = n.to_string().into();
        r
    };
    let batch = json!({"Records": [
        record(ok_id, &["dave@example.com", "erin@example.com", "reject-hal@example.com"], "sqs-ok"),
        record(defer_id, &["frank@example.com", "defer-gina@example.com"], "sqs-defer"),
    ]});
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[inbound]\nbucket = \"sluice-inbound\"\nprefix = \"incoming/\"\n\n\
             [store]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             markers = \"s3://sluice-mail/delivered\"\n\n\
             [relay]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"forwarder@example.com\"\nmarkers = \"s3://sluice-mail/sent\"\n\n\
             [[domain]]\nname = \"example.com\"\n",
            sink.port, sink.port
        ),
    )
    .unwrap();
    let mut env = moto.env();
    env.push(("SLUICE_CONFIG", config.display().to_string()));
    env.push((
        "SLUICE_CACHE_DIR",
        dir.path().join("cache").display().to_string(),
    ));
    // The same batch twice: SQS redelivers the failed record (and, at least once, may
    // redeliver the other one too).
    let run = run_function(
        &env,
        &[batch.to_string(), batch.to_string()],
        Duration::from_secs(120),
    );
    for n in [1, 2] {
        assert_eq!(
            run.response(n),
            json!({"batchItemFailures": [{"itemIdentifier": "sqs-defer"}]}),
            "{}",
            run.output
        );
    }
    let received = sink.received();
    let to = |r: &str| {
        received
            .iter()
            .filter(|m| m.recipients.iter().any(|x| x == r))
            .count()
    };
    for r in ["dave@example.com", "erin@example.com", "frank@example.com"] {
        assert_eq!(to(r), 1, "{r} once: {received:?}\n{}", run.output);
    }
    assert_eq!(to("defer-gina@example.com"), 0);
    let first = received
        .iter()
        .find(|m| m.recipients.iter().any(|r| r == "dave@example.com"))
        .unwrap();
    assert_eq!(
        first.mail_from, "carol@remote.test",
        "the original envelope sender"
    );
    assert_eq!(
        first.data,
        MESSAGE.as_bytes(),
        "the message as SES stored it"
    );
    assert_eq!(to("reject-hal@example.com"), 0);
    // The MTA refused hal for good: one DSN to the sender through the SMTP relay (null
    // envelope sender), not one per delivery attempt.
    let dsns: Vec<_> = received
        .iter()
        .filter(|m| m.recipients == ["carol@remote.test"])
        .collect();
    assert_eq!(dsns.len(), 1, "{received:?}\n{}", run.output);
    assert_eq!(dsns[0].mail_from, "<>");
    assert!(String::from_utf8_lossy(&dsns[0].data).contains("reject-hal@example.com"));
    assert_eq!(received.len(), 3, "{received:?}");
}

/// A config of `example.com` whose steps are these (name, component, JSON config), in order.
fn write_rule_config(dir: &Path, steps: &[(&str, &Path, &str)]) -> PathBuf {
    let mut toml = String::from(
        "[inbound]\nbucket = \"sluice-inbound\"\nprefix = \"incoming/\"\n\n\
         [store]\nkind = \"s3\"\nbucket = \"sluice-mail\"\nprefix = \"mail\"\n\n\
         [[domain]]\nname = \"example.com\"\n",
    );
    for (name, plugin, config) in steps {
        toml.push_str(&format!(
            "[[domain.step]]\nname = \"{name}\"\nplugin = \"{}\"\nconfig = {}\n",
            plugin.display(),
            sluice_tests::reference::json_to_inline_toml(config)
        ));
    }
    // Not `sluice.toml`, which `offline_env` writes.
    let path = dir.join("rules.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Precompiles `component` for this machine into `dir` (what `sluice plugin precompile` does);
/// returns the artifact's path.
fn precompile_into(dir: &Path, component: &Path) -> PathBuf {
    let artifact = sluice_engine::Precompiler::new(function_target().as_deref())
        .unwrap()
        .precompile("rule", &std::fs::read(component).unwrap())
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(artifact.file_name());
    std::fs::write(&path, &artifact.bytes).unwrap();
    path
}

/// The function's JSON log events (stderr and stdout lines that parse).
fn log_events(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e.is_object())
        .collect()
}

/// The target the function under test runs on: this machine's, or under
/// `SLUICE_LAMBDA_RUNNER` the emulated one (`SLUICE_LAMBDA_TARGET`, default
/// `aarch64-unknown-linux-gnu`, what `sam build` makes), which the artifacts are made for, as
/// `sluice plugin precompile --target` makes them for a Lambda package.
fn function_target() -> Option<String> {
    emulated().then(|| {
        std::env::var("SLUICE_LAMBDA_TARGET").unwrap_or_else(|_| "aarch64-unknown-linux-gnu".into())
    })
}

/// How the plugin `name` was loaded, from its log event: `precompiled`, `cache` or `compiled`.
fn loaded_from(output: &str, name: &str) -> Vec<String> {
    log_events(output)
        .into_iter()
        .filter(|e| e["plugin"] == name && e["from"].is_string())
        .map(|e| e["from"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_cold_start_loads_precompiled_rules_and_compiles_only_what_is_missing() {
    // Under SLUICE_LAMBDA_RUNNER (.ci/ship: the arm64 bootstrap `sam build` made, in qemu)
    // the artifacts are cross-compiled for arm64 here, and the emulated function must accept
    // them: same wasmtime, same engine settings, the compatibility hash checked.
    let dir = tempfile::tempdir().unwrap();
    let (banner, tag) = (
        sluice_tests::rule("banner"),
        sluice_tests::rule("subject-tag"),
    );
    let rules = dir.path().join("rules");
    let artifact = precompile_into(&rules, &banner);
    let config = write_rule_config(
        dir.path(),
        &[
            ("banner", &banner, sluice_tests::reference::BANNER),
            ("tag", &tag, sluice_tests::reference::SUBJECT_TAG),
        ],
    );
    let env = |cache: &str| {
        let mut env = offline_env(dir.path());
        env.retain(|(k, _)| *k != "SLUICE_CONFIG" && *k != "SLUICE_CACHE_DIR");
        env.push(("SLUICE_CONFIG", config.display().to_string()));
        env.push((
            "SLUICE_CACHE_DIR",
            dir.path().join(cache).display().to_string(),
        ));
        env.push(("SLUICE_PRECOMPILED_DIR", rules.display().to_string()));
        env
    };
    let event = [json!({"hello": "world"}).to_string()];

    // An empty cache, as in a new Lambda: the shipped banner loads, the missing tag compiles.
    let run = run_function(&env("cache1"), &event, Duration::from_secs(120));
    assert_eq!(
        run.error(1)["errorType"],
        "Sluice.BadEvent",
        "{}",
        run.output
    );
    assert_eq!(
        loaded_from(&run.output, "banner"),
        ["precompiled"],
        "{}",
        run.output
    );
    assert_eq!(
        loaded_from(&run.output, "tag"),
        ["compiled"],
        "{}",
        run.output
    );
    let events = log_events(&run.output);
    assert!(
        events.iter().any(|e| e["plugin"] == "tag"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("no precompiled artifact"))),
        "the compile says why\n{}",
        run.output
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "precompiled rules directory" && e["artifacts"] == 1),
        "{}",
        run.output
    );

    // A modified artifact: refused with the reason, compiled as without it.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x55;
    std::fs::write(&artifact, &bytes).unwrap();
    let run = run_function(&env("cache2"), &event, Duration::from_secs(120));
    assert_eq!(
        run.error(1)["errorType"],
        "Sluice.BadEvent",
        "{}",
        run.output
    );
    assert_eq!(
        loaded_from(&run.output, "banner"),
        ["compiled"],
        "{}",
        run.output
    );
    let refused = log_events(&run.output)
        .into_iter()
        .find(|e| e["level"] == "WARN" && e["plugin"] == "banner")
        .unwrap_or_else(|| panic!("no warning for the refused artifact\n{}", run.output));
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("precompiled artifact refused")
            && message.contains("payload checksum mismatch")
            && message.contains(&artifact.display().to_string()),
        "{refused}"
    );
}

#[test]
fn a_precompiled_directory_in_the_cache_or_in_s3_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expected) in [
        (
            dir.path().join("cache").join("rules").display().to_string(),
            "which this host writes",
        ),
        ("s3://bucket/rules".to_string(), "never fetched"),
    ] {
        let mut env = offline_env(dir.path());
        env.push(("SLUICE_PRECOMPILED_DIR", value));
        let run = run_function(&env, &[json!({}).to_string()], Duration::from_secs(60));
        assert!(
            run.exit.is_some_and(|s| !s.success()),
            "{:?}\n{}",
            run.exit,
            run.output
        );
        let init = run
            .api
            .posts()
            .into_iter()
            .find(|p| p.path == "/2018-06-01/runtime/init/error")
            .unwrap_or_else(|| panic!("no /init/error\n{}", run.output));
        assert!(init.body.contains(expected), "{}", init.body);
    }
}

/// The cold-start figures of the README (`cargo test -p sluice-lambda --release --test
/// runtime_api cold_start_figures -- --ignored --nocapture`; `SLUICE_LAMBDA_BIN` picks another
/// build of the function): one Rust and one Python rule, each start answering one direct
/// invoke against moto, with the rules precompiled, compiled into an empty cache, and read
/// from a cache a previous start filled.
#[test]
#[ignore = "measures; prints the figures"]
fn cold_start_figures() {
    let binary = std::env::var_os("SLUICE_LAMBDA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice-lambda")));
    let runs: usize = std::env::var("SLUICE_COLD_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let rust = sluice_tests::rule("subject-tag");
    let python = sluice_tests::foreign_rules()
        .iter()
        .find(|(name, _)| name.contains("python"))
        .map(|(_, path)| path.clone())
        .expect("the Python subject-tag");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    for rule in [&rust, &python] {
        let started = Instant::now();
        let artifact = precompile_into(&rules, rule);
        println!(
            "precompiled {} in {:.0} ms: {} bytes",
            rule.display(),
            started.elapsed().as_secs_f64() * 1e3,
            std::fs::metadata(&artifact).unwrap().len()
        );
    }
    let config = write_rule_config(
        dir.path(),
        &[
            ("tag-rust", &rust, sluice_tests::reference::SUBJECT_TAG),
            ("tag-python", &python, sluice_tests::reference::SUBJECT_TAG),
        ],
    );
    let moto = sluice_tests::Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sluice_aws::S3::for_endpoint(&moto.endpoint, "us-east-1");
    let ids: Vec<String> = (0..runs * 3 + 1)
        .map(|i| format!("coldstart{i:012}"))
        .collect();
    store_incoming(
        &rt,
        &s3,
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut next_id = ids.iter();
    let mut start = |cache: &Path, precompiled: bool| -> (f64, f64, Vec<String>) {
        let mut invoke = fixture("ses-invoke.json");
        invoke["Records"][0]["ses"]["mail"]["messageId"] = next_id.next().unwrap().as_str().into();
        invoke["Records"][0]["ses"]["receipt"]["recipients"] = json!(["erin@example.com"]);
        let mut env = moto.env();
        env.push(("SLUICE_CONFIG", config.display().to_string()));
        env.push(("SLUICE_CACHE_DIR", cache.display().to_string()));
        env.push((
            "SLUICE_PRECOMPILED_DIR",
            if precompiled {
                rules.display().to_string()
            } else {
                "off".to_string()
            },
        ));
        let run = run_binary(
            &binary,
            &env,
            &[invoke.to_string()],
            Duration::from_secs(300),
        );
        assert_eq!(
            run.response(1),
            json!({"disposition": "CONTINUE"}),
            "{}",
            run.output
        );
        let events = log_events(&run.output);
        let field = |message: &str, name: &str| {
            events
                .iter()
                .find(|e| e["message"] == message)
                .and_then(|e| e[name].as_f64())
                .unwrap_or_else(|| panic!("no {message:?}\n{}", run.output))
        };
        let mut from = loaded_from(&run.output, "tag-rust");
        from.extend(loaded_from(&run.output, "tag-python"));
        (
            field("started: config, rules and clients ready", "init_ms"),
            field("cold start: first invocation handled", "since_start_ms"),
            from,
        )
    };
    let shared_cache = dir.path().join("shared-cache");
    start(&shared_cache, false); // fills it
    for (mode, precompiled, fresh_cache) in [
        ("precompiled, empty cache", true, true),
        ("compiled, empty cache", false, true),
        ("from the cache", false, false),
    ] {
        let mut figures = Vec::new();
        for i in 0..runs {
            let cache = if fresh_cache {
                dir.path().join(format!("cache-{mode}-{i}"))
            } else {
                shared_cache.clone()
            };
            let (init, first, from) = start(&cache, precompiled);
            let expected = match mode {
                "precompiled, empty cache" => "precompiled",
                "compiled, empty cache" => "compiled",
                _ => "cache",
            };
            assert!(from.iter().all(|f| f == expected), "{mode}: {from:?}");
            figures.push((init, first));
        }
        let list = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = figures.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{mode}: init {} ms; first message answered {} ms after start",
            list(|f| f.0),
            list(|f| f.1)
        );
    }
}

/// A function URL event (payload format 2.0), as Lambda delivers one.
fn url_event(method: &str, path: &str, query: &str, body: Option<Value>) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "r",
            "timeEpoch": 1_796_649_102_000u64,
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false,
    })
    .to_string()
}

#[test]
fn the_alias_api_mode_answers_function_url_events_from_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aliases.toml"),
        "[settings]\ndomains = [\"example.com\"]\ndestinations = [\"@example.net\"]\n\n\
         [aliases]\n\"sales@example.com\" = { to = [\"bob@example.net\"] }\n",
    )
    .unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"\n",
    )
    .unwrap();
    let events = [
        url_event(
            "POST",
            "/v1/aliases",
            "",
            Some(json!({"address": "info@example.com", "to": ["alice@example.net"]})),
        ),
        url_event("POST", "/v1/aliases/sales%40example.com/pause", "", None),
        url_event("GET", "/v1/aliases", "domain=example.com", None),
        url_event(
            "POST",
            "/v1/aliases",
            "",
            Some(json!({"address": "x@example.com", "to": ["eve@elsewhere.example"]})),
        ),
        fixture("ses-invoke.json").to_string(),
    ];
    let env = [
        ("SLUICE_MODE", "alias-api".to_string()),
        ("SLUICE_CONFIG", config.display().to_string()),
    ];
    let run = run_function(&env, &events, Duration::from_secs(60));
    let body = |n: usize| -> (u64, Value) {
        let r = run.response(n);
        assert_eq!(r["headers"]["content-type"], "application/json");
        (
            r["statusCode"].as_u64().unwrap(),
            serde_json::from_str(r["body"].as_str().unwrap()).unwrap(),
        )
    };
    let (status, added) = body(1);
    assert_eq!(
        (status, added["address"].clone()),
        (201, json!("info@example.com"))
    );
    let (status, paused) = body(2);
    assert_eq!(
        (status, paused["record"]["status"].clone()),
        (200, json!("paused"))
    );
    let (status, list) = body(3);
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (status, refused) = body(4);
    assert_eq!(status, 422, "{refused}");
    // Not a function URL event: an error that says what the function takes.
    let error = run.error(5);
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("function URL events"),
        "{error}"
    );
    // The file now holds what the API did (the same file `sluice alias` edits).
    let file = std::fs::read_to_string(dir.path().join("aliases.toml")).unwrap();
    assert!(file.contains("info@example.com"), "{file}");
    assert!(
        run.output.contains("POST /v1/aliases/{address}/pause"),
        "{}",
        run.output
    );
}
