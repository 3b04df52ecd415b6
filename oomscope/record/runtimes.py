"""The runtimes' own view of their memory, read for the processes of a cgroup near its limit.

One job: deciding which processes' runtimes to read and when. A JVM's hsperfdata file is opened,
read (``pread`` of at most 1 MiB, 32 KiB by default) and closed (oomscope/runtimes/java.py): never
attached to, signalled or mapped, and nothing is allocated in the JVM. A Go program's runtime
state is read from its memory (``pread`` of /proc/<pid>/mem at its symbols' addresses, never
ptrace: oomscope/runtimes/go.py). Bounded so that a cgroup holding many runtimes near its limit
costs little: a cgroup's processes are looked at only while it is at least ``min_ratio`` full;
each pid is read at most once per ``min_interval_ns`` (the fast interval a near-limit cgroup is
read at), at most ``max_per_cgroup`` runtimes per cgroup and pass; whether a pid is a JVM or a Go
program is decided once (its executable's name, else its ELF build info, at most
GO_CHECKS_PER_PASS a pass, else libjvm.so in its maps, at most MAPS_CHECKS_PER_PASS a pass); a Go
executable's symbols are read once per file (go.Binaries); and a Go heap profile is walked at most
once per PROFILE_COST_FACTOR times what the last walk took (its readings in between carry the
last profile: a heap profile is as of the last completed GC in any case).

Measured on this project's host (a JVM of the lab's java-offheap scenario filling its cgroup, 200
reads): read_jvm took 0.55 ms median, 0.87 ms p95, 4.9 ms at most; is_java 0.05 ms. So a cgroup
near its limit with the 4 JVMs read every 100 ms costs the sampler about 2% of a core. The lab's
Go workload (tests/system/test_go_runtime.py): a reading with its heap profile 0.5 ms median.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

from ..model import AllocationSite, RuntimeReading
from ..runtimes.go import Binaries, GoReading, go_version, read_go
from ..runtimes.java import JvmReading, is_java, read_jvm

#: how full a cgroup (or its limited ancestor) must be for its JVMs to be read
MIN_RATIO = 0.5
#: at most this many JVMs of one cgroup are read per pass (the first found, by pid)
MAX_PER_CGROUP = 4
#: at most this many processes' maps are read per pass to tell a JVM with another launcher's name
MAPS_CHECKS_PER_PASS = 2
#: at most this many executables' ELF build info are read per pass to tell a Go program (~0.1 ms each)
GO_CHECKS_PER_PASS = 8
#: a Go heap profile is walked again after this many times what the last reading took (1%)
PROFILE_COST_FACTOR = 100

Reading = Union[JvmReading, GoReading]


def _exe_is_java(pid: int) -> bool:
    """The cheap half of is_java: the executable is the java launcher (0.05 ms)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "java"
    except OSError:
        return False


