"""The real systemd-oomd (Debian's, systemd 252) kills in a VM, and record names it (issue 28).

systemd-oomd acts only on cgroups that systemd (PID 1) tells it about over varlink
(/run/systemd/io.system.ManagedOOM, io.systemd.ManagedOOM.SubscribeManagedOOMCGroups: the units
with ManagedOOMSwap= or ManagedOOMMemoryPressure=), and it requires swap, PSI and the unified
hierarchy (src/oom/oomd.c). The test VMs boot virtme-ng's init, not systemd, so this test stands
in for PID 1: a varlink server on that socket answers the subscription with one cgroup, the
sandbox, ManagedOOMMemoryPressure=kill at 20% of PSI full (a drop-in in /run/systemd/oomd.conf.d
makes the duration 2 s). systemd-oomd also wants the system bus (it waits for it, without failing)
and its own varlink socket's folder (/run/systemd/oom, made here). Swap is zram (the VM suite's, test_swap.py). A child cgroup of the sandbox thrashes
(memory.high far below what its process touches, in a loop, swapping on zram), so its PSI full
rises; systemd-oomd kills the candidate below the monitored cgroup with the most reclaim: the
child. Only the sandbox is ever given to systemd-oomd: it can kill nothing else. VM only."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from ..requires import require_path
from .conftest import TIME_SCALE, measured
from .test_swap import zram_swap  # noqa: F401 - the fixture: swap on zram, removed afterwards

OOMD = "/usr/lib/systemd/systemd-oomd"
PID1_SOCKET = "/run/systemd/io.system.ManagedOOM"
DROPIN = "/run/systemd/oomd.conf.d/oomscope-test.conf"
THRASH = r"""
import mmap, time
m = mmap.mmap(-1, 96 << 20)
print('ready', flush=True)
while True:
    for i in range(0, 96 << 20, 4096):
        m[i] = (m[i] + 1) & 0xff
"""


class Pid1StandIn:
    """The one varlink method systemd-oomd calls on PID 1: SubscribeManagedOOMCGroups, answered
    with ``cgroups`` and kept open (more replies could follow)."""

    def __init__(self, cgroups):
        os.makedirs(os.path.dirname(PID1_SOCKET), exist_ok=True)
        os.makedirs("/run/systemd/oom", exist_ok=True)  # systemd-oomd's own varlink socket (RuntimeDirectory under systemd)
        if os.path.exists(PID1_SOCKET):
            raise AssertionError(f"{PID1_SOCKET} exists: systemd runs here; this stand-in is for a VM without it")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(PID1_SOCKET)
        self.sock.listen(4)
        self.cgroups = cgroups
        self.calls = []
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            buf = b""
            while b"\0" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            call = json.loads(buf.split(b"\0", 1)[0] or b"{}")
            self.calls.append(call)
            reply = {"parameters": {"cgroups": self.cgroups}}
            if call.get("more"):
                reply["continues"] = True
            conn.sendall(json.dumps(reply).encode() + b"\0")

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()
        os.unlink(PID1_SOCKET)


@pytest.mark.skipif(os.environ.get("OOMSCOPE_IN_VM") != "1", reason="systemd-oomd acts on the machine's swap and cgroup tree: "
                    "run in a VM only (tests/vm/run-matrix.sh tests/system/test_systemd_oomd.py)")
def test_real_systemd_oomd_kill_is_recorded_with_its_rule(zram_swap, recorder, sandbox):  # noqa: F811
    require_path(OOMD, "systemd-oomd")
    pid1 = open("/proc/1/comm").read().strip()
    name, path = sandbox(limit=512 << 20)
    with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
        f.write("+memory")
    child, child_path = sandbox(limit=256 << 20, parent=name)
    rec = recorder("--cgroup", name, "--log-format", "json")
    os.makedirs(os.path.dirname(DROPIN), exist_ok=True)
    with open(DROPIN, "w") as f:
        f.write("[OOM]\nDefaultMemoryPressureDurationSec=2s\n")
    standin = Pid1StandIn([{"mode": "kill", "path": name, "property": "ManagedOOMMemoryPressure",
                            "limit": int(0.20 * (1 << 32))}])
    env = dict(os.environ, SYSTEMD_LOG_TARGET="console", SYSTEMD_LOG_LEVEL="debug")
    oomd = subprocess.Popen([OOMD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    hog = None
    try:
        time.sleep(3 * TIME_SCALE)
        if oomd.poll() is not None:
            out = oomd.stdout.read().decode("utf-8", "replace")
            measured(f"systemd-oomd in the VM (PID 1: {pid1}) exited {oomd.returncode}: " + " | ".join(out.strip().split("\n")[-8:]))
            pytest.fail(f"systemd-oomd did not run: {out[-1500:]}")
        assert standin.calls and standin.calls[0].get("method") == "io.systemd.ManagedOOM.SubscribeManagedOOMCGroups", standin.calls
        with open(os.path.join(child_path, "memory.high"), "w") as f:
            f.write(str(24 << 20))
        hog = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh",
                                os.path.join(child_path, "cgroup.procs"), sys.executable, THRASH],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert hog.stdout.readline().strip() == b"ready"
        rc = hog.wait(timeout=120 * TIME_SCALE)
        assert rc == -9, rc
        ((cap_path, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == hog.pid, timeout=60)
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        oomd.terminate()
        try:
            oomd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            oomd.kill()
            oomd.wait()
        standin.close()
        os.unlink(DROPIN)
    log = oomd.stdout.read().decode("utf-8", "replace")
    k = cap["killer"]
    measured(f"systemd-oomd killed pid {hog.pid} in {child}: {k['signal']}; rule: {k['rule']}; at the kill: {k['rule_met']}; "
             f"oomd said: " + " | ".join(x for x in log.split("\n") if "Kill" in x or "kill" in x)[-600:])
    assert k["kind"] == "userspace" and k["known_as"] == "systemd-oomd" and k["pid"] == oomd.pid, (k, log[-2000:])
    assert k["exe"] == OOMD and k["signal"] == "SIGKILL", k
    assert "DefaultMemoryPressureLimit=60%" in k["rule"] or "ManagedOOM" in k["rule"], k["rule"]
    assert cap["cgroup"]["task_memcg"] == child
    html = open(os.path.join(os.path.dirname(cap_path), "postmortem.html")).read()
    assert "Killed from user space, not by the kernel&#39;s OOM killer: systemd-oomd" in html
