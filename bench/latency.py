#!/usr/bin/env python3
"""Time from a kill (oom:mark_victim) to its postmortem.html on disk, over an OOM storm.

A parent spared by oom_score_adj=-1000 keeps three children allocating in a 64 MiB sandbox
cgroup for DURATION seconds while record runs; every kill's latency is the post-mortem file's
mtime minus the kill's time in its capture (kill_wall, from bpf_ktime_get_ns). Prints p50/p95.

--near: another sandbox cgroup (256 MiB) held at 84% of its limit and growing (bench/alloc_sites.py's
holder), so that record's growth-site sampling is attached during the storm (issue 27: p95 with
sampling); the storm starts once record says "sampling attached". --compare R: R rounds of both,
without and with --near in turn, each with a fresh record; the kills of each condition pooled.

Run as root after ./setup.sh, on a quiet machine (flock /tmp/oomscope-heavy.lock):
  /opt/oomscope/venv/bin/python bench/latency.py [--duration 6] [--near | --compare 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup
from storm import run_storm  # bench/storm.py
from alloc_sites import HOLD, HOLD_BYTES, LIMIT, in_cgroup  # bench/alloc_sites.py



def one_run(hier, duration: float, near: bool) -> tuple:
    """([latency seconds of each kill written], sampling attached during the storm)."""
    root = f"/oomscope-bench-{os.getpid()}"
    made = [create_cgroup(hier, root, 8 << 30)]  # record watches this tree only (--cgroup)
    fs_path = create_cgroup(hier, root + "/storm", 64 << 20)
    made.append(fs_path)
    near_path = create_cgroup(hier, root + "/near", LIMIT) if near else None
    if near_path is not None:
        made.append(near_path)
    holder = None
    attached = False
    try:
        with tempfile.TemporaryDirectory() as out:
            err_path = os.path.join(out, "err")
            err = open(err_path, "w+")
            # every kill of the storm written: no storm budget (record/budget.py)
            proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"),
                                     "--workload-burst", "0", "--cgroup", root],
                                    stdout=subprocess.DEVNULL, stderr=err)
            while "recording OOM kills" not in open(err_path).read():
                if proc.poll() is not None:
                    raise SystemExit("record did not start")
                time.sleep(0.05)
            if near_path is not None:
                holder = in_cgroup(near_path, [sys.executable, "-c", HOLD, str(HOLD_BYTES)], stdout=subprocess.PIPE, text=True)
                holder.stdout.readline()
                deadline = time.monotonic() + 30
                while "sampling attached" not in open(err_path).read() and time.monotonic() < deadline:
                    time.sleep(0.1)
                attached = "sampling attached" in open(err_path).read()
            run_storm(fs_path, duration)
            time.sleep(3.0)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            lat = []
            for cap_path in glob.glob(os.path.join(out, "kills", "*", "capture.json")):
                html = os.path.join(os.path.dirname(cap_path), "postmortem.html")
                if not os.path.exists(html):
                    continue
                with open(cap_path) as f:
                    cap = json.load(f)
                kill = dt.datetime.fromisoformat(cap["times"]["kill_wall"]).timestamp()
                lat.append(os.stat(html).st_mtime - kill)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        for path in reversed(made):
            remove_cgroup(path)
    return lat, attached


def summary(lat: list) -> str:
    lat = sorted(lat)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    return (f"{len(lat)} kills: kill -> postmortem.html on disk p50 {1000 * statistics.median(lat):.0f} ms, "
            f"p95 {1000 * p95:.0f} ms, max {1000 * lat[-1]:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--near", action="store_true", help="growth-site sampling attached during the storm")
    ap.add_argument("--compare", type=int, default=0, metavar="R", help="R rounds without and with --near in turn")
    args = ap.parse_args()
    hier = MemoryHierarchy.detect()
    if not args.compare:
        lat, attached = one_run(hier, args.duration, args.near)
        if len(lat) < 30:
            raise SystemExit(f"only {len(lat)} kills: not a storm")
        print(summary(lat) + (f"; sampling attached: {attached}" if args.near else ""))
        return
    pooled: dict = {False: [], True: []}
    for r in range(args.compare):
        for near in (False, True):
            lat, attached = one_run(hier, args.duration, near)
            pooled[near] += lat
            print(f"round {r + 1} {'near' if near else 'plain'}: {summary(lat) if lat else 'no kills'}"
                  + (f"; sampling attached: {attached}" if near else ""), flush=True)
    for near in (False, True):
        if pooled[near]:
            print(f"{'with sampling attached' if near else 'nothing near a limit'}, {args.compare} rounds pooled: {summary(pooled[near])}")


if __name__ == "__main__":
    main()
