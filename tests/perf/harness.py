"""What the daemon perf scripts share: a moto server on loopback with the SES world in it
(buckets `inbound` and `mail`, the queue `ses-inbound`, the verified identity), seeded
messages with their SES notifications, a config for a chain, and the daemon's environment.

Each seeded message goes to info@example.com, which the alias step resolves to one local
mailbox (alice) and one relayed copy through SES (bob@gmail.example): per message an S3 read,
the chain, a mailbox write, a claim marker check and write around one SES send, an SQS delete.
"""
import json, os, socket, subprocess, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

# moto_server, with one fix: its SQS DeleteMessage rebuilds the queue's message list without
# the lock SendMessage takes, so a delete racing another delete or a send (the daemon deletes
# from several tasks while the soak's feeder sends) undoes one of them: a deleted message
# comes back, or a sent one is lost. Seen here as one message left in the queue after 500
# were done and deleted. Taking the lock makes the emulator behave as SQS does.
MOTO = """
import sys
from moto.sqs.models import Queue
unlocked = Queue.delete_message
def delete_message(self, receipt_handle):
    with self._messages_lock:
        return unlocked(self, receipt_handle)
Queue.delete_message = delete_message
from moto.server import main
sys.exit(main(sys.argv[1:]))
"""

CREDENTIALS = dict(region_name="us-east-1", aws_access_key_id="testing",
                   aws_secret_access_key="testing")


class World:
    """A moto server and the SES world in it; `with World() as w:` stops moto at the end."""

    def __init__(self):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); self.port = s.getsockname()[1]; s.close()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.moto = subprocess.Popen([".venv/bin/python", "-c", MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close(); break
            except OSError:
                time.sleep(0.1)
        self.s3 = self.client("s3"); self.sqs = self.client("sqs")
        self.s3.create_bucket(Bucket="inbound"); self.s3.create_bucket(Bucket="mail")
        self.client("sesv2").create_email_identity(EmailIdentity="example.com")
        self.queue = self.sqs.create_queue(QueueName="ses-inbound")["QueueUrl"]

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.moto.terminate(); self.moto.wait()

    def client(self, service):
        # A pool as large as the seeding threads, so they do not queue for connections.
        return boto3.client(service, endpoint_url=self.endpoint,
                            config=Config(max_pool_connections=32), **CREDENTIALS)

    def seed(self, n, prefix="perf", threads=8, start=0):
        """Stores n messages (numbered from `start`) in S3 and queues one notification each
        (SQS batches of 10); returns their ids."""
        ids = [f"{prefix}-{i:05d}" for i in range(start, start + n)]

        def put(batch):
            for mid in batch:
                self.s3.put_object(Bucket="inbound", Key=f"incoming/{mid}", Body=message(mid))
            entries = [{"Id": str(k), "MessageBody": json.dumps(notification(mid))}
                       for k, mid in enumerate(batch)]
            failed = self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries).get("Failed")
            assert not failed, failed

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, [ids[i:i + 10] for i in range(0, n, 10)]))
        return ids

    def sent_raw_messages(self):
        """What moto's SES "sent"."""
        with urllib.request.urlopen(self.endpoint + "/moto-api/data.json") as r:
            return json.load(r)["ses"]["RawMessage"]

    def keys(self, bucket, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def left_in_queue(self):
        a = self.sqs.get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def env(self, tmp):
        """The daemon's environment: moto for every AWS service, JSON log, a private cache."""
        return dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID="testing",
                    AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                    AWS_EC2_METADATA_DISABLED="true", SLUICE_LOG_FORMAT="json",
                    SLUICE_CACHE_DIR=os.path.join(tmp, "cache"))


def message(mid):
    return (f"From: Alice <alice@sender.example>\r\nTo: info@example.com\r\nSubject: perf {mid}\r\n"
            f"Message-ID: <{mid}@sender.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n\r\n" + "Numbers attached soon.\r\n" * 40).encode()


def notification(mid):
    return {"notificationType": "Received",
            "mail": {"timestamp": "2026-11-20T10:15:04.312Z", "source": "alice@sender.example",
                     "messageId": mid, "destination": ["info@example.com"]},
            "receipt": {"recipients": ["info@example.com"], "spfVerdict": {"status": "PASS"},
                        "dkimVerdict": {"status": "PASS"}, "spamVerdict": {"status": "PASS"},
                        "virusVerdict": {"status": "PASS"}, "dmarcVerdict": {"status": "PASS"},
                        "action": {"type": "S3", "bucketName": "inbound",
                                   "objectKey": f"incoming/{mid}"}}}


ALIAS = ('config = { mailboxes = ["alice"], '
         'aliases = { info = ["alice", "bob@gmail.example"] } }')


def write_config(path, plugins, steps):
    """A config with the S3 mailbox store, the SES relay and example.com's chain: `steps` is a
    list of (plugin name in `plugins`, extra TOML lines for the step)."""
    text = ('[store]\nkind = "s3"\nbucket = "mail"\nprefix = "mailboxes"\n'
            '[relay]\nkind = "ses"\nfrom = "forwarder@example.com"\nallow_domains = ["gmail.example"]\n'
            '[[domain]]\nname = "example.com"\n')
    for name, extra in steps:
        text += f'[[domain.step]]\nplugin = "{os.path.join(plugins, name)}.wasm"\n{extra}\n'
    with open(path, "w") as f:
        f.write(text)


def warm_cache(binary, conf, env):
    """Compiles the plugins once, so a run measures the steady state, not Cranelift."""
    subprocess.run([binary, "check", "--config", conf], env=env, check=True, capture_output=True)
