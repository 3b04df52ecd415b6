#!/usr/bin/env python3
"""What growth-site sampling (issue 27, record/sites.py, bpf/alloc_sites.c) costs a page-fault storm.

A C program maps 8 MiB, writes every page, unmaps, for SECONDS, and prints its CPU time per fault.
It runs in a sandbox cgroup (limit 256 MiB) under five conditions, interleaved round by round:

  none          no record at all
  record-far    record running, no cgroup near its limit: nothing attached (the storm's cgroup 4% full)
  near-watched  record running, the storm's own cgroup held at ~84% of its limit by a second process:
                sampling attached, the storm's faults sampled (its CPU is the "faulting workload's"); the
                page-fault hook on 0.2 s of every second (record/sites.py DUTY_ON_S)
  near-watched-always  as near-watched, the hook on all the time (OOMSCOPE_SITES_DUTY=1/1: as before the duty)
  near-other    record running, another sandbox cgroup at ~84%: sampling attached, the storm not watched
  near-watched-perf  (--perf) as near-watched-always, with the sampled software perf event (OOMSCOPE_FAULT_SAMPLING=perf)

record runs with --cgroup the bench's own root cgroup, so other work on the host is not sampled.
Each condition's CPU ns per fault against "none": min-to-min and median-to-median ratios.

--bpf-stats: the kernel's own count of what record's BPF programs cost (sysctl
kernel.bpf_stats_enabled=1 for the run, put back after: kernel/bpf/syscall.c counts each program's
runs and the nanoseconds spent in them, kernel/bpf's __bpf_prog_run; read here for the programs
record holds, by their ids in /proc/RECORD/fdinfo). Per condition: the programs' calls per fault
of the storm, ns per call, and their time as a share of the storm's CPU: the cost of the hook
measured apart from the machine's noise (the tracepoint's own dispatch, before the program runs,
is not in it). The counting adds two clock reads to every run, so the CPU ratios of such a run are
an upper bound.

Run as root after ./setup.sh, on a quiet machine:
  flock /tmp/oomscope-heavy.lock /opt/oomscope/venv/bin/python bench/alloc_sites.py [--rounds 7] [--seconds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup

STORM_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
int main(int argc, char **argv) {
    double secs = atof(argv[1]); size_t size = (size_t)atoi(argv[2]) << 20;
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    long pages = 0;
    for (;;) {
        volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t o = 0; o < size; o += 4096) p[o] = 1;
        munmap((void *)p, size);
        pages += size / 4096;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs) break;
    }
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%ld %.6f\n", pages, cpu);
    return 0;
}
"""
# holds 84% of the limit, then grows 1 MiB a second (16 MiB at most): record samples a cgroup near
# its limit only while it grows (record/sites.py MIN_GROWTH_PER_S)
HOLD = ("import sys, time\nb = bytearray(int(sys.argv[1]))\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "print('held', flush=True)\nmore = []\nfor _ in range(16):\n    time.sleep(1)\n    more.append(bytearray(1 << 20))\n"
        "time.sleep(3600)\n")
LIMIT = 256 << 20
HOLD_BYTES = int(0.84 * LIMIT)
STORM_MIB = 8


def in_cgroup(fs_path, argv, **kw):
    return subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                             os.path.join(fs_path, "cgroup.procs"), *argv], **kw)


class Record:
    def __init__(self, root: str, out: str, env=None):
        self.err_path = os.path.join(out, f"record-{time.monotonic_ns()}.err")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"),
                                      "--cgroup", root], stdout=subprocess.DEVNULL, stderr=self.err,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + 120
        while "oomscope: sampling" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"record did not start: {self.text()[-2000:]}")
            time.sleep(0.1)

    def text(self) -> str:
        with open(self.err_path) as f:
            return f.read()

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def storm_run(binary: str, fs_path: str, seconds: float) -> tuple:
    """(faults, CPU seconds) of one storm run in the cgroup."""
    p = in_cgroup(fs_path, [binary, str(seconds), str(STORM_MIB)], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=seconds + 60)
    pages, cpu = out.split()
    return int(pages), float(cpu)


