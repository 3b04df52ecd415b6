#!/usr/bin/env python3
"""The post-mortem worker's resident memory against the kill folders in its output folder (issue 24).

In the long soak (bench/README.md, "Soak") record's worker, never idle at a kill every 5 s, grew
~7.7 KiB of RSS per kill folder on disk. Here the worker is driven as record drives it (the same
entry point, ``python -m oomscope.postmortem.worker OUT``, the same JSON lines on its stdin), with
no kill made: each kill is a real capture (tests/fixtures/captures/leak-go-v1-6.18.json, record's
on this host) given the soak's names (a new Burstable pod's container each time, 5 s apart),
written into the output folder by the same writer record uses, then asked for. Kills are sent one
at a time, each after the last one's answer, ``--pace`` seconds apart (1.05 s: the worker writes
index.html and series.json at most once a second, so each kill gets its own, as at the soak's
rate). Its VmRSS and RssAnon (/proc/PID/status) are read every ``--every`` folders.

With ``--before DIR`` (a checkout, e.g. a git worktree of an older commit) a second worker of
that code runs beside this checkout's, on a copy of the same folder with the same kills, at the
same time: the two columns are side by side in one run. Each worker runs with its checkout's root
as the working folder and on PYTHONPATH (cwd decides the code: bench/README.md, 1423eff).

    /opt/oomscope/venv/bin/python bench/worker_growth.py [--folders 2000] [--every 250]
        [--start 0] [--pace 1.05] [--before /work/wt-before-growth]

``--start N``: the output folder holds N kill folders before the worker starts (read at its start).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from oomscope.capture.writer import write_capture  # noqa: E402
from oomscope.model import Capture, CgroupInfo, Workload  # noqa: E402

FIXTURE = os.path.join(HERE, "tests", "fixtures", "captures", "leak-go-v1-6.18.json")


def soak_capture(base: Capture, i: int) -> Capture:
    """The fixture as the soak's i-th kill: a new Burstable pod's container, 5 s after the last."""
    pod = str(uuid.UUID(int=(0x5eed << 96) + i))
    cid = secrets.token_hex(32)
    slice_ = f"/oomscope-soak-3867-6324a5/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod.replace('-', '_')}.slice"
    cg = f"{slice_}/cri-containerd-{cid}.scope"
    cap = Capture.from_json(base.to_json())
    t = 1765062000 + 5 * i
    wall = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{i % 1000:03d}+00:00"
    pid = 100000 + i
    cap.kill_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{i % 1000:03d}Z-pid{pid}"
    cap.victim.pid = pid
    cap.victim.comm = "python3"
    cap.cgroup = CgroupInfo(version=1, oom_memcg=slice_, task_memcg=cg, constraint="CONSTRAINT_MEMCG",
                            source="kernel_report")
    cap.workload = Workload(kind="kubernetes", pod_uid=pod, container_id=cid, runtime="containerd", qos="Burstable")
    cap.times.kill_wall = cap.times.captured_wall = wall
    return cap


def status(pid: int) -> dict:
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "VmHWM"):
                got[k] = int(v.split()[0])  # KiB
    return got


class Worker:
    def __init__(self, name: str, root: str, out: str, memtrace: str = ""):
        self.name, self.root, self.out = name, root, out
        env = dict(os.environ, PYTHONPATH=root, OOMSCOPE_WORKER_IDLE_EXIT_S="0")
        if memtrace:  # bench/memtrace/sitecustomize.py: tracemalloc in the worker, SIGUSR2 dumps
            os.makedirs(os.path.join(memtrace, name), exist_ok=True)
            env.update(PYTHONPATH=f"{root}{os.pathsep}{os.path.join(HERE, 'bench', 'memtrace')}",
                       OOMSCOPE_MEMTRACE=os.path.join(memtrace, name))
        # as record starts it (postmortem/finisher.py start_worker, relaunch.module_command), no idle exit
        self.proc = subprocess.Popen([sys.executable, "-B", "-m", "oomscope.postmortem.worker", out, "--file-mode", "420"],
                                     cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.seq = 0

    def ask(self, path: str, op: str = "kill") -> dict:
        """A kill's post-mortem (``keep``: nothing, answered once the worker has read the folder)."""
        self.seq += 1
        self.proc.stdin.write(json.dumps({"seq": self.seq, "op": op, "capture": path}).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{self.name}: the worker stopped")
            reply = json.loads(line)
            if reply.get("seq") == self.seq:
                return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", type=int, default=2000, help="kill folders at the end")
    ap.add_argument("--start", type=int, default=0, help="kill folders before the worker starts")
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--pace", type=float, default=1.05, help="seconds from one kill to the next")
    ap.add_argument("--before", help="another checkout whose worker runs beside this one's")
    ap.add_argument("--memtrace", help="a folder: tracemalloc in each worker, dumped at each reading (bench/memtrace)")
    ap.add_argument("--keep-dir", action="store_true", help="leave the output folders (their path is printed)")
    args = ap.parse_args()

    base = Capture.from_json(open(FIXTURE).read())
    tmp = tempfile.mkdtemp(prefix="oomscope-worker-growth-")
    roots = [("after", HERE)] + ([("before", os.path.abspath(args.before))] if args.before else [])
    outs = {name: os.path.join(tmp, name) for name, _ in roots}
    src = os.path.join(tmp, "src")  # each kill written once here, copied into every worker's folder
    for i in range(args.folders):
        write_capture(src, soak_capture(base, i))
    names = sorted(os.listdir(src))
    for out in outs.values():
        os.makedirs(out)
        for name in names[:args.start]:
            shutil.copytree(os.path.join(src, name), os.path.join(out, name))
    workers = [Worker(name, root, outs[name], os.path.abspath(args.memtrace) if args.memtrace else "") for name, root in roots]
    print(f"worker_growth: {args.folders} kill folders ({args.start} before the start), a kill every {args.pace} s, "
          f"workers: {', '.join(f'{w.name} {w.root}' for w in workers)}", flush=True)
    table = []
    try:
        for w in workers:  # each has read the folders it started with
            w.ask("", op="keep")
        time.sleep(2.0)
        table.append((args.start, [status(w.proc.pid) for w in workers]))
        for n in range(args.start, args.folders):
            t0 = time.monotonic()
            for w in workers:
                shutil.copytree(os.path.join(src, names[n]), os.path.join(w.out, names[n]))
            for w in workers:
                reply = w.ask(os.path.join(w.out, names[n], "capture.json"))
                if not reply.get("html"):
                    raise SystemExit(f"{w.name}: no post-mortem: {reply}")
            if (n + 1) % args.every == 0 or n + 1 == args.folders:
                time.sleep(1.2)  # its index written
                if args.memtrace:
                    for w in workers:
                        os.kill(w.proc.pid, signal.SIGUSR2)
                    time.sleep(3.0)
                table.append((n + 1, [status(w.proc.pid) for w in workers]))
                print("  " + "  ".join(f"{w.name} {n + 1}: RSS {s['VmRSS'] / 1024:.1f} anon {s['RssAnon'] / 1024:.1f} MiB"
                                       for w, s in zip(workers, table[-1][1])), flush=True)
            time.sleep(max(0.0, args.pace - (time.monotonic() - t0)))
    finally:
        for w in workers:
            w.close()
        if not args.keep_dir:
            shutil.rmtree(tmp)
        else:
            print(f"output folders: {tmp}")
    print("\nfolders | " + " | ".join(f"{w.name} RSS / anon MiB" for w in workers))
    for n, st in table:
        print(f"{n:>7} | " + " | ".join(f"{s['VmRSS'] / 1024:6.1f} / {s['RssAnon'] / 1024:5.1f}" for s in st))
    (n0, s0), (n1, s1) = table[0], table[-1]
    if n1 > n0:
        per = [(w.name, (b["VmRSS"] - a["VmRSS"]) * 1000 / (n1 - n0) / 1024, (b["RssAnon"] - a["RssAnon"]) * 1000 / (n1 - n0) / 1024)
               for w, a, b in zip(workers, s0, s1)]
        print("per 1,000 folders: " + ", ".join(f"{name} RSS +{r:.2f} MiB, anon +{an:.2f} MiB" for name, r, an in per))

if __name__ == "__main__":
    main()
