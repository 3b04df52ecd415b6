#!/usr/bin/env python3
"""Throughput of `oomscope import` on a large kernel log, beside grep on the same file.

Writes a synthetic dmesg-shaped log of SIZE (default 1 GiB): ordinary kernel messages with real
OOM reports (tests/fixtures/logs/dmesg-v1-6.18.txt, a full 6.18 report) making up ~2.5% of the
lines, and some bare rate-limited "Killed process" lines. Then, from the page cache (the file is
read once first):
  - grep -c 'Killed process' FILE
  - the whole import: every report parsed and its capture built (not written)
  - `oomscope import FILE -o DIR` as a process: parsed, analysed, captures and post-mortems written
  - the same from a gzip'd copy, beside `zcat` alone (bounded by decompression: reported apart)
  - the same from a journal export (`journalctl -k -o json` shape) of that copy, beside grep on it
Run: /opt/oomscope/venv/bin/python bench/import_logs.py [--mib 1024] [--dir /tmp] [--no-write] [--ordinary N]
or write the log only (--write-only FILE) and time `oomscope import FILE -o DIR` beside grep, zcat
or journalctl with any timer (bench/README.md gives the figures and how they were taken), or with
--paired BEFORE=CHECKOUT AFTER=CHECKOUT --log FILE [--runs 5]: whole processes, side by side,
each checkout's import and grep in turn, ratios pair by pair (bench/README.md's method).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from oomscope.importer import import_reports, open_log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = open(os.path.join(HERE, "..", "tests", "fixtures", "logs", "dmesg-v1-6.18.txt")).read().splitlines()
NOISE = ["eth0: renamed from veth{n}", "EXT4-fs (sda1): mounted filesystem with ordered data mode",
         "audit: type=1400 audit({n}.123:45): apparmor=\"STATUSE\" operation=\"profile_load\" name=\"x\"",
         "IPv6: ADDRCONF(NETDEV_CHANGE): cali{n}: link becomes ready",
         "systemd-journald[345]: Received client request to flush runtime journal.",
         "nfs: server storage-{n} not responding, still trying", "TCP: request_sock_TCP: Possible SYN flooding on port 443."]


def write_log(path: str, size: int, ordinary: int = 39 * len(REPORT) // 2) -> int:
    """Returns the number of kills written. ``ordinary``: lines of other messages before each
    report (the default, 39 per report line over two kills, keeps reports at ~2.5% of the lines:
    ~17,700 kills in 1 GiB, a storm; 1,000,000 gives 28)."""
    kills, t, n = 0, 1000.0, 0
    body = [line.split("] ", 1)[1] for line in REPORT]
    with open(path, "w") as f:
        while f.tell() < size:
            for _ in range(ordinary):
                n += 1
                t += 0.000137
                f.write(f"[{t:12.6f}] {NOISE[n % len(NOISE)].format(n=n)}\n")
            for line in body:
                t += 0.000002
                f.write(f"[{t:12.6f}] {line}\n")
            kills += 1
            for i in range(1):  # a rate-limited kill: only its Killed line
                t += 0.01
                f.write(f"[{t:12.6f}] Memory cgroup out of memory: Killed process {50000 + kills * 3 + i} (worker) "
                        "total-vm:76132kB, anon-rss:65280kB, file-rss:5544kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:0\n")
                kills += 1
    return kills


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def paired(log: str, runs: int, checkouts: list, out_dir: str, python: str, outs: Optional[dict] = None) -> None:
    """bench/README.md's method: whole processes timed from outside (wall from start to reap; CPU
    the user and system time of the process and the children it waited for), page cache warm,
    ``grep -c 'Killed process'`` then each checkout's ``oomscope import LOG -o NEW_FOLDER`` in
    turn, their order alternated, a warm-up round first, every run into a new folder (none removed:
    ext4's scan of recently freed inodes would be measured instead); ratios pair by pair. ``outs``:
    a name's runs written under another folder (one checkout under two names, on two file systems)."""
    import statistics

    os.makedirs(out_dir, exist_ok=True)
    sink = os.path.join(out_dir, "grep.out")  # not /dev/null: GNU grep then stops at the first match

    def run(argv, env=None, cwd=None):
        with open(sink, "w") as out:
            t = time.perf_counter()
            p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
        if status != 0 and not (argv[0] == "grep" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1):  # (grep: no match)
            raise SystemExit(f"{argv}: exit status {status}")
        return time.perf_counter() - t, ru.ru_utime + ru.ru_stime, ru.ru_stime

    subprocess.run(["cat", log], stdout=subprocess.DEVNULL, check=True)
    names = [name for name, _ in checkouts]
    got = {name: [] for name in names}
    for i in range(runs + 1):
        g = run(["grep", "-c", "Killed process", log])
        row = {}
        for name, co in (checkouts if i % 2 == 0 else checkouts[::-1]):
            # run from the checkout: ``python -m`` puts the current folder first on sys.path, before PYTHONPATH
            env = dict(os.environ, PYTHONPATH=co)
            row[name] = run([python, "-m", "oomscope", "import", log, "-o", os.path.join((outs or {}).get(name, out_dir), f"{name}-{i}")],
                            env=env, cwd=co)
        load = open("/proc/loadavg").read().split()[0]
        print(f"run {i}{' (warm-up)' if i == 0 else ''}: load {load}, grep {g[0]:.3f} s; " +
              "; ".join(f"{n} {w:.2f} s wall, {c:.2f} s CPU ({w / g[0]:.1f}x grep)" for n, (w, c, _) in row.items()), flush=True)
        if i > 0:
            for name in names:
                got[name].append((row[name], g))

    def med(xs):
        return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"

    greps = [g for _, g in got[names[0]]]
    print(f"grep: wall {med([g[0] for g in greps])} s, CPU {med([g[1] for g in greps])} s")
    for name in names:
        r = got[name]
        print(f"{name}: wall {med([a[0] for a, _ in r])} s = {med([a[0] / g[0] for a, g in r])}x grep; "
              f"CPU {med([a[1] for a, _ in r])} s (user {med([a[1] - a[2] for a, _ in r])}, sys {med([a[2] for a, _ in r])}) "
              f"= {med([a[1] / g[1] for a, g in r])}x grep's CPU")
    for other in names[1:]:
        pairs = list(zip(got[names[0]], got[other]))
        print(f"{other} / {names[0]}, paired: wall {med([b[0][0] / a[0][0] for a, b in pairs])}, "
              f"CPU {med([b[0][1] / a[0][1] for a, b in pairs])}, user {med([(b[0][1] - b[0][2]) / (a[0][1] - a[0][2]) for a, b in pairs])}, "
              f"sys {med([b[0][2] / a[0][2] for a, b in pairs])}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--gz-mib", type=int, default=256, help="size of the gzip'd run (decompression-bound)")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--no-write", action="store_true", help="skip the runs that write captures and post-mortems")
    ap.add_argument("--ordinary", type=int, default=39 * len(REPORT) // 2,
                    help="lines of other messages before each report (default: reports ~2.5%% of the lines)")
    ap.add_argument("--write-only", metavar="FILE", help="only write the log to FILE (to time commands on it apart)")
    ap.add_argument("--paired", nargs="+", metavar="NAME=CHECKOUT",
                    help="time `oomscope import --log FILE` of each checkout beside grep, side by side (bench/README.md)")
    ap.add_argument("--log", help="the log for --paired (written by --write-only)")
    ap.add_argument("--runs", type=int, default=5, help="--paired: runs after the warm-up")
    ap.add_argument("--python", default=sys.executable, help="--paired: the interpreter to run each checkout with")
    ap.add_argument("--out", nargs="+", default=[], metavar="NAME=DIR",
                    help="--paired: NAME's runs written in a new folder under DIR (e.g. one checkout as two names, "
                         "on ext4 and on tmpfs); the others' under --dir")
    args = ap.parse_args()
    if args.paired:
        if not args.log:
            ap.error("--paired needs --log FILE")
        checkouts = [tuple(a.split("=", 1)) if "=" in a else (os.path.basename(a.rstrip("/")), a) for a in args.paired]
        checkouts = [(name, os.path.abspath(co)) for name, co in checkouts]
        outs = {name: tempfile.mkdtemp(dir=d, prefix="oomscope-bench-import-paired-") for name, d in (a.split("=", 1) for a in args.out)}
        paired(args.log, args.runs, checkouts, tempfile.mkdtemp(dir=args.dir, prefix="oomscope-bench-import-paired-"), args.python, outs)
        return
    if args.write_only:
        print(f"{write_log(args.write_only, args.mib << 20, args.ordinary)} kills")
        return
    work = tempfile.mkdtemp(dir=args.dir, prefix="oomscope-bench-import-")
    try:
        path = os.path.join(work, "kern.log")
        kills = write_log(path, args.mib << 20, args.ordinary)
        size = os.path.getsize(path)
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        t_grep, res = timed(lambda: subprocess.run(["grep", "-c", "Killed process", path], capture_output=True, text=True))
        t_imp, imps = timed(lambda: import_reports(open_log(path)))
        full = sum(i.report.has_header for i in imps)
        print(f"log: {size / 1e6:.0f} MB, {kills} kills ({full} with a full report); grep counted {res.stdout.strip()}")
        print(f"grep -c 'Killed process': {t_grep:.2f} s = {size / t_grep / 1e6:.0f} MB/s")
        print(f"oomscope import (parsed, captures built): {t_imp:.2f} s = {size / t_imp / 1e6:.0f} MB/s, "
              f"{t_imp / t_grep:.2f}x grep's time; {len(imps)} captures")
        cli = [sys.executable, "-m", "oomscope", "import"]
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        if not args.no_write:
            t_w, _ = timed(lambda: subprocess.run(cli + [path, "-o", os.path.join(work, "out")], env=env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))
            print(f"oomscope import -o (written and rendered): {t_w:.2f} s, {t_w / t_grep:.2f}x grep's time")
            shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
        gz_path = os.path.join(work, "kern.log.gz")
        with open(path, "rb") as src, gzip.open(gz_path, "wb", compresslevel=6) as dst:
            dst.write(src.read(args.gz_mib << 20))
        gz_size = min(size, args.gz_mib << 20)
        t_gz, imps_gz = timed(lambda: import_reports(open_log(gz_path)))
        t_zcat, _ = timed(lambda: subprocess.run(["sh", "-c", f"zcat {gz_path} > /dev/null"], check=True))
        print(f"gzip'd ({gz_size / 1e6:.0f} MB uncompressed): import {t_gz:.2f} s = {gz_size / t_gz / 1e6:.0f} MB/s "
              f"(zcat alone {gz_size / t_zcat / 1e6:.0f} MB/s); {len(imps_gz)} captures")
        journal = os.path.join(work, "journal.json")
        with open(path) as src, open(journal, "w") as dst:
            n = 0
            for line in src:
                n += len(line)
                if n > gz_size:
                    break
                usec = int(float(line[1:13]) * 1e6)
                dst.write(json.dumps({"_TRANSPORT": "kernel", "PRIORITY": "6", "MESSAGE": line[15:-1],
                                      "_SOURCE_MONOTONIC_TIMESTAMP": str(usec),
                                      "__REALTIME_TIMESTAMP": str(1795800000000000 + usec)}) + "\n")
        t_jg, _ = timed(lambda: subprocess.run(["grep", "-c", "Killed process", journal], capture_output=True))
        t_j, imps_j = timed(lambda: import_reports(open_log(journal)))
        print(f"journal export ({os.path.getsize(journal) / 1e6:.0f} MB): import {t_j:.2f} s, {t_j / t_jg:.2f}x grep on it; "
              f"{len(imps_j)} captures")
        if not args.no_write:
            for name, src, base_cmd in (("gz", gz_path, f"zcat {gz_path} > /dev/null"),
                                        ("journal", journal, f"grep -c 'Killed process' {journal} > /dev/null")):
                t_base, _ = timed(lambda base_cmd=base_cmd: subprocess.run(["sh", "-c", base_cmd], check=True))
                t_w, _ = timed(lambda src=src, name=name: subprocess.run(cli + [src, "-o", os.path.join(work, "out-" + name)], env=env,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))
                print(f"{name}: oomscope import -o {t_w:.2f} s vs {base_cmd.split()[0]} {t_base:.2f} s = {t_w / t_base:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
