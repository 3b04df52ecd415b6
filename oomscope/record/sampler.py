"""Recent state of every memory cgroup that has tasks, so a kill without a kernel report still has
the state from just before it.

Memory freed by a kill is gone within milliseconds (KERNEL-NOTES.md: memory.stat read after the
event shows rss 0), so the sample that counts is the last one taken *before* the kill: each cgroup
keeps a short ring, and ``latest_before()`` picks by timestamp.

Bounded: at most ``max_cgroups`` cgroups, ``ring`` samples each (a memory.stat sample is ~3 KiB
of Python objects: 4096 cgroups x 8 samples is about 100 MiB at worst, typically far less), and
the pid maps hold at most ``max_pids`` pids seen in the last ``pid_retention_s``.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy
from ..model import SOURCE_LAST_SAMPLE, CgroupState


@dataclass
class Sample:
    t_ns: int  # CLOCK_MONOTONIC when the read finished
    state: CgroupState
    pids: Tuple[int, ...]


class Sampler:
    def __init__(
        self,
        hier: MemoryHierarchy,
        top: str = "/",
        interval_s: float = 0.5,
        fast_interval_s: float = 0.1,
        near_limit_ratio: float = 0.9,
        ring: int = 8,
        max_cgroups: int = 4096,
        pid_retention_s: float = 60.0,
        max_pids: int = 200_000,
    ):
        self.hier = hier
        self.top = top
        self.interval_s = interval_s
        self.fast_interval_s = fast_interval_s
        self.near_limit_ratio = near_limit_ratio
        self.ring = ring
        self.max_cgroups = max_cgroups
        self._rings: Dict[str, Deque[Sample]] = {}
        # pid -> (cgroup, when last seen). Kept for pid_retention_s after a pid was last seen: a
        # kill is often handled after its victim, and even the parent that forked it, have exited
        # (measured under emulation: a storm's parent gone before its children's events were
        # handled). pid_max is 4M on 64-bit hosts, so a pid is not reused within a minute.
        self._pid_cgroup: Dict[int, Tuple[str, int]] = {}
        self.pid_retention_ns = int(pid_retention_s * 1e9)
        self.max_pids = max_pids
        self._proc_info: Dict[int, Tuple[str, Optional[str]]] = {}  # pid -> (comm, cmdline)
        self._limited_ancestor: Dict[str, Optional[str]] = {}
        self._lock = threading.Lock()
        self.passes = 0
        self.errors = 0
        self.dropped_cgroups = 0

    # --- one pass ---
    def tick(self) -> float:
        """Sample once; returns how long to wait before the next pass."""
        near_limit = False
        seen_cgroups = set()
        pid_cgroup: Dict[int, str] = {}
        to_sample: Dict[str, Tuple[int, ...]] = {}
        for cg in self.hier.walk(self.top):
            if cg == "/":
                continue  # the root holds every host process; it is not a container
            pids = tuple(self.hier.procs(cg))
            if not pids:
                continue
            for pid in pids:
                pid_cgroup[pid] = cg
            to_sample[cg] = pids
            anc = self._ancestor(cg)
            if anc is not None and anc not in to_sample and anc != "/":
                to_sample[anc] = ()
        if len(to_sample) > self.max_cgroups:
            self.dropped_cgroups = len(to_sample) - self.max_cgroups
            to_sample = dict(list(to_sample.items())[: self.max_cgroups])
        new_samples = {}
        for cg, pids in to_sample.items():
            state = self.hier.read_state(cg, SOURCE_LAST_SAMPLE)
            if state is None:
                continue  # vanished between the walk and the read
            seen_cgroups.add(cg)
            new_samples[cg] = Sample(time.monotonic_ns(), state, pids)
            if state.limit_bytes and state.usage_bytes is not None:
                if state.usage_bytes >= self.near_limit_ratio * state.limit_bytes:
                    near_limit = True
        new_info = {}
        for pid in pid_cgroup:
            info = self._proc_info.get(pid)
            if info is None:
                comm = procfs.read_comm(pid)
                if comm is None:
                    continue
                info = (comm, procfs.read_cmdline(pid))
            new_info[pid] = info
        with self._lock:
            for cg, sample in new_samples.items():
                ring = self._rings.get(cg)
                if ring is None:
                    ring = self._rings[cg] = collections.deque(maxlen=self.ring)
                ring.append(sample)
            for cg in list(self._rings):
                if cg not in seen_cgroups:
                    # Keep a vanished cgroup's ring for one minute: its last samples may be
                    # exactly what a kill that removed it needs.
                    last = self._rings[cg][-1].t_ns if self._rings[cg] else 0
                    if time.monotonic_ns() - last > 60_000_000_000:
                        del self._rings[cg]
            now = time.monotonic_ns()
            for pid, cg in pid_cgroup.items():
                self._pid_cgroup[pid] = (cg, now)
            if len(self._pid_cgroup) > len(pid_cgroup):
                cutoff = now - self.pid_retention_ns
                kept = [(p, v) for p, v in self._pid_cgroup.items() if v[1] >= cutoff]
                if len(kept) > self.max_pids:
                    kept = sorted(kept, key=lambda pv: pv[1][1])[-self.max_pids:]
                self._pid_cgroup = dict(kept)
            info = {**self._proc_info, **new_info}
            self._proc_info = {p: v for p, v in info.items() if p in self._pid_cgroup}
            if len(self._limited_ancestor) > 4 * self.max_cgroups:
                self._limited_ancestor.clear()
        self.passes += 1
        return self.fast_interval_s if near_limit else self.interval_s

    def _ancestor(self, cg: str) -> Optional[str]:
        if cg not in self._limited_ancestor:
            self._limited_ancestor[cg] = self.hier.limited_ancestor(cg)
        return self._limited_ancestor[cg]

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # a sampler must not die on one odd cgroup; count and go on
                self.errors += 1
                wait = self.interval_s
            stop.wait(wait)

    # --- queries (thread-safe) ---
    def latest_before(self, cgroup: str, t_ns: int) -> Optional[Sample]:
        with self._lock:
            ring = self._rings.get(cgroup)
            if not ring:
                return None
            for sample in reversed(ring):
                if sample.t_ns <= t_ns:
                    return sample
        return None

    def below(self, cgroup: str, t_ns: int) -> List[Tuple[str, Sample]]:
        """The watched cgroups strictly below ``cgroup``, each with its last sample before t_ns."""
        prefix = cgroup.rstrip("/") + "/"
        with self._lock:
            names = [cg for cg in self._rings if cg.startswith(prefix)]
        out = []
        for cg in names:
            sample = self.latest_before(cg, t_ns)
            if sample is not None:
                out.append((cg, sample))
        return out

    def cgroup_of_pid(self, pid: int) -> Optional[str]:
        with self._lock:
            entry = self._pid_cgroup.get(pid)
        return entry[0] if entry is not None else None

    def proc_info(self, pid: int) -> Optional[Tuple[str, Optional[str]]]:
        with self._lock:
            return self._proc_info.get(pid)

    def limited_ancestor(self, cgroup: str) -> Optional[str]:
        return self._ancestor(cgroup)

    def watched(self) -> int:
        with self._lock:
            return len(self._rings)


def now_ns() -> int:
    return time.monotonic_ns()


def clock_offset_ns() -> int:
    """Wall-clock minus CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into a date."""
    return time.time_ns() - time.monotonic_ns()

