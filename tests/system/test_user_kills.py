"""User-space kills (issue 28): a SIGKILL is a memory post-mortem only under memory pressure or
from a killer oomscope knows.

One record, one sandbox cgroup: a process killed with SIGKILL by this test while its cgroup holds
a few MiB of its limit gets no post-mortem; the same cgroup filled to ~94% of its limit, its filler
killed by a process whose executable is named ``earlyoom`` (a copy of Python), gets one naming
that process, its rule (earlyoom's defaults: its command line has no -m/-s) and the pressure.
Every process signalled is one this test started, inside the sandbox (which has a limit)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .conftest import TIME_SCALE

LIMIT = 128 << 20
HOLD = "import sys, time\na = bytearray({n})\nfor i in range(0, len(a), 4096):\n    a[i] = 1\nprint('ready', flush=True)\ntime.sleep(300)\n"


def _start_in(fs_path, code):
    proc = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh",
                             os.path.join(fs_path, "cgroup.procs"), sys.executable, code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line.strip() == b"ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def _settle_psi(seconds=20):
    """The host's memory PSI below oomscope's threshold (another test's kills may have raised it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open("/proc/pressure/memory") as f:
                some = float(f.readline().split()[1].split("=")[1])
        except OSError:
            return
        if some < 5.0:
            return
        time.sleep(1)


def test_sigkill_without_pressure_is_not_a_postmortem_and_a_killer_under_pressure_is(recorder, sandbox, tmp_path):
    name, path = sandbox(limit=LIMIT)
    rec = recorder("--cgroup", name, "--log-format", "json")
    _settle_psi()

    # 1. kill -9 of a process far from its limit (8 MiB of 128), by a process that is no killer (this test)
    calm = _start_in(path, HOLD.format(n=8 << 20))
    time.sleep(1.0 * TIME_SCALE)  # the sampler has read the cgroup
    os.kill(calm.pid, signal.SIGKILL)
    assert calm.wait(timeout=10) == -9
    time.sleep(3.0 * TIME_SCALE)  # a SIGKILL is handed on at once; a SIGTERM after 1.5 s
    assert rec.captures() == [], [c["killer"] for _, c in rec.captures()]

    # 2. the cgroup at ~94% of its limit, its filler killed by a process named like earlyoom
    full = _start_in(path, HOLD.format(n=LIMIT - (8 << 20)))
    time.sleep(1.5 * TIME_SCALE)
    # a daemon like earlyoom lives on after its kill: so does this one, 2 s (a killer gone before record
    # reads /proc/<pid>/exe is named without it: the test failed 1 run in 4 on a loaded host)
    killer_exe = tmp_path / "earlyoom"
    shutil.copy(os.path.realpath(sys.executable), killer_exe)
    killer = subprocess.run([str(killer_exe), "-c", f"import os, sys, time; os.kill({full.pid}, 9); print(os.getpid()); sys.stdout.flush(); time.sleep(2)"],
                            capture_output=True, timeout=30)
    assert killer.returncode == 0, killer.stderr
    killer_pid = int(killer.stdout.split()[0])
    assert full.wait(timeout=10) == -9
    ((cap_path, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == full.pid, timeout=30)
    k = cap["killer"]
    assert k["kind"] == "userspace" and k["known_as"] == "earlyoom" and k["pid"] == killer_pid, k
    assert k["exe"] == str(killer_exe) and k["signal"] == "SIGKILL" and k["comm"] == "earlyoom", k
    assert "earlyoom sends SIGTERM when MemAvailable is at or below 10.0%" in k["rule"], k["rule"]
    assert any("of its limit" in m for m in k["pressure_met"]), k
    p = k["pressure"]
    assert p["cgroup_limit_bytes"] == LIMIT and 0.85 * LIMIT <= p["cgroup_usage_bytes"] <= LIMIT, p
    assert cap["cgroup"]["task_memcg"] == name and cap["cgroup"]["oom_memcg"] == name
    html = open(os.path.join(os.path.dirname(cap_path), "postmortem.html")).read()
    assert "Killed from user space, not by the kernel&#39;s OOM killer: earlyoom" in html
    rec.wait_for_output('"kind": "userspace_kill"')  # the line comes once the worker answered (later under emulation)
    (line,) = [json.loads(x) for x in rec.stdout().splitlines() if x.startswith("{")]
    assert line["kind"] == "userspace_kill" and line["killer"]["pid"] == killer_pid
    # only that kill: the calm one stayed no post-mortem
    assert [c["victim"]["pid"] for _, c in rec.captures()] == [full.pid]
