"""The real systemd-oomd (Debian's, systemd 252) kills in a VM, and record names it (issue 28).

systemd-oomd is never installed on the host (its package enables a service acting on the whole
machine): tests/vm/run-matrix.sh unpacks Debian's systemd-oomd and its libsystemd-shared (one
version) for the guests, passed as OOMSCOPE_VM_TOOLS; the daemon runs with that library first.

systemd-oomd acts only on cgroups that systemd (PID 1) tells it about over varlink
(/run/systemd/io.system.ManagedOOM, io.systemd.ManagedOOM.SubscribeManagedOOMCGroups: the units
with ManagedOOMSwap= or ManagedOOMMemoryPressure=), and it requires PSI and the unified hierarchy
(src/oom/oomd.c). The test VMs boot virtme-ng's init, not systemd, so this test stands in for PID 1:
a varlink server on that socket answers the subscription with one cgroup, the sandbox,
ManagedOOMMemoryPressure=kill at 10% (a drop-in in /run/systemd/oomd.conf.d makes the duration
2 s). systemd-oomd also wants the system bus (it waits for it, without failing) and its own varlink
socket's folder (/run/systemd/oom, made here). Only the sandbox is ever given to systemd-oomd: it
can kill nothing else. VM only.

How it picks (src/oom/oomd-manager.c, monitor_memory_pressure_contexts_handler, and oomd-util.c):
once a monitored cgroup's memory.pressure *full* avg10 stays above its limit for the duration, it
acts only if that cgroup's memory.stat ``pgscan`` rose within the last 30 s (RECLAIM_DURATION_USEC:
"no reclaim, killing will not help"), then kills the leaf cgroup below it with the highest pgscan
rate (cgroup.procs, SIGKILL from systemd-oomd itself). The first VM run (6.1) killed nothing in 360 s
for that reason: the sandbox cgroups had memory.swap.max 0 (tests' create_cgroup), so the thrasher's
anonymous pages could not be reclaimed, pgscan stayed 0 and PSI full near 100% (the penalty sleeps
of memory.high) never met "reclaim activity". Here both cgroups may swap (zram, the VM suite's,
test_swap.py): a child of the sandbox touches 96 MiB in a loop with memory.high at 24 MiB, so it is
reclaimed to zram and faults back in, pgscan rises and its PSI full with it. If no kill comes, the
failure says the pressure and pgscan systemd-oomd saw and its own debug lines.

oomctl (systemd 252) asks systemd-oomd over D-Bus (DumpByFileDescriptor): the VMs have no system
bus, so its view is not read; the debug log stands in for it."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from ..requires import VM_TOOLS_ENV, require_tool
from .conftest import TIME_SCALE, measured
from .test_earlyoom import keep_page
from .test_swap import zram_swap  # noqa: F401 - the fixture: swap on zram, removed afterwards

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


def _pressure(path):
    """(memory.pressure full avg10, memory.stat pgscan) of a cgroup, or None for one unreadable."""
    try:
        with open(os.path.join(path, "memory.pressure")) as f:
            full = [x for x in f.read().split("\n") if x.startswith("full")][0]
        avg10 = float(full.split()[1].split("=")[1])
        with open(os.path.join(path, "memory.stat")) as f:
            pgscan = int([x for x in f.read().split("\n") if x.startswith("pgscan ")][0].split()[1])
        return avg10, pgscan
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.skipif(os.environ.get("OOMSCOPE_IN_VM") != "1", reason="systemd-oomd acts on the machine's swap and cgroup tree: "
                    "run in a VM only (tests/vm/run-matrix.sh tests/system/test_systemd_oomd.py)")
def test_real_systemd_oomd_kill_is_recorded_with_its_rule(zram_swap, recorder, sandbox):  # noqa: F811
    oomd_path = require_tool("systemd-oomd", vm_only=True)
    libdir = os.path.join(os.environ.get(VM_TOOLS_ENV, "/"), "usr/lib/x86_64-linux-gnu/systemd")
    pid1 = open("/proc/1/comm").read().strip()
    name, path = sandbox(limit=512 << 20)
    with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
        f.write("+memory")
    child, child_path = sandbox(limit=256 << 20, parent=name)
    for p in (path, child_path):  # reclaim must be able to swap: systemd-oomd acts only with pgscan rising
        with open(os.path.join(p, "memory.swap.max"), "w") as f:
            f.write("max")
    rec = recorder("--cgroup", name, "--log-format", "json")
    os.makedirs(os.path.dirname(DROPIN), exist_ok=True)
    with open(DROPIN, "w") as f:
        f.write("[OOM]\nDefaultMemoryPressureDurationSec=2s\n")
    standin = Pid1StandIn([{"mode": "kill", "path": name, "property": "ManagedOOMMemoryPressure",
                            "limit": int(0.10 * (1 << 32))}])
    env = dict(os.environ, SYSTEMD_LOG_TARGET="console", SYSTEMD_LOG_LEVEL="debug")
    if os.path.isdir(libdir):
        env["LD_LIBRARY_PATH"] = libdir  # the unpacked libsystemd-shared of the same version first
    oomd = subprocess.Popen([oomd_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out_lines = []
    threading.Thread(target=lambda: out_lines.extend(oomd.stdout), daemon=True).start()
    hog = None
    seen = []  # (s, sandbox (full avg10, pgscan), child's)
    t0 = time.monotonic()
    try:
        time.sleep(3 * TIME_SCALE)
        if oomd.poll() is not None:
            time.sleep(0.5)
            out = b"".join(out_lines).decode("utf-8", "replace")
            measured(f"systemd-oomd in the VM (PID 1: {pid1}) exited {oomd.returncode}: " + " | ".join(out.strip().split("\n")[-8:]))
            pytest.fail(f"systemd-oomd did not run: {out[-1500:]}")
        assert standin.calls and standin.calls[0].get("method") == "io.systemd.ManagedOOM.SubscribeManagedOOMCGroups", standin.calls
        with open(os.path.join(child_path, "memory.high"), "w") as f:
            f.write(str(24 << 20))
        hog = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh",
                                os.path.join(child_path, "cgroup.procs"), sys.executable, THRASH],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert hog.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60 * TIME_SCALE
        while hog.poll() is None and time.monotonic() < deadline:
            seen.append((round(time.monotonic() - t0), _pressure(path), _pressure(child_path)))
            time.sleep(2)
        rc = hog.poll()
        if rc != -9:
            log = b"".join(out_lines).decode("utf-8", "replace").split("\n")
            said = [x for x in log if any(w in x for w in ("ressure", "candidate", "Failed", "Kill", "kill", "reclaim", "swap"))]
            pytest.fail(f"systemd-oomd killed nothing in {time.monotonic() - t0:.0f} s (hog: {rc}); "
                        f"(s, sandbox (full avg10, pgscan), child): {seen[-12:]}; oomd said: {said[-20:]}; last lines: {log[-10:]}",
                        pytrace=False)
        took = time.monotonic() - t0
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
    time.sleep(0.5)
    log = b"".join(out_lines).decode("utf-8", "replace")
    k = cap["killer"]
    measured(f"systemd-oomd killed pid {hog.pid} in {child} {took:.0f} s after it started: {k['signal']}; rule: {k['rule']}; "
             f"at the kill: {k['rule_met']}; pressure then (s, sandbox (full avg10, pgscan), child): {seen[-3:]}; oomd said: "
             + " | ".join(x for x in log.split("\n") if "Kill" in x or "kill" in x)[-600:])
    assert k["kind"] == "userspace" and k["known_as"] == "systemd-oomd" and k["pid"] == oomd.pid, (k, log[-2000:])
    assert k["exe"] == os.path.realpath(oomd_path) and k["signal"] == "SIGKILL", k
    assert "DefaultMemoryPressureLimit=60%" in k["rule"] or "ManagedOOM" in k["rule"], k["rule"]
    assert cap["cgroup"]["task_memcg"] == child
    assert child in log and "memory pressure" in log, log[-2000:]  # its own line: Killed <child> due to memory pressure for <sandbox> ...
    html = open(os.path.join(os.path.dirname(cap_path), "postmortem.html")).read()
    assert "Killed from user space, not by the kernel&#39;s OOM killer: systemd-oomd" in html
    keep_page(cap_path, f"userspace-systemd-oomd-{os.uname().release}")