def storm(binary: str, fs_path: str, seconds: float) -> float:
    """CPU ns per fault of one storm run in the cgroup."""
    pages, cpu = storm_run(binary, fs_path, seconds)
    return cpu / pages * 1e9


# uapi/linux/bpf.h: BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, and struct bpf_prog_info's
# offsets (checked against this host's header: id 4, name 64, run_time_ns 192, run_cnt 200)
_BPF_PROG_GET_FD_BY_ID, _BPF_OBJ_GET_INFO_BY_FD = 13, 15
_SYS_BPF = 321  # x86-64
_INFO_SIZE = 232
_libc = ctypes.CDLL(None, use_errno=True)


def prog_stats(pid: int) -> dict:
    """{program name: (run_time_ns, run_cnt)} of the BPF programs process ``pid`` holds (summed by
    name: one program attached to several tracepoints is one entry)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
    out: dict = {}
    for prog_id in ids:
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
        fd = _libc.syscall(_SYS_BPF, _BPF_PROG_GET_FD_BY_ID, attr, 128)
        if fd < 0:
            continue  # gone since
        try:
            info = ctypes.create_string_buffer(_INFO_SIZE)
            attr = ctypes.create_string_buffer(128)
            ctypes.c_uint32.from_buffer(attr, 0).value = fd          # bpf_fd
            ctypes.c_uint32.from_buffer(attr, 4).value = _INFO_SIZE  # info_len
            ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
            if _libc.syscall(_SYS_BPF, _BPF_OBJ_GET_INFO_BY_FD, attr, 128) != 0:
                continue
            name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
            ns = ctypes.c_uint64.from_buffer(info, 192).value
            cnt = ctypes.c_uint64.from_buffer(info, 200).value
            t, c = out.get(name, (0, 0))
            out[name] = (t + ns, c + cnt)
        finally:
            os.close(fd)
    return out


@contextlib.contextmanager
def bpf_stats_enabled(on: bool):
    """kernel.bpf_stats_enabled=1 while inside (put back as it was after)."""
    path = "/proc/sys/kernel/bpf_stats_enabled"
    if not on:
        yield
        return
    with open(path) as f:
        before = f.read().strip()
    with open(path, "w") as f:
        f.write("1")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--perf", action="store_true", help="also the sampled perf event (1.06x when last measured)")
    ap.add_argument("--bpf-stats", action="store_true", help="the kernel's count of record's BPF programs' runs and time")
    args = ap.parse_args()
    with bpf_stats_enabled(args.bpf_stats):
        run(args)


def run(args) -> None:
    hier = MemoryHierarchy.detect()
    root = f"/oomscope-bench-sites-{os.getpid()}"
    made = [create_cgroup(hier, root, 8 << 30)]
    holder = None
    try:
        storm_cg = create_cgroup(hier, root + "/storm", LIMIT)
        other_cg = create_cgroup(hier, root + "/other", LIMIT)
        made += [storm_cg, other_cg]
        work = tempfile.mkdtemp(prefix="oomscope-bench-sites-")
        with open(os.path.join(work, "storm.c"), "w") as f:
            f.write(STORM_C)
        binary = os.path.join(work, "storm")
        subprocess.run([shutil.which("gcc") or "cc", "-O2", "-o", binary, os.path.join(work, "storm.c")], check=True)
        results = {}
        attached = {}
        rec_cpu = {}
        prog_cost: dict = {}  # condition -> program -> [ns, runs, storm faults, storm CPU s], summed over rounds
        for rnd in range(args.rounds):
            conds = ["none", "record-far", "near-watched", "near-watched-always", "near-other"]
            for cond in conds + (["near-watched-perf"] if args.perf else []):
                rec = None
                if cond.startswith("near"):
                    where = storm_cg if cond.startswith("near-watched") else other_cg
                    holder = in_cgroup(where, [sys.executable, "-c", HOLD, str(HOLD_BYTES)], stdout=subprocess.PIPE, text=True)
                    holder.stdout.readline()
                if cond != "none":
                    env = ({"OOMSCOPE_FAULT_SAMPLING": "perf", "OOMSCOPE_SITES_DUTY": "1/1"} if cond.endswith("perf") else
                           {"OOMSCOPE_SITES_DUTY": "1/1"} if cond.endswith("always") else None)
                    rec = Record(root, work, env=env)
                    if cond.startswith("near"):
                        deadline = time.monotonic() + 30
                        while "sampling attached" not in rec.text() and time.monotonic() < deadline:
                            time.sleep(0.1)
                    time.sleep(0.5)
                cpu0 = rec.cpu_s() if rec else 0.0
                stats0 = prog_stats(rec.proc.pid) if rec and args.bpf_stats else {}
                faults, storm_cpu = storm_run(binary, storm_cg, args.seconds)
                results.setdefault(cond, []).append(storm_cpu / faults * 1e9)
                if stats0:
                    stats1 = prog_stats(rec.proc.pid)
                    for name, (ns, cnt) in stats1.items():
                        ns0, cnt0 = stats0.get(name, (0, 0))
                        if cnt > cnt0:
                            acc = prog_cost.setdefault(cond, {}).setdefault(name, [0, 0, 0, 0.0])
                            acc[0] += ns - ns0
                            acc[1] += cnt - cnt0
                            acc[2] += faults
                            acc[3] += storm_cpu
                if rec is not None:
                    rec_cpu.setdefault(cond, []).append((rec.cpu_s() - cpu0) / args.seconds * 100)
                    attached.setdefault(cond, []).append("sampling attached" in rec.text())
                    rec.stop()
                if holder is not None:
                    holder.kill()
                    holder.wait()
                    holder = None
            print(f"round {rnd + 1}: " + ", ".join(f"{c} {v[-1]:.0f}" for c, v in results.items()), flush=True)
        base = results["none"]
        print(f"\nstorm: {STORM_MIB} MiB mapped, touched and unmapped in a loop, {args.seconds} s a run, {args.rounds} rounds "
              f"interleaved; CPU ns per fault (user + system) of the storm")
        print("| condition | ns/fault min | median | ratio min/min | ratio median/median | paired: median of the rounds' ratios "
              "| sampling attached | record CPU % of a core (median) |")
        print("|---|---|---|---|---|---|---|---|")
        for cond, v in results.items():
            att = attached.get(cond)
            rc = rec_cpu.get(cond)
            # each round's run against the same round's "none" (run a few seconds apart): the
            # machine's load drifts between rounds more than within one
            paired = statistics.median(x / b for x, b in zip(v, base))
            print(f"| {cond} | {min(v):.0f} | {statistics.median(v):.0f} | {min(v) / min(base):.3f} | "
                  f"{statistics.median(v) / statistics.median(base):.3f} | {paired:.3f} | "
                  f"{'-' if att is None else f'{sum(att)}/{len(att)}'} | {'-' if rc is None else f'{statistics.median(rc):.1f}'} |")
        if args.bpf_stats:
            print("\nrecord's BPF programs during the storms (kernel.bpf_stats_enabled), summed over the rounds:")
            print("| condition | program | runs per storm fault | ns per run | share of the storm's CPU |")
            print("|---|---|---|---|---|")
            for cond, progs in prog_cost.items():
                for name, (ns, cnt, faults, cpu) in sorted(progs.items(), key=lambda kv: -kv[1][0]):
                    print(f"| {cond} | {name} | {cnt / faults:.3f} | {ns / cnt:.1f} | {ns / (cpu * 1e9) * 100:.2f}% |")
        shutil.rmtree(work, ignore_errors=True)
    finally:
        if holder is not None:
            with contextlib.suppress(Exception):
                holder.kill()
                holder.wait()
        for path in reversed(made):
            remove_cgroup(path)


if __name__ == "__main__":
    main()
