"""The real earlyoom (Debian's 1.7) kills a hog, and record names it (issue 28). In a VM only.

earlyoom is never installed on the host (its package enables a service acting on the whole
machine): tests/vm/run-matrix.sh unpacks Debian's .deb for the guests (dpkg -x, no maintainer
scripts) and passes the tree as OOMSCOPE_VM_TOOLS; require_tool finds it there.

earlyoom acts on the host's /proc/meminfo, never on a cgroup: on a shared host it would kill
whatever is largest. So this runs only inside a VM of tests/vm/run-matrix.sh (OOMSCOPE_IN_VM=1),
where the test starts earlyoom itself and stops it by its pid. Its thresholds are set from the
VM's memory when the test starts: SIGTERM once MemAvailable falls 12 points of RAM below what it
is, SIGKILL 4 points further; ``--prefer`` names the hog, ``--avoid`` python (record and pytest);
no swap in the VMs (earlyoom counts free swap as 0%, below any -s). The hog runs in a sandbox
cgroup whose limit is above what it takes (no kernel OOM kill), ignores SIGTERM (earlyoom then
escalates to SIGKILL, the moment of the kernel snapshot), and allocates 16 MiB every 50 ms, so
that earlyoom, which polls up to 10 times a second, sees it cross."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from ..requires import require_tool

HOG = r"""
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open('/proc/self/comm', 'w').write('eo-hog')
target = int(sys.argv[1])
a = []
print('start', flush=True)
while sum(len(x) for x in a) < target:
    b = bytearray(16 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    a.append(b)
    time.sleep(0.05)
print('full', flush=True)
time.sleep(600)
"""


def keep_page(cap_path, folder):
    """Copy a post-mortem's folder to OOMSCOPE_KEEP_DIR/<folder> (tests/vm/run-matrix.sh with
    OOMSCOPE_VM_KEEP: the examples in reports/ come from the VMs' runs this way); nothing without it."""
    keep = os.environ.get("OOMSCOPE_KEEP_DIR")
    if keep:
        shutil.copytree(os.path.dirname(cap_path), os.path.join(keep, folder), dirs_exist_ok=True)


def _meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0]) * 1024
    return out


@pytest.mark.skipif(os.environ.get("OOMSCOPE_IN_VM") != "1", reason="earlyoom acts on the whole host's memory: run in a VM only "
                    "(tests/vm/run-matrix.sh tests/system/test_earlyoom.py)")
def test_real_earlyoom_kill_is_recorded_with_the_killer_and_its_threshold(recorder, sandbox):
    earlyoom = require_tool("earlyoom", vm_only=True)
    total = _meminfo()["MemTotal"]
    name, path = sandbox(limit=total)  # a limit the hog never reaches: earlyoom acts first
    rec = recorder("--cgroup", name, "--log-format", "json")
    avail = _meminfo()["MemAvailable"]  # once record runs (its compile's memory given back)
    term = max(5.0, round(100.0 * avail / total - 12.0, 1))
    kill = round(term - 4.0, 1)
    take = int(avail - (kill - 3.0) / 100.0 * total)  # 3 points past the SIGKILL threshold
    eo = subprocess.Popen([earlyoom, "-m", f"{term},{kill}", "-s", "100,100", "-r", "0", "--prefer", "^eo-hog$",
                           "--avoid", "^(python|pytest|sh)"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    hog = None
    try:
        time.sleep(1.0)
        assert eo.poll() is None, eo.stdout.read()
        hog = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3" "$4"', "sh",
                                os.path.join(path, "cgroup.procs"), sys.executable, HOG, str(take)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert hog.stdout.readline().strip() == b"start"
        rc = hog.wait(timeout=240)
        assert rc == -9, (rc, hog.stderr.read())
        ((cap_path, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == hog.pid, timeout=60)
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        eo.terminate()
        try:
            eo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            eo.kill()
            eo.wait()
    k = cap["killer"]
    eo_log = eo.stdout.read().decode("utf-8", "replace")
    assert k["kind"] == "userspace" and k["known_as"] == "earlyoom" and k["pid"] == eo.pid, (k, eo_log)
    assert k["exe"] == os.path.realpath(earlyoom) and k["comm"] == "earlyoom", k
    assert k["signal"].startswith("SIGTERM") or k["signal"] == "SIGKILL", k
    assert f"at or below {term:.1f}% of RAM" in k["rule"] and f"SIGKILL below {kill:.1f}%" in k["rule"], k["rule"]
    assert f"-m {term},{kill}" in k["rule"], k["rule"]
    assert "threshold" in k["rule_met"] and "neither" not in k["rule_met"], k["rule_met"]
    p = k["pressure"]
    assert p["mem_available_bytes"] <= (term + 2.0) / 100.0 * total, p  # the hog held its memory through the SIGTERM
    html = open(os.path.join(os.path.dirname(cap_path), "postmortem.html")).read()
    assert "Killed from user space, not by the kernel&#39;s OOM killer: earlyoom" in html
    assert str(hog.pid) in eo_log, eo_log  # earlyoom's own line names the process it killed
    keep_page(cap_path, f"userspace-earlyoom-{os.uname().release}")
    sys.stderr.write(f"measured: earlyoom -m {term},{kill} killed pid {hog.pid} with {k['signal']}; {k['rule_met']}; "
                     f"cgroup {p['cgroup_usage_bytes']} of {p['cgroup_limit_bytes']}\n")
