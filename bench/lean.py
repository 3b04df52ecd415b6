#!/usr/bin/env python3
"""Two recorders side by side, at once, on the same cgroups: their memory (anonymous and
file-backed apart) and CPU, minute by minute, at 0, 500 and 2000 watched cgroups (issue 19).

BEFORE is another checkout of oomscope (e.g. main, cloned to /var/tmp), AFTER this one. For each
level: N sandbox cgroups (a 256 MiB limit, one sleeping process each) are created in a parent
``/oomscope-test-lean-PID``, both recorders started with ``--cgroup`` that parent (each with its own
output folder: on this shared host, other work's cgroups and OOM storms are then neither sampled
nor written by them, and do not blur the figures), and after start-up each
one's utime+stime (/proc/PID/stat: its own CPU, whatever else runs) is read every minute for
MINUTES; then /proc/PID/smaps_rollup and the largest mappings of each. The worker process of a
recorder (its post-mortems, postmortem/finisher.py) is reported on its own line. The cgroups are
removed at the end of each level, also on failure.

With ``--latency``, one OOM storm in a 64 MiB sandbox is recorded by both at once: the time from
each kill to its postmortem.html on disk, p50/p95 (as bench/latency.py measures it), and its
stages: the recorder's capture (kill to captured_wall), the write, the worker's post-mortem
(capture.json to postmortem.html). ``--storm-burst 0`` writes every kill of it (record's
``--workload-burst``; its default, 10, leaves a p95 of 10 kills: their maximum).
``--storm-after-idle 65`` starts that storm once both workers have exited when idle (60 s): its
first kills start them again. ``--storm-climb S`` has a workload climb near the storm cgroup's limit
first (from 76% at 0.5 MiB/s for S seconds, then killed: the storm follows), so that a recorder
that starts its worker when a cgroup is near its limit has it running at the first kill (issue
29). ``--rounds R``: R storms, both recorders started anew for each; the kills pooled.
``--prefill N``: N kill folders of a day before in each output folder first (a node's folder
filled over time: the worker reads them, or what it kept of them, at each start).

With ``--kills-seconds S`` (issue 29), each level first has an OOM storm of S seconds in a 64 MiB
sandbox under the parent, recorded by both: the whole tree (recorder and worker: RSS, anonymous,
PSS) is read right after it and again at the end of the level (``--minutes``: set it past the
worker's idle exit, 60 s). ``--before-env K=V`` runs BEFORE with that environment (e.g. the same
checkout with OOMSCOPE_WORKER_IDLE_EXIT_S=0: the worker as it was, kept after its first kill);
``--before-arg ARG`` with one more argument of record (e.g. the same checkout with --metrics-addr).

Run as root after ./setup.sh (the light CPU runs need no lock; the storm does):
    /opt/oomscope/venv/bin/python bench/lean.py --before /var/tmp/oomscope-before [--levels 0,500,2000] [--minutes 10]
    flock /tmp/oomscope-heavy.lock /opt/oomscope/venv/bin/python bench/lean.py --before ... --latency --levels ''
"""

from __future__ import annotations

import argparse
import collections
import contextlib
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
sys.path.insert(0, HERE)

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup  # noqa: E402
from storm import run_storm  # noqa: E402 - bench/storm.py

