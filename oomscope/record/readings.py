"""The one store of readings: what the sampler thread read, and every query about it.

The sampler (record/sampler.py) writes here once per pass; the main thread asks here for the
evidence of a kill (record/evidence.py). It is the only object the two threads share, and every
method takes its lock, so no query sees a half-written pass and no cache is written unlocked.
Work that can take long (a BPF map read, a walk up cgroupfs) is done outside the lock.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from ..kernel.cgroupfs import MemoryHierarchy, cgroup_within
from ..layouts import ReclaimStats
from ..model import TimelinePoint
from .packed import PackedSample
from .timeline import TimelineRing, point_values
from .timeline import point as timeline_point

#: how long a cgroup's nearest limited ancestor is trusted: a runtime writes memory.max just after
#: mkdir, and a discovery between the two must not leave a limited cgroup unwatched for good
ANCESTOR_TTL_NS = 10_000_000_000
#: a vanished cgroup's readings are kept this long: its last samples may be exactly what a kill
#: that removed it needs
VANISHED_KEEP_NS = 60_000_000_000
#: runtime readings kept per pid (record/runtimes.py reads a pid at most once per fast interval)
RUNTIME_READINGS_PER_PID = 4
#: a cgroup at or above this share of its own limit at its last reading is "near its limit"
#: (its headroom is a metric, record/announce.py)
NEAR_LIMIT_RATIO = 0.8


@dataclass
class NearLimit:
    """A cgroup near its own limit, as last read, with how fast its usage grew over its ring."""

    cgroup: str
    usage_bytes: int
    limit_bytes: int
    #: usage growth from the oldest reading in the ring (~ring_ns, 10 s) to the last; None with
    #: readings less than a second apart
    rate_bytes_per_s: Optional[float]

    def seconds_to_limit(self) -> float:
        """At the current rate; infinite when usage is not growing (a cgroup held at its limit by
        page cache that the kernel reclaims is not about to be killed for it)."""
        if self.rate_bytes_per_s is None or self.rate_bytes_per_s <= 0:
            return float("inf")
        return max(0, self.limit_bytes - self.usage_bytes) / self.rate_bytes_per_s


class Readings:
    def __init__(self, hier: MemoryHierarchy, ring_ns: int, timeline_points: int, timeline_spacing_s: float,
                 pid_retention_ns: int, max_pids: int,
                 reclaim_reader: Optional[Callable[[], Dict[int, ReclaimStats]]] = None):
        self.hier = hier
        self.ring_ns = ring_ns
        self.timeline_points = timeline_points
        self.timeline_spacing_s = timeline_spacing_s
        self.pid_retention_ns = pid_retention_ns
        self.max_pids = max_pids
        self.reclaim_reader = reclaim_reader
        self.errors = 0  # reclaim map reads that failed
        self._lock = threading.Lock()
        # cgroup -> full readings (record/sampler.py Sample), oldest first, packed (record/packed.py:
        # a reading's memory.stat dict was 3.8 KB of the 5 a reading held)
        # (a list: a deque's first block alone is 600 bytes, for 2-3 readings of an idle cgroup)
        self._rings: Dict[str, List[PackedSample]] = {}
        self._timelines: Dict[str, TimelineRing] = {}
        self._inos: Dict[str, int] = {}  # the watched cgroups -> directory inode (cgroup id)
        # pid -> (cgroup, when last seen). Kept for pid_retention_ns after a pid was last seen: a
        # kill is often handled after its victim, and even the parent that forked it, have exited
        # (measured under emulation: a storm's parent gone before its children's events were
        # handled). pid_max is 4M on 64-bit hosts, so a pid is not reused within a minute.
        self._pid_cgroup: Dict[int, Tuple[str, int]] = {}
        self._proc_info: Dict[int, Tuple[str, Optional[str]]] = {}  # pid -> (comm, cmdline)
        self._next_pid_prune = 0
        self._limited_ancestor: Dict[str, Tuple[Optional[str], int]] = {}  # cgroup -> (ancestor, when read)
        # the last read of the kernel's reclaim map, (when it started, by pid): shared by the
        # readings and the kills, so that a storm's kills handled together read it once
        self._reclaim_read: Optional[Tuple[int, Dict[int, ReclaimStats]]] = None
        # pid -> its runtime's last readings (a JVM's hsperfdata, record/runtimes.py), oldest
        # first: (when read, cgroup, reading). A few per pid: the last one before a kill is wanted,
        # and a read can land just after it.
        self._runtimes: Dict[int, Deque[Tuple[int, str, object]]] = {}
        # pid -> its heap over time, at most one point per timeline spacing: (when, used, committed)
        self._runtime_history: Dict[int, Deque[Tuple[int, int, int]]] = {}
        # cgroup -> usage / its own limit, for those at or above NEAR_LIMIT_RATIO at their last
        # reading: kept up to date by add_pass (one comparison per reading), read by near_limit()
        self._near: Dict[str, float] = {}

    # --- written by the sampler thread ---
    def set_watched(self, inos: Dict[str, int], vanished: Iterable[str] = (), max_cached: int = 16384) -> None:
        """After a discovery: the watched cgroups with their inodes; those that vanished."""
        with self._lock:
            self._inos = dict(inos)
            for cg in vanished:
                self._limited_ancestor.pop(cg, None)
                self._near.pop(cg, None)
            if len(self._limited_ancestor) > max_cached:
                self._limited_ancestor.clear()

    def add_pass(self, samples: Dict[str, object], pid_cgroup: Dict[int, str],
                 proc_info: Dict[int, Tuple[str, Optional[str]]]) -> None:
        """One pass of the sampler: its full readings, where it saw each pid, and their names."""
        now = time.monotonic_ns()
        with self._lock:
            for cg, sample in samples.items():
                ring = self._rings.get(cg)
                if ring is None:
                    ring = self._rings[cg] = []
                    self._timelines[cg] = TimelineRing(self.timeline_points, self.timeline_spacing_s)
                ring.append(PackedSample(sample))
                # The last ring_ns of full readings: a storm's kills are handled up to seconds late
                # (measured: with 8 readings, 79 of 350 kills found only readings from after them).
                while len(ring) > 2 and sample.t_ns - ring[0].t_ns > self.ring_ns:
                    del ring[0]  # at most ~100 readings (10 s at 100 ms)
                self._timelines[cg].add(sample.t_ns, point_values(sample.state, self.hier.version, sample.reclaim))
                usage, limit = sample.state.usage_bytes, sample.state.limit_bytes
                if limit and usage is not None and usage >= NEAR_LIMIT_RATIO * limit:
                    self._near[cg] = usage / limit
                elif self._near:
                    self._near.pop(cg, None)
            for pid, cg in pid_cgroup.items():
                self._pid_cgroup[pid] = (cg, now)
            self._proc_info.update(proc_info)
            if now >= self._next_pid_prune or len(self._pid_cgroup) > self.max_pids:
                # once a second: every pid, and every cgroup's ring, is walked (measured: done at
                # every pass, the pids were a tenth of the sampler's CPU with 500 cgroups)
                self._next_pid_prune = now + 1_000_000_000
                for cg in [c for c in self._rings if c not in self._inos]:
                    last = self._rings[cg][-1].t_ns if self._rings[cg] else 0
                    if now - last > VANISHED_KEEP_NS:
                        del self._rings[cg]
                        self._timelines.pop(cg, None)
                cutoff = now - self.pid_retention_ns
                kept = [(p, v) for p, v in self._pid_cgroup.items() if v[1] >= cutoff]
                if len(kept) > self.max_pids:
                    kept = sorted(kept, key=lambda pv: pv[1][1])[-self.max_pids:]
                self._pid_cgroup = dict(kept)
                self._proc_info = {p: v for p, v in self._proc_info.items() if p in self._pid_cgroup}
                self._runtimes = {p: v for p, v in self._runtimes.items() if p in self._pid_cgroup}
                self._runtime_history = {p: v for p, v in self._runtime_history.items() if p in self._pid_cgroup}

    def add_runtimes(self, readings: Iterable[Tuple[int, int, str, object]]) -> None:
        """Runtime readings of one pass: (pid, when read, its cgroup, reading)."""
        with self._lock:
            for pid, t_ns, cg, reading in readings:
                ring = self._runtimes.get(pid)
                if ring is None:
                    ring = self._runtimes[pid] = collections.deque(maxlen=RUNTIME_READINGS_PER_PID)
                ring.append((t_ns, cg, reading))
                mem = getattr(reading, "memory", None)  # a JVM's
                go = getattr(reading, "heap", None)  # a Go program's: (when, HeapInuse, the GC's goal)
                point = ((t_ns, mem.heap_used_bytes, mem.heap_committed_bytes) if mem is not None else
                         (t_ns, go.heap_inuse_bytes, go.heap_goal_bytes) if go is not None else None)
                if point is not None:
                    hist = self._runtime_history.get(pid)
                    if hist is None:
                        hist = self._runtime_history[pid] = collections.deque(maxlen=self.timeline_points)
                    if not hist or t_ns - hist[-1][0] >= self.timeline_spacing_s * 1e9:
                        hist.append(point)

    def runtimes_before(self, cgroup: str, t_ns: int) -> List[Tuple[int, int, object, List[Tuple[int, int, int]]]]:
        """(pid, when read, reading, heap history): the last runtime reading before t_ns of each
        process read in ``cgroup`` or below it, by pid, with its heap's earlier points (when, used,
        committed; a Go program's: when, HeapInuse, the GC's goal) up to that reading."""
        out = []
        with self._lock:
            for pid, ring in sorted(self._runtimes.items()):
                for when, cg, reading in reversed(ring):
                    if when <= t_ns and cgroup_within(cg, cgroup):
                        hist = [h for h in self._runtime_history.get(pid, ()) if h[0] < when]
                        out.append((pid, when, reading, hist))
                        break
        return out

    def known_pids(self) -> Set[int]:
        with self._lock:
            return set(self._pid_cgroup)

    def pids_in(self, pids: Iterable[int]) -> Dict[int, str]:
        """The cgroup each of these pids was last seen in (those seen at all)."""
        with self._lock:
            return {pid: self._pid_cgroup[pid][0] for pid in pids if pid in self._pid_cgroup}

    def forget_ancestors_except(self, cgroups) -> None:
        """Drops the cached limited ancestors of cgroups not in ``cgroups`` (gone, or read only on
        the way to a limit): the cache is then as large as the hierarchy, not as its churn."""
        with self._lock:
            self._limited_ancestor = {c: v for c, v in self._limited_ancestor.items() if c in cgroups}

    # --- read through: cached, read outside the lock on a miss ---
    def limited_ancestor(self, cgroup: str) -> Optional[str]:
        """The nearest cgroup at or above ``cgroup`` with a memory limit (the one that can OOM)."""
        now = time.monotonic_ns()
        with self._lock:
            cached = self._limited_ancestor.get(cgroup)
        if cached is None or now - cached[1] > ANCESTOR_TTL_NS:
            cached = (self.hier.limited_ancestor(cgroup), now)
            with self._lock:
                self._limited_ancestor[cgroup] = cached
        return cached[0]

    def limited_ancestors(self, cgroups: Iterable[str]) -> Dict[str, Optional[str]]:
        """``limited_ancestor`` of each of ``cgroups``, under one lock for those cached."""
        now = time.monotonic_ns()
        out: Dict[str, Optional[str]] = {}
        stale = []
        with self._lock:
            cache = self._limited_ancestor
            for cg in cgroups:
                cached = cache.get(cg)
                if cached is None or now - cached[1] > ANCESTOR_TTL_NS:
                    stale.append(cg)
                else:
                    out[cg] = cached[0]
        for cg in stale:
            out[cg] = self.limited_ancestor(cg)
        return out

    def reclaim_read(self, not_before_ns: int) -> Optional[Tuple[int, Dict[int, ReclaimStats]]]:
        """The reclaim map as read at or after ``not_before_ns``: the last read when it is recent
        enough, else a new one. Measured in a storm of 60 kills a second: a read per kill (1-10 ms
        each, the map holding every dead child) raised kill-to-post-mortem p95 from 57 to 390 ms."""
        if self.reclaim_reader is None:
            return None
        with self._lock:
            cached = self._reclaim_read
        if cached is not None and cached[0] >= not_before_ns:
            return cached
        t = time.monotonic_ns()
        try:
            by_pid = self.reclaim_reader()
        except Exception:  # a map read failing must not stop the sampler
            with self._lock:
                self.errors += 1
            return None
        with self._lock:
            if self._reclaim_read is None or self._reclaim_read[0] < t:
                self._reclaim_read = (t, by_pid)
            return self._reclaim_read

    # --- queries ---
    def latest_before(self, cgroup: str, t_ns: int):
        with self._lock:
            return self._latest_before(cgroup, t_ns)

    def _latest_before(self, cgroup: str, t_ns: int):
        packed = self._packed_before(cgroup, t_ns)
        return packed.unpack() if packed is not None else None

    def _packed_before(self, cgroup: str, t_ns: int) -> Optional[PackedSample]:
        for sample in reversed(self._rings.get(cgroup, ())):
            if sample.t_ns <= t_ns:
                return sample
        return None

    def reclaim_of(self, cgroup: str, not_before_ns: int) -> Optional[Tuple[ReclaimStats, int]]:
        """Reclaim by the processes of ``cgroup`` and below it, read at or after ``not_before_ns``
        (a kill's time), with when it was read; None when reclaim is not counted."""
        read = self.reclaim_read(not_before_ns)
        if read is None:
            return None
        t_read, by_pid = read
        # by the pids seen in it: the cgroup may no longer be watched (a global OOM's victim was
        # the only task of a cgroup without a limit; it is dropped once empty)
        seen = self.pids_in(by_pid)  # the pids that reclaimed: few
        out = ReclaimStats()
        for pid, cg in seen.items():
            if cgroup_within(cg, cgroup):
                out.add(by_pid[pid])
        return out, t_read

    def samples(self, cgroup: str) -> list:
        """The cgroup's full readings still in its ring, oldest first."""
        with self._lock:
            return [p.unpack() for p in self._rings.get(cgroup, ())]

    def timeline(self, cgroup: str, kill_ns: int) -> List[TimelinePoint]:
        """The cgroup's history up to the kill, with the last sample before it as the last point."""
        with self._lock:
            tl = self._timelines.get(cgroup)
            if tl is None:
                return []
            points = tl.points(kill_ns, until_ns=kill_ns)
            last = self._latest_before(cgroup, kill_ns)
        if last is not None and (not points or points[-1].t_ms < round((last.t_ns - kill_ns) / 1e6, 1)):
            # the reading's own reclaim figures: a point without them reads as "not counted"
            # (CI, 6.12 VM: a global OOM's last point had None while the ones before had zeros)
            points.append(timeline_point(last.t_ns, point_values(last.state, self.hier.version, last.reclaim), kill_ns))
        return points

    def ino(self, cgroup: str) -> Optional[int]:
        with self._lock:
            return self._inos.get(cgroup)

    def cgroup_of_ino(self, ino: int) -> Optional[str]:
        """The watched cgroup whose directory has this inode (its cgroup id), if any."""
        with self._lock:
            return next((c for c, i in self._inos.items() if i == ino), None)

    def below(self, cgroup: str, t_ns: int) -> list:
        """The cgroups strictly below ``cgroup`` with tasks, each with its last sample before t_ns."""
        prefix = cgroup.rstrip("/") + "/"
        out = []
        with self._lock:
            for cg in self._rings:
                if cg.startswith(prefix):
                    packed = self._packed_before(cg, t_ns)
                    if packed is not None and packed.pids:
                        out.append((cg, packed.unpack()))
        return out

    def cgroup_of_pid(self, pid: int) -> Optional[str]:
        with self._lock:
            entry = self._pid_cgroup.get(pid)
        return entry[0] if entry is not None else None

    def proc_info(self, pid: int) -> Optional[Tuple[str, Optional[str]]]:
        with self._lock:
            return self._proc_info.get(pid)

    def near_limit(self, n: int) -> List[NearLimit]:
        """The ``n`` fullest cgroups at or above NEAR_LIMIT_RATIO of their own limit, fullest first."""
        out = []
        with self._lock:
            for cg in sorted(self._near, key=self._near.__getitem__, reverse=True)[:n]:
                ring = self._rings.get(cg)
                if not ring:
                    continue
                first, last = ring[0].unpack(), ring[-1].unpack()
                seconds = (last.t_ns - first.t_ns) / 1e9
                rate = None
                if seconds >= 1.0 and first.state.usage_bytes is not None:
                    rate = (last.state.usage_bytes - first.state.usage_bytes) / seconds
                out.append(NearLimit(cg, last.state.usage_bytes, last.state.limit_bytes, rate))
        return out

    def watched(self) -> int:
        with self._lock:
            return len(self._rings)

    def cgroups(self) -> Set[str]:
        with self._lock:
            return set(self._rings)
