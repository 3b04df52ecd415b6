#!/usr/bin/env python3
"""How exact the memcg snapshot (bpf/memcg_snapshot.c) is: against the kernel's own OOM report,
on every kill that has one, key by key.

Runs SINGLES python hogs one after another in a 64 MiB sandbox cgroup (each killed alone), then a
stress-ng storm (2 vm workers, 200M in all, in a 96 MiB cgroup, STORM_S seconds). For each kill
with a full report: the snapshot's level whose cgroup id is the report's oom_memcg, in two views
(exact: with the per-CPU deltas not yet flushed; flushed: without them), against the report's
memory.stat, usage and failcnt.

A storm's report and its SIGKILL can see different moments: dump_header() prints the report,
then __oom_kill_process() sends the SIGKILL (mm/oom_kill.c), and meanwhile earlier victims free
their memory. The page counter's usage is exact in both (an atomic, no batching), so
|usage(snapshot) - usage(report)| measures how far the two moments are apart; kills are grouped
by the time since the previous kill (>= 100 ms: the cgroup stood still between report and kill).

Run as root after ./setup.sh:  /opt/oomscope/venv/bin/python bench/snapshot_accuracy.py [--singles 5]
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oomscope import probes  # noqa: E402
from oomscope.kernel import headers  # noqa: E402
from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup  # noqa: E402
from oomscope.kernel.kmsg import KmsgFollower, KmsgReader  # noqa: E402
from oomscope.kernel.oom_report import OomReportParser  # noqa: E402
from oomscope.kernel.memcg_layout import unit_of  # noqa: E402
from oomscope.record import snapshot as snap_mod  # noqa: E402
from oomscope.units import within_target  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
HOG = "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


def run_in(fs_path, argv, timeout):
    return subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                           os.path.join(fs_path, "cgroup.procs"), *argv], capture_output=True, timeout=timeout)


def compare_kill(rep, snap, inos, version):
    cg = rep.summary.oom_memcg if rep.summary is not None and rep.summary.oom_memcg else rep.stats_cgroup
    ino = inos.get(cg)
    idx = snap_mod.level_of(snap, ino)
    if idx is None:
        return None
    lv = snap.levels[idx]
    out = {"pid": rep.killed.pid, "cgroup": cg, "usec": rep.killed_usec,
           "usage_diff_kib": (lv.usage_pages * PAGE - rep.memory.usage_kb * 1024) // 1024,
           "failcnt_diff": lv.failcnt - rep.memory.failcnt,
           # what a read without the per-CPU deltas misses, over the path up to this level (pages)
           "unflushed_kib": sum(abs(v) for below in snap.levels[:idx + 1] for k, v in below.unflushed.items()
                                if unit_of(k, PAGE) == PAGE) * PAGE // 1024}
    for view in (snap_mod.EXACT, snap_mod.FLUSHED):
        stat = snap_mod.memory_stat(snap, idx, version, PAGE, view)
        rows = snap_mod.compare(stat, rep.memory_stat)
        out[view] = {"keys": len(rows), "missing": sorted(k for k in rep.memory_stat if k not in stat and snap_mod_size(k)),
                     "worst": rows[0][0] if rows else None, "worst_diff_kib": rows[0][3] // 1024 if rows else 0,
                     "outside": [(k, s, r) for k, s, r, _d in rows if not within_target(s, r)]}
    return out


def _spread(values):
    if not values:
        return None
    values = sorted(values)
    return {"min": round(values[0], 1), "median": round(values[len(values) // 2], 1), "max": round(values[-1], 1)}


def snap_mod_size(key):
    from oomscope.kernel.memcg_layout import is_size_key

    return is_size_key(key)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--singles", type=int, default=5)
    ap.add_argument("--storm-s", type=float, default=5.0)
    ap.add_argument("--limit-mib", type=int, default=64)
    args = ap.parse_args()
    h = headers.find_headers()
    headers.apply_headers(h)
    hier = MemoryHierarchy.detect()
    layout = probes.memcg_snapshot_layout(hier.version)
    t0 = time.monotonic()
    snapper = probes.MemcgSnapshotter(layout, probes.learning_activity())
    load_s = time.monotonic() - t0
    follower = KmsgFollower(KmsgReader())
    parser = OomReportParser()
    reports, snaps = [], {}

    def collect():
        for rec in follower.take():
            reports.extend(parser.feed(rec))
        for s in snapper.drain():
            snaps.setdefault(s.pid, s)

    made, inos = [], {}
    try:
        name = f"/oomscope-lab-snap-{os.getpid()}"
        path = create_cgroup(hier, name, args.limit_mib << 20)
        made.append(path)
        inos[name] = os.stat(path).st_ino
        for _ in range(args.singles):
            run_in(path, [sys.executable, "-c", HOG], 60)
            time.sleep(0.3)
            collect()
        storm_kills = 0
        if shutil.which("stress-ng"):
            time.sleep(5.5)  # the report's rate limit (10 per 5 s) starts afresh for the storm
            scratch = tempfile.mkdtemp(prefix="oomscope-lab-")  # stress-ng's temp path: the cwd is read-only in the VMs
            sname = f"/oomscope-lab-snapstorm-{os.getpid()}"
            spath = create_cgroup(hier, sname, 96 << 20)
            made.append(spath)
            inos[sname] = os.stat(spath).st_ino
            proc = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                                     os.path.join(spath, "cgroup.procs"), "stress-ng", "--vm", "2", "--vm-bytes", "200M",
                                     "--timeout", f"{args.storm_s}s", "-q", "--temp-path", scratch], cwd=scratch,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.monotonic() + args.storm_s * 4 + 30
            while proc.poll() is None and time.monotonic() < end:
                collect()
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            time.sleep(1.0)
        collect()
    finally:
        for p in reversed(made):
            remove_cgroup(p)
        snapper.close()
    killed = [r for r in reports if r.killed is not None]
    storm_kills = sum(1 for r in killed if "snapstorm" in ((r.summary.oom_memcg if r.summary else None) or r.stats_cgroup or "stress"))
    prev_usec = None
    rows = []
    for r in sorted(killed, key=lambda r: r.killed_usec or 0):
        gap_ms = (r.killed_usec - prev_usec) / 1000 if prev_usec is not None and r.killed_usec else None
        prev_usec = r.killed_usec
        if not r.has_header or r.memory is None:
            continue
        s = snaps.get(r.killed.pid)
        if s is None:
            rows.append({"pid": r.killed.pid, "no_snapshot": True})
            continue
        row = compare_kill(r, s, inos, hier.version)
        if row is not None:
            row["gap_ms"] = gap_ms
            row["storm"] = "snapstorm" in row["cgroup"]
            rows.append(row)
    spaced = [r for r in rows if "exact" in r and (r["gap_ms"] is None or r["gap_ms"] >= 100)]
    close = [r for r in rows if "exact" in r and r not in spaced]

    def summary(group, view):
        if not group:
            return None
        worst = max(group, key=lambda r: r[view]["worst_diff_kib"])
        return {"kills": len(group), "worst_key": worst[view]["worst"], "worst_diff_kib": worst[view]["worst_diff_kib"],
                "kills_outside_target": sum(1 for r in group if r[view]["outside"]),
                "outside_examples": [r[view]["outside"][:3] for r in group if r[view]["outside"]][:3],
                "max_usage_diff_kib": max(abs(r["usage_diff_kib"]) for r in group),
                "max_unflushed_kib": max(r["unflushed_kib"] for r in group),
                "max_failcnt_diff": max(abs(r["failcnt_diff"]) for r in group)}

    fixture = None
    for r in sorted(killed, key=lambda r: r.killed_usec or 0):
        s = snaps.get(r.killed.pid)
        if r.has_header and r.memory is not None and s is not None:
            cg = r.summary.oom_memcg if r.summary is not None and r.summary.oom_memcg else r.stats_cgroup
            fixture = {"kernel": os.uname().release, "cgroup_version": hier.version, "page_size": PAGE,
                       "oom_memcg": cg, "oom_memcg_ino": inos.get(cg), "snapshot": dataclasses.asdict(s),
                       "report": {"usage_kb": r.memory.usage_kb, "limit_kb": r.memory.limit_kb,
                                  "failcnt": r.memory.failcnt, "memory_stat": r.memory_stat}}
            break
    print(json.dumps({
        "kernel": os.uname().release, "cgroup_version": hier.version, "slot_scheme": layout.slot_scheme,
        "slots_known": len(snapper.slots), "startup": snapper.startup, "load_s": round(load_s, 1),
        "kills_seen": len(killed), "storm_kills": storm_kills, "full_reports": sum(1 for r in killed if r.has_header),
        "snapshots": len(snaps),
        "unflushed_worst_item_kib_any_sigkill": max(((abs(v) * unit_of(k, PAGE) // 1024, k) for s in snaps.values() if s.levels
                                                     for k, v in s.levels[0].unflushed.items()), default=None),
        "took_us": _spread([s.took_ns / 1000 for s in snaps.values()]),
        "depth": _spread([len(s.levels) for s in snaps.values()]),
        "cpus_bad": sum(s.cpus_bad for s in snaps.values()),
        # read again because a stats flush moved the counters during the read; torn: the victim's own
        # level moved during every read (the root's bit moves at any flush anywhere: not counted)
        "reread": sum(1 for s in snaps.values() if s.rereads), "torn": sum(1 for s in snaps.values() if s.torn & 1),
        # every SIGKILL's snapshot (OOM or not): the most a read without the per-CPU deltas would miss
        "unflushed_max_kib_any_sigkill": max((sum(abs(v) for k, v in s.levels[0].unflushed.items() if unit_of(k, PAGE) == PAGE)
                                              * PAGE // 1024 for s in snaps.values() if s.levels), default=None),
        "reports_without_snapshot": sum(1 for r in rows if r.get("no_snapshot")),
        "missing_keys": rows[0]["exact"]["missing"] if rows and "exact" in rows[0] else None,
        "spaced": {v: summary(spaced, v) for v in ("exact", "flushed")},
        "close": {v: summary(close, v) for v in ("exact", "flushed")},
        "rows": rows,
        "fixture": fixture,
    }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
