"""
The soak test of xxterocpp (issue 8): no unbounded growth. The service runs
for an hour under a steady, realistic load -- 200 chargers (Node + ws,
bench/loadgen.js soak mode) with heartbeats every 10 s, pings, charging
sessions (StartTransaction, MeterValues every 2 s, StopTransaction), the
controller's set-up after every boot, and now and then a reconnect -- and
its RSS is sampled every 10 s.

The verdict: after a 5-minute warm-up, every sample within 3 % of the
first one after it. What fills during the warm-up: the frame history of
every charger (100 frames or 16 KiB, full after its first two minutes of
sessions), SQLite's page cache (256 KiB, full once the file has grown past
it, after several hundred sessions: a few minutes of this load), and the
allocators' pools at the load's working set. The 20-minute runs of
2026-12-02 were at their plateau after 2 minutes and within 0.2 % of it
from then on. Nothing the service
keeps grows with the count of sessions, calls or reconnects after that
(README.md, Performance), so the band is narrow; the least-squares trend
after the warm-up is reported too.

    .venv/bin/python bench/soak.py [--seconds 3600] [--chargers 200]
    env PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 bench/soak.py   # Debian

To look for what grows in a short run: --speed K makes the chargers live K
times faster (sessions, MeterValues, heartbeats and reconnects K times as
often: 10 minutes at --speed 6 are an hour's sessions), and --probe DIR
runs the service under bench/probe.py, which dumps tracemalloc's top
growth, SQLite's and glibc's memory, pymalloc's arenas and what a full
garbage collection would free (the RSS of a probed run is not the
service's alone). --judge FILE judges an earlier run's series again.

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

#: The verdict (see the module's docstring).
WARMUP_S = 300
TOLERANCE = 0.03


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="the band around the RSS after the warm-up, a fraction")
    parser.add_argument("--judge", metavar="JSON",
                        help="only judge the RSS series of an earlier soak's result file")
    parser.add_argument("--out", default=os.path.join(run.BENCH, "out"))
    parser.add_argument("--speed", type=float, default=1,
                        help="the chargers live this many times faster (sessions, MeterValues,"
                        " heartbeats, reconnects)")
    parser.add_argument("--probe", metavar="DIR",
                        help="run the service under bench/probe.py, its dumps into DIR")
    parser.add_argument("--probe-interval", type=float, default=60)
    parser.add_argument("--probe-frames", type=int, default=1,
                        help="tracemalloc frames (0: no tracemalloc)")
    parser.add_argument("--probe-cycles", default="", metavar="CLASS,...",
                        help="at every dump, what a full collection frees and a reference"
                        " cycle through an object of each CLASS")
    args = parser.parse_args()
    if args.judge:
        with open(args.judge) as f:
            result = json.load(f)
        rss = [tuple(sample) for sample in result["rss_kib"]]
        result.update(judge(rss, args.warmup, args.tolerance))
        result["flat"] = result["service_alive"] and result["flat"]
        report(result)
        return 0 if result["flat"] else 1
    run.raise_open_files()
    workdir = tempfile.mkdtemp(prefix="xxterocpp-soak-")
    write_config = run.write_config

    def with_tag(directory, n, ping=10, port=0):
        path = write_config(directory, n, ping, port)
        with open(path, "a") as f:
            f.write(TAG)
        return path

    run.write_config = with_tag
    launcher, env = None, {}
    if args.probe:
        launcher = os.path.join(run.BENCH, "probe.py")
        env = {"XXTEROCPP_PROBE_DIR": os.path.abspath(args.probe),
               "XXTEROCPP_PROBE_INTERVAL": str(args.probe_interval),
               "XXTEROCPP_PROBE_BASE": str(args.warmup),
               "XXTEROCPP_PROBE_FRAMES": str(args.probe_frames),
               "XXTEROCPP_PROBE_CYCLES": args.probe_cycles}
    server = run.Server("service", workdir, n=args.chargers, launcher=launcher,
                        env=env).start()
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
        elif what == "done" and "connected" in marks:
            samples.append((marks["done"] - marks["connected"], server.rss(), server.cpu()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        load = run.loadgen("soak", server.url, args.chargers, args.seconds, mark,
                           extra=[args.speed])
        alive = server.proc.poll() is None
    finally:
        stop.set()
        sampler.join()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    rss = [(t, kib) for t, kib, _ in samples]
    judged = judge(rss, args.warmup, args.tolerance)
    flat = alive and judged["flat"]
    cpu = ((samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])
           if len(samples) > 1 and samples[-1][0] > samples[0][0] else None)
    result = {
        "stack": run.stack_name(), "seconds": args.seconds, "chargers": args.chargers,
        "speed": args.speed, "probed": bool(args.probe), "service_alive": alive, "load": load,
        "rss_kib": [[round(t, 1), kib] for t, kib in rss],
        "rss_start_kib": rss[0][1], "rss_max_kib": max(kib for _, kib in rss),
        "server_cpu_pct": None if cpu is None else 100 * cpu,
    }
    result.update(judged)
    result["flat"] = flat
    os.makedirs(args.out, exist_ok=True)
    tag = "debian" if sys.executable.startswith("/usr/bin/") else "pypi"
    with open(os.path.join(args.out, f"soak-{tag}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"# xxterocpp soak: {result['stack']}, {args.chargers} chargers, {args.seconds} s")
    print(f"calls {load.get('calls')}, sessions {load.get('sessions')}, reconnects "
          f"{load.get('reconnects')}, failures {load.get('failures')}, errors {load.get('errors')},"
          f" call errors {load.get('call_errors')}, p99 {load.get('p99_ms')} ms")
    report(result)
    return 0 if flat else 1


def judge(rss, warmup, tolerance):
    """
    The verdict on an RSS series: after C{warmup} seconds, every sample
    within C{tolerance} (a fraction) of the first one after it. The
    least-squares trend of those samples (a fraction of that first one, an
    hour) is told, not judged: a step of a few hundred KiB near the end of
    a short run is a large trend.

    @param rss: C{[(seconds, KiB), ...]}.
    @return: a L{dict} of the figures and C{flat}.
    """
    after = [(t, kib) for t, kib in rss if t >= warmup] or rss
    first, last = after[0][1], after[-1][1]
    high, low = max(kib for _, kib in after), min(kib for _, kib in after)
    n = len(after)
    mean_t = sum(t for t, _ in after) / n
    mean_kib = sum(kib for _, kib in after) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in after)
    slope = (sum((t - mean_t) * (kib - mean_kib) for t, kib in after) / var_t
             if var_t else 0.0)  # KiB per second
    per_hour = slope * 3600 / first
    band = (high - first) / first, (low - first) / first
    return {
        "warmup_s": warmup, "tolerance": tolerance,
        "rss_first_after_warmup_kib": first, "rss_last_kib": last,
        "growth_after_warmup": band[0], "drop_after_warmup": band[1],
        "trend_per_hour": per_hour,
        "flat": band[0] <= tolerance and band[1] >= -tolerance,
    }


def every(rss, seconds):
    """
    @return: the samples of C{rss} closest to 0, C{seconds}, 2 C{seconds}...
    """
    out, mark = [], 0.0
    for t, kib in rss:
        if t >= mark - 5:
            out.append((t, kib))
            mark += seconds
    return out


def report(result):
    rss = result["rss_kib"]
    first, tolerance = result["rss_first_after_warmup_kib"], result["tolerance"]
    cpu = result["server_cpu_pct"]
    cpu = "-" if cpu is None else f"{cpu:.1f} %"
    print("RSS every 2 min: " + ", ".join(f"{t / 60:.0f}' {kib / 1024:.1f}"
                                          for t, kib in every(rss, 120)) + " MiB")
    print(f"RSS: start {rss[0][1] / 1024:.1f} MiB, after the warm-up ({result['warmup_s']:.0f} s)"
          f" {first / 1024:.1f} MiB, last {result['rss_last_kib'] / 1024:.1f} MiB, max "
          f"{result['rss_max_kib'] / 1024:.1f} MiB; after the warm-up "
          f"{100 * result['growth_after_warmup']:+.1f} % / {100 * result['drop_after_warmup']:+.1f} %,"
          f" trend {100 * result['trend_per_hour']:+.2f} % an hour; server CPU {cpu}")
    print(f"flat within {100 * tolerance:.0f} % after a {result['warmup_s'] / 60:.0f}-minute "
          f"warm-up: {'yes (met)' if result['flat'] else 'NO (missed)'}")


if __name__ == "__main__":
    sys.exit(main())
