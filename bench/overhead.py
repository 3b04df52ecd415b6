#!/usr/bin/env python3
"""What record costs a page-fault-heavy workload: without oomscope and with `record`. record puts
nothing on the charge path (charge tracking, whose memcg:* programs ran on every stat update
while attached and cost 1.07-1.10x here, was removed: docs/kernel-facts.md); this checks that.

The workload touches SIZE of anonymous memory page by page and frees it, REPEAT times, inside a
sandbox cgroup whose limit is twice SIZE (never killed). Rounds are interleaved (none, record,
none, ...) because this machine's noise is as large as the effect (docs/kernel-facts.md). Prints,
per mode, the median over rounds and the per-round ratios to "none" (median, min).

What is timed: the workload's CPU time for each pass over SIZE, and the figure compared is the
median of the passes after the first (the steady state, pages the allocator just freed). The
first pass is printed apart. It varies 0.18-0.60 s for the same 512 MiB (measured) and is slow
after a record has just started or stopped, whatever record's mode and even with no BPF program
on the fault path; it is back to normal once record has run for ~10 s. That is this VM's host
(guest pages the host has to back again after a burst of frees: page_reporting is on here), not
a cost a running record adds to page faults, so each mode also waits SETTLE seconds (10 by
default, with none too) before its workload.

This machine is a VM, and the workload's own CPU time depends on whether the other vCPU is idle:
measured, a process that only wakes every 10 ms made the same workload go from 1.34 s to 0.72 s.
A running record is such a process, so against a bare baseline it shows the VM's idle states, not
its own cost. Every mode (none included) therefore runs beside the same waker (a process that
sleeps WAKER_MS at a time); what differs between the modes is then oomscope alone.

Run as root after ./setup.sh:  /opt/oomscope/venv/bin/python bench/overhead.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup

TOUCH = r"""
import mmap, sys, time
size, repeat = int(sys.argv[1]), int(sys.argv[2])
passes = []
for _ in range(repeat):
    t = time.process_time()
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, size, 4096):
        m[off] = 1
    m.close()
    passes.append(time.process_time() - t)
print(" ".join(map(str, passes)))
"""


def start_record(out: str, extra) -> subprocess.Popen:
    err = open(os.path.join(out, "record.err"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"), *extra],
                            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while True:
        err.seek(0)
        if "recording OOM kills" in err.read():
            time.sleep(2.0)  # let the sampler find the cgroup
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("record did not start: " + open(os.path.join(out, "record.err")).read())
        time.sleep(0.05)


def run_workload(fs_path: str, size: int, repeat: int) -> List[float]:
    res = subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3" "$4" "$5"', "sh",
                          os.path.join(fs_path, "cgroup.procs"), sys.executable, TOUCH, str(size), str(repeat)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"workload failed: {res.stderr}")
    return [float(x) for x in res.stdout.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5, help="passes over SIZE per run (the first is reported apart)")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds each mode waits before its workload")
    ap.add_argument("--waker-ms", type=float, default=1.0, help="0: no waker (bare baseline)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    hier = MemoryHierarchy.detect()
    name = f"/oomscope-bench-{os.getpid()}"
    size = args.size_mib << 20
    fs_path = create_cgroup(hier, name, 2 * size + (64 << 20))
    modes = [("none", None), ("record", [])]
    times = {m: [] for m, _ in modes}  # steady state: median of the passes after the first
    first = {m: [] for m, _ in modes}
    waker = None
    if args.repeat < 2:
        raise SystemExit("--repeat must be at least 2")
    if args.waker_ms > 0:
        waker = subprocess.Popen([sys.executable, "-c", f"import time\nwhile True: time.sleep({args.waker_ms / 1000})"])
    try:
        with tempfile.TemporaryDirectory() as out:
            for r in range(args.rounds):
                for mode, extra in modes:
                    proc = start_record(out, extra) if extra is not None else None
                    try:
                        time.sleep(args.settle)
                        passes = run_workload(fs_path, size, args.repeat)
                        first[mode].append(passes[0])
                        times[mode].append(statistics.median(passes[1:]))
                    finally:
                        if proc is not None:
                            proc.send_signal(signal.SIGTERM)
                            proc.wait(timeout=30)
                print(f"round {r + 1}: " + ", ".join(f"{m} {times[m][-1]:.4f}s (first {first[m][-1]:.3f})" for m, _ in modes), flush=True)
    finally:
        if waker is not None:
            waker.kill()
            waker.wait()
        remove_cgroup(fs_path)
    print(f"\nworkload CPU time per pass over {args.size_mib} MiB, {args.rounds} interleaved rounds, "
          f"{args.settle:g} s settle" + (f", all beside a waker every {args.waker_ms:g} ms" if waker is not None else ", no waker"))
    for label, table in (("steady state (passes 2..N)", times), ("first pass (host effects, see above)", first)):
        print(f" {label}:")
        base = table["none"]
        for mode, _ in modes:
            ratios = [t / b for t, b in zip(table[mode], base)]
            print(f"  {mode:10s} median {statistics.median(table[mode]):.4f}s  ratio to none: median {statistics.median(ratios):.3f}, "
                  f"min {min(ratios):.3f}, min-to-min {min(table[mode]) / min(base):.3f}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    main()
