#!/usr/bin/env python3
"""What `oomscope record` costs the host while nothing is being killed.

record attaches BPF to oom:mark_victim and oom:finish_task_reaping (they fire only at kills), to
sched:sched_process_fork (every fork on the host: one LRU-map update) and, for the kernel
snapshot, to the raw tracepoint signal_generate (every signal sent on the host: the program
returns unless it is a SIGKILL; bpf/memcg_snapshot.c), and samples cgroupfs. So the costs worth
measuring are:

1. fork: a loop of fork()+_exit()+waitpid(), timed without and with record running, in
   interleaved rounds (this machine's noise is as large as the effect: docs/kernel-facts.md). Reports
   the min and median of the per-round ratios.
2. signals: a loop of kill(self, SIGUSR1) with SIGUSR1 ignored (the kernel still generates it and
   fires signal_generate: kernel/signal.c), timed the same way: the snapshot program's cost on a
   signal that is not a SIGKILL. (A SIGKILL's snapshot is timed by the program itself: took_ns,
   bench/snapshot_accuracy.py.)
3. the collector's own CPU: record's user+system time over an idle interval, as % of one core.

Run as root after ./setup.sh:  /opt/oomscope/venv/bin/python bench/record_overhead.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def fork_loop(n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return time.perf_counter() - t


def signal_loop(n: int) -> float:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    me = os.getpid()
    t = time.perf_counter()
    for _ in range(n):
        os.kill(me, signal.SIGUSR1)
    return time.perf_counter() - t


def _said(what: str, off, on, n: int) -> None:
    ratios = [b / a for a, b in zip(off, on)]
    print(f"  without record: median {statistics.median(off) * 1e6 / n:.2f} us/{what}, min {min(off) * 1e6 / n:.2f}")
    print(f"  with record:    median {statistics.median(on) * 1e6 / n:.2f} us/{what}, min {min(on) * 1e6 / n:.2f}")
    print(f"  ratio with/without: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, min-to-min {min(on) / min(off):.3f}")


def start_record(out: str) -> subprocess.Popen:
    err = open(os.path.join(out, "record.err"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills")],
                            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while True:
        err.seek(0)
        if "recording OOM kills" in err.read():
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("record did not start")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--forks", type=int, default=3000)
    ap.add_argument("--signals", type=int, default=200000)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    fork_loop(300)  # warm up
    signal_loop(10000)
    off, on, sig_off, sig_on = [], [], [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            off.append(fork_loop(args.forks))
            sig_off.append(signal_loop(args.signals))
            rec = start_record(out)
            try:
                time.sleep(1.0)
                on.append(fork_loop(args.forks))
                sig_on.append(signal_loop(args.signals))
            finally:
                stop(rec)
        print(f"fork+exit+wait x{args.forks}, {args.rounds} interleaved rounds")
        _said("fork", off, on, args.forks)
        print(f"kill(self, SIGUSR1), ignored, x{args.signals}, the same rounds")
        _said("signal", sig_off, sig_on, args.signals)

        rec = start_record(out)
        try:
            time.sleep(2.0)
            c0, t0 = cpu_seconds(rec.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            c1, t1 = cpu_seconds(rec.pid), time.monotonic()
        finally:
            stop(rec)
        print(f"record idle for {t1 - t0:.0f} s: {100 * (c1 - c0) / (t1 - t0):.2f}% of one core")


if __name__ == "__main__":
    main()
