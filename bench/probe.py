"""
The service with a probe of its memory, for the soak only
(C{bench/soak.py --probe}): C{python bench/probe.py --config FILE} runs
C{python -m xxterocpp --config FILE} in this process and, every
C{XXTEROCPP_PROBE_INTERVAL} seconds, writes to the folder
C{XXTEROCPP_PROBE_DIR}:

  - probe.jsonl, one line per dump: the RSS; Python's own view (tracemalloc's
    traced bytes, pymalloc's arenas and free blocks from
    C{sys._debugmallocstats}, the count of allocated blocks); SQLite's
    (C{sqlite3_status64}: all its memory, its page caches; per connection,
    C{sqlite3_db_status}: cache, schema, statements, hits and misses);
    glibc's (C{mallinfo2}: heap, in use, free, mmapped); and the classes
    whose count of objects grew most since the first dump;
  - top-NNN.txt: tracemalloc's top allocation sites by growth since the
    baseline dump (the first at or after C{XXTEROCPP_PROBE_BASE} seconds)
    and since the dump before;
  - malloc-NNN.xml: glibc's C{malloc_info}.

C{XXTEROCPP_PROBE_FRAMES} is how many frames tracemalloc keeps per
allocation (0: no tracemalloc; it costs memory itself, so the RSS of a
probed run is not the service's: some 100 MiB more with 200 chargers, its
snapshots included). A dump with tracemalloc holds the interpreter while it
compares its snapshots: seconds, and minutes on a busy machine, during
which the service answers nothing; without tracemalloc a dump is short. Nothing here is part of the service: the
unit never runs it.
"""

import collections
import ctypes
import ctypes.util
import gc
import json
import os
import re
import runpy
import sys
import tempfile
import threading
import time
import tracemalloc

OUT = os.environ["XXTEROCPP_PROBE_DIR"]
INTERVAL = float(os.environ.get("XXTEROCPP_PROBE_INTERVAL", "60"))
BASE_S = float(os.environ.get("XXTEROCPP_PROBE_BASE", "0"))
FRAMES = int(os.environ.get("XXTEROCPP_PROBE_FRAMES", "1"))
PAGE = os.sysconf("SC_PAGE_SIZE")

# The folder of this script is not the service's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

if FRAMES:
    tracemalloc.start(FRAMES)

libc = ctypes.CDLL(ctypes.util.find_library("c"))
# The library the sqlite3 module is linked with: loading it by the same name
# gives the instance already in the process.
libsqlite = ctypes.CDLL("libsqlite3.so.0")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc.mallinfo2.restype = MallInfo2
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]

SQLITE_STATUS = {"memory_used": 0, "pagecache_used": 1, "pagecache_overflow": 2,
                 "malloc_size": 5, "pagecache_size": 7, "malloc_count": 9}
SQLITE_DBSTATUS = {"lookaside_used": 0, "cache_used": 1, "schema_used": 2, "stmt_used": 3,
                   "cache_hit": 7, "cache_miss": 8, "cache_write": 9, "cache_spill": 12}


def sqlite_status():
    cur, high = ctypes.c_int64(), ctypes.c_int64()
    out = {}
    for name, op in SQLITE_STATUS.items():
        libsqlite.sqlite3_status64(op, ctypes.byref(cur), ctypes.byref(high), 0)
        out[name] = [cur.value, high.value]
    return out


def sqlite_connections():
    """
    The status of every open sqlite3 connection of the process. The
    C{sqlite3*} of a CPython 3.11 connection object is the field right
    after its object header.
    """
    import sqlite3
    cur, high = ctypes.c_int(), ctypes.c_int()
    out = []
    for obj in gc.get_objects():
        if not isinstance(obj, sqlite3.Connection):
            continue
        handle = ctypes.c_void_p.from_address(id(obj) + 2 * ctypes.sizeof(ctypes.c_void_p))
        if not handle.value:
            continue
        status = {}
        for name, op in SQLITE_DBSTATUS.items():
            libsqlite.sqlite3_db_status(ctypes.c_void_p(handle.value), op, ctypes.byref(cur),
                                        ctypes.byref(high), 0)
            status[name] = cur.value
        out.append(status)
    return out


_NUMBER = re.compile(r"^(#?\s*[^=]*?)\s*=\s*([\d,]+)\s*$")


def pymalloc_stats():
    """
    The totals of C{sys._debugmallocstats} (it writes to the C stderr).
    """
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode("ascii", "replace")
    out = {}
    for line in text.splitlines():
        m = _NUMBER.match(line)
        if m and not line.startswith(" "):
            out[m.group(1).strip("# ").strip()] = int(m.group(2).replace(",", ""))
    return out


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024


def malloc_info(path):
    f = libc.fopen(path.encode(), b"w")
    if f:
        libc.malloc_info(0, f)
        libc.fclose(f)


def type_counts():
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


CYCLES = os.environ.get("XXTEROCPP_PROBE_CYCLES", "")

# The full collections: how many, what they freed, how long they took.
_full = {"count": 0, "collected": 0, "max_collected": 0, "seconds": 0.0, "max_s": 0.0}
_full_started = [0.0]


