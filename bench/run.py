"""
The benchmarks of xxterocpp (issue 8): every scenario against the service and,
in the same run, against the floor (bench/floor.py, a bare Autobahn server),
with the ratio. Run with the interpreter of the stack to measure:

    .venv/bin/python bench/run.py                       # PyPI stack
    env PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 bench/run.py   # Debian

The load generator is bench/loadgen.js (Node + ws); its own CPU is reported.
Only the standard library is used here; everything talks to 127.0.0.1.
Scenario 3 (the KNX path) is bench/knx_path.py, run by this script too, and
so is scenario 6 (disk writes per charger-hour of charging), bench/flash.py.

The service runs as the systemd unit starts it (`python3 -m xxterocpp`),
from byte-compiled modules as an installed package has them: the tree is
compiled first (into its __pycache__ directories), since otherwise every
start would compile the sources.
"""

import argparse
import base64
import compileall
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")

CONFIG = """
[ocpp]
interface = "127.0.0.1"
port = {port}
heartbeat_interval = 10
call_timeout = 30
ping_interval = {ping}
max_chargers = {n}

[knx]
knxd = ""

[web]
port = 0

[storage]
database = "{database}"
"""


def _cores():
    """
    @return: C{(server CPUs, load generator CPUs)}: the server (service or
        floor) on one core and the load generator on the others, so that
        neither run depends on where the scheduler happened to put them (on
        this 2-core machine that alone moved the ratio by +-0.1). Nothing is
        pinned on a single-core machine.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


SERVER_CPUS, LOADGEN_CPUS = _cores()


def _pin(cpus):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def raise_open_files(wanted=20000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(directory, n, ping=10, port=0):
    path = os.path.join(directory, f"bench-{n}.toml")
    text = CONFIG.format(port=port, ping=ping, n=n,
                         database=os.path.join(directory, f"state-{n}-{port}.sqlite3"))
    text += "".join(f'\n[[charger]]\nid = "CP{i:04d}"\nmax_current = 32\n' for i in range(n))
    with open(path, "w") as f:
        f.write(text)
    return path


def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wake_ups(pid):
    """
    @return: how many times the process's threads went to sleep so far
        (voluntary context switches): a sleeping server wakes up once for
        each, for a timer or for I/O.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            total += sum(int(line.split()[1]) for line in f
                         if line.startswith("voluntary_ctxt_switches:"))
    return total


def unit_environment():
    """
    @return: the C{Environment=} settings of the systemd unit, which the
        service is started with, as the unit starts it.
    """
    settings = {}
    with open(os.path.join(ROOT, "debian", "xxterocpp.service")) as f:
        for line in f:
            if line.startswith("Environment="):
                name, _, value = line.strip().partition("=")[2].partition("=")
                settings[name] = value
    return settings


def compile_tree():
    """
    Byte-compile the service's modules, as installing the package does.
    """
    for directory in ("xxterocpp", os.path.join("twisted", "plugins")):
        compileall.compile_dir(os.path.join(ROOT, directory), quiet=1)


