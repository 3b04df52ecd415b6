"""Evidence for one kill: what the recorder knew about it, for the cgroups a Placement names.

Queries only: the sampler's store of readings (``ReadingsStore``: every reading taken before the
kill), the charge snapshots taken in the kernel at the kill (``ChargeSnapshots``), and what only
exists now, read through ``LiveReads`` (the victim's /proc files, the cgroup after the kill). No
decision about the kill is made here (record/assemble.py ``place`` makes them); each of the three
sources can be replaced by a fake in tests.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Dict, List, Optional, Protocol, Tuple

from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy
from ..layouts import SNAP_MARK_VICTIM, SNAP_SIGKILL, ReclaimStats
from ..model import (SOURCE_AFTER_KILL, CgroupState, Source, CgroupUsage, ReclaimAtKill, RuntimePoint, Task, Timeline,
                     TimelinePoint)
from . import charges
from . import snapshot as memcg_snapshot
from .assemble import Evidence, Placement
from .joiner import PendingKill
from .runtimes import runtime_reading


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # the snapshot is read on this host: its page size


class ReadingsStore(Protocol):
    """The queries evidence asks of the sampler's store of readings (record/sampler.py)."""

    def latest_before(self, cgroup: str, t_ns: int): ...
    def latest_paired_before(self, cgroup: str, t_ns: int, generation: Optional[int]): ...
    def timeline(self, cgroup: str, kill_ns: int) -> List[TimelinePoint]: ...
    def reclaim_of(self, cgroup: str, not_before_ns: int) -> Optional[Tuple[ReclaimStats, int]]: ...
    def below(self, cgroup: str, t_ns: int) -> list: ...
    def cgroup_of_pid(self, pid: int) -> Optional[str]: ...
    def proc_info(self, pid: int) -> Optional[Tuple[str, Optional[str]]]: ...
    def ino(self, cgroup: str) -> Optional[int]: ...
    def subtree_inos(self, cgroup: str) -> List[int]: ...
    def runtimes_before(self, cgroup: str, t_ns: int) -> list: ...


class LiveReads:
    """What is read now, after the kill: /proc of a pid, a cgroup's state and tasks."""

    def __init__(self, hier: MemoryHierarchy):
        self.hier = hier

    def cgroup_of(self, pid: int) -> Optional[str]:
        return procfs.read_memory_cgroup(pid, self.hier.version)

    def cmdline(self, pid: int) -> Optional[str]:
        return procfs.read_cmdline(pid) or None

    def ino(self, cgroup: str) -> Optional[int]:
        try:
            return os.stat(self.hier.fs_path(cgroup)).st_ino
        except OSError:
            return None

    def state_after_kill(self, cgroup: str) -> Optional[CgroupState]:
        return self.hier.read_state(cgroup, SOURCE_AFTER_KILL)

    def tasks(self, cgroup: str) -> List[Task]:
        out = []
        for pid in self.hier.procs(cgroup):
            t = procfs.read_task(pid, SOURCE_AFTER_KILL)
            if t is not None:
                out.append(t)
        return out


class ChargeSnapshots:
    """The charge counters the kernel summed at each SIGKILL and oom:mark_victim, kept by victim
    pid for the kills still to be written. ``collect`` is called once per drain of the main loop,
    after the events are joined and before any kill is written; the main thread alone uses it."""

    def __init__(self, tracker, keep: int = 4096):
        self.tracker = tracker  # probes.ChargeTracker
        self.keep = keep
        self._by_pid: "collections.OrderedDict[int, list]" = collections.OrderedDict()  # pid -> [(ts, kind, counters)]
        self.misses: collections.Counter = collections.Counter()  # why a kill had no reconstruction

    def collect(self) -> None:
        for pid, ts, kind, snap in self.tracker.snapshots():
            self._by_pid.setdefault(pid, []).append((ts, kind, snap))
            self._by_pid.move_to_end(pid)
        while len(self._by_pid) > self.keep:
            self._by_pid.popitem(last=False)

    def at_kill(self, pid: int, kill_ns: int):
        """The snapshot taken when the victim's SIGKILL was sent (it precedes oom:mark_victim by
        microseconds), else the one at oom:mark_victim."""
        found = None
        for ts, kind, snap in self._by_pid.get(pid, ()):
            if kind == SNAP_SIGKILL and 0 <= kill_ns - ts < 5_000_000:
                return snap
            if kind == SNAP_MARK_VICTIM and abs(ts - kill_ns) < 5_000_000:
                found = snap
        return found

    @property
    def lost(self) -> int:
        """Snapshots the kernel overwrote before they were read."""
        return self.tracker.snapshots_lost


