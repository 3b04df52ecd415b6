#!/usr/bin/env python3
"""The collector watching many limited cgroups: its CPU (% of one core) and RSS.

Creates N sandbox cgroups with a memory limit, each with one sleeping process (so the sampler
reads their tasks too), runs record for MINUTES, and reads record's utime+stime and VmRSS from
/proc at the end. Run as root after ./setup.sh:
    /opt/oomscope/venv/bin/python bench/scale.py [--cgroups 500] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup


def proc_cpu_rss(pid: int):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cgroups", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    hier = MemoryHierarchy.detect()
    prefix = f"/oomscope-bench-{os.getpid()}"
    made, sleepers = [], []
    try:
        for i in range(args.cgroups):
            fs = create_cgroup(hier, f"{prefix}-{i}", 256 << 20)
            made.append(fs)
            sleepers.append(subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec sleep 100000', "sh",
                                              os.path.join(fs, "cgroup.procs")]))
        with tempfile.TemporaryDirectory() as out:
            err = open(os.path.join(out, "err"), "w+")
            proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills")],
                                    stdout=subprocess.DEVNULL, stderr=err)
            while "recording OOM kills" not in open(os.path.join(out, "err")).read():
                if proc.poll() is not None:
                    raise SystemExit("record did not start")
                time.sleep(0.05)
            time.sleep(5)  # past start-up (compiling the BPF programs)
            cpu0, _ = proc_cpu_rss(proc.pid)
            t0 = time.monotonic()
            prev_cpu, prev_t = cpu0, t0
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(min(60.0, args.minutes * 60 - (time.monotonic() - t0)))
                cpu, rss = proc_cpu_rss(proc.pid)
                now = time.monotonic()
                print(f"  minute {(now - t0) / 60:.1f}: {100 * (cpu - prev_cpu) / (now - prev_t):.2f}% of one core, "
                      f"RSS {rss / (1 << 20):.0f} MiB", flush=True)
                prev_cpu, prev_t = cpu, now
            cpu1, rss = proc_cpu_rss(proc.pid)
            elapsed = time.monotonic() - t0
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        print(f"record watching {args.cgroups} limited cgroups for {elapsed / 60:.1f} min: "
              f"CPU {100 * (cpu1 - cpu0) / elapsed:.2f}% of one core, RSS {rss / (1 << 20):.0f} MiB")
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        for fs in made:
            remove_cgroup(fs)


if __name__ == "__main__":
    main()
