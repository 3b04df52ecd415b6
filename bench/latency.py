#!/usr/bin/env python3
"""Time from a kill (oom:mark_victim) to its postmortem.html on disk, over an OOM storm.

A parent spared by oom_score_adj=-1000 keeps three children allocating in a 64 MiB sandbox
cgroup for DURATION seconds while record runs; every kill's latency is the post-mortem file's
mtime minus the kill's time in its capture (kill_wall, from bpf_ktime_get_ns). Prints p50/p95.

Run as root after ./setup.sh:  /opt/oomscope/venv/bin/python bench/latency.py [--duration 6]
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



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=6.0)
    args = ap.parse_args()
    hier = MemoryHierarchy.detect()
    name = f"/oomscope-bench-{os.getpid()}"
    fs_path = create_cgroup(hier, name, 64 << 20)
    try:
        with tempfile.TemporaryDirectory() as out:
            err = open(os.path.join(out, "err"), "w+")
            # every kill of the storm written: no storm budget (record/budget.py)
            proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"),
                                     "--workload-burst", "0"],
                                    stdout=subprocess.DEVNULL, stderr=err)
            while "recording OOM kills" not in open(os.path.join(out, "err")).read():
                if proc.poll() is not None:
                    raise SystemExit("record did not start")
                time.sleep(0.05)
            run_storm(fs_path, args.duration)
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
        remove_cgroup(fs_path)
    if len(lat) < 30:
        raise SystemExit(f"only {len(lat)} kills: not a storm")
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    print(f"{len(lat)} kills: kill -> postmortem.html on disk p50 {1000 * statistics.median(lat):.0f} ms, "
          f"p95 {1000 * p95:.0f} ms, max {1000 * lat[-1]:.0f} ms")


if __name__ == "__main__":
    main()
