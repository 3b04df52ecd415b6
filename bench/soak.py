#!/usr/bin/env python3
"""Soak: `record` for an hour on a churning host; its memory, descriptors and threads over time,
and the kills it recorded against the kills made (issue 24).

What runs, all of it inside one sandbox cgroup tree ``/oomscope-soak-<pid>-<hex>`` (cgroup v1's
memory hierarchy here, v2 where the host has it), removed at the end, on Ctrl-C, SIGTERM or
failure too:

- **Pod churn**, with the layout kubelet's systemd cgroup driver makes (kubeadm's default):
  ``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope``
  (BestEffort pods beside them, Guaranteed ones straight under kubepods.slice). Each pod is its
  pod cgroup, a pause container and one or two app containers, each container with a memory limit
  and one process (``sleep``) in it; a pod lives --pod-lifetime seconds (30 to 90 by default),
  then its processes get SIGTERM (as kubelet stops a container) and its cgroups are removed.
  The rate, --pods-per-minute 30 (one pod every 2 s: ~1.75 cgroups created and as many removed a
  second, ~30 pods alive, ~100 cgroups), is a busy batch or CI node's: short jobs turned over
  every minute or so, within kubelet's default of 110 pods a node; a node serving long-lived
  services changes a few pods an hour. It is the upper end on purpose: what grows with the cgroups
  record has seen (its sampler's rings and timelines, its descriptors kept open per cgroup) shows
  within the hour.
- **A kill every --kill-interval seconds** (5): a one-container pod whose container (64 MiB
  limit) runs a python hog allocating until the kernel kills it (as fast as it can, or over
  --hog-fill seconds: then it grows near its limit for a while and record's growth sites attach). Kills made = the kernel's
  ``oom_kill`` count of each hog's cgroup (memory.oom_control on v1, memory.events on v2), read
  before the cgroup is removed; each one's victim pid is kept.
- **JVMs** (--jvms 2): Guaranteed pods each running a small OpenJDK program (-Xms/-Xmx 64m,
  pre-touched; 1 MiB arrays replaced 20 times a second, so its young GCs run) in a 128 MiB
  container, ~65% full: above the half-full mark at which record reads a JVM's hsperfdata file,
  so its JVM reader works the whole time. Each JVM is replaced by a new pod every --jvm-lifetime
  seconds (900), so JVMs come and go.
- **Prometheus's scrape**: record serves metrics on 127.0.0.1 (a free port) and is scraped
  every 15 s, as a Prometheus would.

record runs with ``--cgroup`` the sandbox root (on this shared host other work's cgroups and
storms then neither reach its figures nor its output folder; --whole-host drops that) and
``--log-format json`` (one JSON object per kill on its stdout). Every --sample-interval seconds
(10) the recorder and its post-mortem worker (its child, ``python -m oomscope.postmortem.worker``)
are sampled from /proc: RSS, anonymous RSS (RssAnon), open descriptors, threads, CPU. At the end:
start (the first sample after --warmup) against end, and the slope per hour, a least-squares fit
over the samples after the warm-up, for each; then kills made against kills recorded (the
recorder's JSON lines for the sandbox, captures on disk, post-mortems on disk), the victims made
but not recorded listed. --csv and --json write the samples (and, for --json, the summary); the
last line printed starts with "soak:" and holds the figures.

Run as root after ./setup.sh test (OpenJDK for the JVMs; --jvms 0 without it):
    /opt/oomscope/venv/bin/python bench/soak.py [--duration 3600] [--json soak.json] [--csv soak.csv]
The output folder (captures, post-mortems, record's stdout and stderr) is kept: --out, by default
/var/tmp/oomscope-soak-<time>.

Two recorders side by side on the same churn (a paired comparison in one run, the host's noise
shared): --pair-env 'K=V ...' starts a second recorder, "b", with those variables added to its
environment (--env 'K=V ...' adds to the first's, "a"), and --pair-code DIR runs "b" from another
checkout (e.g. a ``git worktree`` of the baseline). Each has its own output folder (OUT/a, OUT/b),
metrics port and scrapes; both record the sandbox, so every kill must be recorded by each. E.g.
the C heap's arena limit and trim (oomscope/record/heap.py, opt-in) against glibc's defaults:
    bench/soak.py --pair-env OOMSCOPE_MALLOC=arenas
Besides RSS, each sample splits the anonymous memory by mapping (/proc/PID/smaps): ``heap`` (the
brk heap: glibc's main arena), ``arenas`` (anonymous read-write mappings at a 64 MiB boundary:
glibc's other arenas, one 64 MiB reservation each) and the rest (pymalloc's 1 MiB arenas, glibc's
mmap'd blocks, bcc's maps).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from oomscope.kernel.cgroupfs import CgroupError, MemoryHierarchy, create_cgroup, remove_cgroup  # noqa: E402

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")
JOIN = 'echo $$ > "$1" && shift && exec "$@"'  # join the cgroup before exec: everything it runs is inside

HOG = "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"
#: --hog-fill S: the hog takes about S seconds to reach its 64 MiB limit (1 MiB every S/64 s), so that
#: it stays near its limit while growing and record's growth sites attach to it (issue 27's sampling)
SLOW_HOG = ("import sys, time\nstep = float(sys.argv[1]) / 64\na = []\nwhile True:\n"
            "    a.append(bytearray(1 << 20))\n    time.sleep(step)\n")

JAVA = r"""
public class SoakJvm {
    public static void main(String[] a) throws Exception {
        byte[][] ring = new byte[24][];
        long n = 0;
        while (true) {
            ring[(int) (n++ % ring.length)] = new byte[1 << 20];
            Thread.sleep(50);
        }
    }
}
"""


class Stop(Exception):
    """SIGTERM or SIGHUP: end the run as Ctrl-C does, through the clean-up."""


def _stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


# --- the sandbox: cgroups and the processes in them ------------------------------------------


@dataclass
class Container:
    cgroup: str  # kernel path
    fs: str
    proc: Optional[subprocess.Popen] = None


@dataclass
class Pod:
    kind: str  # churn, hog, jvm
    cgroup: str
    fs: str
    ends: float
    started: float = field(default_factory=time.monotonic)
    containers: List[Container] = field(default_factory=list)


class Sandbox:
    """Every cgroup and process of the run, under one root; ``close`` removes them all."""

    def __init__(self, hier: MemoryHierarchy):
        self.hier = hier
        self.root = f"/oomscope-soak-{os.getpid()}-{secrets.token_hex(3)}"
        self.root_fs = create_cgroup(hier, self.root, None)
        self.procs: List[subprocess.Popen] = []
        self.created = 1  # the root
        self.removed = 0
        self.slices: Dict[str, str] = {}
        for qos in ("", "burstable", "besteffort"):
            self._slice(qos)

    def _slice(self, qos: str) -> str:
        if qos not in self.slices:
            name = f"{self.root}/kubepods.slice" + (f"/kubepods-{qos}.slice" if qos else "")
            create_cgroup(self.hier, name, None)
            self.created += 1
            self.slices[qos] = name
        return self.slices[qos]

    def mkdir(self, cgroup: str, limit: Optional[int]) -> str:
        fs = create_cgroup(self.hier, cgroup, limit)
        self.created += 1
        return fs

    def start(self, fs: str, argv: List[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(["/bin/sh", "-c", JOIN, "sh", os.path.join(fs, "cgroup.procs"), *argv],
                             stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def pod(self, kind: str, qos: str, lifetime: float, limits: List[Optional[int]], pod_limit: Optional[int]) -> Pod:
        uid = str(uuid.uuid4())
        under = uid.replace("-", "_")
        parent = self._slice(qos)
        name = f"{parent}/kubepods-{qos + '-' if qos else ''}pod{under}.slice"
        p = Pod(kind, name, self.mkdir(name, pod_limit), time.monotonic() + lifetime)
        for limit in limits:
            cg = f"{name}/cri-containerd-{secrets.token_hex(32)}.scope"
            p.containers.append(Container(cg, self.mkdir(cg, limit)))
        return p

    def oom_kills(self, fs: str) -> int:
        """The kernel's count of OOM kills in this cgroup (v1: memory.oom_control; v2: memory.events)."""
        name, key = ("memory.events", "oom_kill") if self.hier.version == 2 else ("memory.oom_control", "oom_kill")
        try:
            with open(os.path.join(fs, name)) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
        except OSError:
            pass
        return 0

    def usage_ratio(self, fs: str) -> Optional[float]:
        files = ("memory.current", "memory.max") if self.hier.version == 2 else ("memory.usage_in_bytes", "memory.limit_in_bytes")
        try:
            usage, limit = (open(os.path.join(fs, f)).read().strip() for f in files)
            return int(usage) / int(limit) if limit != "max" else None
        except (OSError, ValueError):
            return None

    def end_pod(self, pod: Pod, sig=signal.SIGTERM) -> None:
        """Stop its processes (SIGTERM, as kubelet does; SIGKILL after 5 s), reap them, remove its cgroups."""
        for c in pod.containers:
            if c.proc is not None and c.proc.poll() is None:
                try:
                    c.proc.send_signal(sig)
                except OSError:
                    pass
        for c in pod.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
                if c.proc in self.procs:
                    self.procs.remove(c.proc)
        for fs in [c.fs for c in pod.containers] + [pod.fs]:
            try:
                remove_cgroup(fs)
                self.removed += 1
            except CgroupError as exc:
                print(f"soak: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Every process started, then every cgroup under the root, deepest first; said when one stays."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        left = []
        for dirpath, _dirs, _files in sorted(os.walk(self.root_fs), key=lambda w: -w[0].count("/")):
            try:
                remove_cgroup(dirpath)  # kills what is left inside (only there), then rmdir
                self.removed += 1
            except CgroupError as exc:
                left.append(str(exc))
        if left or os.path.isdir(self.root_fs):
            print(f"soak: WARNING: not removed: {left or self.root_fs}", file=sys.stderr)


# --- record and its process tree ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> List[int]:
    out = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(task) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"oomscope.postmortem.worker" in f.read()
    except OSError:
        return False


def proc_sample(pid: int) -> Optional[dict]:
    """RSS, anonymous RSS, file-backed RSS (bytes), threads, open descriptors and CPU seconds of a process."""
    try:
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError):
        return None
    kb = lambda k: int(status.get(k, ["0"])[0]) * 1024  # noqa: E731
    split = smaps_split(pid) or {"heap": 0, "arenas": 0, "anon_other": 0}
    return {"pid": pid, "rss": kb("VmRSS"), "anon": kb("RssAnon"), "file": kb("RssFile") + kb("RssShmem"),
            "threads": int(status["Threads"][0]), "fds": fds, "cpu_s": (int(fields[11]) + int(fields[12])) / TICK,
            **split}


