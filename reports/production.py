"""Examples shaped like production, recorded for real inside a throw-away VM (cgroup v2).

    python3 reports/production.py OUT [--slow-minutes M]      (as root, inside a VM: see generate.sh)

What it does, in one boot:
- starts ``oomscope record -o OUT/kills`` as a node's recorder would run;
- makes the cgroups a kubelet with the systemd driver makes on a cgroup v2 node, with the values
  Kubernetes 1.37's MemoryQoS writes (below), under /kubepods.slice (refused if it exists: this
  script runs only where no real kubelet does, OOMSCOPE_IN_VM=1);
- runs three containers' workloads at once, each killed by the kernel at its own limit:
  * ``checkout-api`` (Burstable, request 128Mi, limit 256Mi): a leak of ~1 MiB a second with
    churn; memory.high (MemoryQoS) throttles it for the last 13 MiB before memory.max kills it;
  * ``log-shipper`` (Burstable, request 64Mi, limit 128Mi): writes its log to a volume whose
    writes stall (io.max, a few KB a second: a network disk that stopped answering), so ~20% of
    its charge is dirty page cache that reclaim cannot free, then grows its buffers until killed:
    a kill with page cache in the charge;
  * ``session-cache`` (Guaranteed, request = limit 160Mi: no memory.high): a slow leak that
    reaches its limit after ``--slow-minutes`` (default 33).
- stops the recorder once all three were killed, removes what it made, and writes OUT/examples.json
  (example -> cgroup path, what was set) and OUT/production.log.

MemoryQoS (KEP-2570, as of Kubernetes 1.27 and the 1.37 default): memory.min = the request on the
container, pod and QoS slices; memory.high on a Burstable container with a limit =
floor((request + 0.9 * (limit - request)) / page) * page (memoryThrottlingFactor 0.9); no
memory.high on a Guaranteed container (request = limit). memory.max = the limit on the container,
the sum of the containers' limits on the pod slice, the node's allocatable on kubepods.slice.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid

CG = "/sys/fs/cgroup"
MI = 1 << 20
PAGE = 4096
THROTTLING_FACTOR = 0.9
ALLOCATABLE = 1200 * MI  # the VM has 2 GiB; the "node" reserves the rest


def memory_high(request: int, limit: int) -> int:
    return int((request + THROTTLING_FACTOR * (limit - request)) // PAGE) * PAGE


def _name(name: str) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write(name[:15])


# ---- the workloads (run as: production.py work KIND LIMIT ...) ----

def work_leak(limit: int) -> None:
    """A service that leaks ~1 MiB a second (a cache never evicted) and churns request buffers."""
    _name("checkout-api")
    kept, n = [], 0
    while True:
        kept.append(bytearray(256 << 10))  # zero-filled: touched, charged
        tmp = bytearray(512 << 10)  # a request's buffers, freed at once
        del tmp
        n += 1
        time.sleep(0.25)


def work_pagecache(limit: int, mount: str) -> None:
    """Writes its log to ``mount`` (a volume whose writes stall) while its buffers grow."""
    _name("log-shipper")
    stop = threading.Event()

    def write_log() -> None:
        line = (b"2026-12-06T13:00:00Z level=info msg=\"shipped batch\" batch=%d bytes=65536 " + b"x" * 180 + b"\n")
        with open(os.path.join(mount, "shipper.log"), "ab", buffering=1 << 16) as f:
            i = 0
            while not stop.is_set():
                f.write(line % i)
                i += 1
                if i % 4096 == 0:
                    time.sleep(0.01)

    threading.Thread(target=write_log, daemon=True).start()
    time.sleep(40)  # the log's dirty pages pile up to the cgroup's dirty limit, then the writer waits
    kept = []
    while True:
        kept.append(bytearray(MI))
        time.sleep(0.5)


def work_slowleak(limit: int, minutes: float) -> None:
    """A session cache that never expires entries: it reaches ``limit`` after ``minutes``."""
    _name("session-cache")
    base = 14 * MI  # the interpreter and its heap
    step = 64 << 10
    pause = minutes * 60 * step / max(limit - base, step)
    kept, i = [], 0
    while True:
        kept.append(bytearray(step))
        i += 1
        if i % 400 == 0:  # a periodic compaction: a short spike of 4 MiB
            spike = bytearray(4 * MI)
            del spike
        time.sleep(pause)


# ---- the node ----

def log(out: str, msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(os.path.join(out, "production.log"), "a") as f:
        f.write(line + "\n")


def write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def enable(parent: str, controllers=("memory", "io")) -> None:
    have = open(os.path.join(parent, "cgroup.controllers")).read().split()
    on = open(os.path.join(parent, "cgroup.subtree_control")).read().split()
    for c in controllers:
        if c in have and c not in on:
            write(os.path.join(parent, "cgroup.subtree_control"), "+" + c)


def make(path: str, **files) -> str:
    parent = os.path.dirname(path.rstrip("/"))
    enable(parent)
    os.mkdir(path)
    for name, value in files.items():
        try:
            write(os.path.join(path, name.replace("_", ".", 1)), str(value))
        except OSError:
            if "swap" not in name:  # a kernel without swap accounting has no memory.swap.max
                raise
    return path


def container(qos: str, name: str, request: int, limit: int, made: list) -> dict:
    uid = str(uuid.uuid4())
    cid = secrets.token_hex(32)
    qos_dir = f"{CG}/kubepods.slice" if qos == "guaranteed" else f"{CG}/kubepods.slice/kubepods-{qos}.slice"
    if not os.path.isdir(qos_dir):
        made.append(make(qos_dir))
    pod_slice = f"kubepods-{qos}-pod{uid.replace('-', '_')}.slice" if qos != "guaranteed" else f"kubepods-pod{uid.replace('-', '_')}.slice"
    pod = make(f"{qos_dir}/{pod_slice}", memory_max=limit, memory_min=request)
    made.append(pod)
    files = {"memory_max": limit, "memory_min": request, "memory_swap.max": 0}
    high = None
    if qos == "burstable":
        high = memory_high(request, limit)
        files["memory_high"] = high
    scope = make(f"{pod}/cri-containerd-{cid}.scope", **files)
    made.append(scope)
    return {"name": name, "qos": qos, "pod_uid": uid, "container_id": cid, "cgroup": scope[len(CG):],
            "request": request, "limit": limit, "memory_high": high, "memory_min": request}


def start_in(scope: str, argv: list, out: str, name: str) -> subprocess.Popen:
    err = open(os.path.join(out, f"{name}.stderr"), "wb")
    return subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                             f"{CG}{scope}/cgroup.procs", *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)


def stalled_volume(out: str) -> tuple:
    """An ext4 volume on a zram disk (the VM has no other): returns (mount point, MAJ:MIN)."""
    subprocess.run(["modprobe", "zram"], check=False, capture_output=True)
    with open("/sys/class/zram-control/hot_add") as f:
        dev = int(f.read().strip())
    write(f"/sys/block/zram{dev}/disksize", str(512 * MI))
    subprocess.run(["mkfs.ext4", "-q", "-F", f"/dev/zram{dev}"], check=True, capture_output=True, timeout=120)
    mnt = "/run/oomscope-volume"
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["mount", f"/dev/zram{dev}", mnt], check=True, capture_output=True, timeout=60)
    majmin = open(f"/sys/block/zram{dev}/dev").read().strip()
    return mnt, majmin


def memstat(scope: str) -> str:
    try:
        st = dict(line.split() for line in open(f"{CG}{scope}/memory.stat"))
        cur = int(open(f"{CG}{scope}/memory.current").read())
    except OSError:
        return "gone"
    keys = ("anon", "file", "inactive_file", "active_file", "file_dirty", "file_writeback")
    return f"current {cur / MI:.1f} MiB " + " ".join(f"{k} {int(st.get(k, 0)) / MI:.1f}" for k in keys)


def oom_kills(scope: str) -> int:
    try:
        events = dict(line.split() for line in open(f"{CG}{scope}/memory.events"))
    except OSError:
        return 0
    return int(events.get("oom_kill", 0))


def node(out: str, slow_minutes: float) -> int:
    if os.environ.get("OOMSCOPE_IN_VM") != "1":
        print("production.py makes /kubepods.slice: run it only in a throw-away VM (OOMSCOPE_IN_VM=1)", file=sys.stderr)
        return 2
    if os.path.exists(f"{CG}/kubepods.slice") or not os.path.exists(f"{CG}/cgroup.controllers"):
        print("needs cgroup v2 and no /kubepods.slice (a real node's): refused", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(here)
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=checkout)
    log(out, f"kernel {os.uname().release}; starting record")
    rec_err = open(os.path.join(out, "record.stderr"), "wb")
    rec = subprocess.Popen([py, "-m", "oomscope", "record", "-o", os.path.join(out, "kills")], cwd=checkout, env=env,
                           stdin=subprocess.DEVNULL, stdout=open(os.path.join(out, "record.stdout"), "wb"), stderr=rec_err)
    made: list = []
    procs = {}
    mnt = None
    try:
        deadline = time.monotonic() + 600
        said = b""
        while time.monotonic() < deadline and rec.poll() is None:
            said = open(os.path.join(out, "record.stderr"), "rb").read()
            if b"recording OOM kills" in said:  # its line once BPF is attached (bcc's compiler warnings come before)
                break
            time.sleep(1)
        time.sleep(10)  # its first pass over the host (slow under emulation)
        if rec.poll() is not None:
            log(out, f"record exited {rec.returncode}")
            return 1
        line = next((x for x in said.decode(errors="replace").splitlines() if x.startswith("recording OOM kills")), "?")
        log(out, "record is up: " + line[:300])
        made.append(make(f"{CG}/kubepods.slice", memory_max=ALLOCATABLE, memory_min=(128 + 64 + 160) * MI))
        ex = {
            "k8s-leak": container("burstable", "checkout-api", 128 * MI, 256 * MI, made),
            "k8s-pagecache": container("burstable", "log-shipper", 64 * MI, 128 * MI, made),
            "k8s-slow-leak": container("guaranteed", "session-cache", 160 * MI, 160 * MI, made),
        }
        mnt, majmin = stalled_volume(out)
        write(f"{CG}{ex['k8s-pagecache']['cgroup']}/io.max", f"{majmin} wbps=4096")
        ex["k8s-pagecache"]["volume"] = {"device": majmin, "io.max": "wbps=4096", "fs": "ext4 on zram"}
        time.sleep(5)  # the recorder finds them (discovery every second)
        me = os.path.abspath(__file__)
        argv = {
            "k8s-leak": [py, me, "work", "leak", str(256 * MI)],
            "k8s-pagecache": [py, me, "work", "pagecache", str(128 * MI), mnt],
            "k8s-slow-leak": [py, me, "work", "slowleak", str(160 * MI), str(slow_minutes)],
        }
        for name, a in argv.items():
            procs[name] = start_in(ex[name]["cgroup"], a, out, name)
            ex[name]["started"] = time.time()
            log(out, f"{name}: started pid {procs[name].pid} in {ex[name]['cgroup']}")
        with open(os.path.join(out, "examples.json"), "w") as f:
            json.dump(ex, f, indent=1)
        end = time.monotonic() + slow_minutes * 60 + 15 * 60
        last = 0.0
        lifted = False
        while time.monotonic() < end and any(p.poll() is None for p in procs.values()):
            # a process killed while its writes stall cannot exit (a thread waits on writeback,
            # uninterruptibly): once the kernel has killed in it, the volume answers again
            if not lifted and oom_kills(ex["k8s-pagecache"]["cgroup"]) > 0:
                time.sleep(10)  # the recorder reads the cgroup after the kill
                write(f"{CG}{ex['k8s-pagecache']['cgroup']}/io.max", f"{majmin} wbps=max")
                lifted = True
                log(out, "k8s-pagecache: killed; its volume's writes no longer stalled (io.max wbps=max)")
            if time.monotonic() - last > 30:
                last = time.monotonic()
                for name in ex:
                    log(out, f"{name}: {'running' if procs[name].poll() is None else 'exit ' + str(procs[name].returncode)}"
                             f"; {memstat(ex[name]['cgroup'])}")
            time.sleep(2)
        for name, p in procs.items():
            ex[name]["returncode"] = p.poll()
            ex[name]["ended"] = time.time()
            log(out, f"{name}: exit {p.poll()} after {ex[name]['ended'] - ex[name]['started']:.0f} s")
        with open(os.path.join(out, "examples.json"), "w") as f:
            json.dump(ex, f, indent=1)
        time.sleep(15)  # the last post-mortems are written
        return 0 if all(p.returncode == -9 for p in procs.values()) else 1
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if rec.poll() is None:
            rec.send_signal(signal.SIGINT)
            try:
                rec.wait(timeout=120)
            except subprocess.TimeoutExpired:
                rec.kill()
        if mnt:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        for path in reversed(made):
            try:
                write(os.path.join(path, "cgroup.kill"), "1")
            except OSError:
                pass
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.1)


def main(argv: list) -> int:
    if argv and argv[0] == "work":
        kind, limit = argv[1], int(argv[2])
        if kind == "leak":
            work_leak(limit)
        elif kind == "pagecache":
            work_pagecache(limit, argv[3])
        elif kind == "slowleak":
            work_slowleak(limit, float(argv[3]))
        return 0
    out = argv[0]
    minutes = 33.0
    if "--slow-minutes" in argv:
        minutes = float(argv[argv.index("--slow-minutes") + 1])
    return node(out, minutes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
