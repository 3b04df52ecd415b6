#!/usr/bin/env python3
"""What the growth-site hook itself costs a page-fault storm (issue 27), without record around it.

bench/alloc_sites.py measures record as a whole (its start-up, its sampler, the holder process);
this takes record away and attaches bpf/alloc_sites.c's programs (probes.AllocSiteProbes) and an
empty one by hand around bench/alloc_sites.py's storm (8 MiB mapped, written, unmapped in a loop,
in a sandbox cgroup), the conditions interleaved round by round:

  none                no program attached
  tp_empty            a raw tracepoint on exceptions:page_fault_user whose program returns at once
  tp_lookup           the same, looking its pid up in a hash map first
  tp_cur_watched      on_fault_tp, the storm watched: one fault in PERIOD sampled, stacks stored
  tp_duty_watched     the same on 0.2 s of every second, one fault in PERIOD/5 (record/sites.py's duty)
  tp_duty10_watched   the same on 0.1 s of every second, one fault in PERIOD/10
  tp_empty_duty       tp_empty on 0.2 s of every second (tp_empty_duty_long: 1 s of every 5)
  perf_cpu_watched    on_fault_sample on a software page-fault perf event per CPU, sample_period PERIOD
  perf_task_watched   the same, opened for the storm's pid only

Each condition's CPU ns per fault against "none": min/min, median/median, and the median of each
round's ratio to its own "none" (paired). Root, after ./setup.sh, on a quiet machine:

  CONDS=none,tp_empty,tp_cur_watched,tp_duty_watched ROUNDS=10 SECS=4 PERIOD=64 \\
      flock /tmp/oomscope-heavy.lock env PYTHONPATH=. /opt/oomscope/venv/bin/python bench/fault_hook.py
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alloc_sites import STORM_C, in_cgroup  # noqa: E402

from oomscope import probes  # noqa: E402
from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup  # noqa: E402

SECS = float(os.environ.get("SECS", "2"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
PERIOD = int(os.environ.get("PERIOD", "64"))
CONDS = os.environ.get("CONDS", "none,tp_empty,tp_lookup,tp_cur_watched,tp_duty_watched,perf_cpu_watched,"
                       "perf_task_watched").split(",")
EMPTY = """
#include <uapi/linux/bpf_perf_event.h>
int e(struct bpf_raw_tracepoint_args *ctx) { return 0; }
BPF_HASH(w, u32, u32, 16384);
int l(struct bpf_raw_tracepoint_args *ctx) { u32 t = bpf_get_current_pid_tgid() >> 32; return w.lookup(&t) ? 1 : 0; }
"""
DUTY = {"tp_duty_watched": (0.2, 1.0), "tp_duty10_watched": (0.1, 1.0), "tp_empty_duty": (0.2, 1.0),
        "tp_empty_duty_long": (1.0, 5.0)}


def main() -> None:
    work = tempfile.mkdtemp(prefix="oomscope-bench-hook-")
    with open(os.path.join(work, "s.c"), "w") as f:  # the storm waits for a line, so the hook is on first
        f.write(STORM_C.replace("int main(int argc, char **argv) {", "int main(int argc, char **argv) { getchar();"))
    binary = os.path.join(work, "s")
    subprocess.run(["gcc", "-O2", "-o", binary, os.path.join(work, "s.c")], check=True)
    hier = MemoryHierarchy.detect()
    tp = probes.AllocSiteProbes(mode="tracepoint")  # sets up the kernel headers bcc compiles with
    pf = probes.AllocSiteProbes(mode="perf")
    from bcc import BPF
    empty = BPF(text=EMPTY)
    period_table = tp.bpf["sample_period"]

    def set_period(n: int) -> None:
        period_table[period_table.Key(0)] = period_table.Leaf(max(1, n))

    def run(cond: str) -> float:
        p = in_cgroup(cg, [binary, str(SECS), "8"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(0.05)
        stop = threading.Event()
        undo = []
        set_period(PERIOD)
        if cond in ("tp_empty", "tp_lookup"):
            empty.attach_raw_tracepoint(tp=b"page_fault_user", fn_name=b"e" if cond == "tp_empty" else b"l")
            undo.append(lambda: empty.detach_raw_tracepoint(tp=b"page_fault_user"))
        elif cond == "tp_cur_watched":
            tp.watch({p.pid})
            tp.bpf.attach_raw_tracepoint(tp=b"page_fault_user", fn_name=b"on_fault_tp")
            undo.append(lambda: tp.bpf.detach_raw_tracepoint(tp=b"page_fault_user"))
        elif cond in DUTY:
            on, cycle = DUTY[cond]
            bpf, fn = (empty, b"e") if cond.startswith("tp_empty") else (tp.bpf, b"on_fault_tp")
            if bpf is tp.bpf:
                tp.watch({p.pid})
                set_period(round(PERIOD * on / cycle))

            def duty():
                while not stop.is_set():
                    bpf.attach_raw_tracepoint(tp=b"page_fault_user", fn_name=fn)
                    stop.wait(on)
                    bpf.detach_raw_tracepoint(tp=b"page_fault_user")
                    stop.wait(cycle - on)
            th = threading.Thread(target=duty)
            th.start()
            undo.append(lambda: (stop.set(), th.join()))
        elif cond in ("perf_cpu_watched", "perf_task_watched"):
            pf.watch({p.pid})
            pf.bpf.attach_perf_event(ev_type=1, ev_config=2, fn_name=b"on_fault_sample", sample_period=PERIOD,
                                     pid=p.pid if cond == "perf_task_watched" else -1)
            undo.append(lambda: pf.bpf.detach_perf_event(ev_type=1, ev_config=2))
        p.stdin.write("\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=SECS + 60)
        for u in undo:
            u()
        tp.watch(set())
        pf.watch(set())
        pages, cpu = out.split()
        return float(cpu) / int(pages) * 1e9

    res = {c: [] for c in CONDS}
    # made once the programs are compiled, removed in the finally: a compile that fails leaves nothing
    cg = create_cgroup(hier, f"/oomscope-bench-hook-{os.getpid()}", 256 << 20)
    try:
        for r in range(ROUNDS):
            for c in CONDS:
                res[c].append(run(c))
            print(f"round {r + 1}: " + " ".join(f"{c}={v[-1]:.0f}" for c, v in res.items()), flush=True)
    finally:
        remove_cgroup(cg)
        shutil.rmtree(work, ignore_errors=True)
    base = res["none"]
    print(f"\nperiod {PERIOD}, {SECS} s a run, {ROUNDS} rounds interleaved; CPU ns per fault of the storm")
    print("| condition | min | median | min/min | median/median | paired median |")
    print("|---|---|---|---|---|---|")
    for c, v in res.items():
        print(f"| {c} | {min(v):.0f} | {statistics.median(v):.0f} | {min(v) / min(base):.3f} | "
              f"{statistics.median(v) / statistics.median(base):.3f} | {statistics.median(x / b for x, b in zip(v, base)):.3f} |")


if __name__ == "__main__":
    main()