PREFIX = "/oomscope-test-lean-"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def task_cpu(pid: int) -> dict:
    """utime+stime of each thread of the process, by tid (the main thread's tid is the pid)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def rollup(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[-1] == "kB":
                out[p[0].rstrip(":")] = int(p[1]) * 1024
    return out


def mappings(pid: int):
    """(rss, anonymous) bytes per mapped file ([heap], [anon] for the nameless ones)."""
    rss, anon = collections.Counter(), collections.Counter()
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            p = line.split()
            if p and "-" in p[0] and not p[0].endswith(":"):
                name = p[5] if len(p) >= 6 else "[anon]"
            elif p and p[0] == "Rss:":
                rss[name] += int(p[1]) * 1024
            elif p and p[0] == "Anonymous:":
                anon[name] += int(p[1]) * 1024
    return rss, anon


def loaded(pid: int, *names: str) -> list:
    """Which of these packages have a shared object mapped (pandas: pandas/_libs, jinja2: markupsafe)."""
    with open(f"/proc/{pid}/maps") as f:
        text = f.read()
    return [n for n in names if f"/{n}/" in text]


def children(pid: int) -> list:
    out = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            out += [int(x) for x in f.read().split()]
    return out


def mib(b: float) -> str:
    return f"{b / 1048576:.1f}"


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (a recorder finishes its captures first)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def watched_cgroups(hier, n: int):
    """A parent cgroup with ``n`` limited children, each holding a sleeping process: (the parent's
    path, the list of made cgroups). A cgroup the caller makes below the parent is appended to that
    list; all are removed afterwards, the last made first, the sleepers killed before."""
    parent = f"{PREFIX}{os.getpid()}"
    made, sleepers = [create_cgroup(hier, parent, None)], []
    try:
        for i in range(n):
            fs = create_cgroup(hier, f"{parent}/c{i}", 256 << 20)
            made.append(fs)
            sleepers.append(subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec sleep 100000', "sh",
                                              os.path.join(fs, "cgroup.procs")]))
        yield parent, made
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        for fs in reversed(made):
            remove_cgroup(fs)


def tree(pid: int) -> dict:
    """RSS, anonymous and PSS of a recorder and its children (the post-mortem worker), summed."""
    out = {"rss": 0, "anon": 0, "pss": 0, "procs": 0}
    for p in [pid] + children(pid):
        try:
            r = rollup(p)
        except OSError:
            continue
        out["rss"] += r["Rss"]
        out["anon"] += r["Anonymous"]
        out["pss"] += r["Pss"]
        out["procs"] += 1
    return out


def _worker_after(pid: int) -> Optional[dict]:
    """The worker's RSS and anonymous memory, and what it has mapped, once it has done kills
    (issue 29: the worker that had fitted a timeline held pandas; measured before its first kill, it
    had not)."""
    for child in children(pid):
        try:
            r = rollup(child)
            return {"rss": r["Rss"], "anon": r["Anonymous"], "loaded": loaded(child, "pandas", "markupsafe", "jinja2", "numpy")}
        except OSError:
            continue
    return None


def tree_line(label: str, t: dict) -> str:
    return (f"{label}: {t['procs']} process(es), RSS {mib(t['rss'])} MiB, anonymous {mib(t['anon'])} MiB, "
            f"PSS {mib(t['pss'])} MiB")


BEFORE_ENV: dict = {}
BEFORE_ARGS: list = []
PREFILL = 0  # --prefill N: kill folders in each recorder's output folder before it starts


def prefill(kills_dir: str, n: int) -> None:
    """``n`` kill folders of a day before, as record writes them (a fixture's capture: its own kill
    id, pid and time; one of 50 workloads each, so that they form series), with the index and series
    pages a worker wrote: an output folder a node has filled over time. The post-mortem worker reads
    them (or what it kept of them) at each start."""
    import datetime as _dt

    from oomscope.capture.writer import write_capture
    from oomscope.model import Capture
    from oomscope.safefs import Batch

    with open(os.path.join(HERE, "tests", "fixtures", "captures", "leak-go-v1-6.18.json")) as f:
        base = f.read()
    t0 = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=1)
    batch = Batch()
    for i in range(n):
        cap = Capture.from_json(base)
        when = t0 + _dt.timedelta(seconds=30 * i)
        cap.kill_id = when.strftime("%Y%m%dT%H%M%S.000Z") + f"-pid{100000 + i}"
        cap.victim.pid = 100000 + i
        cap.times.kill_wall = when.isoformat(timespec="milliseconds")
        cap.cgroup.task_memcg = cap.cgroup.oom_memcg = f"/oomscope-prefill/w{i % 50}"
        write_capture(kills_dir, cap, batch=batch)
        if len(batch) >= 300:
            batch.flush()
    batch.flush()
    # and what a worker left there: index.html, series.json and each series' page
    import io

    from oomscope.analysis.result import analyse_kill
    from oomscope.postmortem.index import OutputIndex
    from oomscope.postmortem.stage import PostMortems
    from oomscope.postmortem.worker import render_series
    from oomscope.report.render import render_html

    post = PostMortems(kills_dir, render_html, analyse_kill, OutputIndex(kills_dir), io.StringIO(), render_series=render_series)
    post._index_dirty = True
    post.write_index(force=True)


class Recorder:
    def __init__(self, label: str, checkout: str, out: str, extra=()):
        self.label, self.out = label, out
        os.makedirs(out, exist_ok=True)
        self.err_path = os.path.join(out, "record.err")
        if PREFILL:
            prefill(os.path.join(out, "kills"), PREFILL)
        env = dict(os.environ, PYTHONPATH=checkout, **(BEFORE_ENV if label == "before" else {}))
        extra = (*extra, *(BEFORE_ARGS if label == "before" else ()))
        self.proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(out, "kills"), *extra],
                                     cwd=checkout, env=env, stdout=open(os.path.join(out, "record.out"), "w"),
                                     stderr=open(self.err_path, "w"))

    def started(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.label}: record exited: {open(self.err_path).read()[-2000:]}")
        return "recording OOM kills" in open(self.err_path).read()

    def stop(self) -> None:
        stop_process(self.proc)


AFTER = HERE  # --after: a copy of this checkout, so that it can be edited while the bench runs


def start_both(before: str, out: str, extra=()):
    recs = [Recorder("before", before, os.path.join(out, "before"), extra), Recorder("after", AFTER, os.path.join(out, "after"), extra)]
    deadline = time.monotonic() + 180
    while not all(r.started() for r in recs):
        if time.monotonic() > deadline:
            raise SystemExit("record did not start within 180 s")
        time.sleep(0.1)
    return recs


def level(n: int, minutes: float, before: str, hier, top: int, kills_s: float = 0.0) -> list:
    rows = []
    with watched_cgroups(hier, n) as (parent, made):
        with tempfile.TemporaryDirectory(prefix="oomscope-lean-") as out:
            recs = start_both(before, out, ("--cgroup", parent))
            try:
                time.sleep(10)  # past start-up, and the first discovery of every cgroup
                after_storm = {}
                if kills_s:
                    storm_fs = create_cgroup(hier, f"{parent}/storm", 64 << 20)
                    made.append(storm_fs)
                    _storm(storm_fs, kills_s)
                    time.sleep(5.0)
                    for r in recs:
                        kills = len(glob.glob(os.path.join(r.out, "kills", "*", "capture.json")))
                        after_storm[r.label] = dict(tree(r.proc.pid), kills=kills, worker=_worker_after(r.proc.pid))
                        print(f"  {n} cgroups, {tree_line(r.label + ' right after the storm (' + str(kills) + ' captures)', after_storm[r.label])}",
                              flush=True)
                        w = after_storm[r.label]["worker"]
                        if w:
                            print(f"    its worker after those kills: RSS {mib(w['rss'])} MiB (anonymous {mib(w['anon'])}), "
                                  f"mapped: {', '.join(w['loaded']) or 'none of pandas, jinja2, numpy'}", flush=True)
                c0 = {r.label: cpu_s(r.proc.pid) for r in recs}
                t_c0 = {r.label: task_cpu(r.proc.pid) for r in recs}
                t0 = prev_t = time.monotonic()
                prev = dict(c0)
                per_minute = {r.label: [] for r in recs}
                while time.monotonic() - t0 < minutes * 60 - 0.5:
                    time.sleep(min(60.0, t0 + minutes * 60 - time.monotonic()))
                    now = time.monotonic()
                    line = []
                    for r in recs:
                        c = cpu_s(r.proc.pid)
                        pct = 100 * (c - prev[r.label]) / (now - prev_t)
                        per_minute[r.label].append(pct)
                        prev[r.label] = c
                        line.append(f"{r.label} {pct:.2f}%")
                    prev_t = now
                    print(f"  {n} cgroups, minute {(now - t0) / 60:.1f}: " + ", ".join(line), flush=True)
                elapsed = time.monotonic() - t0
                for r in recs:
                    pid = r.proc.pid
                    roll = rollup(pid)
                    rss, anon = mappings(pid)
                    cpu = 100 * (cpu_s(pid) - c0[r.label]) / elapsed
                    row = {"level": n, "label": r.label, "rss": roll["Rss"], "anon": roll["Anonymous"],
                           "file": roll["Rss"] - roll["Anonymous"], "cpu": cpu,
                           "cpu_max_minute": max(per_minute[r.label]), "loaded": loaded(pid, "pandas", "markupsafe", "jinja2", "numpy", "pydantic_core"),
                           "workers": [], "threads": [], "tree_after_storm": after_storm.get(r.label),
                           "tree_end": tree(pid)}
                    t_end = task_cpu(pid)
                    for tid in sorted(t_end):
                        row["threads"].append((tid, 100 * (t_end[tid] - t_c0[r.label].get(tid, 0.0)) / elapsed))
                    for child in children(pid):
                        wr = rollup(child)
                        row["workers"].append({"pid": child, "rss": wr["Rss"], "anon": wr["Anonymous"], "cpu_s": cpu_s(child),
                                               "loaded": loaded(child, "pandas", "markupsafe", "jinja2", "numpy")})
                    rows.append(row)
                    print(f"  {n} cgroups, {r.label}: RSS {mib(row['rss'])} MiB (anonymous {mib(row['anon'])}, "
                          f"file {mib(row['file'])}), CPU {cpu:.2f}% of one core over {elapsed / 60:.1f} min "
                          f"(worst minute {row['cpu_max_minute']:.2f}%), mapped: {', '.join(row['loaded']) or 'no pandas/jinja2/numpy/pydantic'}",
                          flush=True)
                    print("    its threads (tid: % of one core): " + ", ".join(f"{tid}{' (main)' if tid == pid else ''}: {p:.2f}"
                                                                          for tid, p in row["threads"] if p >= 0.005))
                    for w in row["workers"]:
                        print(f"    its worker {w['pid']}: RSS {mib(w['rss'])} MiB (anonymous {mib(w['anon'])}), CPU {w['cpu_s']:.1f} s in all")
                    print(f"    {tree_line('the whole tree at the end', row['tree_end'])}", flush=True)
                    for name, b in rss.most_common(top):
                        print(f"      {mib(b):>7} MiB (anonymous {mib(anon[name]):>6})  {name}")
            finally:
                for r in recs:
                    r.stop()
    return rows




def latencies(kills_dir: str, parts: Optional[dict] = None) -> list:
    """Kill -> postmortem.html of each kill, in seconds, sorted; with ``parts``, its stages too:
    "capture" (the kill to captured_wall, the recorder's), "written" (captured_wall to
    capture.json on disk) and "post-mortem" (capture.json on disk to postmortem.html: the worker's
    queue, analysis, render and write)."""
    lat = []
    for cap_path in glob.glob(os.path.join(kills_dir, "*", "capture.json")):
        html = os.path.join(os.path.dirname(cap_path), "postmortem.html")
        with open(cap_path) as f:
            cap = json.load(f)
        if not os.path.exists(html) or not (cap["cgroup"].get("oom_memcg") or "").startswith(PREFIX):
            continue
        kill = dt.datetime.fromisoformat(cap["times"]["kill_wall"]).timestamp()
        lat.append(os.stat(html).st_mtime - kill)
        if parts is not None and cap["times"].get("captured_wall"):
            captured = dt.datetime.fromisoformat(cap["times"]["captured_wall"]).timestamp()
            parts.setdefault("capture", []).append(captured - kill)
            parts.setdefault("written", []).append(os.stat(cap_path).st_mtime - captured)
            parts.setdefault("post-mortem", []).append(os.stat(html).st_mtime - os.stat(cap_path).st_mtime)
    return sorted(lat)


def _p(values: list, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _storm(fs: str, seconds: float) -> None:
    try:
        run_storm(fs, seconds)
    except subprocess.CalledProcessError as exc:  # its spared parent killed too (seen on this shared host): the kills made stand
        print(f"  the storm ended early: its parent exited with {exc.returncode}", flush=True)


# A workload that leaks near its limit before its storm: tests/system/climb.py (issue 29: the
# worker started ahead, or not).
CLIMB = os.path.join(HERE, "tests", "system", "climb.py")


def _climb(fs: str, limit: int, seconds: float) -> subprocess.Popen:
    usage_file = os.path.join(fs, "memory.current")
    if not os.path.exists(usage_file):
        usage_file = os.path.join(fs, "memory.usage_in_bytes")  # v1
    return subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" "$3" "$4" "$5" "$6"', "sh",
                             os.path.join(fs, "cgroup.procs"), sys.executable, CLIMB, usage_file, str(limit), str(seconds)],
                            stdout=subprocess.DEVNULL)


def storm(before: str, hier, duration: float, burst: int = 10, idle_first: float = 0.0, climb_s: float = 0.0) -> list:
    parent = f"{PREFIX}{os.getpid()}"
    top = create_cgroup(hier, parent, None)
    fs = create_cgroup(hier, f"{parent}/storm", 64 << 20)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="oomscope-lean-") as out:
            recs = start_both(before, out, ("--cgroup", parent, "--workload-burst", str(burst)))
            try:
                time.sleep(3 + idle_first)
                if climb_s:  # a workload climbing near its limit first: its kill starts the storm
                    climber = _climb(fs, 64 << 20, climb_s)
                    time.sleep(11 + climb_s - 1.0)
                    print("  the climb near the limit, 1 s before its kill: " +
                          ", ".join(f"{r.label}'s worker {'running' if children(r.proc.pid) else 'gone'}" for r in recs), flush=True)
                    if climber.wait(timeout=60) != -9:
                        print(f"  the climbing workload exited with {climber.returncode}, not killed", flush=True)
                elif idle_first:  # the storm meets a worker gone idle (issue 29): it is started again by it
                    print("  before the storm: " + ", ".join(f"{r.label}'s worker {'running' if children(r.proc.pid) else 'gone'}"
                                                             for r in recs), flush=True)
                _storm(fs, duration)
                time.sleep(5.0)
            finally:
                for r in recs:
                    r.stop()
            for r in recs:
                parts: dict = {}
                lat = latencies(os.path.join(r.out, "kills"), parts)
                caps = len(glob.glob(os.path.join(r.out, "kills", "*", "capture.json")))
                if not lat:
                    print(f"  storm, {r.label}: no post-mortem ({caps} captures)")
                    continue
                p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
                rows.append({"label": r.label, "kills": len(lat), "captures": caps, "p50": statistics.median(lat), "p95": p95, "max": lat[-1],
                             "latencies": lat})
                print(f"  storm, {r.label}: {len(lat)} post-mortems ({caps} captures): kill -> postmortem.html "
                      f"p50 {1000 * statistics.median(lat):.0f} ms, p95 {1000 * p95:.0f} ms, max {1000 * lat[-1]:.0f} ms", flush=True)
                print("    stages, p50 / p95 ms: " + ", ".join(f"{k} {1000 * _p(v, 0.5):.0f} / {1000 * _p(v, 0.95):.0f}"
                                                            for k, v in parts.items()), flush=True)
                rows[-1]["stages"] = {k: (_p(v, 0.5), _p(v, 0.95)) for k, v in parts.items()}
    finally:
        remove_cgroup(fs)
        remove_cgroup(top)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the other checkout (e.g. main cloned to /var/tmp)")
    ap.add_argument("--levels", default="0,500,2000", help="numbers of watched sandbox cgroups ('' for none)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=6, help="largest mappings shown per recorder")
    ap.add_argument("--latency", action="store_true", help="also an OOM storm recorded by both (take the heavy lock)")
    ap.add_argument("--storm-seconds", type=float, default=6.0)
    ap.add_argument("--storm-burst", type=int, default=10,
                    help="record's --workload-burst in the --latency storm (0: every kill gets its post-mortem, a p95 over hundreds)")
    ap.add_argument("--storm-after-idle", type=float, default=0.0, metavar="S",
                    help="start the --latency storm S seconds after the recorders (past the worker's idle exit, 60 s: "
                         "the storm's first kills start it again)")
    ap.add_argument("--storm-climb", type=float, default=0.0, metavar="S",
                    help="before the --latency storm, a workload climbs from 76%% of the storm cgroup's limit at 0.5 MiB/s "
                         "for S seconds (80%% within ~3 s) until killed: with --storm-after-idle, a worker started ahead or not")
    ap.add_argument("--prefill", type=int, default=0, metavar="N",
                    help="N kill folders (a day before, 50 workloads) in each recorder's output folder before it starts")
    ap.add_argument("--rounds", type=int, default=1, help="--latency storms, each with both recorders started anew; kills pooled")
    ap.add_argument("--after", default=HERE, help="the checkout measured as AFTER (default: this one)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--kills-seconds", type=float, default=0.0, help="an OOM storm this long at each level, before the minutes")
    ap.add_argument("--before-env", action="append", default=[], metavar="K=V", help="environment of BEFORE's record")
    ap.add_argument("--before-arg", action="append", default=[], metavar="ARG",
                    help="one more argument of BEFORE's record (e.g. --before-arg=--metrics-addr --before-arg=127.0.0.1:9847)")
    args = ap.parse_args()
    global AFTER, PREFILL
    AFTER = os.path.abspath(args.after)
    PREFILL = args.prefill
    BEFORE_ENV.update(kv.split("=", 1) for kv in args.before_env)
    BEFORE_ARGS.extend(args.before_arg)
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    hier = MemoryHierarchy.detect()
    rows = {"levels": [], "storm": []}
    for n in [int(x) for x in args.levels.split(",") if x.strip()]:
        rows["levels"] += level(n, args.minutes, os.path.abspath(args.before), hier, args.top, args.kills_seconds)
    if args.latency:
        for r in range(args.rounds):
            if args.rounds > 1:
                print(f"  round {r + 1} of {args.rounds}, load {os.getloadavg()[0]:.1f}", flush=True)
            rows["storm"] += storm(os.path.abspath(args.before), hier, args.storm_seconds, args.storm_burst, args.storm_after_idle,
                                   args.storm_climb)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\n| cgroups | recorder | RSS MiB | anonymous | file | CPU % of a core (whole run; worst minute) | mapped of pandas, jinja2, pydantic |")
    print("|---|---|---|---|---|---|---|")
    for r in rows["levels"]:
        print(f"| {r['level']} | {r['label']} | {mib(r['rss'])} | {mib(r['anon'])} | {mib(r['file'])} | "
              f"{r['cpu']:.2f} ({r['cpu_max_minute']:.2f}) | {', '.join(r['loaded']) or 'none'} |")
        for w in r["workers"]:
            print(f"| {r['level']} | {r['label']}'s worker | {mib(w['rss'])} | {mib(w['anon'])} | {mib(w['rss'] - w['anon'])} | "
                  f"{w['cpu_s']:.1f} s in all | {', '.join(w['loaded']) or 'none'} |")
    if any(r.get("tree_after_storm") for r in rows["levels"]):
        print("\n| cgroups | recorder | kills | tree right after the storm: RSS / anon / PSS MiB | its worker then: RSS / anon MiB "
              "| at the end: RSS / anon / PSS MiB |")
        print("|---|---|---|---|---|---|")
        for r in rows["levels"]:
            a, e = r.get("tree_after_storm") or {}, r["tree_end"]
            w = a.get("worker") or {}
            print(f"| {r['level']} | {r['label']} | {a.get('kills', '?')} | {mib(a.get('rss', 0))} / {mib(a.get('anon', 0))} / "
                  f"{mib(a.get('pss', 0))} ({a.get('procs', '?')} procs) | "
                  f"{(mib(w['rss']) + ' / ' + mib(w['anon'])) if w else 'none'} | {mib(e['rss'])} / {mib(e['anon'])} / {mib(e['pss'])} "
                  f"({e['procs']} procs) |")
    for s in rows["storm"]:
        print(f"\nstorm, {s['label']}: {s['kills']} post-mortems, p50 {1000 * s['p50']:.0f} ms, p95 {1000 * s['p95']:.0f} ms")
    if len(rows["storm"]) > 2:
        for label in ("before", "after"):
            lat = sorted(x for s in rows["storm"] if s["label"] == label for x in s["latencies"])
            if lat:
                print(f"{label}, {args.rounds} rounds pooled: {len(lat)} post-mortems, p50 {1000 * statistics.median(lat):.0f} ms, "
                      f"p95 {1000 * _p(lat, 0.95):.0f} ms, max {1000 * lat[-1]:.0f} ms")


if __name__ == "__main__":
    main()
