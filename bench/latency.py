#!/usr/bin/env python3
"""Time from a kill (oom:mark_victim) to its postmortem.html on disk, over an OOM storm.

A parent spared by oom_score_adj=-1000 keeps three children allocating in a 64 MiB sandbox
cgroup for DURATION seconds while record runs; every kill's latency is the post-mortem file's
mtime minus the kill's time in its capture (kill_wall, from bpf_ktime_get_ns). Prints p50/p95.

--near: another sandbox cgroup (256 MiB) held at 84% of its limit and growing (bench/alloc_sites.py's
holder), so that record's growth-site sampling is attached during the storm (issue 27: p95 with
sampling); the storm starts once record says "sampling attached". --compare R: R rounds of both,
without and with --near in turn, each with a fresh record; the kills of each condition pooled.

--quota-compare R [--cpu-quota 50,own,none]: R rounds of the plain storm in each condition in turn:
record (and its post-mortem worker, its child) in a CPU cgroup of its own limited to PCT% of a
core (cpu.cfs_quota_us on v1, cpu.max on v2, period 100 ms: what systemd's CPUQuota= sets,
packaging/oomscope.service), in one of its own without a limit (as systemd runs every unit), and
in the bench's: what the unit's quota does to kill -> post-mortem in a storm.

Run as root after ./setup.sh, on a quiet machine (flock /tmp/oomscope-heavy.lock):
  /opt/oomscope/venv/bin/python bench/latency.py [--duration 6] [--near | --compare 3 [--before DIR]]
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
from typing import Optional

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)  # this checkout's oomscope, not an installed one

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup  # noqa: E402
from storm import run_storm  # noqa: E402 - bench/storm.py
from alloc_sites import HOLD, HOLD_BYTES, LIMIT, in_cgroup  # noqa: E402 - bench/alloc_sites.py



class CpuQuota:
    """A CPU cgroup of the bench's own, limited to ``pct``% of one core (period 100 ms, systemd's
    default CPUQuotaPeriodSec); a process started with ``join`` as its preexec_fn runs in it, and
    its children (record's worker) with it. Removed on exit (its processes gone by then)."""

    PERIOD_US = 100_000

    def __init__(self, pct: Optional[float], shares: Optional[int] = None, period_us: int = PERIOD_US, what: str = "record"):
        name = f"oomscope-bench-cpu-{what}-{os.getpid()}"
        self.v1 = os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        # v2: the cpu controller enabled in the root's subtree_control (else cpu.max is missing)
        self.path = os.path.join("/sys/fs/cgroup/cpu" if self.v1 else "/sys/fs/cgroup", name)
        os.mkdir(self.path)
        try:
            if self.v1:
                self._put("cpu.cfs_period_us", str(period_us))
                self._put("cpu.cfs_quota_us", "-1" if pct is None else str(int(pct / 100 * period_us)))
                if shares is not None:
                    self._put("cpu.shares", str(shares))
            else:
                self._put("cpu.max", f"{'max' if pct is None else int(pct / 100 * period_us)} {period_us}")
                if shares is not None:  # the kubelet's conversion of cpu.shares to cpu.weight
                    self._put("cpu.weight", str(1 + ((shares - 2) * 9999) // 262142))
        except OSError:
            os.rmdir(self.path)  # nothing in it yet
            raise
        self.procs = os.path.join(self.path, "cgroup.procs")

    def _put(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def join(self) -> None:
        with open(self.procs, "w") as f:
            f.write("0")

    def throttled(self) -> str:
        """cpu.stat's nr_throttled / nr_periods and the time throttled (v1 ns, v2 usec)."""
        try:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                st = dict(line.split() for line in f if line.strip())
        except OSError:
            return "?"
        ms = int(st.get("throttled_time", 0)) / 1e6 if "throttled_time" in st else int(st.get("throttled_usec", 0)) / 1e3
        return f"throttled in {st.get('nr_throttled', '?')} of {st.get('nr_periods', '?')} periods, {ms:.0f} ms"

    def remove(self) -> None:
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        print(f"latency: {self.path} left: a process is still in it", file=sys.stderr, flush=True)


def one_run(hier, duration: float, near: bool, checkout: str = HERE, stages: Optional[dict] = None,
            quota: Optional[CpuQuota] = None, storm_cpu: Optional[CpuQuota] = None, after_idle: float = 0.0,
            facts: Optional[dict] = None) -> tuple:
    """([latency seconds of each kill written], sampling attached during the storm); with
    ``stages``, each kill's stages appended to its lists (seconds); with ``quota``, record runs in it;
    with ``facts``, the run's captures counted into it: all, and those without the victim's command
    line (read from /proc at the kill), the kernel's report, the victim's cgroup."""
    root = f"/oomscope-bench-{os.getpid()}"
    made = [create_cgroup(hier, root, 8 << 30)]  # record watches this tree only (--cgroup)
    fs_path = create_cgroup(hier, root + "/storm", 64 << 20)
    made.append(fs_path)
    near_path = create_cgroup(hier, root + "/near", LIMIT) if near else None
    if near_path is not None:
        made.append(near_path)
    holder = None
    proc: Optional[subprocess.Popen] = None
    attached = False
    try:
        with tempfile.TemporaryDirectory() as out:
            err_path = os.path.join(out, "err")
            err = open(err_path, "w+")
            # every kill of the storm written: no storm budget (record/budget.py)
            proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"),
                                     "--workload-burst", "0", "--cgroup", root],
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=checkout,
                                    env=dict(os.environ, PYTHONPATH=checkout,
                                             **({"OOMSCOPE_WORKER_IDLE_EXIT_S": "5"} if after_idle else {})),
                                    preexec_fn=quota.join if quota else None)
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
            if after_idle:  # the worker has left, idle (5 s here): the storm's first kills start it again
                time.sleep(after_idle)
            try:
                run_storm(fs_path, duration, cpu_procs=storm_cpu.procs if storm_cpu else "")
            except subprocess.CalledProcessError as exc:  # its spared parent killed too (a shared host): the kills made stand
                print(f"  the storm ended early: its parent exited with {exc.returncode}", flush=True)
            time.sleep(3.0)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            lat = []
            if facts is None:
                facts = {}
            facts.update(captures=0, no_cmdline=0, no_report=0, no_task_cgroup=0)
            for cap_path in glob.glob(os.path.join(out, "kills", "*", "capture.json")):
                # what record had to read before the victim was gone, and the kernel's report joined
                with open(cap_path) as f:
                    cap = json.load(f)
                facts["captures"] += 1
                facts["no_cmdline"] += not (cap.get("victim") or {}).get("cmdline")
                facts["no_report"] += not cap.get("kernel_report")
                facts["no_task_cgroup"] += not (cap.get("cgroup") or {}).get("task_memcg")
                html = os.path.join(os.path.dirname(cap_path), "postmortem.html")
                if not os.path.exists(html):
                    continue
                kill = dt.datetime.fromisoformat(cap["times"]["kill_wall"]).timestamp()
                lat.append(os.stat(html).st_mtime - kill)
                if stages is not None and cap["times"].get("captured_wall"):
                    captured = dt.datetime.fromisoformat(cap["times"]["captured_wall"]).timestamp()
                    stages.setdefault("capture", []).append(captured - kill)
                    stages.setdefault("write", []).append(os.stat(cap_path).st_mtime - captured)
                    stages.setdefault("post-mortem", []).append(os.stat(html).st_mtime - os.stat(cap_path).st_mtime)
    finally:
        if proc is not None and proc.poll() is None:  # a run cut short: not left running (nor in a CPU cgroup of ours)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if holder is not None:
            holder.kill()
            holder.wait()
        for path in reversed(made):
            remove_cgroup(path)
    return lat, attached


def _p(values: list, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def stages_line(stages: dict) -> str:
    return "stages p50 / p95 / max ms: " + ", ".join(f"{k} {1000 * _p(v, 0.5):.0f} / {1000 * _p(v, 0.95):.0f} / {1000 * max(v):.0f}"
                                                   for k, v in stages.items() if v)


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
    ap.add_argument("--before", metavar="DIR", help="with --compare: another checkout's record too, alternating with this one's")
    ap.add_argument("--quota-compare", type=int, default=0, metavar="R", help="R rounds of each --cpu-quota condition in turn")
    ap.add_argument("--cpu-quota", default="50,own,none", metavar="LIST",
                    help="conditions: PCT (record in a CPU cgroup of its own limited to PCT%% of a core; 50: the unit's), "
                         "own (its own, no limit), shares:N (its own, cpu.shares N: a pod's CPU request in millicores "
                         "x 1.024, the DaemonSet's 20m is 20), none (the bench's); PCT/MS: a quota over a period of MS ms; "
                         "default 50,own,none")
    ap.add_argument("--after-idle", type=float, default=0.0, metavar="S",
                    help="with --quota-compare: the storm S seconds after record's start, its worker's idle exit set to 5 s "
                         "(OOMSCOPE_WORKER_IDLE_EXIT_S): the storm's first kills start it again")
    ap.add_argument("--storm-shares", type=int, default=0, metavar="N",
                    help="with --quota-compare: the storm in a CPU cgroup of its own, cpu.shares N (a pod's request)")
    args = ap.parse_args()
    hier = MemoryHierarchy.detect()
    if args.quota_compare:
        return quota_compare(hier, args)
    if not args.compare:
        lat, attached = one_run(hier, args.duration, args.near)
        if len(lat) < 30:
            raise SystemExit(f"only {len(lat)} kills: not a storm")
        print(summary(lat) + (f"; sampling attached: {attached}" if args.near else ""))
        return
    codes = [("after", HERE), ("before", os.path.abspath(args.before))] if args.before else [("this", HERE)]
    pooled: dict = {(c, near): [] for c, _ in codes for near in (False, True)}
    parts: dict = {(c, near): {} for c, _ in codes for near in (False, True)}
    for r in range(args.compare):
        for near in (False, True):
            for label, checkout in (codes if r % 2 == 0 else codes[::-1]):  # who goes first alternates
                load = os.getloadavg()[0]
                lat, attached = one_run(hier, args.duration, near, checkout, parts[(label, near)])
                pooled[(label, near)] += lat
                print(f"round {r + 1} {'near' if near else 'plain'}{' ' + label if args.before else ''} (load {load:.1f}): "
                      f"{summary(lat) if lat else 'no kills'}" + (f"; sampling attached: {attached}" if near else ""), flush=True)
    for near in (False, True):
        for label, _ in codes:
            if pooled[(label, near)]:
                print(f"{'with sampling attached' if near else 'nothing near a limit'}{', ' + label if args.before else ''}, "
                      f"{args.compare} rounds pooled: {summary(pooled[(label, near)])}; {stages_line(parts[(label, near)])}")


def quota_compare(hier, args) -> None:
    """Rounds of the plain storm, record in each condition in turn (the order rotated each round):
    a CPU cgroup of its own with a quota (PCT% of a core, over a period of 100 ms or PCT/MS), one of
    its own without ("own") or with a weight ("shares:N"), and the bench's own cgroup ("none": as
    every other run of this bench). With --storm-shares N the storm runs in a CPU cgroup of its own
    of that weight (a pod's, as the DaemonSet's record competes with it)."""
    conds = [c.strip() for c in args.cpu_quota.split(",") if c.strip()]

    def label(c: str) -> str:
        if c == "own":
            return "record's own CPU cgroup, no limit"
        if c == "none":
            return "the bench's CPU cgroup"
        if c.startswith("shares:"):
            return f"record's own CPU cgroup, no limit, cpu.shares {c[7:]}"
        pct, _, ms = c.partition("/")
        return f"record's own CPU cgroup, quota {pct}% of a core per {ms or 100} ms"

    def make(c: str) -> Optional[CpuQuota]:
        if c == "none":
            return None
        if c == "own":
            return CpuQuota(None)
        if c.startswith("shares:"):
            return CpuQuota(None, int(c[7:]))
        pct, _, ms = c.partition("/")
        return CpuQuota(float(pct), period_us=int(float(ms) * 1000) if ms else CpuQuota.PERIOD_US)

    pooled: dict = {c: [] for c in conds}
    parts: dict = {c: {} for c in conds}
    if args.storm_shares and hier.version == 2:  # one hierarchy: the storm would leave its memory limit
        raise SystemExit("latency: --storm-shares needs cgroup v1 (on v2 the storm's CPU cgroup is its memory cgroup)")
    for r in range(args.quota_compare):
        for c in conds[r % len(conds):] + conds[:r % len(conds)]:
            load = os.getloadavg()[0]
            quota = storm_cpu = None
            try:
                quota = make(c)
                storm_cpu = CpuQuota(None, args.storm_shares, what="storm") if args.storm_shares else None
                f: dict = {}
                lat, _ = one_run(hier, args.duration, False, HERE, parts[c], quota, storm_cpu, args.after_idle, f)
                said = f"; {quota.throttled()}" if quota else ""
            finally:
                for q in (quota, storm_cpu):
                    if q is not None:
                        q.remove()
            pooled[c] += lat
            print(f"round {r + 1}, {label(c)} (load {load:.1f}): {summary(lat) if lat else 'no kills'}{said}; "
                  f"captures {f.get('captures')}, without the victim's command line {f.get('no_cmdline')}, "
                  f"its cgroup {f.get('no_task_cgroup')}, the kernel's report {f.get('no_report')}", flush=True)
    for c in conds:
        if pooled[c]:
            print(f"{label(c)}, {args.quota_compare} rounds pooled"
                  f"{', the storm at cpu.shares %d' % args.storm_shares if args.storm_shares else ''}: "
                  f"{summary(pooled[c])}; {stages_line(parts[c])}")

if __name__ == "__main__":
    main()
