"""Workloads the lab runs inside a sandbox cgroup: ``python -m oomscope.workloads NAME LIMIT``.

The lab starts them already inside a cgroup with a memory limit (lab.py); each names itself and
allocates. Run by hand outside such a cgroup they would allocate up to 4x LIMIT and stop.
"""

from __future__ import annotations

import os
import sys
import time

CHUNK = 1 << 20
#: seconds a workload takes to fill its limit: over seconds, as a leak does, so that the sampler
#: draws the climb (a workload that fills 64 MiB in 50 ms leaves no timeline), and long enough
#: (> 10 s) for the post-mortem to tell a steady rise from a plateau (analysis/advice.py trend_of)
FILL_S = 14.0


def _pause(limit: int, chunk: int = CHUNK) -> float:
    """The sleep after each chunk so that a whole limit takes FILL_S."""
    return FILL_S * chunk / max(limit, chunk)


def _name(name: str) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write(name[:15])


def _touch_until_killed(limit: int, fill_s: float = FILL_S) -> None:
    hold = []
    # Safety: stop at 4x the limit; reaching it means no kill happened (reported by the lab).
    pause = fill_s * CHUNK / max(limit, CHUNK)  # _pause, over fill_s
    for _ in range(4 * limit // CHUNK):
        hold.append(bytearray(CHUNK))  # bytearray() zero-fills: every page is touched and charged
        time.sleep(pause)
    time.sleep(1)


def anon(limit: int, scratch: str = "") -> None:
    _name("oomscope-anon")
    _touch_until_killed(limit)


def sidecar(limit: int, scratch: str = "") -> None:
    """A main process and a helper both allocate: the victim's RSS is well below the charge."""
    _name("oomscope-main")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("/proc/self/comm", "w") as f:
            f.write("oomscope-side")
        held = []
        for _ in range(int(limit * 0.35) // CHUNK):
            held.append(bytearray(CHUNK))
            time.sleep(_pause(limit))
        os.write(w, b"x")
        time.sleep(120)  # the lab kills it when it removes the cgroup
        os._exit(0)
    os.close(w)
    os.read(r, 1)  # wait until the sidecar holds its share
    _touch_until_killed(limit)


def untouched(limit: int, scratch: str = "") -> None:
    """Reserve 4x the limit without touching it (demand paging: nothing is charged, no kill),
    then touch it page by page: the charge, and the kill, come with the touching."""
    import mmap

    _name("oomscope-lazy")
    size = 4 * limit
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    print(f"reserved {size}", flush=True)
    time.sleep(3)  # the sampler sees a cgroup far below its limit with 4x the limit reserved
    pause = _pause(limit)
    for off in range(0, size, 4096):
        region[off] = 1
        if off % CHUNK == CHUNK - 4096:
            time.sleep(pause)


def thp(limit: int, scratch: str = "") -> None:
    """Memory madvised for transparent huge pages: charged 2 MiB at a time."""
    import mmap

    _name("oomscope-thp")
    size = 4 * limit
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        region.madvise(mmap.MADV_HUGEPAGE)
    pause = _pause(limit, 2 << 20)
    for off in range(0, size, 4096):
        region[off] = 1
        if off % (2 << 20) == 0:  # a new huge page each time
            time.sleep(pause)


def slab(limit: int, scratch: str = "") -> None:
    """A modest anon load, and workers that create files in ``scratch`` and keep them open: each
    open file pins its dentry, inode and struct file in slab, charged to the cgroup and not
    reclaimable while open (a descriptor leak). Every process's own RSS stays small."""
    import resource

    _name("oomscope-slab")
    held = bytearray(limit // 4)  # noqa: F841 - the modest anon load
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        hard = soft
    per_worker = max(1000, min(hard - 64, 25_000))  # without CAP_SYS_RESOURCE the hard limit may be 20k
    for w in range(8):
        if os.fork() == 0:
            _name("oomscope-slab-w")
            fds = []
            for i in range(per_worker):
                fds.append(os.open(os.path.join(scratch, f"w{w}-{i}"), os.O_CREAT | os.O_RDONLY, 0o600))
                if i % 25 == 24:
                    time.sleep(0.1)  # 250 files a second per worker (~1.5 KiB of slab each): ~12 s to fill 64 MiB
            time.sleep(120)  # the lab kills what the kernel has not when it removes the cgroup
            os._exit(0)
    while True:
        time.sleep(1)


def tmpfs(limit: int, scratch: str = "") -> None:
    """Write into a tmpfs (``scratch``, mounted by the lab): page cache that cannot be reclaimed
    without swap, charged to the cgroup, and not freed by killing the writer."""
    _name("oomscope-tmpfs")
    chunk = b"x" * CHUNK
    with open(os.path.join(scratch, "data"), "wb", buffering=0) as f:
        pause = _pause(limit)
        for _ in range(4 * limit // CHUNK):
            f.write(chunk)
            time.sleep(pause)


def _java(mode: str, flags: list) -> None:
    """Exec a real JVM (the JDK's single-file source launcher) running OomscopeLab.java."""
    import shutil
    from importlib import resources

    java = shutil.which("java")
    if java is None:
        sys.stderr.write("the java lab scenarios need a JDK (Debian: openjdk-17-jdk-headless)\n")
        sys.exit(3)
    source = str(resources.files("oomscope").joinpath("workloads_java").joinpath("OomscopeLab.java"))
    sys.stdout.flush()
    # 2 MiB every 200 ms: a 192 MiB cgroup fills over ~15 s (the JVM itself starts at ~40 MiB)
    os.execv(java, [java, *flags, source, mode, "2", "200"])


def java_offheap(limit: int, scratch: str = "") -> None:
    """A JVM whose heap stays small (-Xmx a quarter of the limit, a few MiB used) while direct
    buffers outside the heap fill the cgroup, 2 MiB every 200 ms."""
    _java("offheap", [f"-Xmx{max(16, limit // 4 >> 20)}m", f"-XX:MaxDirectMemorySize={4 * limit >> 20}m"])


def java_heap(limit: int, scratch: str = "") -> None:
    """A JVM whose -Xmx is twice the cgroup's limit: the heap itself grows into the limit."""
    _java("heap", [f"-Xmx{2 * limit >> 20}m"])


NATIVE_SOURCE = "leak_native.c"
NATIVE_BINARY = "leak_native"


def build_native(folder: str) -> str:
    """Compile the leak-native workload into ``folder`` with frame pointers (the kernel's unwinder
    follows them); returns the binary's path. Run by the lab outside the sandbox cgroup, so that
    the compiler's memory is not charged to it. Raises OSError (no gcc) or CalledProcessError."""
    import shutil
    import subprocess
    from importlib import resources

    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise FileNotFoundError("the leak-native lab scenario needs a C compiler (Debian: gcc)")
    out = os.path.join(folder, NATIVE_BINARY)
    with resources.as_file(resources.files("oomscope").joinpath("workloads_native").joinpath(NATIVE_SOURCE)) as src:
        subprocess.run([gcc, "-O1", "-g", "-fno-omit-frame-pointer", "-o", out, str(src)],
                       check=True, capture_output=True, timeout=60)
    return out


def leak_native(limit: int, scratch: str = "") -> None:
    """A C program (built by the lab with frame pointers into ``scratch``): ``leak_slowly`` keeps
    what it allocates while ``churn_buffers`` maps, touches and unmaps three times as much."""
    binary = os.path.join(scratch, NATIVE_BINARY)
    sys.stdout.flush()
    os.execv(binary, [binary, str(limit), str(int(4 * FILL_S))])


GO_SOURCE = "leaklab.go"
GO_BINARY = "leaklab"


def build_go(folder: str) -> str:
    """Build the leak-go workload into ``folder`` with Go's own toolchain (its cache in the folder,
    no network: GO111MODULE=off, one file of the standard library only); returns the binary's
    path. Run by the lab outside the sandbox cgroup, like build_native."""
    import shutil
    import subprocess
    from importlib import resources

    go = shutil.which("go")
    if go is None:
        raise FileNotFoundError("the leak-go lab scenario needs Go (Debian: golang-go)")
    out = os.path.join(folder, GO_BINARY)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder, "GOCACHE": os.path.join(folder, "cache"),
           "GOPATH": os.path.join(folder, "gopath"), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    with resources.as_file(resources.files("oomscope").joinpath("workloads_go").joinpath(GO_SOURCE)) as src:
        subprocess.run([go, "build", "-o", out, str(src)], check=True, capture_output=True, timeout=300, env=env, cwd=folder)
    return out


def leak_go(limit: int, scratch: str = "") -> None:
    """A Go program (built by the lab into ``scratch``): ``main.leakyCache`` keeps what it allocates
    while ``main.churn`` allocates four times as much and keeps almost nothing; its heap is read
    from outside (runtimes/go.py) while the cgroup is past half its limit."""
    binary = os.path.join(scratch, GO_BINARY)
    # the limit in steps of 100 ms over about FILL_S, as the other leaks: in ~4 s (its first pace) a
    # recorder sharing a loaded 2-core host with CI's suite read no Go heap before the kill
    step_kib = max(64, int((limit >> 10) * 0.1 / FILL_S))
    sys.stdout.flush()
    os.execv(binary, [binary, "leak", str(step_kib), "100"])


#: one life of the crashloop scenario: longer than FILL_S, because a life's trend is told only from
#: 10 s of it (analysis/advice.py trend_of) and it starts at the first reading after the kill before
#: it: with FILL_S the host's lives measured 10.4-10.5 s, and in CI's loaded run four of five were
#: under 10 s ("unknown" trend)
CRASHLOOP_FILL_S = 20.0


def crashloop(limit: int, scratch: str = "") -> None:
    """One life of a leaking service that its supervisor restarts (lab.py RESTARTS): it leaks
    steadily until the kernel kills it, the same way every life."""
    _name("oomscope-loop")
    _touch_until_killed(limit, CRASHLOOP_FILL_S)


SCENARIOS = {"anon": anon, "sidecar": sidecar, "untouched": untouched, "thp": thp, "slab": slab, "tmpfs": tmpfs,
             "java-offheap": java_offheap, "java-heap": java_heap, "leak-native": leak_native, "leak-go": leak_go,
             "crashloop": crashloop}
#: the smallest limit a scenario runs under (a JVM alone is resident at ~40 MiB)
MIN_LIMIT = {"java-offheap": 160 << 20, "java-heap": 160 << 20}


def main(argv) -> int:
    name, limit = argv[0], int(argv[1])
    scratch = argv[2] if len(argv) > 2 else ""
    fn = SCENARIOS[name]
    if scratch:
        fn(limit, scratch)
    else:
        fn(limit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