ARENA_ALIGN = 64 * MiB  # glibc's HEAP_MAX_SIZE on 64-bit: a non-main arena's heap is aligned to it


def smaps_split(pid: int) -> Optional[dict]:
    """Resident bytes of a process's anonymous memory by mapping: the brk heap (glibc's main arena),
    glibc's other arenas (read-write anonymous mappings starting at a 64 MiB boundary) and the rest."""
    out = {"heap": 0, "arenas": 0, "anon_other": 0}
    kind = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 5)
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    name = head[5].strip() if len(head) > 5 else ""
                    start = int(head[0].split("-")[0], 16)
                    if name == "[heap]":
                        kind = "heap"
                    elif name:
                        kind = None
                    elif start % ARENA_ALIGN == 0 and head[1].startswith("rw"):
                        kind = "arenas"
                    else:
                        kind = "anon_other"
                elif head[0] == "Anonymous:" and kind is not None:
                    out[kind] += int(head[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return out


def slope_per_hour(points: List[tuple]) -> Optional[float]:
    """Least-squares slope of (t seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 3600 * sum((t - mt) * (v - mv) for t, v in points) / var


#: the slope of each half hour too, in runs that hold two or more after the warm-up: a growth that
#: levels off shows as windows falling towards 0; a leak as windows alike
WINDOW_S = 1800.0


def window_slopes(points: List[tuple], window: float = WINDOW_S) -> List[Optional[float]]:
    """Slope per hour of each whole ``window`` of (t, value) points from the first one (a last part
    shorter than half a window is left out)."""
    if not points:
        return []
    t0, t_end = points[0][0], points[-1][0]
    out = []
    start = t0
    while t_end - start >= window / 2:
        out.append(slope_per_hour([(t, v) for t, v in points if start <= t < start + window]))
        start += window
    return out if len(out) >= 2 else []


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Recorder:
    """One `record` of the run: its name ("" alone, "a"/"b" side by side), code, environment, folder."""
    name: str
    code: str  # the checkout it runs from
    env: Dict[str, str]
    out: str
    port: int = 0
    proc: Optional[subprocess.Popen] = None
    stdout: Optional[object] = None
    stderr: Optional[object] = None
    args: List[str] = field(default_factory=list)  # record's options (start())

    def role(self, r: str) -> str:
        return f"{self.name}:{r}" if self.name else r

    def start(self, sandbox_root: Optional[str], record_args: List[str]) -> None:
        os.makedirs(self.out, exist_ok=True)
        self.args = record_args
        self.port = free_port()
        extra = ["--log-format", "json", "--metrics-addr", f"127.0.0.1:{self.port}"]
        if sandbox_root:
            extra += ["--cgroup", sandbox_root]
        self.stdout = open(os.path.join(self.out, "record.stdout"), "w")
        self.stderr = open(os.path.join(self.out, "record.stderr"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(self.out, "kills"),
                                      *extra, *record_args], cwd=self.code, env={**os.environ, **self.env},
                                     stdout=self.stdout, stderr=self.stderr, stdin=subprocess.DEVNULL)

    def err_tail(self) -> str:
        return open(self.stderr.name).read()[-2000:]

    def stop(self, until_recorded: float, root: str, victims: int) -> None:
        """Let it finish the last kills' captures (until ``until_recorded``, monotonic), then SIGTERM."""
        if self.proc is None:
            return
        while time.monotonic() < until_recorded and sum(map(len, _recorded(self.out, root)[0].values())) < victims:
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()


def memtrace_dump(rec: Recorder, t: int) -> None:
    """SIGUSR2 to a recorder run with bench/memtrace/sitecustomize.py (its OOMSCOPE_MEMTRACE folder);
    the text dump it writes is kept as memtrace-PID-at-Ts.txt (its snapshots are numbered by it)."""
    folder = rec.env.get("OOMSCOPE_MEMTRACE")
    if not folder or rec.proc is None or rec.proc.poll() is not None:
        return
    path = os.path.join(folder, f"memtrace-{rec.proc.pid}.txt")
    before = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
    os.kill(rec.proc.pid, signal.SIGUSR2)
    # written by the recorder's main thread: ~40-60 s here at 20 MiB traced (the soak of 2026-12-07
    # 09:06: its snapshot, then the walk over every object gc tracks, twice); this loop waits for it
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.stat(path).st_mtime_ns != before:
            os.replace(path, os.path.join(folder, f"memtrace-{rec.proc.pid}-at-{t}s.txt"))
            return
        time.sleep(0.2)
    print(f"soak: recorder {rec.name} wrote no memtrace dump within 180 s", file=sys.stderr)


def parse_env(text: str) -> Dict[str, str]:
    env = {}
    for item in text.split():
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise SystemExit(f"soak: not NAME=VALUE: {item!r}")
        env[k] = v
    return env


def compile_jvm(workdir: str) -> Optional[str]:
    src = os.path.join(workdir, "SoakJvm.java")
    with open(src, "w") as f:
        f.write(JAVA)
    subprocess.run(["javac", "-d", workdir, src], check=True, timeout=180)
    return workdir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3600, help="seconds of the run after record's start-up (3600)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds left out of the slopes (10%% of the duration, 30 to 600)")
    ap.add_argument("--sample-interval", type=float, default=10.0)
    ap.add_argument("--pods-per-minute", type=float, default=30.0)
    ap.add_argument("--pod-lifetime", type=float, default=60.0, help="mean seconds a churn pod lives (uniform, 0.5x to 1.5x)")
    ap.add_argument("--kill-interval", type=float, default=5.0)
    ap.add_argument("--hog-fill", type=float, default=0.0,
                    help="seconds each hog takes to fill its limit (0: as fast as it can); e.g. 12 keeps it near its "
                         "limit and growing for a few seconds, so the growth sites attach")
    ap.add_argument("--jvms", type=int, default=2)
    ap.add_argument("--jvm-lifetime", type=float, default=900.0)
    ap.add_argument("--whole-host", action="store_true", help="record the whole host, not only the sandbox (--cgroup)")
    ap.add_argument("--record-args", default="", help="more options for record, e.g. '--keep 200'")
    ap.add_argument("--out", default=None, help="record's output folder (kept); /var/tmp/oomscope-soak-<time> by default")
    ap.add_argument("--csv", default=None, help="write the samples here (one row per process and sample)")
    ap.add_argument("--json", default=None, help="write the options, samples and summary here")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--env", default="", help="'NAME=VALUE ...' added to the (first) recorder's environment")
    ap.add_argument("--pair-env", default=None, help="run a second recorder side by side, with 'NAME=VALUE ...' "
                    "added to its environment ('' for none)")
    ap.add_argument("--pair-code", default=None, help="the second recorder's checkout (this one by default)")
    ap.add_argument("--pair-record-args", default=None, help="the second recorder's options instead of --record-args "
                    "(e.g. '--keep 200' beside '--keep 30d')")
    ap.add_argument("--memtrace-every", type=float, default=0.0, metavar="S",
                    help="every S seconds, SIGUSR2 to each recorder whose environment sets OOMSCOPE_MEMTRACE (put "
                         "bench/memtrace on its PYTHONPATH): tracemalloc's dumps, numbered, for compare_to between them")
    ap.add_argument("--windows-of", metavar="JSON", help="print the slopes per window of a run saved by --json, and run nothing")
    args = ap.parse_args()
    if args.windows_of:
        return print_windows(args.windows_of)
    if os.geteuid() != 0:
        raise SystemExit("soak: needs root (record, cgroups)")
    warmup = args.warmup if args.warmup is not None else max(30.0, min(600.0, args.duration * 0.1))
    rnd = random.Random(args.seed)
    out = args.out or f"/var/tmp/oomscope-soak-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}"
    os.makedirs(out, exist_ok=True)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _stop)

    hier = MemoryHierarchy.detect()
    sandbox = Sandbox(hier)
    paired = args.pair_env is not None or args.pair_code is not None or args.pair_record_args is not None
    recorders = [Recorder("a" if paired else "", HERE, parse_env(args.env), os.path.join(out, "a") if paired else out)]
    if paired:
        recorders.append(Recorder("b", os.path.abspath(args.pair_code or HERE), parse_env(args.pair_env or ""),
                                  os.path.join(out, "b")))
    samples: List[dict] = []
    # (hog pid, its cgroup) for each hog the kernel OOM-killed: by pid alone, two hogs given the
    # same pid in one run were one (pid_max 32768 here: the soak of 02:55 counted 660 kills for
    # "658 victims", each of the 660 hogs killed once)
    made_victims: Set[Tuple[int, str]] = set()
    counts = {"kills_made": 0, "hogs": 0, "hogs_not_killed": 0, "pods": 0, "jvms_started": 0, "jvms_died": 0,
              "scrapes": 0, "scrape_errors": 0, "worker_pids": 0, "hog_cgroups_killed_more": 0}
    jvm_ratios: List[float] = []
    started_wall = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t_ready = None
    interrupted = None
    tmp = tempfile.mkdtemp(prefix="oomscope-soak-java-")
    try:
        jvm_dir = None
        if args.jvms:
            jvm_dir = compile_jvm(tmp)
        t_launch = time.monotonic()
        for rec in recorders:  # one after the other: two bcc compiles at once take twice as long each
            opts = args.pair_record_args if rec.name == "b" and args.pair_record_args is not None else args.record_args
            rec.start(None if args.whole_host else sandbox.root, opts.split())
            while "recording OOM kills" not in open(rec.stderr.name).read():
                if rec.proc.poll() is not None or time.monotonic() - t_launch > 300 * len(recorders):
                    raise SystemExit(f"soak: record {rec.name} did not start: {rec.err_tail()}")
                time.sleep(0.2)
        t_ready = time.monotonic()
        print("soak: record " + ", ".join(f"{r.name or 'pid'} {r.proc.pid} ({r.code}, env {r.env})" for r in recorders) + " "
              f"started in {t_ready - t_launch:.1f} s; sandbox {sandbox.root}; "
              f"output {out}; {args.duration:.0f} s, warm-up {warmup:.0f} s", flush=True)

        pods: List[Pod] = []
        hogs: List[Pod] = []
        jvms: List[Pod] = []
        next_pod = next_kill = next_sample = next_scrape = t_ready
        next_report = t_ready + 60
        next_memtrace = t_ready + args.memtrace_every if args.memtrace_every > 0 else float("inf")
        pod_gap = 60.0 / args.pods_per_minute if args.pods_per_minute > 0 else float("inf")
        worker_seen = set()
        end = t_ready + args.duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            # JVMs: keep --jvms running, each replaced after its lifetime
            for pod in [p for p in jvms if now >= p.ends or p.containers[0].proc.poll() is not None]:
                if pod.containers[0].proc.poll() is not None:
                    counts["jvms_died"] += 1
                    print(f"soak: a JVM exited ({pod.containers[0].proc.returncode}) before its time", file=sys.stderr)
                jvms.remove(pod)
                sandbox.end_pod(pod)
            while len(jvms) < args.jvms:
                pod = sandbox.pod("jvm", "", args.jvm_lifetime * (0.9 + 0.2 * rnd.random()), [None, 128 * MiB], 128 * MiB)
                pod.containers[0].proc = sandbox.start(pod.containers[0].fs, ["sleep", "infinity"], stdout=subprocess.DEVNULL)
                c = pod.containers[1]
                c.proc = sandbox.start(c.fs, ["java", "-Xms64m", "-Xmx64m", "-XX:+AlwaysPreTouch", "-XX:+UseSerialGC",
                                              "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-cp", jvm_dir, "SoakJvm"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                jvms.append(pod)
                counts["jvms_started"] += 1
            # pod churn
            for pod in [p for p in pods if now >= p.ends]:
                pods.remove(pod)
                sandbox.end_pod(pod)
            while now >= next_pod:
                next_pod += pod_gap
                qos = rnd.choice(["burstable", "burstable", "besteffort", ""])
                apps = [rnd.choice([64, 128, 256]) * MiB for _ in range(rnd.choice([1, 2]))]
                if qos == "besteffort":
                    apps = [None] * len(apps)
                pod_limit = sum(apps) if qos == "" else None
                pod = sandbox.pod("churn", qos, args.pod_lifetime * (0.5 + rnd.random()), [None, *apps], pod_limit)
                for c in pod.containers:
                    c.proc = sandbox.start(c.fs, ["sleep", "infinity"], stdout=subprocess.DEVNULL)
                pods.append(pod)
                counts["pods"] += 1
            # kills
            for pod in list(hogs):
                c = pod.containers[1]
                rc = c.proc.poll()
                if rc is None and now < pod.ends:
                    continue
                if rc is None:
                    counts["hogs_not_killed"] += 1
                kills = sandbox.oom_kills(c.fs)
                counts["kills_made"] += kills
                if kills and rc == -signal.SIGKILL:
                    made_victims.add((c.proc.pid, c.cgroup))
                if kills > 1:
                    counts["hog_cgroups_killed_more"] += 1
                hogs.remove(pod)
                sandbox.end_pod(pod)
            if now >= next_kill:
                next_kill += args.kill_interval
                pod = sandbox.pod("hog", "burstable", 30.0, [None, 64 * MiB], 64 * MiB)
                pod.containers[0].proc = sandbox.start(pod.containers[0].fs, ["sleep", "infinity"], stdout=subprocess.DEVNULL)
                c = pod.containers[1]
                hog = [sys.executable, "-c", HOG] if args.hog_fill <= 0 else [sys.executable, "-c", SLOW_HOG, str(args.hog_fill)]
                c.proc = sandbox.start(c.fs, hog, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                hogs.append(pod)
                counts["hogs"] += 1
            # Prometheus's scrape
            if now >= next_scrape:
                next_scrape += 15
                for rec in recorders:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{rec.port}/metrics", timeout=5) as r:
                            r.read()
                        counts["scrapes"] += 1
                    except OSError:
                        counts["scrape_errors"] += 1
            if now >= next_memtrace:
                next_memtrace += args.memtrace_every
                for rec in recorders:
                    memtrace_dump(rec, round(now - t_ready))
            # the recorder's process tree
            if now >= next_sample:
                next_sample += args.sample_interval
                t = round(now - t_ready, 1)
                for rec in recorders:
                    if rec.proc.poll() is not None:
                        raise SystemExit(f"soak: record {rec.name} exited ({rec.proc.returncode}): {rec.err_tail()}")
                    pids = [("recorder", rec.proc.pid)] + [("worker", w) for w in children(rec.proc.pid) if is_worker(w)]
                    for role, pid in pids:
                        s = proc_sample(pid)
                        if s is not None:
                            samples.append({"t_s": t, "role": rec.role(role), **s, "cgroups": sandbox.created - sandbox.removed})
                            if role == "worker":
                                worker_seen.add(pid)
                for pod in jvms:
                    r = sandbox.usage_ratio(pod.containers[1].fs)
                    if r is not None and now - pod.started > 20:  # past its start-up
                        jvm_ratios.append(r)
            if now >= next_report:
                next_report += 60
                last = {s["role"]: s for s in samples if s["t_s"] == samples[-1]["t_s"]} if samples else {}
                print(f"soak: {now - t_ready:5.0f} s: " + "; ".join(
                    f"{r} RSS {s['rss'] / MiB:.1f} MiB (anon {s['anon'] / MiB:.1f}: heap {s['heap'] / MiB:.1f}, "
                    f"arenas {s['arenas'] / MiB:.1f}), {s['fds']} fds, {s['threads']} threads"
                    for r, s in last.items()) + f"; kills made {counts['kills_made']}, pods {counts['pods']}, "
                    f"cgroups {sandbox.created} made / {sandbox.removed} removed", flush=True)
            time.sleep(max(0.0, min(next_pod, next_kill, next_sample, next_scrape, now + 0.2) - time.monotonic()))
        # the last hogs: wait for their kills, then let record write what it saw
        deadline = time.monotonic() + 30
        while hogs and time.monotonic() < deadline:
            for pod in list(hogs):
                c = pod.containers[1]
                if c.proc.poll() is not None or time.monotonic() > deadline - 1:
                    kills = sandbox.oom_kills(c.fs)
                    counts["kills_made"] += kills
                    if c.proc.poll() is None:
                        counts["hogs_not_killed"] += 1
                    elif kills and c.proc.returncode == -signal.SIGKILL:
                        made_victims.add((c.proc.pid, c.cgroup))
                    if kills > 1:
                        counts["hog_cgroups_killed_more"] += 1
                    hogs.remove(pod)
                    sandbox.end_pod(pod)
            time.sleep(0.2)
        counts["worker_pids"] = len(worker_seen)
    except (KeyboardInterrupt, Stop) as exc:
        interrupted = type(exc).__name__ if isinstance(exc, KeyboardInterrupt) else str(exc)
        print(f"soak: interrupted ({interrupted}): cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            # let record finish the last kills' captures and post-mortems, then stop it
            wait_until = time.monotonic() + (20 if interrupted is None else 0)
            for rec in recorders:
                rec.stop(wait_until, sandbox.root, len(made_victims))
        finally:
            sandbox.close()
            for rec in recorders:
                rec.close()
            subprocess.run(["rm", "-rf", tmp], check=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if t_ready is None:
        return 1

    summary = summarize(args, warmup, samples, counts, made_victims, recorders, sandbox, jvm_ratios, interrupted)
    summary["started"] = started_wall
    if args.csv:
        keys = ["t_s", "role", "pid", "rss", "anon", "file", "heap", "arenas", "anon_other", "fds", "threads", "cpu_s", "cgroups"]
        with open(args.csv, "w") as f:
            f.write(",".join(keys) + "\n")
            for s in samples:
                f.write(",".join(str(s[k]) for k in keys) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"options": vars(args), "warmup_s": warmup, "summary": summary, "samples": samples}, f, indent=1)
    print(summary["line"], flush=True)
    return 0 if summary["ok"] else 1


def _recorded(out: str, root: str):
    """(the captures on disk for the sandbox: victim pid -> each one's oom_memcg, how many have their post-mortem)."""
    caps: Dict[int, List[str]] = {}
    pms = 0
    for path in glob.glob(os.path.join(out, "kills", "*", "capture.json")):
        try:
            with open(path) as f:
                cap = json.load(f)
        except (OSError, ValueError):
            continue
        oom = cap.get("cgroup", {}).get("oom_memcg") or ""
        if oom.startswith(root):
            caps.setdefault(cap.get("victim", {}).get("pid"), []).append(oom)
            pms += os.path.exists(os.path.join(os.path.dirname(path), "postmortem.html"))
    return caps, pms


def _fit(mine: List[dict], warmup: float) -> Optional[dict]:
    """Start (the first sample after the warm-up), end, peak and least-squares slope per hour of each figure."""
    after = [s for s in mine if s["t_s"] >= warmup] or mine
    if not after:
        return None
    first, last = after[0], after[-1]
    fit = {}
    for key, scale in (("rss", MiB), ("anon", MiB), ("heap", MiB), ("arenas", MiB), ("anon_other", MiB),
                       ("fds", 1), ("threads", 1)):
        slope = slope_per_hour([(s["t_s"], s.get(key, 0) / scale) for s in after])
        fit[key] = {"start": first.get(key, 0) / scale, "end": last.get(key, 0) / scale,
                    "peak": max(s.get(key, 0) for s in mine) / scale, "slope_per_hour": slope}
        if scale == MiB and len(after) >= 6:  # the slope of each half: a plateau shows as a second half near 0
            half = len(after) // 2
            fit[key]["slope_first_half"] = slope_per_hour([(s["t_s"], s.get(key, 0) / scale) for s in after[:half]])
            fit[key]["slope_second_half"] = slope_per_hour([(s["t_s"], s.get(key, 0) / scale) for s in after[half:]])
            windows = window_slopes([(s["t_s"], s.get(key, 0) / scale) for s in after])
            if windows:
                fit[key]["slope_by_window"] = windows
    fit["cpu_pct"] = 100 * (last["cpu_s"] - first["cpu_s"]) / max(1e-9, last["t_s"] - first["t_s"])
    fit["live_cgroups"] = {"start": first["cgroups"], "end": last["cgroups"]}
    fit["from_s"], fit["to_s"], fit["samples"] = first["t_s"], last["t_s"], len(after)
    return fit


def _kills(out: str, sandbox, made_victims: Set[Tuple[int, str]]) -> dict:
    """Kills one recorder recorded: its JSON lines (robust to --keep), then captures and post-mortems on disk.
    A victim is its (pid, cgroup): a pid is reused within the hour (8,000 processes a run, pid_max
    32768 here; the hour of 2026-12-06 met a hog's pid again on a pause process recorded as a
    user-space kill, and the soak of 2026-12-07 02:55 gave two hogs pids of earlier hogs)."""
    # every kernel kill printed: pid -> its (oom_memcg, task_memcg) records
    printed: Dict[int, List[tuple]] = {}
    try:
        with open(os.path.join(out, "record.stdout")) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "oom_kill" and ev.get("kind", "kernel_kill") == "kernel_kill":
                    printed.setdefault(ev.get("pid"), []).append((ev.get("oom_memcg") or "", ev.get("task_memcg") or ""))
    except OSError:
        pass
    on_disk, postmortems = _recorded(out, sandbox.root)
    ours = {pid for pid, _cg in made_victims}

    def placed(cg: str, oom: str) -> bool:
        # the limit hit is the container's or its pod's: the victim's cgroup or an ancestor in the sandbox
        return oom.startswith(sandbox.root) and cg.startswith(oom)

    recorded, no_report, misplaced, missing = 0, [], [], []
    for pid, cg in sorted(made_victims):
        recs = printed.get(pid, [])
        if any(placed(cg, o) for o, _t in recs):
            recorded += 1
        elif any(not o and t == cg for o, t in recs):
            # recorded in its own cgroup, but without the kernel's report (oom_memcg unknown: not joined)
            recorded += 1
            no_report.append(pid)
        elif recs:
            misplaced.append(pid)  # recorded under another cgroup
        else:
            missing.append(pid)
    others = [p for p, recs in printed.items() if p not in ours and not any(o.startswith(sandbox.root) for o, _t in recs)]
    # a capture is a victim's when its pid and the limit hit are (a pid is reused: by pid alone, two victims one)
    captured = sum(1 for pid, cg in made_victims if any(placed(cg, o) for o in on_disk.get(pid, [])))
    return {"printed": recorded, "captures": captured, "postmortems": postmortems,
            "not_recorded": missing[:50], "n_not_recorded": len(missing), "misplaced": misplaced[:50],
            "n_misplaced": len(misplaced), "without_report": no_report[:50], "n_without_report": len(no_report),
            "other_work_recorded": len(others)}


def summarize(args, warmup, samples, counts, made_victims, recorders, sandbox, jvm_ratios, interrupted) -> dict:
    parts, fits, kills_by = [], {}, {}
    ok = not interrupted and counts["kills_made"] == len(made_victims)
    for rec in recorders:
        lines = []
        for r in ("recorder", "worker"):
            role = rec.role(r)
            fit = _fit([s for s in samples if s["role"] == role], warmup)
            if fit is None:
                continue
            fits[role] = fit
            f = lambda k, d=1, u="", fit=fit: (f"{fit[k]['start']:.{d}f}{u} -> {fit[k]['end']:.{d}f}{u}"  # noqa: E731
                                      + (f" ({fit[k]['slope_per_hour']:+.1f}{u}/h)" if fit[k]["slope_per_hour"] is not None else ""))
            lines.append(f"{role}: RSS {f('rss', u=' MiB')}, anon {f('anon', u=' MiB')} [heap {f('heap', u=' MiB')}, "
                         f"arenas {f('arenas', u=' MiB')}, other {f('anon_other', u=' MiB')}], fds {f('fds', 0)}, "
                         f"threads {f('threads', 0)}, CPU {fit['cpu_pct']:.2f}% of a core")
            if fit["rss"].get("slope_by_window"):
                lines[-1] += (f"; RSS per {WINDOW_S / 60:.0f} min: "
                              + ", ".join("?" if w is None else f"{w:+.1f}" for w in fit["rss"]["slope_by_window"]) + " MiB/h")
            if r == "recorder":
                lines[-1] += f" (sandbox cgroups alive {fit['live_cgroups']['start']} -> {fit['live_cgroups']['end']})"
        k = _kills(rec.out, sandbox, made_victims)
        k["record_exit"] = rec.proc.returncode if rec.proc is not None else None
        k["env"], k["code"], k["args"] = rec.env, rec.code, rec.args
        kills_by[rec.name or "recorder"] = k
        ok = ok and k["record_exit"] == 0 and not k["n_not_recorded"] and not k["n_misplaced"] and not k["n_without_report"]
        lines.append(f"{rec.name + ': ' if rec.name else ''}kills recorded {k['printed']} (captures {k['captures']}, "
                     f"post-mortems {k['postmortems']}), not recorded {k['n_not_recorded']}, misplaced {k['n_misplaced']}, "
                     f"without the kernel's report {k['n_without_report']} "
                     f"(other work's kills recorded beside them: {k['other_work_recorded']}); record exit {k['record_exit']}")
        parts += lines
    jr = (f"JVM cgroups at {100 * min(jvm_ratios):.0f}-{100 * max(jvm_ratios):.0f}% of their limit"
          if jvm_ratios else "no JVM")
    line = (f"soak: {'OK' if ok else 'NOT OK'}: {args.duration:.0f} s (slopes after {warmup:.0f} s); "
            + "; ".join(parts)
            + f"; kills made {counts['kills_made']} ({len(made_victims)} victims, {counts['hog_cgroups_killed_more']} hogs' cgroups with more kills than one); "
            f"pods {counts['pods']}, cgroups {sandbox.created} created / {sandbox.removed} removed; "
            f"JVMs {counts['jvms_started']} started ({counts['jvms_died']} died early), {jr}; "
            f"scrapes {counts['scrapes']} ({counts['scrape_errors']} failed)"
            + (f"; interrupted ({interrupted})" if interrupted else ""))
    kills = {"made": counts["kills_made"], "victims_made": len(made_victims), "by_recorder": kills_by,
             "victims": [[p, cg] for p, cg in sorted(made_victims)]}
    return {"ok": ok, "line": line, "fits": fits, "kills": kills, "counts": counts, "cgroups_created": sandbox.created,
            "cgroups_removed": sandbox.removed, "jvm_usage_ratio": [min(jvm_ratios), max(jvm_ratios)] if jvm_ratios else None,
            "interrupted": interrupted, "output": recorders[0].out}


def print_windows(path: str) -> int:
    """The slopes of each window of a saved run (--json), per process and figure."""
    try:
        with open(path) as f:
            saved = json.load(f)
        samples, warmup = saved["samples"], float(saved["warmup_s"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"soak: {path}: not a saved run ({exc})") from None
    for role in sorted({s["role"] for s in samples}):
        after = [s for s in samples if s["role"] == role and s["t_s"] >= warmup]
        cells = []
        for key in ("rss", "anon", "heap", "arenas", "anon_other"):
            pts = [(s["t_s"], s.get(key, 0) / MiB) for s in after]
            ws = window_slopes(pts)
            if pts:
                cells.append(f"{key} {pts[0][1]:.1f} -> {pts[-1][1]:.1f} MiB, per {WINDOW_S / 60:.0f} min "
                             + ", ".join("?" if w is None else f"{w:+.1f}" for w in ws) + " MiB/h")
        print(f"{role}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