def _on_gc(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        _full_started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _full_started[0]
    _full["count"] += 1
    _full["collected"] += info["collected"]
    _full["max_collected"] = max(_full["max_collected"], info["collected"])
    _full["seconds"] += took
    _full["max_s"] = max(_full["max_s"], took)


gc.callbacks.append(_on_gc)


def _edge(parent, child):
    if isinstance(parent, dict):
        return ",".join(repr(k) for k, v in parent.items() if v is child)[:60] or "(key)"
    if isinstance(parent, (list, tuple)):
        return "[%d]" % next((i for i, v in enumerate(parent) if v is child), -1)
    for name in ("__self__", "__func__", "cell_contents", "__dict__", "__closure__",
                 "f_back", "gi_frame", "cr_frame", "f_locals"):
        try:
            if getattr(parent, name) is child:
                return "." + name
        except Exception:
            pass
    for name in getattr(type(parent), "__slots__", ()):
        try:
            if getattr(parent, name) is child:
                return "." + name
        except Exception:
            pass
    return "?"


def _describe(obj):
    name = type(obj).__qualname__
    if isinstance(obj, dict):
        return f"dict({','.join(map(str, list(obj)[:4]))}...)"
    if hasattr(obj, "__qualname__") and not isinstance(obj, type):
        return f"{name} {getattr(obj, '__qualname__', '')}"
    return name


def cycles(path):
    """
    What the next full collection would free, by class, and for each class
    named in XXTEROCPP_PROBE_CYCLES the shortest reference cycle through
    one such object.
    """
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        del gc.garbage[:]
    finally:
        gc.set_debug(0)
    ids = {id(o): o for o in garbage}
    with open(path, "w") as f:
        f.write(f"{len(garbage)} objects in cycles\n")
        for name, n in collections.Counter(type(o).__qualname__ for o in garbage).most_common(40):
            f.write(f"  {n:7d} {name}\n")
        # The strongly connected component, within the garbage, of one
        # object of each class named: every edge inside it.
        forward = {id(o): [c for c in gc.get_referents(o) if id(c) in ids] for o in garbage}
        backward = collections.defaultdict(list)
        for parent, children in forward.items():
            for child in children:
                backward[id(child)].append(parent)

        def reach(start, edges):
            seen, queue = {start}, collections.deque([start])
            while queue:
                for other in edges(queue.popleft()):
                    if other not in seen:
                        seen.add(other)
                        queue.append(other)
            return seen

        for wanted in CYCLES.split(","):
            start = next((o for o in garbage if type(o).__qualname__ == wanted), None)
            if start is None:
                continue
            component = (reach(id(start), lambda i: (id(c) for c in forward[i]))
                         & reach(id(start), lambda i: backward[i]))
            f.write(f"\nthe cycles through one {wanted}: {len(component)} objects\n")
            for i in sorted(component, key=lambda i: _describe(ids[i])):
                for child in forward[i]:
                    if id(child) in component:
                        f.write(f"  {_describe(ids[i])} --{_edge(ids[i], child)}--> "
                                f"{_describe(child)}\n")
        del forward, backward
    del garbage, ids


def dump_loop():
    t0 = time.monotonic()
    first_types = None
    base = previous = None
    number = 0
    log = open(os.path.join(OUT, "probe.jsonl"), "a")
    while True:
        time.sleep(INTERVAL)
        number += 1
        t = time.monotonic() - t0
        info = libc.mallinfo2()
        types = type_counts()
        if first_types is None:
            first_types = types
        grown = {k: types[k] - first_types.get(k, 0) for k in types}
        record = {
            "n": number, "t": round(t, 1), "rss_kib": rss_kib(),
            "allocated_blocks": sys.getallocatedblocks(),
            "pymalloc": pymalloc_stats(),
            "mallinfo2": {name: getattr(info, name) for name, _ in MallInfo2._fields_},
            "sqlite": sqlite_status(), "sqlite_connections": sqlite_connections(),
            "gc_objects": sum(types.values()), "gc_counts": gc.get_count(),
            "frozen": gc.get_freeze_count(), "full_collections": dict(_full),
            "types_grown": dict(sorted(grown.items(), key=lambda kv: -kv[1])[:15]),
        }
        if FRAMES:
            traced, peak = tracemalloc.get_traced_memory()
            record.update(traced=traced, traced_peak=peak,
                          tracemalloc_memory=tracemalloc.get_tracemalloc_memory())
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            if base is None and t >= BASE_S:
                base = snapshot
            with open(os.path.join(OUT, f"top-{number:03d}.txt"), "w") as f:
                f.write(f"# dump {number} at {t:.0f} s, traced {traced / 1024:.0f} KiB\n")
                for title, against in (("since the baseline", base), ("since the dump before",
                                                                          previous)):
                    if against is None or against is snapshot:
                        continue
                    f.write(f"\n## {title}\n")
                    for stat in snapshot.compare_to(against, "lineno")[:30]:
                        f.write(f"{stat}\n")
                    f.write(f"\n## {title}, by file\n")
                    for stat in snapshot.compare_to(against, "filename")[:15]:
                        f.write(f"{stat}\n")
            previous = snapshot
        malloc_info(os.path.join(OUT, f"malloc-{number:03d}.xml"))
        if CYCLES:
            cycles(os.path.join(OUT, f"cycles-{number:03d}.txt"))
        _full.update(count=0, collected=0, max_collected=0, seconds=0.0, max_s=0.0)
        log.write(json.dumps(record) + "\n")
        log.flush()


os.makedirs(OUT, exist_ok=True)
threading.Thread(target=dump_loop, name="probe", daemon=True).start()
sys.argv = ["xxterocpp", *sys.argv[1:]]
runpy.run_module("xxterocpp", run_name="__main__", alter_sys=True)
