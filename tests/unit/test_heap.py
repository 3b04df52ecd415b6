"""record/heap.py: glibc's arenas limited and free pages handed back, each in a fresh interpreter
(an arena limit applies only to arenas made after it; this test process has its own threads)."""

import ctypes
import json
import subprocess
import sys

import pytest

from oomscope.record import heap

ROOT = __file__.rsplit("/tests/", 1)[0]

needs_glibc = pytest.mark.skipif(heap._glibc() is None, reason="not glibc: record/heap.py does nothing there")

# Eight threads alive at once, each allocating small blocks with malloc: glibc gives each new thread
# an arena of its own (up to 8 per core) unless M_ARENA_MAX says otherwise. The arenas are counted
# from malloc_info's <heap nr=...> elements.
ARENAS = r"""
import ctypes, json, os, sys, tempfile, threading
sys.path.insert(0, sys.argv[1])
from oomscope.record import heap
on = heap.configure({"OOMSCOPE_MALLOC": "arenas"} if sys.argv[2] == "on" else {})
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
start = threading.Barrier(8)
hold = threading.Barrier(9)
def work():
    start.wait()
    ps = [libc.malloc(200) for _ in range(1000)]
    hold.wait()
    for p in ps:
        libc.free(p)
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts:
    t.start()
hold.wait()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
path = tempfile.mktemp()
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
arenas = open(path).read().count("<heap nr=")
os.unlink(path)
for t in ts:
    t.join()
print(json.dumps({"configured": on, "arenas": arenas}))
"""

# 64 MiB in 64 KiB blocks (below the mmap threshold: from an arena) allocated by a thread, all but the
# last freed (so the arena's top cannot shrink by itself): the pages stay resident until trim().
TRIM = r"""
import ctypes, json, sys, threading
sys.path.insert(0, sys.argv[1])
from oomscope.record import heap
heap.configure({"OOMSCOPE_MALLOC": "trim"})
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
def work():
    ps = []
    for _ in range(1024):
        p = libc.malloc(64 << 10)
        ctypes.memset(p, 1, 64 << 10)
        ps.append(p)
    for p in ps[:-1]:
        libc.free(p)
t = threading.Thread(target=work)
t.start()
t.join()
before = anon()
first = heap.trim(now=1000.0)
again = heap.trim(now=1001.0)  # within TRIM_EVERY_S: not run
after = anon()
print(json.dumps({"before": before, "after": after, "first": first, "again": again}))
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, ROOT, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_glibc
def test_arena_limit_holds_with_eight_threads():
    default = _run(ARENAS, "off")
    limited = _run(ARENAS, "on")
    assert default["configured"] is False and limited["configured"] is True
    assert default["arenas"] > heap.ARENA_MAX  # glibc's default: more than two for eight threads
    assert limited["arenas"] <= heap.ARENA_MAX


@needs_glibc
def test_trim_gives_freed_pages_back():
    r = _run(TRIM)
    assert r["first"] is True and r["again"] is False
    assert r["before"] - r["after"] >= 32 << 20, r  # of the 64 MiB freed, at least half handed back


def test_off_and_not_configured_do_nothing(monkeypatch):
    assert heap.configure({}) is False  # the default: glibc's own settings
    assert heap.configure({"OOMSCOPE_MALLOC": "default"}) is False
    assert heap.trim(now=1e9) is False
    monkeypatch.setattr(heap, "_glibc", lambda: None)  # musl: neither call exists
    assert heap.configure({"OOMSCOPE_MALLOC": "trim"}) is False
    assert heap.trim(now=2e9) is False


def test_glibc_found_here_has_both_calls():
    libc = heap._glibc()
    if libc is not None:
        assert isinstance(libc, ctypes.CDLL) and hasattr(libc, "malloc_trim")


@needs_glibc
def test_trim_waits_while_a_kill_is_in_flight_and_is_timed(monkeypatch):
    # module state of this process only: 'trim' calls no mallopt (no arena limit set here)
    for name, value in (("_libc", None), ("_enabled", False), ("_last_trim", 0.0), ("_busy", None),
                        ("_stats", {"trims": 0, "skipped_busy": 0, "max_s": 0.0, "total_s": 0.0})):
        monkeypatch.setattr(heap, name, value)
    assert heap.configure({"OOMSCOPE_MALLOC": "trim"})
    in_flight = [True]
    heap.set_busy(lambda: in_flight[0])
    assert not heap.trim(now=1000.0)  # a kill pending: put off
    assert heap.stats()["skipped_busy"] == 1 and heap.stats()["trims"] == 0
    in_flight[0] = False
    assert heap.trim(now=1000.5)  # the next quiet call runs it, not TRIM_EVERY_S later
    assert not heap.trim(now=1000.5 + heap.TRIM_EVERY_S / 2)  # at most every TRIM_EVERY_S
    st = heap.stats()
    assert st["trims"] == 1 and st["skipped_busy"] == 1
    assert 0.0 <= st["max_s"] <= st["total_s"] < 5.0
