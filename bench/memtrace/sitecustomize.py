"""Bench-only: where a recorder's memory goes (bench/lean_breakdown.py puts this folder on
PYTHONPATH; site imports it in every interpreter started with it, record's execve'd one included).

In the processes whose command line runs ``oomscope.record.main`` or the post-mortem worker
only, and only when OOMSCOPE_MEMTRACE is a folder: tracemalloc is started before anything else is
imported, and SIGUSR2 writes ``memtrace-PID.txt`` there (and the snapshot itself,
``memtrace-PID-N.snap``, for tracemalloc's compare_to): the Python allocations grouped by
traceback and by file, the live objects by type (shallow sizes), glibc's mallinfo2 and
pymalloc's own statistics.
Nothing of oomscope imports this.
"""

import os

_DIR = os.environ.get("OOMSCOPE_MEMTRACE")
_dumps = 0


def _cmdline() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _mallinfo2() -> dict:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return {n: getattr(m, n) for n, _ in MallInfo2._fields_}


def _dump(signum, frame) -> None:
    import tracemalloc

    path = os.path.join(_DIR, f"memtrace-{os.getpid()}.txt")
    tracing = tracemalloc.is_tracing()
    with open(path + ".tmp", "w") as out:
        out.write(f"mallinfo2 {_mallinfo2()}\n")
        if tracing:
            _traces(out, tracemalloc)
        _objects(out)
        _where(out)
        _pymalloc(out)
    os.replace(path + ".tmp", path)


def _traces(out, tracemalloc) -> None:
    snap = tracemalloc.take_snapshot()
    traced, peak = tracemalloc.get_traced_memory()
    out.write(f"traced {traced} peak {peak} tracemalloc_own {tracemalloc.get_tracemalloc_memory()}\n")
    # the whole snapshot too, numbered, for Snapshot.compare_to between two dumps (what grew)
    global _dumps
    _dumps += 1
    snap.dump(os.path.join(_DIR, f"memtrace-{os.getpid()}-{_dumps}.snap"))
    out.write("## by file\n")
    for st in snap.statistics("filename")[:40]:
        out.write(f"{st.size:>12} {st.count:>9} {st.traceback[0].filename}\n")
    out.write("## by line\n")
    for st in snap.statistics("lineno")[:60]:
        fr = st.traceback[0]
        out.write(f"{st.size:>12} {st.count:>9} {fr.filename}:{fr.lineno}\n")
    out.write("## by traceback\n")
    for st in snap.statistics("traceback")[:40]:
        out.write(f"{st.size:>12} {st.count:>9}\n")
        for fr in st.traceback.format()[-16:]:
            out.write(f"      {fr}\n")
    # format() read the source lines through linecache, which keeps them: 2.4 MiB of this process's
    # Python memory the next snapshot would count as grown (the soak of 2026-12-07 09:06)
    import linecache

    linecache.clearcache()


def _objects(out) -> None:
    import collections
    import gc
    import sys

    out.write("## objects by type (shallow getsizeof)\n")
    sizes, counts = collections.Counter(), collections.Counter()
    for o in gc.get_objects():
        t = type(o).__name__
        try:
            sizes[t] += sys.getsizeof(o)
        except Exception:
            pass
        counts[t] += 1
    for t, s in sizes.most_common(40):
        out.write(f"{s:>12} {counts[t]:>9} {t}\n")


def _where(out) -> None:
    """Which mappings hold Python objects (by the addresses of the objects the collector tracks):
    a nameless mapping with none is not pymalloc's."""
    import bisect
    import collections
    import gc

    maps = []
    with open("/proc/self/smaps") as f:
        cur = None
        for line in f:
            p = line.split()
            if p and "-" in p[0] and not p[0].endswith(":"):
                lo, hi = (int(x, 16) for x in p[0].split("-"))
                cur = [lo, hi, p[5] if len(p) >= 6 else "", 0]
                maps.append(cur)
            elif p and p[0] == "Anonymous:" and cur is not None:
                cur[3] = int(p[1]) * 1024
    starts = [m[0] for m in maps]
    objs = collections.Counter()
    for o in gc.get_objects():
        a = id(o)
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and maps[i][0] <= a < maps[i][1]:
            objs[i] += 1
    out.write("## nameless mappings with >= 256 KiB anonymous: size, anonymous, objects tracked by gc in it\n")
    for i, m in enumerate(maps):
        if (not m[2] or m[2] == "[heap]") and m[3] >= 256 << 10:
            out.write(f"{m[0]:x} {(m[1] - m[0]) >> 10:>8} KiB {m[3] >> 10:>8} KiB anon {objs[i]:>8} objects {m[2]}\n")


def _pymalloc(out) -> None:
    """pymalloc's arenas and pools, and glibc's arenas (both written by C: to fd 2 for the call)."""
    import ctypes
    import sys

    libc = ctypes.CDLL("libc.so.6")
    out.write("## pymalloc, glibc malloc_info\n")
    out.flush()
    saved = os.dup(2)
    try:
        os.dup2(out.fileno(), 2)
        sys._debugmallocstats()
        stderr = ctypes.c_void_p.in_dll(libc, "stderr")
        libc.malloc_info(0, stderr)
        libc.fflush(None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    out.seek(0, 2)


if _DIR and any(m in _cmdline() for m in ("oomscope.record.main", "oomscope.postmortem.worker")):
    import signal
    import tracemalloc

    _frames = int(os.environ.get("OOMSCOPE_MEMTRACE_FRAMES", "16"))
    if _frames > 0:  # 0: no tracemalloc (its own memory), only what the C allocators say
        tracemalloc.start(_frames)
    signal.signal(signal.SIGUSR2, _dump)
