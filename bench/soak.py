"""
The soak test of xxterocpp (issue 8): no unbounded growth. The service runs
for an hour under a steady, realistic load -- 200 chargers (Node + ws,
bench/loadgen.js soak mode) with heartbeats every 10 s, pings, charging
sessions (StartTransaction, MeterValues every 2 s, StopTransaction), the
controller's set-up after every boot, and now and then a reconnect -- and
its RSS is sampled every 10 s. After a warm-up (2 minutes) the RSS must stay
flat within 10 %.

    .venv/bin/python bench/soak.py [--seconds 3600] [--chargers 200]
    env PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 bench/soak.py   # Debian

Everything talks to 127.0.0.1. Only the standard library is used here.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402  (bench/run.py: Server, rss_kib, cpu_s, ...)

TAG = '\n[[tag]]\nid = "BENCH"\n'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=120)
    parser.add_argument("--out", default=os.path.join(run.BENCH, "out"))
    args = parser.parse_args()
    run.raise_open_files()
    workdir = tempfile.mkdtemp(prefix="xxterocpp-soak-")
    write_config = run.write_config

    def with_tag(directory, n, ping=10, port=0):
        path = write_config(directory, n, ping, port)
        with open(path, "a") as f:
            f.write(TAG)
        return path

    run.write_config = with_tag
    server = run.Server("service", workdir, n=args.chargers).start()
    samples = []  # (seconds since the chargers connected, RSS KiB, CPU s)
    marks = {}
    stop = threading.Event()

    def sample():
        while not stop.wait(args.interval):
            if "connected" in marks:
                samples.append((time.monotonic() - marks["connected"], server.rss(),
                                server.cpu()))
                t, rss, _ = samples[-1]
                print(f"  {t:5.0f} s  RSS {rss / 1024:6.1f} MiB", file=sys.stderr, flush=True)

    def mark(what):
        marks[what] = time.monotonic()
        if what == "connected":
            samples.append((0.0, server.rss(), server.cpu()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        load = run.loadgen("soak", server.url, args.chargers, args.seconds, mark)
        alive = server.proc.poll() is None
    finally:
        stop.set()
        sampler.join()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    after = [s for s in samples if s[0] >= args.warmup] or samples
    first, last = after[0][1], after[-1][1]
    peak = max(s[1] for s in after)
    low = min(s[1] for s in after)
    growth = (peak - first) / first
    flat = alive and peak <= first * 1.10 and low >= first * 0.90
    cpu = ((samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])
           if len(samples) > 1 and samples[-1][0] > samples[0][0] else None)
    result = {
        "stack": run.stack_name(), "seconds": args.seconds, "chargers": args.chargers,
        "warmup_s": args.warmup, "service_alive": alive, "load": load,
        "rss_kib": [[round(t, 1), rss] for t, rss, _ in samples],
        "rss_start_kib": samples[0][1], "rss_first_after_warmup_kib": first,
        "rss_last_kib": last, "rss_max_kib": max(s[1] for s in samples),
        "growth_after_warmup": growth, "server_cpu_pct": None if cpu is None else 100 * cpu,
        "flat_within_10pct": flat,
    }
    os.makedirs(args.out, exist_ok=True)
    tag = "debian" if sys.executable.startswith("/usr/bin/") else "pypi"
    with open(os.path.join(args.out, f"soak-{tag}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"# xxterocpp soak: {result['stack']}, {args.chargers} chargers, {args.seconds} s")
    print(f"calls {load.get('calls')}, sessions {load.get('sessions')}, reconnects "
          f"{load.get('reconnects')}, failures {load.get('failures')}, errors {load.get('errors')},"
          f" call errors {load.get('call_errors')}, p99 {load.get('p99_ms')} ms")
    print(f"RSS: start {samples[0][1] / 1024:.1f} MiB, after warm-up {first / 1024:.1f} MiB, "
          f"last {last / 1024:.1f} MiB, max {result['rss_max_kib'] / 1024:.1f} MiB; "
          f"growth after warm-up {100 * growth:+.1f} %; server CPU "
          f"{'-' if cpu is None else f'{100 * cpu:.1f} %'}")
    print(f"flat within 10 % after warm-up: {'yes (met)' if flat else 'NO (missed)'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
