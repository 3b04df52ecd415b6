"""Evidence for one kill: what the recorder knew about it, for the cgroups a Placement names.

Queries only: the sampler's store of readings (``ReadingsStore``: every reading taken before the
kill), the kernel's snapshot at the SIGKILL (``PendingKill.snapshot``: its event's, or taken by
the victim's pid), and what only exists
now, read through ``LiveReads`` (the victim's /proc files, the cgroup after the kill). No decision
about the kill is made here (capture/place.py ``place`` makes them); the store and the live
reads can be replaced by fakes in tests.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Dict, List, Optional, Protocol, Tuple

from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy
from ..layouts import ReclaimStats
from ..model import (CgroupState, Source, CgroupUsage, Reclaim, RuntimePoint, Task, Timeline,
                     TimelinePoint)
from . import snapshot as memcg_snapshot
from ..capture.inputs import Evidence
from ..capture.place import Placement
from .joiner import PendingKill
from .runtimes import runtime_reading


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # the snapshot is read on this host: its page size


class ReadingsStore(Protocol):
    """The queries evidence asks of the sampler's store of readings (record/sampler.py)."""

    def latest_before(self, cgroup: str, t_ns: int): ...
    def timeline(self, cgroup: str, kill_ns: int) -> List[TimelinePoint]: ...
    def reclaim_of(self, cgroup: str, not_before_ns: int) -> Optional[Tuple[ReclaimStats, int]]: ...
    def below(self, cgroup: str, t_ns: int) -> list: ...
    def cgroup_of_pid(self, pid: int) -> Optional[str]: ...
    def proc_info(self, pid: int) -> Optional[Tuple[str, Optional[str]]]: ...
    def ino(self, cgroup: str) -> Optional[int]: ...
    def cgroup_of_ino(self, ino: int) -> Optional[str]: ...
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

    def cgroup_of_ino(self, ino: int, limit: int = 16384) -> Optional[str]:
        """The cgroup whose directory has this inode, by a walk of at most ``limit`` cgroups (for a
        kill whose cgroup nothing else named: a cgroup made within the sampler's last second)."""
        for cgroup in itertools.islice(self.hier.walk("/"), limit):
            try:
                if os.stat(self.hier.fs_path(cgroup)).st_ino == ino:
                    return cgroup
            except OSError:
                continue
        return None

    def state_after_kill(self, cgroup: str) -> Optional[CgroupState]:
        return self.hier.read_state(cgroup, Source.AFTER_KILL)

    def tasks(self, cgroup: str) -> List[Task]:
        out = []
        for pid in self.hier.procs(cgroup):
            t = procfs.read_task(pid, Source.AFTER_KILL)
            if t is not None:
                out.append(t)
        return out


class EvidenceGatherer:
    def __init__(self, store: ReadingsStore, live: LiveReads, cgroup_version: int):
        self.store = store
        self.live = live
        self.cgroup_version = cgroup_version

    def locate(self, kill: PendingKill) -> Optional[Tuple[str, str]]:
        """The victim's memory cgroup as oomscope saw it, best first, for when the kernel's report
        does not name it: (path, how it was learnt)."""
        if kill.proc_cgroup is not None:
            return kill.proc_cgroup, Source.PROC_READ
        # The memory cgroup the kernel snapshot read at the SIGKILL: its id is its directory's
        # inode (docs/kernel-facts.md). Before this, a victim that died within a second of its
        # cgroup's making (no /proc read, no sample) was placed in its parent process's cgroup:
        # the soak benchmark lost one such kill in 720 outside record's --cgroup.
        snap = kill.snapshot
        if snap is not None and snap.levels and snap.levels[0].cgroup_id:
            ino = snap.levels[0].cgroup_id
            found = self.store.cgroup_of_ino(ino) or self.live.cgroup_of_ino(ino)
            if found is not None:
                return found, Source.KERNEL_SNAPSHOT
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

    def gather(self, kill: PendingKill, placement: Placement, kill_ns: int, snapshot_status: str = "",
               incident: Optional[Tuple[CgroupState, List[Task]]] = None) -> Evidence:
        ev = Evidence(reaped_ns=kill.reaped_ns, duplicates=kill.duplicates, snapshot_status=snapshot_status)
        if incident is not None:
            ev.incident_state, ev.incident_tasks = incident
        rep = kill.report
        task_memcg = placement.cgroup.task_memcg
        described = placement.described
        if described is not None:
            index = self._snapshot_level(kill, described, placement.is_global)
            snap = kill.snapshot
            if index is not None and snap is not None:
                ev.kernel_snapshot = memcg_snapshot.state_from_snapshot(snap, index, self.cgroup_version, PAGE_SIZE, described)
                # the level's exact view adds the unflushed parts of the levels below it
                ev.snapshot_torn = bool(snap.torn & ((2 << index) - 1))
            sample = self.store.latest_before(described, kill_ns)
            if sample is not None:
                ev.last_sample = dataclasses.replace(sample.state, age_ms=(kill_ns - sample.t_ns) / 1e6)
            for path in [described] + ([task_memcg] if task_memcg and task_memcg != described else []):
                points = self.store.timeline(path, kill_ns)
                if points:
                    ev.timelines.append(Timeline(path, points, reclaim_at_kill(self.store.reclaim_of(path, kill_ns), kill_ns),
                                                 thinned_by_age=True))
            for path, sample in self.store.below(described, kill_ns):
                ev.sharing.append(CgroupUsage(path, sample.state.usage_bytes, Source.LAST_SAMPLE, (kill_ns - sample.t_ns) / 1e6))
            for pid, when, reading, hist in self.store.runtimes_before(described, kill_ns):
                info = self.store.proc_info(pid)
                rr = runtime_reading(pid, reading, (kill_ns - when) / 1e6, info[0] if info else "")
                # (when, used, committed) for a JVM; (when, HeapInuse, the GC's goal) for a Go program
                rr.heap_history = [RuntimePoint(round((t - kill_ns) / 1e6, 1), heap_inuse_bytes=a, heap_goal_bytes=b)
                                   if rr.kind == "go" else RuntimePoint(round((t - kill_ns) / 1e6, 1), a, b)
                                   for t, a, b in hist]
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

    def _snapshot_level(self, kill: PendingKill, cgroup: str, is_global: bool) -> Optional[int]:
        """The described cgroup's level of the snapshot taken at the SIGKILL: found by its inode;
        else (a cgroup gone or renamed) the level at its limit, when one hit it."""
        snap = kill.snapshot
        if snap is None or not snap.levels:
            return None
        ino = self.store.ino(cgroup) or self.live.ino(cgroup)
        index = memcg_snapshot.level_of(snap, ino)
        if index is None and not is_global:
            index = memcg_snapshot.level_at_limit(snap, PAGE_SIZE)
        return index


def reclaim_at_kill(read: Optional[Tuple[ReclaimStats, int]], kill_ns: int) -> Optional[Reclaim]:
    if read is None:
        return None
    stats, t_read = read
    t = stats.totals()
    t.ms = round(t.ms, 2)
    t.read_ms_after_kill = round((t_read - kill_ns) / 1e6, 1)
    return t
