#!/usr/bin/env python3
"""Messages/s through `sluice daemon` against moto server, and the share spent in Sluice.

Usage (from the workspace root, after `cargo build -p sluice` and building the rules, e.g.
`target/debug/sluice plugin build plugins/alias plugins/banner --out target/plugins`):

    .venv/bin/python tests/perf/daemon_throughput.py [N] [CONCURRENCY] [SLUICE_BINARY]

Starts moto on a free loopback port, stores N messages in S3 with one SQS notification each
(alias -> one local mailbox + one relayed copy through SES, then the banner rule), runs the
daemon until it has handled N messages, and prints the rate plus how much of the per-message
time the chains (parse + rules) took, as the daemon reports it.
"""
import json, os, socket, subprocess, sys, tempfile, time

import boto3

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
CONC = sys.argv[2] if len(sys.argv) > 2 else "4"
BIN = sys.argv[3] if len(sys.argv) > 3 else "target/debug/sluice"

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
endpoint = f"http://127.0.0.1:{port}"
moto = subprocess.Popen([".venv/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); break
        except OSError:
            time.sleep(0.1)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    s3 = boto3.client("s3", **kw); sqs = boto3.client("sqs", **kw); ses = boto3.client("sesv2", **kw)
    s3.create_bucket(Bucket="inbound"); s3.create_bucket(Bucket="mail")
    ses.create_email_identity(EmailIdentity="example.com")
    queue = sqs.create_queue(QueueName="ses-inbound")["QueueUrl"]
    for i in range(N):
        mid = f"perf-{i:05d}"
        body = (f"From: Alice <alice@sender.example>\r\nTo: info@example.com\r\nSubject: perf {i}\r\n"
                f"Message-ID: <{mid}@sender.example>\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=UTF-8\r\n\r\n" + "Numbers attached soon.\r\n" * 40)
        s3.put_object(Bucket="inbound", Key=f"incoming/{mid}", Body=body.encode())
        note = {"notificationType": "Received",
                "mail": {"timestamp": "2026-11-20T10:15:04.312Z", "source": "alice@sender.example",
                         "messageId": mid, "destination": ["info@example.com"]},
                "receipt": {"recipients": ["info@example.com"], "spfVerdict": {"status": "PASS"},
                            "dkimVerdict": {"status": "PASS"}, "spamVerdict": {"status": "PASS"},
                            "virusVerdict": {"status": "PASS"}, "dmarcVerdict": {"status": "PASS"},
                            "action": {"type": "S3", "bucketName": "inbound",
                                       "objectKey": f"incoming/{mid}"}}}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(note))
    root = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "sluice.toml")
        with open(conf, "w") as f:
            f.write(f'''[store]
kind = "s3"
bucket = "mail"
prefix = "mailboxes"
[relay]
kind = "ses"
from = "forwarder@example.com"
allow_domains = ["gmail.example"]
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{root}/target/plugins/alias.wasm"
config = {{ mailboxes = ["alice"], aliases = {{ info = ["alice", "bob@gmail.example"] }} }}
[[domain.step]]
plugin = "{root}/target/plugins/banner.wasm"
config = {{ text = "External sender" }}
''')
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true", SLUICE_LOG_FORMAT="json", SLUICE_CACHE_DIR=os.path.join(tmp, "cache"))
        # Warm the compiled cache so the figure is the steady state, not Cranelift.
        subprocess.run([BIN, "check", "--config", conf], env=env, check=True, capture_output=True)
        t0 = time.monotonic()
        out = subprocess.run([BIN, "daemon", "--config", conf, "--queue", queue, "--wait", "1",
                              "--concurrency", CONC, "--max-messages", str(N)],
                             env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
    # The daemon logs one JSON object per event with SLUICE_LOG_FORMAT=json.
    events = [json.loads(l) for l in out.stderr.splitlines() if l.startswith("{")]
    done = [(e["chain_us"], e["total_us"]) for e in events if e.get("message") == "message done"]
    if out.returncode != 0 or len(done) != N:
        print(out.stderr[-3000:]); sys.exit(f"daemon handled {len(done)} of {N}")
    chains = sum(int(c) for c, _ in done); total = sum(int(t) for _, t in done)
    sent = len(json.load(__import__("urllib.request").request.urlopen(endpoint + "/moto-api/data.json"))["ses"]["RawMessage"])
    print(f"{N} messages, concurrency {CONC}: {wall:.2f} s wall (incl. start-up) = {N / wall:.1f} msg/s; "
          f"per message: {total / N / 1000:.1f} ms, of which chains {chains / N / 1000:.2f} ms "
          f"({100 * chains / total:.1f}%); relayed copies sent: {sent}")
finally:
    moto.terminate(); moto.wait()
