"""
The throughput scenario of bench/run.py for the service as it is and as it
was at an older commit, side by side in one run on this stack:

    python3 bench/versus.py REV [--rounds 5]

The floor, the service of this tree and the service of REV (checked out in
a temporary git worktree) take turns, round after round, so that a VM whose
speed drifts affects them alike; each one's median is printed with its
ratio to the floor's. This is what "no scenario worse than before" is
judged by when the stack changed in between (a newer Twisted or Autobahn
speeds the floor up, not only the service).

A tree without C{xxterocpp/__main__.py} (before 2026-12-02) runs as it was
run then: C{twistd --nodaemon xxterocpp}, through bench/legacy.py.
"""

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import run

ROOT = run.ROOT


def worktree(rev, directory):
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", directory, rev],
                   check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", help="the older commit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    old = tempfile.mkdtemp(prefix="xxterocpp-versus-")
    os.rmdir(old)
    worktree(args.rev, old)
    legacy = None
    if not os.path.exists(os.path.join(old, "xxterocpp", "__main__.py")):
        legacy = os.path.join(run.BENCH, "legacy.py")
    kinds = {"floor": None, "service": {}, args.rev: {"PYTHONPATH": old}}
    calls = {kind: [] for kind in kinds}
    run.raise_open_files()
    # Byte-compiled, as installing the package does.
    run.compile_tree()
    compileall.compile_dir(os.path.join(old, "xxterocpp"), quiet=1)
    print(f"# throughput, the service against {args.rev}, {args.rounds} rounds:"
          f" {run.stack_name()}, {os.cpu_count()} CPUs", flush=True)
    try:
        for _ in range(args.rounds):
            for kind, env in kinds.items():
                workdir = tempfile.mkdtemp(prefix="xxterocpp-versus-run-")
                if env is None:
                    server = run.Server("floor", workdir)
                else:
                    server = run.Server("service", workdir, env=env,
                                        launcher=legacy if kind == args.rev else None)
                server.start()
                try:
                    result = run.throughput(server)
                finally:
                    server.stop()
                    shutil.rmtree(workdir, ignore_errors=True)
                calls[kind].append(round(result["calls_per_s"]))
                print(f"{kind}: {calls[kind][-1]} calls/s,"
                      f" server CPU {result['server_cpu_pct']:.0f} %", flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old],
                       capture_output=True)
    floor = statistics.median(calls["floor"])
    for kind, values in calls.items():
        median = statistics.median(values)
        print(f"{kind:>12}: median {median:,.0f} calls/s, {median / floor:.3f}x the floor;"
              f" rounds {values}")


if __name__ == "__main__":
    sys.exit(main())