class RuntimeReader:
    def __init__(self, min_interval_ns: int, min_ratio: float = MIN_RATIO, max_per_cgroup: int = MAX_PER_CGROUP,
                 is_java: Callable[[int], bool] = is_java, read_jvm: Callable[..., JvmReading] = read_jvm,
                 exe_is_java: Callable[[int], bool] = _exe_is_java, maps_checks_per_pass: int = MAPS_CHECKS_PER_PASS,
                 go_version: Callable[[int], Optional[str]] = go_version, read_go: Callable[..., GoReading] = read_go,
                 go_checks_per_pass: int = GO_CHECKS_PER_PASS):
        self.min_interval_ns = min_interval_ns
        self.min_ratio = min_ratio
        self.max_per_cgroup = max_per_cgroup
        self._is_java = is_java
        self._exe_is_java = exe_is_java
        self._read_jvm = read_jvm
        self.maps_checks_per_pass = maps_checks_per_pass
        self._maps_budget = maps_checks_per_pass
        self._java: Dict[int, bool] = {}  # pid -> is a JVM (decided once per pid)
        self._last: Dict[int, int] = {}  # pid -> when last read
        self._folder: Dict[int, str] = {}  # pid -> its hsperfdata folder, once found (/tmp listed once)
        self._go_version = go_version
        self._read_go = read_go
        self.go_checks_per_pass = go_checks_per_pass
        self._go_budget = go_checks_per_pass
        self._go: Dict[int, bool] = {}  # pid -> is a Go program (decided once per pid, by its build info)
        self._binaries = Binaries()
        self._profile: Dict[int, GoReading] = {}  # pid -> its last reading with a heap profile
        self._next_profile: Dict[int, int] = {}  # pid -> when its heap profile is walked next
        self.reads = 0

    def _is_runtime(self, pid: int) -> Optional[bool]:
        """Whether ``pid`` is a JVM or a Go program; None: not decided yet (this pass's budget spent)."""
        java = self._java.get(pid)
        if java:
            return True
        if java is None and self._exe_is_java(pid):
            self._java[pid] = True
            return True
        go = self._go.get(pid)
        if go is None:
            if self._go_budget <= 0:
                return None
            self._go_budget -= 1
            go = self._go[pid] = self._go_version(pid) is not None
        if go:
            return True
        if java is None:
            if self._maps_budget <= 0:
                return None
            # a JVM under another launcher's name maps libjvm.so: reading a process's maps
            # takes ~1.2 ms (a Python process), so only a few are read per pass; the rest
            # are decided in later passes (a storm's short-lived children mostly never)
            self._maps_budget -= 1
            java = self._java[pid] = self._is_java(pid)
        return java

    def due(self, pids: Iterable[int], ratio: float, now_ns: int) -> List[int]:
        """The runtimes (JVMs, Go programs) of one cgroup's pids to read now."""
        if ratio < self.min_ratio:
            return []
        out = []
        jvms = 0
        for pid in sorted(pids):
            if not self._is_runtime(pid):
                continue
            jvms += 1
            if jvms > self.max_per_cgroup:
                break  # the same first JVMs every pass, so their readings stay current
            if now_ns - self._last.get(pid, -(1 << 62)) >= self.min_interval_ns:
                out.append(pid)
        return out

    def begin_pass(self) -> None:
        self._maps_budget = self.maps_checks_per_pass
        self._go_budget = self.go_checks_per_pass

    def read(self, pid: int, now_ns: int) -> Reading:
        self._last[pid] = now_ns
        self.reads += 1
        if self._go.get(pid) and not self._java.get(pid):
            return self._read_go_pid(pid, now_ns)
        folder = self._folder.get(pid)
        reading = self._read_jvm(pid) if folder is None else self._read_jvm(pid, folder=folder)
        if reading.folder is not None:
            self._folder[pid] = reading.folder
        elif folder is not None:
            del self._folder[pid]  # gone (a JVM restarted under the same pid): looked for afresh
        return reading

    def _read_go_pid(self, pid: int, now_ns: int) -> GoReading:
        profile = now_ns >= self._next_profile.get(pid, 0)
        started = time.monotonic_ns()
        reading = self._read_go(pid, self._binaries.get(pid), profile=profile)
        if profile:
            took = time.monotonic_ns() - started
            self._next_profile[pid] = now_ns + max(self.min_interval_ns, PROFILE_COST_FACTOR * took)
            if reading.heap is not None:
                self._profile[pid] = reading
        elif pid in self._profile and reading.heap is not None:
            last = self._profile[pid]
            reading = dataclasses.replace(reading, sites=last.sites, sites_why_not=last.sites_why_not,
                                          profile_rate=last.profile_rate)
        return reading

    def forget_except(self, alive: Iterable[int]) -> None:
        """Drops what is known of pids no longer seen (a pid reused later is looked at afresh)."""
        keep: Set[int] = set(alive)
        self._java = {p: v for p, v in self._java.items() if p in keep}
        self._last = {p: v for p, v in self._last.items() if p in keep}
        self._folder = {p: v for p, v in self._folder.items() if p in keep}
        self._go = {p: v for p, v in self._go.items() if p in keep}
        self._profile = {p: v for p, v in self._profile.items() if p in keep}
        self._next_profile = {p: v for p, v in self._next_profile.items() if p in keep}


def read_cgroup(reader: RuntimeReader, pids: Iterable[int], ratio: float, now_ns: int,
                clock: Callable[[], int]) -> List[Tuple[int, int, Reading]]:
    """(pid, when read, reading) for each runtime of the cgroup due now."""
    out = []
    for pid in reader.due(pids, ratio, now_ns):
        reading = reader.read(pid, now_ns)
        out.append((pid, clock(), reading))
    return out


def runtime_reading(pid: int, reading: Reading, read_ms_before_kill: float, comm: str = "") -> RuntimeReading:
    """A store's reading as the capture holds it."""
    if isinstance(reading, GoReading):
        return _go_reading(pid, reading, read_ms_before_kill, comm)
    m = reading.memory
    if m is None:
        return RuntimeReading("java", pid, comm, round(read_ms_before_kill, 1), why_not=reading.why_not or "not read")
    return RuntimeReading(
        "java", pid, comm, round(read_ms_before_kill, 1),
        heap_used_bytes=m.heap_used_bytes, heap_committed_bytes=m.heap_committed_bytes, heap_max_bytes=m.heap_max_bytes,
        young_used_bytes=m.young_used_bytes, old_used_bytes=m.old_used_bytes,
        metaspace_used_bytes=m.metaspace_used_bytes, metaspace_committed_bytes=m.metaspace_committed_bytes,
        class_space_used_bytes=m.class_space_used_bytes, class_space_committed_bytes=m.class_space_committed_bytes,
        threads=m.threads_live, young_gc_count=m.young_gc_count, full_gc_count=m.full_gc_count, gc_time_ms=m.gc_time_ms,
        vm_version=m.vm_version, vm_args=m.vm_args,
    )


def _go_reading(pid: int, reading: GoReading, read_ms_before_kill: float, comm: str) -> RuntimeReading:
    h = reading.heap
    if h is None:
        return RuntimeReading("go", pid, comm, round(read_ms_before_kill, 1), why_not=reading.why_not or "not read",
                              vm_version=reading.version)
    return RuntimeReading(
        "go", pid, comm, round(read_ms_before_kill, 1), vm_version=reading.version,
        heap_inuse_bytes=h.heap_inuse_bytes, heap_alloc_bytes=h.heap_alloc_bytes, heap_goal_bytes=h.heap_goal_bytes,
        memory_limit_bytes=h.memory_limit_bytes, gc_percent=h.gc_percent, heap_free_bytes=h.heap_free_bytes,
        allocation_sites=[AllocationSite(list(s.frames), s.bytes, "go_heap") for s in reading.sites],
        allocation_sites_why_not=reading.sites_why_not,
    )
