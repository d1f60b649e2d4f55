#!/usr/bin/env python3
"""Messages/s through `sluice daemon` against moto server, and the share spent in Sluice.

Usage (from the workspace root, after `cargo build -p sluice` and building the rules, e.g.
`target/debug/sluice plugin build plugins/alias plugins/banner --out target/plugins`):

    .venv/bin/python tests/perf/daemon_throughput.py [N] [CONCURRENCY] [SLUICE_BINARY]

Starts moto on a free loopback port, stores N messages in S3 with one SQS notification each
(alias -> one local mailbox + one relayed copy through SES, then the banner rule; see
harness.py), runs the daemon until it has handled N messages, and prints the rate plus how
much of the per-message time the chains (parse + rules) took, as the daemon reports it.
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
CONC = sys.argv[2] if len(sys.argv) > 2 else "4"
BIN = sys.argv[3] if len(sys.argv) > 3 else "target/debug/sluice"

with harness.World() as world, tempfile.TemporaryDirectory() as tmp:
    world.seed(N)
    conf = os.path.join(tmp, "sluice.toml")
    harness.write_config(conf, os.path.join(os.getcwd(), "target/plugins"), [
        ("alias", harness.ALIAS),
        ("banner", 'config = { text = "External sender" }'),
    ])
    env = world.env(tmp)
    harness.warm_cache(BIN, conf, env)
    t0 = time.monotonic()
    out = subprocess.run([BIN, "daemon", "--config", conf, "--queue", world.queue, "--wait", "1",
                          "--concurrency", CONC, "--max-messages", str(N)],
                         env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    # The daemon logs one JSON object per event with SLUICE_LOG_FORMAT=json.
    events = [json.loads(l) for l in out.stderr.splitlines() if l.startswith("{")]
    done = [(e["chain_us"], e["total_us"]) for e in events if e.get("message") == "message done"]
    if out.returncode != 0 or len(done) != N:
        print(out.stderr[-3000:]); sys.exit(f"daemon handled {len(done)} of {N}")
    chains = sum(int(c) for c, _ in done); total = sum(int(t) for _, t in done)
    sent = len(world.sent_raw_messages())
    print(f"{N} messages, concurrency {CONC}: {wall:.2f} s wall (incl. start-up) = {N / wall:.1f} msg/s; "
          f"per message: {total / N / 1000:.1f} ms, of which chains {chains / N / 1000:.2f} ms "
          f"({100 * chains / total:.1f}%); relayed copies sent: {sent}")
