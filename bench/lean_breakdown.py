#!/usr/bin/env python3
"""Where a recorder's anonymous memory goes (issue 29), at N watched cgroups after an OOM storm.

N sandbox cgroups (256 MiB limit, one sleeping process each) under ``/oomscope-test-lean-PID``, one
recorder of CHECKOUT on them (``--cgroup`` that parent), an OOM storm of ``--kills-seconds`` in a
64 MiB sandbox beside them, then ``--wait`` seconds (past the worker's idle exit); then:

- the recorder's anonymous memory by mapping (/proc/PID/smaps): glibc's main heap, nameless
  mappings by size (pymalloc's arenas are 1 MiB each in Python 3.11, glibc's thread arenas up to
  64 MiB, thread stacks 8 MiB), and the written (relocated) pages of each shared library;
- with ``--tracemalloc``: the Python allocations by traceback, by file and by type, glibc's
  mallinfo2 and pymalloc's statistics, from bench/memtrace/sitecustomize.py (SIGUSR2). tracemalloc
  itself costs memory (its own figure is printed): the first list is the one to trust for totals.

    /opt/oomscope/venv/bin/python bench/lean_breakdown.py --levels 2000 [--tracemalloc FRAMES] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup  # noqa: E402
from lean import children, mib, rollup, stop_process, watched_cgroups  # noqa: E402 - bench/lean.py
from storm import run_storm  # noqa: E402 - bench/storm.py


def by_mapping(pid: int) -> list:
    """(anonymous bytes, rss bytes, size bytes, what) per mapping, nameless ones named by size."""
    rows, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            p = line.split()
            if p and "-" in p[0] and not p[0].endswith(":"):
                lo, hi = (int(x, 16) for x in p[0].split("-"))
                name = p[5] if len(p) >= 6 else ""
                cur = {"size": hi - lo, "name": name, "perms": p[1], "anon": 0, "rss": 0}
                rows.append(cur)
            elif p and p[0] == "Anonymous:":
                cur["anon"] = int(p[1]) * 1024
            elif p and p[0] == "Rss:":
                cur["rss"] = int(p[1]) * 1024
    out = collections.Counter()
    count = collections.Counter()
    for r in rows:
        if r["name"]:
            what = r["name"].rsplit("/", 1)[-1]
        elif r["size"] == 1 << 20:
            what = "nameless 1 MiB (pymalloc arenas)"
        elif r["size"] >= 8 << 20 and r["size"] <= (8 << 20) + (1 << 16):
            what = "nameless 8 MiB (thread stacks)"
        else:
            what = "nameless, other sizes (glibc thread arenas, mmapped blocks)"
        out[what] += r["anon"]
        count[what] += 1
    big = sorted((r for r in rows if not r["name"] and r["anon"] >= 1 << 20), key=lambda r: -r["anon"])[:12]
    return [(a, count[w], w) for w, a in out.most_common() if a] + \
        [(r["anon"], 1, f"  one nameless mapping of {mib(r['size'])} MiB, {r['perms']}") for r in big]


def run(n: int, checkout: str, trace: Optional[int], kills_s: float, wait_s: float, hier, extra=()) -> None:
    with watched_cgroups(hier, n) as (parent, made):
        with tempfile.TemporaryDirectory(prefix="oomscope-breakdown-") as out:
            env = dict(os.environ, PYTHONPATH=checkout)
            if trace is not None:
                env.update(PYTHONPATH=f"{checkout}:{os.path.join(HERE, 'bench', 'memtrace')}", OOMSCOPE_MEMTRACE=out,
                           OOMSCOPE_MEMTRACE_FRAMES=str(trace))
            err_path = os.path.join(out, "record.err")
            proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"),
                                     "--cgroup", parent, *extra], cwd=checkout, env=env,
                                    stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
            try:
                deadline = time.monotonic() + 180
                while "recording OOM kills" not in open(err_path).read():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"record did not start: {open(err_path).read()[-2000:]}")
                    time.sleep(0.2)
                time.sleep(10)
                if kills_s:
                    storm_fs = create_cgroup(hier, f"{parent}/storm", 64 << 20)
                    made.append(storm_fs)
                    try:
                        run_storm(storm_fs, kills_s)
                    except subprocess.CalledProcessError as exc:  # its parent killed too: the kills made stand
                        print(f"{n} cgroups: the storm ended early ({exc.returncode})")
                    kills = len(glob.glob(os.path.join(out, "kills", "*", "capture.json")))
                    print(f"{n} cgroups: storm done, {kills} captures", flush=True)
                time.sleep(wait_s)
                roll = rollup(proc.pid)
                print(f"{n} cgroups: recorder RSS {mib(roll['Rss'])} MiB, anonymous {mib(roll['Anonymous'])}, "
                      f"PSS {mib(roll['Pss'])}; children {children(proc.pid)}")
                print("  anonymous by mapping (MiB, mappings, what):")
                for a, c, w in by_mapping(proc.pid):
                    print(f"    {mib(a):>7} {c:>4}  {w}")
                if trace is not None:
                    os.kill(proc.pid, signal.SIGUSR2)
                    path = os.path.join(out, f"memtrace-{proc.pid}.txt")
                    deadline = time.monotonic() + 120
                    while not os.path.exists(path) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    with open(path) as f:
                        print(f.read())
            finally:
                stop_process(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="2000")
    ap.add_argument("--checkout", default=HERE)
    ap.add_argument("--tracemalloc", type=int, default=None, metavar="FRAMES",
                    help="dump the recorder's allocations (tracemalloc with FRAMES frames; 0: only glibc's and pymalloc's own figures)")
    ap.add_argument("--kills-seconds", type=float, default=6.0)
    ap.add_argument("--record-arg", action="append", default=[], help="one more argument of record (e.g. --no-alloc-sites)")
    ap.add_argument("--wait", type=float, default=75.0, help="seconds after the storm (the worker exits after 60 s idle)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    hier = MemoryHierarchy.detect()
    for n in [int(x) for x in args.levels.split(",") if x.strip()]:
        run(n, os.path.abspath(args.checkout), args.tracemalloc, args.kills_seconds, args.wait, hier, args.record_arg)


if __name__ == "__main__":
    main()