def wait_accepting(port, proc, timeout=30, keep=False):
    """
    @return: when a connection to C{port} was first accepted; with
        C{keep}, the connected socket as well.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            time.sleep(0.002)
            continue
        if keep:
            return s, time.monotonic()
        s.close()
        return time.monotonic()
    raise RuntimeError(f"nothing accepted connections on port {port} within {timeout} s")


def first_answer(port, proc, charger_id, timeout=30):
    """
    Connect as soon as the server accepts, then open a WebSocket as
    C{charger_id} and send a BootNotification.

    @return: when the server accepted the connection and when its
        CALLRESULT came (C{time.monotonic()}).
    """
    s, accepted = wait_accepting(port, proc, timeout, keep=True)
    with s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /{charger_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n").encode())
        payload = json.dumps([2, "boot", "BootNotification",
                              {"chargePointVendor": "bench", "chargePointModel": "bench"}]).encode()
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                  + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        s.settimeout(timeout)
        received = b""
        while b'[3,"boot",' not in received:
            data = s.recv(65536)
            if not data:
                raise RuntimeError(f"the server closed the connection: {received[:200]!r}")
            received += data
        return accepted, time.monotonic()


class Server:
    """
    The service (python -m xxterocpp) or the floor, as a child process.
    """

    def __init__(self, kind, workdir, n=1000, ping=10, launcher=None, env=None, boot=False):
        """
        @param launcher: a script that runs the service module in its own
            process instead of C{-m xxterocpp} (bench/probe.py), or L{None}.
        @param env: more environment variables for the server.
        @param boot: whether the start also measures when the first
            BootNotification, sent as soon as a connection is accepted, is
            answered (C{answered_s}).
        """
        self.kind, self.workdir, self.n, self.ping = kind, workdir, n, ping
        self.launcher, self.env, self.boot = launcher, env or {}, boot
        self.proc = None

    def start(self):
        self.port = free_port()
        log = open(os.path.join(self.workdir, f"{self.kind}-{self.port}.log"), "wb")
        env = dict(os.environ, PYTHONPATH=ROOT)
        if self.kind == "service":
            env.update(unit_environment())
            config = write_config(self.workdir, self.n, self.ping, self.port)
            module = ["-m", "xxterocpp"] if self.launcher is None else [self.launcher]
            argv = [sys.executable, *module, "--config", config]
        else:
            argv = [sys.executable, os.path.join(BENCH, "floor.py"), "--port", str(self.port),
                    "--ping", str(self.ping)]
        env.update(self.env)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_pin(SERVER_CPUS),
                                     cwd=self.workdir)
        if self.boot:
            accepted, answered = first_answer(self.port, self.proc, "CP0000")
            self.startup_s, self.answered_s = accepted - t0, answered - t0
        else:
            self.startup_s = wait_accepting(self.port, self.proc) - t0
        # The CPU time it took, which a busy machine does not inflate.
        self.startup_cpu_s = self.cpu()
        self.url = f"ws://127.0.0.1:{self.port}/"
        return self

    def rss(self):
        return rss_kib(self.proc.pid)

    def cpu(self):
        return cpu_s(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loadgen(mode, url, n, seconds=10, on_marker=None, extra=()):
    argv = ["node", os.path.join(BENCH, "loadgen.js"), mode, url, str(n), str(seconds),
            *map(str, extra)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_pin(LOADGEN_CPUS))
    for line in proc.stderr:
        if on_marker is not None and line.strip() in ("connected", "done"):
            on_marker(line.strip())
        elif line.strip():
            sys.stderr.write("loadgen: " + line)
    out = proc.stdout.read()
    proc.wait()
    lines = out.strip().splitlines()
    if not lines:
        # It died before its result (node or bench/node_modules missing):
        # its stderr, printed above, says why.
        raise RuntimeError(f"loadgen {mode} ended with status {proc.returncode} and no result")
    result = json.loads(lines[-1])
    if proc.returncode:
        raise RuntimeError(f"loadgen {mode} failed: {result}")
    return result


def throughput(server):
    c0, t0 = server.cpu(), time.monotonic()
    r = loadgen("throughput", server.url, 200, 10)
    r["server_cpu_pct"] = 100 * (server.cpu() - c0) / (time.monotonic() - t0)
    return r


def scale(server):
    marks = {}

    def mark(what):
        marks[what] = (time.monotonic(), server.cpu(), server.rss())

    base = server.rss()
    r = loadgen("scale", server.url, 1000, 20, mark)
    (t0, c0, rss0), (t1, c1, rss1) = marks["connected"], marks["done"]
    r.update(rss_base_kib=base, rss_kib=rss1, server_cpu_pct=100 * (c1 - c0) / (t1 - t0),
             kib_per_charger=(max(rss0, rss1) - base) / 1000)
    return r


def storm(server):
    return loadgen("storm", server.url, 1000)


#: Seconds the two chargers of the start-up scenario stay idle (a Heartbeat
#: each every 10 s) while the server's wake-ups are counted.
IDLE_S = 10

#: Seconds after both chargers connected before the count starts: the
#: service's one-off work after a connection (the controller's set-up, the
#: boot wait of xxterocpp.control.setup.BOOT_WAIT, which fires once even when
#: the boot cancelled it: a cancelled Twisted timer still wakes the reactor
#: at its time) is not rest. The floor is counted the same way.
SETTLE_S = 6


def startup(kind, workdir):
    """
    Start-up time to accepting a connection and to answering the first
    BootNotification (sent on that connection), and the CPU time until
    then; then with 2 chargers connected, after L{SETTLE_S}, idle for
    L{IDLE_S}: wake-ups per second and the RSS at the end; each the median
    of three starts.
    """
    runs = {"startup_s": [], "answered_s": [], "startup_cpu_s": [], "idle_rss_kib": [],
            "idle_wake_ups_per_s": []}
    for _ in range(3):
        s = Server(kind, workdir, n=2, ping=60, boot=True).start()
        runs["startup_s"].append(s.startup_s)
        runs["answered_s"].append(s.answered_s)
        runs["startup_cpu_s"].append(s.startup_cpu_s)
        marks = {}

        def count(what, s=s):
            marks[what] = (time.monotonic(), wake_ups(s.proc.pid))

        def mark(what, s=s):
            if what == "connected":
                threading.Timer(SETTLE_S, count, ("settled",)).start()
            elif what == "done":
                count("done")
                runs["idle_rss_kib"].append(s.rss())

        try:
            loadgen("scale", s.url, 2, SETTLE_S + IDLE_S, mark)
        finally:
            s.stop()
        (t0, w0), (t1, w1) = marks["settled"], marks["done"]
        runs["idle_wake_ups_per_s"].append((w1 - w0) / (t1 - t0))
    return {key: sorted(values)[1] for key, values in runs.items()}


def knx_path(workdir):
    """
    Scenario 3, run in its own process with the same interpreter.
    """
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "knx_path.py"), workdir],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


@contextlib.contextmanager
def small_page_fs(workdir):
    """
    A file system whose files get 4 KiB page-cache pages, as every file
    does on the kernels before 6.16 (bookworm's is 6.1): a loop-mounted
    ext4 without extents, on which newer kernels give files no large
    folios. On those, C{write_bytes} counts 8-16 KiB for a 1 KiB append to
    an extent-mapped file.

    @return: a context manager giving the mount point, or None when it
        cannot be made (not root, no mkfs.ext4, no loop device).
    """
    image, point = os.path.join(workdir, "4k.img"), os.path.join(workdir, "4k")
    mounted = False
    try:
        if os.geteuid() == 0 and shutil.which("mkfs.ext4") and shutil.which("mount"):
            with open(image, "wb") as f:
                f.truncate(128 * 1024 * 1024)
            os.makedirs(point)
            quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mounted = (subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^extents,^64bit",
                                       image], **quiet).returncode == 0
                       and subprocess.run(["mount", "-o", "loop", image, point],
                                          **quiet).returncode == 0)
        yield point if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", point], check=False)
        if os.path.exists(image):
            os.unlink(image)


#: Scenario 6's runs: (chargers, "upstream" to forward them to a back office).
FLASH_RUNS = ((1, ""), (2, ""), (1, "upstream"))


def flash(workdir):
    """
    Scenario 6, the write budget: bench/flash.py with 1 and with 2 chargers,
    and with 1 charger forwarded to a back office, side by side (each a
    service of its own, mostly idle), on the work directory's file system
    and, where it can be made, on one with 4 KiB pages (L{small_page_fs}).

    @return: C{{"N": result, "N-4k": result}} for N chargers, C{"1u"} and
        C{"1u-4k"} with the back office.
    """
    with small_page_fs(workdir) as small:
        places = [("", workdir)] + ([("-4k", small)] if small else [])
        runs = {}
        for suffix, place in places:
            for n, upstream in FLASH_RUNS:
                key = f"{n}{'u' if upstream else ''}"
                directory = os.path.join(place, f"flash-{key}")
                os.makedirs(directory)
                runs[f"{key}{suffix}"] = subprocess.Popen(
                    [sys.executable, os.path.join(BENCH, "flash.py"), directory, str(n), "60",
                     upstream],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                    env=dict(os.environ, PYTHONPATH=ROOT))
        results = {}
        for key, proc in runs.items():
            out, err = proc.communicate(timeout=600)
            lines = out.strip().splitlines()
            results[key] = (json.loads(lines[-1]) if proc.returncode == 0 and lines
                            else {"error": (err or out).strip().splitlines()[-1:]})
    return results


def stack_name():
    import autobahn
    import twisted

    return (f"Python {sys.version.split()[0]} ({sys.executable}), Twisted {twisted.__version__},"
            f" Autobahn {autobahn.__version__}")


def fmt(value, unit="", digits=1):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(BENCH, "out"))
    parser.add_argument("--only", default="startup,throughput,scale,knx,storm,flash")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput runs per server, alternating service and floor;"
                             " the median is reported (default 3)")
    args = parser.parse_args()
    raise_open_files()
    only = args.only.split(",")
    workdir = tempfile.mkdtemp(prefix="xxterocpp-bench-")
    compile_tree()
    results = {"stack": stack_name(), "service": {}, "floor": {}}
    print(f"# xxterocpp benchmarks: {results['stack']}, {os.cpu_count()} CPUs", flush=True)
    try:
        if "throughput" in only:
            # This VM's speed drifts by 10 % from one run to the next: the
            # two servers take turns, and each one's median run counts.
            runs = {"service": [], "floor": []}
            for _ in range(max(1, args.rounds)):
                for kind in ("service", "floor"):
                    server = Server(kind, workdir).start()
                    try:
                        runs[kind].append(throughput(server))
                    finally:
                        server.stop()
                    print(f"{kind} throughput: {json.dumps(runs[kind][-1])}", file=sys.stderr,
                          flush=True)
            for kind, done in runs.items():
                done.sort(key=lambda r: r["calls_per_s"])
                median = dict(done[len(done) // 2])
                median["rounds_calls_per_s"] = [round(r["calls_per_s"]) for r in done]
                results[kind]["throughput"] = median
        for kind in ("service", "floor"):
            res = results[kind]
            if "startup" in only:
                res["startup"] = startup(kind, workdir)
            for name, scenario in (("scale", scale), ("storm", storm)):
                if name not in only:
                    continue
                # A fresh process per scenario: the storm is a controller reboot.
                server = Server(kind, workdir).start()
                try:
                    res[name] = scenario(server)
                finally:
                    server.stop()
                print(f"{kind} {name}: {json.dumps(res[name])}", file=sys.stderr, flush=True)
        if "knx" in only:
            results["service"]["knx"] = knx_path(workdir)
        if "flash" in only:
            results["service"]["flash"] = flash(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    tag = "debian" if sys.executable.startswith("/usr/bin/") else "pypi"
    with open(os.path.join(args.out, f"bench-{tag}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_table(results)


def print_table(results):
    s, f = results["service"], results["floor"]
    rows = []

    def row(what, sv, fv, ratio, target, met, unit="", digits=1):
        rows.append((what, fmt(sv, unit, digits), fmt(fv, unit, digits),
                     "-" if ratio is None else f"{ratio:.2f}×", target,
                     "" if met is None else ("met" if met else "MISSED")))

    def get(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def ratio(a, b):
        return a / b if a is not None and b else None

    sv, fv = get(s, "throughput", "calls_per_s"), get(f, "throughput", "calls_per_s")
    r = ratio(sv, fv)
    row("1 throughput, calls/s (200 chargers)", sv, fv, r, "≥ 0.6× floor",
        None if r is None else r >= 0.6, digits=0)
    for key, label in (("p50_ms", "1 throughput p50"), ("p99_ms", "1 throughput p99")):
        a, b = get(s, "throughput", key), get(f, "throughput", key)
        row(label, a, b, ratio(a, b), "", None, " ms")
    a, b = get(s, "throughput", "server_cpu_pct"), get(f, "throughput", "server_cpu_pct")
    row("1 throughput, server CPU", a, b, ratio(a, b), "", None, " %", 0)
    a, b = get(s, "throughput", "loadgen_cpu_pct"), get(f, "throughput", "loadgen_cpu_pct")
    row("1 throughput, load generator CPU", a, b, None, "< 100 % (not the bottleneck)",
        None if a is None else max(a, b or 0) < 90, " %", 0)
    a, b = get(s, "scale", "rss_kib"), get(f, "scale", "rss_kib")
    row("2 scale: RSS with 1,000 chargers", a and a / 1024, b and b / 1024, ratio(a, b), "",
        None, " MiB")
    a, b = get(s, "scale", "kib_per_charger"), get(f, "scale", "kib_per_charger")
    r = ratio(a, b)
    row("2 scale: memory per charger", a, b, r, "≤ 1.5× floor", None if r is None else r <= 1.5,
        " KiB")
    a, b = get(s, "scale", "server_cpu_pct"), get(f, "scale", "server_cpu_pct")
    row("2 scale: server CPU", a, b, ratio(a, b), "", None, " %")
    a, b = get(s, "scale", "p99_ms"), get(f, "scale", "p99_ms")
    row("2 scale: heartbeat p99", a, b, ratio(a, b), "", None, " ms")
    knx = get(s, "knx")
    if knx and "p99_ms" in knx:
        row("3 KNX path p50", knx["p50_ms"], None, None, "", None, " ms", 2)
        row("3 KNX path p99", knx["p99_ms"], None, None, "≤ 5 ms", knx["p99_ms"] <= 5, " ms", 2)
    elif knx is not None:
        rows.append(("3 KNX path", "pending", "-", "-", "≤ 5 ms", str(knx.get("error"))[:60]))
    a, b = get(s, "storm", "all_booted_s"), get(f, "storm", "all_booted_s")
    row("4 storm: 1,000 booted after", a, b, ratio(a, b), "≤ 2 s", None if a is None else a <= 2,
        " s", 2)
    a = get(s, "storm", "set_up_done_s")
    row("4 storm: controller set-up done after", a, None, None, "", None, " s", 2)
    a, b = get(s, "startup", "startup_s"), get(f, "startup", "startup_s")
    row("5 start-up to accepting", a, b, ratio(a, b), "≤ 0.5 s", None if a is None else a <= 0.5,
        " s", 2)
    a, b = get(s, "startup", "answered_s"), get(f, "startup", "answered_s")
    row("5 start-up to the first BootNotification answered", a, b, ratio(a, b), "", None, " s", 2)
    a, b = get(s, "startup", "startup_cpu_s"), get(f, "startup", "startup_cpu_s")
    row("5 start-up CPU time", a, b, ratio(a, b), "", None, " s", 2)
    a, b = get(s, "startup", "idle_rss_kib"), get(f, "startup", "idle_rss_kib")
    r = ratio(a, b)
    row("5 idle RSS, 2 chargers", a and a / 1024, b and b / 1024, r, "≤ 1.15× floor",
        None if r is None else r <= 1.15, " MiB")
    a, b = get(s, "startup", "idle_wake_ups_per_s"), get(f, "startup", "idle_wake_ups_per_s")
    row(f"5 idle wake-ups/s, 2 chargers ({IDLE_S} s, {SETTLE_S} s after connecting)", a, b, ratio(a, b),
        "no timer above 1/s", None, "", 2)
    for key, run in sorted((get(s, "flash") or {}).items(), key=lambda kv: str(kv[0])):
        n, upstream, where = re.fullmatch(r"(\d+)(u?)(-4k)?", str(key)).groups()
        n = int(n)
        label = (f"6 disk writes per charger-hour of charging, {n} charger{'s' * (n > 1)}"
                 + (" with a back office" if upstream else "")
                 + (", 4 KiB pages" if where else ""))
        if "error" in run:
            rows.append((label, "pending", "-", "-", "≤ 20 KB", str(run["error"])[:60]))
            continue
        a = run["charging_bytes_per_charger_hour"] / 1000
        row(label, a, None, None, "≤ 20 KB", a <= 20, " KB")
        row(f"6   the hour with its session's start and stop, {n}{' with a back office' if upstream else ''}"
            f"{', 4 KiB pages' if where else ''}",
            run["hour_bytes_per_charger"]
            / 1000, None, None, "", None, " KB")
    headers = ("scenario", "service", "floor", "ratio", "target", "")
    widths = [max(len(str(x[i])) for x in rows + [headers]) for i in range(6)]
    for line in [headers] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
    a, b = get(s, "throughput", "rounds_calls_per_s"), get(f, "throughput", "rounds_calls_per_s")
    if a and b:
        print(f"throughput rounds (calls/s, sorted; the median counts): service {a}, floor {b};"
              f" server pinned to CPU {sorted(SERVER_CPUS or ())},"
              f" load generator to {sorted(LOADGEN_CPUS or ())}")


if __name__ == "__main__":
    main()
