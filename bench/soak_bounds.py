#!/usr/bin/env python3
"""What the recorder keeps per kill of a new workload, up to each structure's cap (issue 24's soak).

In the soak (bench/soak.py) every kill is a new pod, so each structure that keeps something per
workload or per kill fills while the hour runs: resident memory that rises and then stops. Each
is filled here to its cap with the soak's names (kubepods paths, pod uids, container ids), in
this process, and its Python memory measured with tracemalloc: the prometheus series (kills by
label set, the last-kill series), the per-workload token buckets (record/budget.py), the list of
recorded kills run() returns, the joiner's recent pids, and per kill folder on disk the ledger's
entry (record/retention.py: it mirrors the folders on disk, so it is bounded by --keep or the
disk, not by a count). Printed: each one's size at its cap, the kills it takes to reach it, and
the time at the soak's rate (--kills-per-hour, 720).

    /opt/oomscope/venv/bin/python bench/soak_bounds.py [--kills-per-hour 720]
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import sys
import tracemalloc
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from oomscope.metrics import MAX_LAST_KILLS, MAX_SERIES, Metrics  # noqa: E402
from oomscope.model import Capture, CgroupInfo, Times, Victim, Workload  # noqa: E402
from oomscope.record.budget import MAX_WORKLOADS, Budget, workload_key  # noqa: E402
from oomscope.record.collector import RECORDED_KEPT, RecordedKill  # noqa: E402
from oomscope.record.joiner import RECENT_KEPT, KillJoiner  # noqa: E402
from oomscope.record.retention import Ledger  # noqa: E402


def soak_kill(i: int):
    """A kill as the soak makes them: a new Burstable pod's container each time."""
    pod = str(uuid.uuid4())
    cid = secrets.token_hex(32)
    cg = (f"/oomscope-soak-12345-abcdef/kubepods.slice/kubepods-burstable.slice/"
          f"kubepods-burstable-pod{pod.replace('-', '_')}.slice/cri-containerd-{cid}.scope")
    wl = Workload(kind="kubernetes", pod_uid=pod, container_id=cid, runtime="containerd", qos="Burstable")
    cap = Capture(kill_id=f"2026-12-06T12-00-00.{i:06d}Z-{100000 + i}-python3", victim=Victim(100000 + i, "python3"),
                  cgroup=CgroupInfo(version=1, oom_memcg=cg, task_memcg=cg), workload=wl,
                  times=Times(kill_wall=f"2026-12-06T12:00:00.{i % 1000:03d}+00:00"))
    return cap


def measure(fill) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = fill()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return after - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills-per-hour", type=float, default=720.0)
    args = ap.parse_args()
    caps = [soak_kill(i) for i in range(max(RECORDED_KEPT, MAX_WORKLOADS) + 1)]
    rows = []

    def metrics():
        m = Metrics()
        for c in caps[:MAX_SERIES + 1]:
            m.kill(c, "leak", f"/var/lib/oomscope/{c.kill_id}/postmortem.html")
        return m

    rows.append((f"prometheus: {MAX_SERIES} kill series + {MAX_LAST_KILLS} last-kill series", MAX_SERIES, measure(metrics)))

    def budget():
        b = Budget()
        for c in caps[:MAX_WORKLOADS]:
            b.admit(workload_key(c.workload, c.cgroup), c.times.kill_wall)
        return b

    rows.append((f"budget: {MAX_WORKLOADS} workloads' buckets (new workloads within a minute: a bucket refilled "
                 f"since is forgotten)", MAX_WORKLOADS, measure(budget)))
    clock = [0.0]
    paced = Budget(clock=lambda: clock[0])
    for c in caps[:MAX_WORKLOADS]:
        clock[0] += 3600 / args.kills_per_hour
        paced.admit(workload_key(c.workload, c.cgroup), c.times.kill_wall)
    print(f"budget at the soak's pace ({args.kills_per_hour:.0f} kills/h, each a new workload): "
          f"{len(paced._buckets)} buckets kept after {MAX_WORKLOADS} kills")

    def recorded():
        d = collections.deque(maxlen=RECORDED_KEPT)
        for c in caps[:RECORDED_KEPT]:
            folder = f"/var/lib/oomscope/{c.kill_id}"
            d.append(RecordedKill(c.kill_id, c.cgroup.oom_memcg, folder + "/capture.json", folder + "/postmortem.html"))
        return d

    rows.append((f"recorded kills run() returns: {RECORDED_KEPT}", RECORDED_KEPT, measure(recorded)))

    def joiner():
        j = KillJoiner()
        for i in range(RECENT_KEPT):
            j._recent[100000 + i] = (10**15 + i, 10**12 + i)  # (printk time, when written)
        return j

    rows.append((f"joiner: recent pids ({RECENT_KEPT:,}, then the last minute's)", RECENT_KEPT, measure(joiner)))

    def ledger():
        led = Ledger()
        for c in caps[:1000]:
            led.add(c.kill_id, workload_key(c.workload, c.cgroup))
        return led

    per_folder = measure(ledger) / 1000
    for what, n, size in rows:
        print(f"{what}: {size / 2**20:.2f} MiB ({size / n:.0f} B each), full after {n} kills of new workloads "
              f"= {n / args.kills_per_hour:.1f} h at {args.kills_per_hour:.0f} kills/h")
    print(f"ledger (only with --keep or --workload-disk): {per_folder:.0f} B per kill folder on disk "
          f"= {per_folder * args.kills_per_hour / 2**20:.2f} MiB/h at {args.kills_per_hour:.0f} kills/h, as long as the folders stay")
    total = sum(size for _w, _n, size in rows)
    print(f"soak_bounds: all caps together {total / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
