"""The OOM storm the benchmarks make (bench/latency.py, bench/lean.py): a parent spared by the OOM
killer (oom_score_adj -1000) keeps three children allocating 1 MiB at a time in a cgroup until
each is killed, and forks a new one in its place, for SECONDS."""

from __future__ import annotations

import os
import subprocess
import sys

STORM = r"""
import os, sys, time
open('/proc/self/oom_score_adj', 'w').write('-1000')
end = time.monotonic() + float(sys.argv[1])
children = set()
while time.monotonic() < end:
    while len(children) < 3:
        pid = os.fork()
        if pid == 0:
            open('/proc/self/oom_score_adj', 'w').write('0')
            a = []
            while True:
                a.append(bytearray(1 << 20))
        children.add(pid)
    pid, _ = os.wait()
    children.discard(pid)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def run_storm(cgroup_fs_path: str, seconds: float, timeout_s: float = 120, cpu_procs: str = "") -> None:
    """A storm in the cgroup at ``cgroup_fs_path`` (its cgroupfs folder), until it ends; with
    ``cpu_procs`` (a CPU cgroup's cgroup.procs on v1), in that CPU cgroup too."""
    subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1" && { [ -z "$5" ] || echo $$ > "$5"; } && exec "$2" -c "$3" "$4"', "sh",
                    os.path.join(cgroup_fs_path, "cgroup.procs"), sys.executable, STORM, str(seconds), cpu_procs],
                   timeout=timeout_s, check=True)