class EvidenceGatherer:
    def __init__(self, store: ReadingsStore, live: LiveReads, cgroup_version: int,
                 snapshots: Optional[ChargeSnapshots] = None):
        self.store = store
        self.live = live
        self.cgroup_version = cgroup_version
        self.snapshots = snapshots

    def locate(self, kill: PendingKill) -> Optional[Tuple[str, str]]:
        """The victim's memory cgroup as oomscope saw it, best first, for when the kernel's report
        does not name it: (path, how it was learnt)."""
        if kill.proc_cgroup is not None:
            return kill.proc_cgroup, Source.PROC_READ
        scanned = self.store.cgroup_of_pid(kill.pid)
        if scanned is not None:
            return scanned, Source.SAMPLER_SCAN
        if kill.parent_cgroup is not None:
            return kill.parent_cgroup, Source.FORK_PARENT
        parent = kill.event.victim_parent_pid if kill.event is not None else None
        if parent:
            scanned = self.store.cgroup_of_pid(parent)
            if scanned is not None:
                return scanned, Source.FORK_PARENT
        return None

    def gather(self, kill: PendingKill, placement: Placement, kill_ns: int, charge_tracking: str = "",
               incident: Optional[Tuple[CgroupState, List[Task]]] = None) -> Evidence:
        ev = Evidence(reaped_ns=kill.reaped_ns, duplicates=kill.duplicates, charge_tracking=charge_tracking)
        if incident is not None:
            ev.incident_state, ev.incident_tasks = incident
        rep = kill.report
        task_memcg = placement.cgroup.task_memcg
        described = placement.described
        if described is not None:
            ev.kernel_snapshot = self._snapshot_state(kill, described, placement.is_global)
            ev.reconstructed = self._reconstruct(kill, described, kill_ns, hit_limit=not placement.is_global)
            sample = self.store.latest_before(described, kill_ns)
            if sample is not None:
                ev.last_sample = dataclasses.replace(sample.state, age_ms=(kill_ns - sample.t_ns) / 1e6)
            for path in [described] + ([task_memcg] if task_memcg and task_memcg != described else []):
                points = self.store.timeline(path, kill_ns)
                if points:
                    ev.timelines.append(Timeline(path, points, reclaim_at_kill(self.store.reclaim_of(path, kill_ns), kill_ns)))
            for path, sample in self.store.below(described, kill_ns):
                ev.sharing.append(CgroupUsage(path, sample.state.usage_bytes, Source.LAST_SAMPLE, (kill_ns - sample.t_ns) / 1e6))
            for pid, when, reading, hist in self.store.runtimes_before(described, kill_ns):
                info = self.store.proc_info(pid)
                rr = runtime_reading(pid, reading, (kill_ns - when) / 1e6, info[0] if info else "")
                rr.heap_history = [RuntimePoint(round((t - kill_ns) / 1e6, 1), used, committed) for t, used, committed in hist]
                ev.runtimes.append(rr)
            after = self.live.state_after_kill(described)
            if after is not None:
                after.age_ms = (kill_ns - time.monotonic_ns()) / 1e6  # negative: read after the kill
                ev.after_kill = after
        ev.proc_info = self._proc_info(kill)
        if (rep is None or not rep.tasks) and task_memcg is not None:
            ev.live_tasks = self.live.tasks(task_memcg)
        return ev

    def _proc_info(self, kill: PendingKill) -> Dict[int, Tuple[str, Optional[str]]]:
        """Command lines: the sampler's, when the comm it saw is still the comm at the kill (an
        exec or a rename since makes it stale); else /proc now (the victim's read on the event)."""
        rep = kill.report
        out: Dict[int, Tuple[str, Optional[str]]] = {}
        comms = {t.pid: t.name for t in rep.tasks} if rep is not None else {}
        victim_comm = (kill.event.victim_comm if kill.event else None) or (rep.killed.comm if rep and rep.killed else None)
        if victim_comm:
            comms[kill.pid] = victim_comm
        for pid, comm in comms.items():
            info = self.store.proc_info(pid)
            if info is not None and info[0] == comm and info[1]:
                out[pid] = info
            elif pid == kill.pid and kill.proc_cmdline:
                out[pid] = (comm, kill.proc_cmdline)
            elif pid != kill.pid:
                cmdline = self.live.cmdline(pid)
                if cmdline:
                    out[pid] = (comm, cmdline)
        return out

    def _snapshot_state(self, kill: PendingKill, cgroup: str, is_global: bool) -> Optional[CgroupState]:
        """The described cgroup's level of the snapshot taken at the SIGKILL: found by its inode;
        else (a cgroup gone or renamed) the level at its limit, when one hit it."""
        snap = kill.event.memcg_snapshot if kill.event is not None else None
        if snap is None or not snap.levels:
            return None
        ino = self.store.ino(cgroup) or self.live.ino(cgroup)
        index = memcg_snapshot.level_of(snap, ino)
        if index is None and not is_global:
            index = memcg_snapshot.level_at_limit(snap, PAGE_SIZE)
        if index is None:
            return None
        return memcg_snapshot.state_from_snapshot(snap, index, self.cgroup_version, PAGE_SIZE, cgroup)

    def _reconstruct(self, kill: PendingKill, cgroup: str, kill_ns: int, hit_limit: bool) -> Optional[CgroupState]:
        """Sample + in-kernel counter deltas up to oom:mark_victim, when the counters cover it."""
        if self.snapshots is None:
            return None
        snaps = self.snapshots
        snapshot = snaps.at_kill(kill.pid, kill.event.ts_ns) if kill.event is not None else None
        if snapshot is None:
            if kill.event is not None and snaps.tracker.attached_at(kill.event.ts_ns):
                snaps.misses["no snapshot at the kill"] += 1
            return None
        # The latest sample read with counters of the same generation: the watched set (and the
        # attachment) did not change between it and the kill.
        sample = self.store.latest_paired_before(cgroup, kill_ns, kill.charge_generation)
        if sample is None:
            snaps.misses["no paired sample before the kill"] += 1
            return None
        state = charges.reconstruct(self.cgroup_version, sample.state, self.store.ino(cgroup),
                                    self.store.subtree_inos(cgroup), sample.counters, snapshot,
                                    (kill_ns - sample.t_ns) / 1e6, hit_limit)
        if state is None:
            snaps.misses["subtree not covered by the counters"] += 1
        return state


def reclaim_at_kill(read: Optional[Tuple[ReclaimStats, int]], kill_ns: int) -> Optional[ReclaimAtKill]:
    if read is None:
        return None
    stats, t_read = read
    t = stats.totals()
    t["ms"] = round(t["ms"], 2)
    return ReclaimAtKill(**t, read_ms_after_kill=round((t_read - kill_ns) / 1e6, 1))
