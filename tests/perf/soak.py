#!/usr/bin/env python3
"""Soak: N messages through one `sluice daemon` on moto; memory and file descriptors must stay
flat, nothing may be lost or sent twice.

Usage (from the workspace root, after `cargo build -p sluice` and
`target/debug/sluice plugin build plugins/alias plugins/banner plugins/subject-tag plugins/junk
--out target/plugins`):

    .venv/bin/python tests/perf/soak.py [N=20000] [CONCURRENCY=4] [SLUICE_BINARY]

Messages are seeded in waves while the daemon runs (S3 objects and SQS batches of 10 from 8
threads; see harness.py): a feeder keeps BACKLOG..2*BACKLOG messages not yet done, so the
queue never runs dry, and never holds thousands either (moto's receive scans the whole queue:
with all 20,000 queued up front a receive costs seconds and the run measures that). The chain is four warm steps (`instances = "warm"`): alias (info@ -> one local
mailbox + one relayed copy through SES), banner, subject-tag, junk. Per message: an S3 read,
the chain, a mailbox write, a claim around one SES send, an SQS delete.

While the daemon runs its JSON log is followed line by line; every 1,000 `message done` lines
print the count, elapsed time, the daemon's RSS (VmRSS) and open file descriptors, and the
p50/p99 of `total_us` over that window. At the end: p50/p99/max over all, msgs/s, and the
checks. Exit 1 if any fails:

- every message stored exactly once in the mailbox bucket, nothing else there;
- exactly N relayed sends in moto's SES, one per message;
- the queue empty; no `message failed` or `not deleted` lines; the daemon exited 0;
- RSS: at most RSS_BOUND_MB more at the last sample than at 2,000 messages, and at most
  RSS_HALF_MB more than at half-way. The first 2,000 are warm-up (allocator arenas, HTTP
  pools, the warm instances filling); the warm instances are replaced after 1,000 messages or
  300 s each, so the pools turn over several times after that. 8 MB over the 18,000 messages
  after 2,000 is under 0.5 KB a message, less than one copy of the 1.2 KB message, so a
  per-message leak of anything a message owns fails; a leak also keeps climbing, which the
  second half (4 MB over 10,000 messages) shows apart from warm-up;
- open fds: at most FD_SLACK more at the last sample than at 2,000. The only fds that come
  and go are pooled HTTP connections to moto (a few per service), so a slack of 4 allows
  their churn; a socket or file leaked per message would be thousands.

A daemon that stops making progress (no message done for STALL_S seconds) is stopped and
the run fails, rather than waiting forever.
"""
import json, os, subprocess, sys, tempfile, threading, time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
CONC = sys.argv[2] if len(sys.argv) > 2 else "4"
BIN = sys.argv[3] if len(sys.argv) > 3 else "target/debug/sluice"
EVERY = 1000 if N >= 5000 else max(N // 10, 1)
RSS_BOUND_MB = 8
RSS_HALF_MB = 4
STALL_S = 120
FD_SLACK = 4
BASELINE = 2 * EVERY  # the sample growth is measured from
BACKLOG = 100


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else 0


def proc(pid):
    """(RSS in MB, open fds) of a running process; None once it has exited (the last lines
    of its log may be read after that)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), None)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return None if rss is None else (rss / 1024, fds)


def main():
    failures = []
    with harness.World() as world, tempfile.TemporaryDirectory() as tmp:
        ids, done = [], [0]  # done[0]: `message done` lines so far, for the feeder

        def feed():
            while len(ids) < N and not stop.is_set():
                if len(ids) - done[0] < BACKLOG:
                    n = min(BACKLOG, N - len(ids))
                    ids.extend(world.seed(n, prefix="soak", start=len(ids)))
                else:
                    time.sleep(0.2)

        stop = threading.Event()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        conf = os.path.join(tmp, "sluice.toml")
        warm = 'instances = "warm"\n'
        harness.write_config(conf, os.path.join(os.getcwd(), "target/plugins"), [
            ("alias", warm + harness.ALIAS),
            ("banner", warm + 'config = { text = "External sender" }'),
            ("subject-tag", warm + 'config = { tag = "[EXT]" }'),
            ("junk", warm + 'config = { folder = "Junk" }'),
        ])
        env = world.env(tmp)
        harness.warm_cache(BIN, conf, env)
        daemon = subprocess.Popen(
            [BIN, "daemon", "--config", conf, "--queue", world.queue, "--wait", "1",
             "--concurrency", CONC, "--max-messages", str(N)],
            env=env, stderr=subprocess.PIPE, text=True)
        totals, window, samples, bad, started = [], [], [], [], None
        progress = [time.monotonic(), False]  # last message done, stalled

        def watchdog():
            while daemon.poll() is None:
                if time.monotonic() - progress[0] > STALL_S:
                    progress[1] = True; daemon.kill(); return
                time.sleep(1)

        threading.Thread(target=watchdog, daemon=True).start()
        print(f"{'messages':>8} {'elapsed':>8} {'RSS MB':>7} {'fds':>4} {'p50 ms':>7} {'p99 ms':>7}",
              flush=True)
        for line in daemon.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                bad.append(line.rstrip()); continue
            what = event.get("message", "")
            if what == "daemon consuming the queue":
                started = time.monotonic()
            elif what == "message done":
                totals.append(int(event["total_us"])); window.append(totals[-1])
                done[0] = len(totals); progress[0] = time.monotonic()
                if len(totals) % EVERY == 0:
                    elapsed = time.monotonic() - started
                    usage = proc(daemon.pid)
                    if usage:
                        samples.append((len(totals), elapsed, *usage))
                    rss, fds = (f"{usage[0]:.1f}", usage[1]) if usage else ("exited", "-")
                    print(f"{len(totals):>8} {elapsed:>7.0f}s {rss:>7} {fds:>4} "
                          f"{pct(window, 50) / 1000:>7.1f} {pct(window, 99) / 1000:>7.1f}", flush=True)
                    window = []
            elif event.get("level") in ("WARN", "ERROR"):
                bad.append(line.rstrip())
        code = daemon.wait()
        stop.set(); feeder.join()
        wall = time.monotonic() - started if started else 0
        print(f"\n{len(totals)} messages in {wall:.0f} s = {len(totals) / max(wall, 1e-9):.1f} msg/s "
              f"(concurrency {CONC}); per message p50 {pct(totals, 50) / 1000:.1f} ms, "
              f"p99 {pct(totals, 99) / 1000:.1f} ms, max {max(totals, default=0) / 1000:.1f} ms")

        def check(ok, what):
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
            if not ok:
                failures.append(what)

        check(not progress[1], f"progress within {STALL_S} s all along")
        check(code == 0, f"the daemon exited {code}")
        check(len(totals) == N, f"{len(totals)} of {N} messages done")
        check(not bad, f"{len(bad)} warnings, errors or other lines in the log"
              + "".join(f"\n       {l[:300]}" for l in bad[:5]))
        stored = Counter(os.path.basename(k).removesuffix(".eml")
                         for k in world.keys("mail", "mailboxes/example.com/"))
        twice = [m for m, c in stored.items() if c > 1]
        check(set(stored) == set(ids) and not twice,
              f"{len(stored)} messages in the mailbox bucket, {len(set(ids) - set(stored))} missing, "
              f"{len(twice)} stored more than once, {len(set(stored) - set(ids))} unknown")
        sent = world.sent_raw_messages()
        per_id = Counter(_subject_id(s["raw_data"]) for s in sent)
        check(len(sent) == N and set(per_id) == set(ids),
              f"{len(sent)} relayed sends for {len(per_id)} messages "
              f"({sum(1 for c in per_id.values() if c > 1)} sent more than once)")
        left = world.left_in_queue()
        if left:  # which ones, and were they done already (a delete undone)?
            r = world.sqs.receive_message(QueueUrl=world.queue, MaxNumberOfMessages=10)
            left_ids = [json.loads(m["Body"])["mail"]["messageId"] for m in r.get("Messages", [])]
            print(f"left in the queue: {left_ids}; already stored: {[m for m in left_ids if m in stored]}")
        check(left == 0, f"{left} left in the queue")
        base = next((s for s in samples if s[0] == BASELINE), None)
        if base and samples[-1][0] > BASELINE:
            last = samples[-1]
            check(last[2] - base[2] <= RSS_BOUND_MB,
                  f"RSS {base[2]:.1f} MB at {base[0]} -> {last[2]:.1f} MB at {last[0]} "
                  f"(bound +{RSS_BOUND_MB} MB)")
            half = samples[len(samples) // 2 - 1]
            check(last[2] - half[2] <= RSS_HALF_MB,
                  f"RSS {half[2]:.1f} MB at {half[0]} -> {last[2]:.1f} MB at {last[0]} "
                  f"(bound +{RSS_HALF_MB} MB)")
            check(last[3] <= base[3] + FD_SLACK,
                  f"fds {base[3]} at {base[0]} -> {last[3]} at {last[0]} (slack {FD_SLACK})")
        else:
            print(f"(no RSS/fd check: fewer than {BASELINE + EVERY} messages)")
    sys.exit(1 if failures else 0)


def _subject_id(raw):
    """The seeded id in a relayed copy's Subject (the chain adds a tag in front)."""
    for line in raw.splitlines():
        if line.lower().startswith("subject:") and "soak-" in line:
            return line[line.index("soak-"):].split()[0]
    return None


if __name__ == "__main__":
    main()
