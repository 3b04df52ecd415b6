"""Recent state and history of every memory cgroup that can OOM, so that a kill without a kernel
report still has the state from just before it, and every post-mortem has the minutes before.

Watched: every cgroup with a memory limit, every cgroup with tasks, and the cgroups between a
cgroup with tasks and its nearest limited ancestor. Memory freed by a kill is gone within
milliseconds (docs/kernel-facts.md: memory.stat read after the event shows rss 0), so the sample that
counts is the last one taken *before* the kill: each cgroup keeps a short ring of full readings
(``latest_before()`` picks by timestamp) and a longer, compact timeline (record/timeline.py).

Adaptive: each cgroup has its own next reading, every ``idle_interval_s`` (10 s) below a quarter
of its limit (or its limited ancestor's), ``far_interval_s`` (5 s) below half, ``mid_interval_s``
(1 s) up to ``near_limit_ratio`` (90%), ``fast_interval_s`` (100 ms) above; an idle cgroup
(below a quarter) whose usage and limit have not changed is read fully every ``idle_full_s`` (30 s)
only, its usage and limit alone at the idle readings in between (``_skip_unchanged``). Between full
readings a limited cgroup's usage alone (one small file) is peeked at: every
1 s below a quarter of its limit, every ``peek_interval_s`` (250 ms) below half, every 100 ms
above; a cgroup that fills up fast is read within that time, not ``far_interval_s``. On cgroup v2
a limit being hit wakes the sampler at once (inotify on memory.events, kernel/inotify.py); on v1
crossing 25, 50, 90 or 99% of the limit does (usage thresholds, kernel/memcg_thresholds.py): a
fill faster than a peek interval is still read before its kill. A cgroup without a limit is measured
against the host's RAM.
Cgroups appear and vanish while it runs; a vanished cgroup's data is kept for a minute.

The sampler thread owns its discovery and schedule (``_watched``) alone; what it reads goes to
``self.store`` (record/readings.py), the one object shared with the main thread, which answers
every query. The kernel's notifications are record/notify.py's.

Bounded: at most ``max_cgroups`` cgroups; per cgroup the full readings (~3 KiB each) of the
last ``ring_s`` seconds (2 for a cgroup far from its limit, at most 100 near it) and a timeline of
at most 697 points, 117 (13 KB) for an idle one (record/timeline.py thins them with age); the pid
maps hold at most ``max_pids`` pids seen in the last ``pid_retention_s``. For 500 idle cgroups:
500 x (2 x 3 + 13) KB = 9.5 MB, plus 375 KB for each cgroup near its limit.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Callable, Dict, List, Optional, Tuple

from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy, cgroup_within
from ..model import CgroupState, Source
from ..layouts import ReclaimStats
from . import heap
from .notify import LimitNotifications
from .readings import Readings
from .runtimes import RuntimeReader, read_cgroup
from .watchdog import Heartbeat



@dataclass(frozen=True)
class SamplerSettings:
    """How often the sampler reads and what it keeps: its settings in one place (the module's
    docstring says what each interval is for). ``Sampler(hier, settings)``, or a setting by name
    (``Sampler(hier, fast_interval_s=0.01)``: the defaults with that one changed)."""

    idle_interval_s: float = 10.0  # a full reading below a quarter of the limit
    far_interval_s: float = 5.0  # ... below half
    mid_interval_s: float = 1.0  # ... up to near_limit_ratio
    fast_interval_s: float = 0.1  # ... above it
    near_limit_ratio: float = 0.9
    discover_interval_s: float = 1.0
    peek_interval_s: float = 0.25  # the usage alone, between full readings (see Schedule.peek_ns)
    ring_s: float = 10.0  # full readings kept per cgroup (record/readings.py)
    timeline_points: int = 600
    timeline_spacing_s: float = 1.0
    max_cgroups: int = 4096
    pid_retention_s: float = 60.0
    max_pids: int = 200_000
    #: an idle cgroup whose usage and limit have not changed since its last reading is read fully
    #: only this often (``Sampler._skip_unchanged``), its usage moved by at most ``unchanged_ratio``
    #: of its limit and ``unchanged_max_bytes``
    idle_full_s: float = 30.0
    unchanged_ratio: float = 0.01
    unchanged_max_bytes: int = 16 << 20
    #: what a cgroup without a limit is measured against; None: the host's MemTotal
    host_memory_bytes: Optional[int] = None
    notify: bool = True  # woken by the kernel when a limited cgroup fills up (record/notify.py)
    #: counter files kept open by the sampler thread; None: half the open-file limit
    kept_fds: Optional[int] = None


@dataclass(frozen=True)
class Schedule:
    """When a cgroup is read and peeked at, from how full it is: pure, in ns, from the settings."""

    idle_ns: int
    far_ns: int
    mid_ns: int
    fast_ns: int
    peek_ns: int
    idle_full_ns: int
    near_limit_ratio: float

    @classmethod
    def of(cls, st: SamplerSettings) -> "Schedule":
        return cls(int(st.idle_interval_s * 1e9), int(st.far_interval_s * 1e9), int(st.mid_interval_s * 1e9),
                   int(st.fast_interval_s * 1e9), int(st.peek_interval_s * 1e9), int(st.idle_full_s * 1e9),
                   st.near_limit_ratio)

    def band(self, ratio: float) -> int:
        """0: below a quarter of the limit, 1: below half, 2: below near_limit_ratio, 3: near it.
        Readings every 10 s below a quarter (a rise into the next band is caught by a peek within
        1 s): with 500 idle cgroups, readings every 5 s were a third of record's CPU."""
        return 3 if ratio >= self.near_limit_ratio else 2 if ratio >= 0.5 else 1 if ratio >= 0.25 else 0

    def read_interval(self, ratio: float) -> int:
        """Between two full readings of a cgroup this full (the fuller of it and its limited ancestor)."""
        return (self.idle_ns, self.far_ns, self.mid_ns, self.fast_ns)[self.band(ratio)]

    def peek_interval(self, ratio: float, thresholds_notify: bool = False) -> int:
        """Between two peeks at its usage. Peeks are most of the sampler's cost with many idle
        cgroups (measured: 500 cgroups peeked every 250 ms took 5.7% of a core), so a nearly empty
        cgroup is peeked once a second, a quarter-full one every peek_interval_s, and one past half
        as often as read near the limit. ``thresholds_notify``: cgroup v1 usage thresholds wake
        the sampler as the usage crosses 25% of the limit, which is what a peek below it looks for;
        it is peeked every far interval all the same (a threshold set against a limit that has
        just changed)."""
        if ratio >= 0.5:
            return self.fast_ns
        if ratio >= 0.25:
            return self.peek_ns
        if thresholds_notify:
            return self.far_ns
        return 4 * self.peek_ns

    def filling(self, old_ratio: float, new_ratio: float) -> bool:
        """A peek that saw the cgroup fill up: into a fuller band, or by more than a tenth of its limit."""
        return self.band(new_ratio) > self.band(old_ratio) or new_ratio - old_ratio > 0.1

    def unchanged(self, usage: int, full_usage: int, limit: int, unchanged_ratio: float, unchanged_max_bytes: int) -> bool:
        """An idle cgroup that has not moved since its last full reading (``Sampler._skip_unchanged``)."""
        return (self.band(usage / limit) == 0
                and abs(usage - full_usage) <= min(unchanged_ratio * limit, unchanged_max_bytes))


_SETTINGS = frozenset(f.name for f in fields(SamplerSettings))


@dataclass
class Sample:
    t_ns: int  # CLOCK_MONOTONIC when the read finished
    state: CgroupState
    pids: Tuple[int, ...]
    #: cumulative reclaim by the cgroup's processes when read; None when reclaim is not counted
    reclaim: Optional[ReclaimStats] = None


@dataclass
class _Watched:
    next_ns: int = 0
    peek_ns: int = 0
    limit: Optional[int] = None
    #: what its reading pace is measured against: the limit, or memory.high below it (cgroup v2)
    pace_limit: Optional[int] = None
    ino: int = 0
    has_tasks: bool = False
    seen_ns: int = 0
    ratio: float = 0.0
    limited: bool = False  # has a limit of its own
    read_ns: int = 0  # when it was last read
    # its usage and limit at that reading, and when its next reading was planned as an idle one
    # (below a quarter of the limit): a reading made due by anything else is never skipped
    full_usage: Optional[int] = None
    full_limit: Optional[int] = None
    idle_due_ns: int = -1


class Sampler:
    def __init__(
        self,
        hier: MemoryHierarchy,
        top: str = "/",
        settings: Optional[SamplerSettings] = None,
        *,
        reclaim_reader: Optional[Callable[[], Dict[int, ReclaimStats]]] = None,
        runtimes: Optional[RuntimeReader] = None,
        clock: Callable[[], int] = time.monotonic_ns,
        **setting: object,
    ):
        """``settings``, and any of its fields by name over it; ``clock``: CLOCK_MONOTONIC in ns
        (a test's own clock: nothing here sleeps)."""
        unknown = set(setting) - _SETTINGS
        if unknown:
            raise TypeError(f"Sampler: no setting named {', '.join(sorted(unknown))}")
        st = self.settings = replace(settings or SamplerSettings(), **setting)
        self.hier = hier
        self.top = top
        self.clock = clock
        self.sched = Schedule.of(st)
        self._discover_ns = int(st.discover_interval_s * 1e9)
        self.ring_ns = int(st.ring_s * 1e9)
        #: at most this many cgroups are walked at a discovery (the rest: ``unwalked``)
        self.max_walk = 4 * st.max_cgroups
        self.unwalked = 0
        #: counter files kept open by the sampler thread (kernel/cgroupfs.py, keep_files_open):
        #: half the open-file limit, the rest for v1's eventfds, BPF and the rest of record
        self.kept_fds = st.kept_fds if st.kept_fds is not None else _half_the_open_file_limit()
        self.host_memory_bytes = st.host_memory_bytes if st.host_memory_bytes is not None else _mem_total()
        self._watched: Dict[str, _Watched] = {}
        # the last discovery's findings (cgroup -> has tasks; cgroup -> limited), when complete
        self._found: Optional[Dict[str, bool]] = None
        self._limited: Optional[Dict[str, bool]] = None
        self._next_full_discovery = 0
        self._walked: Optional[List[str]] = None
        self._walk_count: Optional[int] = None
        self._next_walk_ns = 0
        self._next_discovery = 0
        #: every reading, and every query about them: the one object shared with the main thread
        self.store = Readings(hier, self.ring_ns, st.timeline_points, st.timeline_spacing_s,
                              int(st.pid_retention_s * 1e9), st.max_pids, reclaim_reader)
        # Woken the moment a limited cgroup fills up: on cgroup v2 by memory.events (inotify),
        # on v1 by usage thresholds (an eventfd per cgroup). One poll() waits on all of them.
        # Woken the moment a limited cgroup fills up (record/notify.py)
        self.notify = LimitNotifications(hier, st.notify)
        # The runtimes' own views (a JVM's heap) of the processes of a cgroup near its limit,
        # each pid at most once per fast interval (record/runtimes.py)
        self.runtimes = runtimes if runtimes is not None else RuntimeReader(self.sched.fast_ns)
        self.limit_hits = 0  # notifications that led to an immediate reading
        self.passes = 0
        self.reads = 0
        self.skipped = 0  # idle readings skipped: usage and limit unchanged (``_skip_unchanged``)
        self.errors = 0
        self.dropped_cgroups = 0
        #: beaten at each cgroup read and before each sleep; the main thread's watchdog reads it
        self.heartbeat = Heartbeat()

    # --- discovery ---
    def _walk(self, now: int) -> List[str]:
        """Every cgroup below the top: walked again when the hierarchy's count of cgroups changed,
        and every 10 s; else the last walk's (the walk was half of a discovery's cost with 500 idle
        cgroups: a stat of each, to tell a leaf; bench/README.md)."""
        count = self.hier.count()
        if count is None or count != self._walk_count or now >= self._next_walk_ns or self._walked is None:
            # Bounded: a container with a delegated cgroup tree can make 100,000 cgroups; the walk
            # stops after max_walk, shallowest first (every pod and container before their own
            # sub-cgroups), and the rest are counted as dropped.
            self._walked = list(itertools.islice(self.hier.walk(self.top), self.max_walk + 1))
            self.unwalked = 0
            if len(self._walked) > self.max_walk:
                self._walked.pop()
                self.unwalked = max(1, (count or 0) - self.max_walk)
            self._walk_count = count
            self._next_walk_ns = now + 10 * self._discover_ns
        return self._walked

    def _discover(self, now: int) -> None:
        found: Dict[str, bool] = {}
        limited: Dict[str, bool] = {}
        walked = self._walk(now)
        ancestors = self.store.limited_ancestors(walked)  # one lock for all (was 1/5 of a discovery)
        for cg in walked:
            if cg == "/":
                continue  # the root holds every host process; it is not a container
            anc = ancestors[cg]
            limited[cg] = anc == cg
            if anc == cg:
                # A limited cgroup is watched with or without tasks; whether it has any is learnt
                # at its readings, which list them anyway (reading every cgroup.procs here each
                # second was a third of the sampler's CPU with 500 cgroups).
                w = self._watched.get(cg)
                has_tasks = w.has_tasks if w is not None else True
            else:
                has_tasks = bool(self.hier.procs(cg))
                if not has_tasks:
                    continue
            found[cg] = found.get(cg, False) or has_tasks
            # the cgroups between it and its limit share that limit: watch them too
            path = cg
            while has_tasks and anc is not None and path != anc and path != "/":
                path = os.path.dirname(path.rstrip("/")) or "/"
                if path != "/":
                    found.setdefault(path, False)
        self.dropped_cgroups = self.unwalked
        if len(found) > self.settings.max_cgroups:
            self.dropped_cgroups += len(found) - self.settings.max_cgroups
            found = dict(list(found.items())[: self.settings.max_cgroups])
        if found == self._found and limited == self._limited and now < self._next_full_discovery:
            # The same cgroups as a second ago, with the same limits: nothing to update (the rest
            # of a discovery was half of its cost with 500 idle cgroups; bench/README.md). All of
            # it is done again every 10 s all the same (runtimes of exited processes forgotten,
            # notifications that failed retried).
            return
        self._found, self._limited = None, None
        self._next_full_discovery = now + 10 * self._discover_ns
        complete = True
        for cg, has_tasks in found.items():
            w = self._watched.get(cg)
            if w is None:
                try:
                    ino = os.stat(self.hier.fs_path(cg)).st_ino
                except OSError:
                    complete = False
                    continue
                w = self._watched[cg] = _Watched(next_ns=now, ino=ino)
            w.has_tasks = has_tasks
            w.limited = limited.get(cg, False)
            w.seen_ns = now
        vanished = [c for c, w in self._watched.items() if w.seen_ns != now]
        for cg in vanished:
            del self._watched[cg]
            self.hier.forget_files(cg)
        # and those of cgroups gone that were read without being watched (on the way to a limit)
        present = set(self._walked or ()) | set(self._watched)
        self.hier.forget_files_except(present)
        self.hier.forget_paths_except(present)
        self.store.forget_ancestors_except(present)
        self.store.set_watched({c: w.ino for c, w in self._watched.items()}, vanished, 4 * self.settings.max_cgroups)
        self.runtimes.forget_except(self.store.known_pids())
        self._sync_limit_notifications()
        if complete:
            self._found, self._limited = found, limited
        heap.trim()  # free C heap pages back to the kernel (record/heap.py, bench/README.md "Soak")

    # --- one pass ---
    def tick(self) -> float:
        """Read every cgroup that is due; returns how long to wait before the next pass."""
        now = self.clock()
        if now >= self._next_discovery:
            self._discover(now)
            self._next_discovery = _on_grid(now, self._discover_ns)
        # Everything due within half the fastest interval is handled in this pass. Without that
        # slack, each cgroup's schedule drifts from the others' (it is relative to its own last
        # reading) and the passes multiplied: with 500 cgroups, 11 a second after one minute and
        # 25 after four, each walking every cgroup, the sampler's CPU grew from 1.9% to 3.3%.
        horizon = now + self.sched.fast_ns // 2
        filling = []
        for cg, w in self._watched.items():
            if w.next_ns > horizon and w.limit and w.peek_ns <= horizon:
                # above half the limit, peek as often as a near-limit cgroup is read: a fast
                # grower (80 MiB/s in a 96 MiB cgroup) crosses the last 10% in ~120 ms
                w.peek_ns = _on_grid(now, self._peek_interval(w.ratio, cg))
                usage = self.hier.usage(cg)
                if usage is not None and self.sched.filling(w.ratio, usage / (w.pace_limit or w.limit)):
                    filling.append(cg)  # filling up: read it, and every cgroup below it, now
        for cg in filling:
            self._read_subtree_now(cg, now)
        due = self._skip_unchanged([cg for cg, w in self._watched.items() if w.next_ns <= horizon], now)
        # None: reclaim is not counted (no vmscan tracepoints, or the map could not be read);
        # else a cgroup missing from it had no reclaim by its processes: zeros, not unknown
        reclaim_by_cg = self._reclaim_by_cgroup() if due and self.store.reclaim_reader is not None else None
        new_samples: Dict[str, Sample] = {}
        limits_changed = False  # a limited cgroup's limit learnt or changed by these readings
        pid_cgroup: Dict[int, str] = {}
        for cg in due:
            w = self._watched[cg]
            state = self.hier.read_state(cg, Source.LAST_SAMPLE)
            pids = tuple(self.hier.procs(cg)) if w.has_tasks or w.limited else ()
            if w.limited:
                w.has_tasks = bool(pids)
            t = self.clock()
            self.heartbeat.beat(t)
            self.reads += 1
            if state is None:
                w.next_ns = now + self.sched.far_ns
                continue  # vanished between the walk and the read
            sample = Sample(t, state, pids, reclaim=None if reclaim_by_cg is None else reclaim_by_cg.get(cg, ReclaimStats()))
            new_samples[cg] = sample
            w.read_ns = t
            for pid in pids:
                pid_cgroup[pid] = cg
            # A cgroup without a limit can still be where a global OOM strikes: the host's RAM is
            # its limit, so a cgroup filling the node is read as fast as one filling its limit.
            limit = state.limit_bytes or self.host_memory_bytes
            limits_changed = limits_changed or (w.limited and limit != w.limit)
            w.limit = limit
            # memory.high throttles before the limit kills (mm/memcontrol.c mem_cgroup_handle_over_high):
            # a cgroup nearing it is read as often as one nearing its limit. Paced by the limit alone,
            # a throttled cgroup with no limit of its own was read every 10 s: the 6.12 VM's throttle
            # episode had no reading in its last 20 s and said 23.6 s for ~4 s (tests/system/test_throttle.py)
            high = state.memory_high_bytes
            w.pace_limit = min(limit, high) if limit and high else limit
            if w.pace_limit and state.usage_bytes is not None:
                w.ratio = state.usage_bytes / w.pace_limit
        for cg, sample in new_samples.items():
            w = self._watched[cg]
            ratio = w.ratio
            anc = self.store.limited_ancestor(cg)
            if anc is not None and anc != cg and anc in self._watched:
                ratio = max(ratio, self._watched[anc].ratio)
            interval = self.sched.read_interval(ratio)
            w.next_ns = _on_grid(sample.t_ns, interval)
            w.peek_ns = _on_grid(sample.t_ns, self._peek_interval(ratio, cg))
            w.full_usage, w.full_limit = sample.state.usage_bytes, sample.state.limit_bytes
            w.idle_due_ns = w.next_ns if interval == self.sched.idle_ns else -1
            if anc == cg and interval < self.sched.far_ns:
                # A limit filling up is shared by every cgroup below it: read them as often
                # (a sibling read 5 s earlier says little about the kill; measured 1.8 s old).
                for other, ow in self._watched.items():
                    if other != cg and ow.next_ns > sample.t_ns + interval and cgroup_within(other, cg):
                        ow.next_ns = sample.t_ns + interval
        runtime_readings = []
        self.runtimes.begin_pass()
        for cg, sample in new_samples.items():
            if sample.pids:
                w = self._watched[cg]
                anc = self.store.limited_ancestor(cg)
                ratio = max(w.ratio, self._watched[anc].ratio if anc in self._watched else 0.0)
                for pid, t, reading in read_cgroup(self.runtimes, sample.pids, ratio, sample.t_ns, self.clock):
                    runtime_readings.append((pid, t, cg, reading))
                    self.heartbeat.beat(t)
        if runtime_readings:
            self.store.add_runtimes(runtime_readings)
        new_info = {}
        for pid in pid_cgroup:
            info = self.store.proc_info(pid)
            if info is None:
                comm = procfs.read_comm(pid)
                if comm is None:
                    continue
                info = (comm, procfs.read_cmdline(pid))
            new_info[pid] = info
        self.store.add_pass(new_samples, pid_cgroup, new_info)
        if limits_changed and self.notify.v1:
            self._sync_limit_notifications()  # v1 thresholds follow the limits, learnt by reading
        self.passes += 1
        nxt = min([min(w.next_ns, w.peek_ns if w.limit else w.next_ns) for w in self._watched.values()]
                  + [self._next_discovery])
        return min(1.0, max(0.01, (nxt - self.clock()) / 1e9))

    def _skip_unchanged(self, due: List[str], now: int) -> List[str]:
        """``due`` without the idle cgroups that have not changed: a cgroup whose reading was planned
        as an idle one (below a quarter of its limit, and of its limited ancestor's), whose usage
        moved by at most ``unchanged_ratio`` of its limit (and ``unchanged_max_bytes``) since its
        last reading and whose limit is the same, is read again in ``idle_interval_s`` and fully at
        least every ``idle_full_s``: two small reads instead of seven files, cgroup.procs and a
        memory.stat to parse (2000 idle cgroups: full readings were 45% of the sampler's CPU;
        bench/README.md). Its timeline then has a point every ``idle_full_s``; a cgroup that fills
        up is read at once as before (its peeks, its usage thresholds or memory.events), and a
        reading made due by a notification or a filling ancestor is never skipped."""
        if self.sched.idle_full_ns <= self.sched.idle_ns:
            return due
        out = []
        for cg in due:
            w = self._watched[cg]
            if (w.next_ns == w.idle_due_ns and w.full_usage is not None and w.limit
                    and now + self.sched.idle_ns - w.read_ns <= self.sched.idle_full_ns):
                usage = self.hier.usage(cg)
                st = self.settings
                if (usage is not None and self.sched.unchanged(usage, w.full_usage, w.limit, st.unchanged_ratio, st.unchanged_max_bytes)
                        and self.hier.limit(cg) == w.full_limit):
                    w.next_ns = w.idle_due_ns = _on_grid(now, self.sched.idle_ns)
                    w.peek_ns = _on_grid(now, self._peek_interval(w.ratio, cg))
                    self.skipped += 1
                    continue
            out.append(cg)
        return out

    def _peek_interval(self, ratio: float, cgroup: Optional[str] = None) -> int:
        return self.sched.peek_interval(ratio, cgroup is not None and self.notify.v1 and self.notify.notified(cgroup))

    def _reclaim_by_cgroup(self) -> Optional[Dict[str, ReclaimStats]]:
        """Cumulative reclaim per watched cgroup: its processes' and its descendants'."""
        read = self.store.reclaim_read(self.clock() - self.sched.fast_ns // 2)
        if read is None:
            return None
        by_pid = read[1]
        out: Dict[str, ReclaimStats] = {}
        for pid, cg in self.store.pids_in(by_pid).items():
            path = cg
            while True:
                if path in self._watched:
                    out.setdefault(path, ReclaimStats()).add(by_pid[pid])
                if path == "/":
                    break
                path = os.path.dirname(path.rstrip("/")) or "/"
        return out

    # --- limit notifications ---
    def _sync_limit_notifications(self) -> None:
        self.notify.sync({cg: w.limit for cg, w in self._watched.items() if w.limited})

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        """Sleep until the next pass is due, or a limited cgroup reports filling up: then that
        cgroup and every cgroup below it are read at once, unless they were read within the fast
        interval; those are read one fast interval after their reading, and the sleep goes on
        until then. A storm notifies several times per kill (v1: each kill takes the usage back
        under a threshold and the next child over it); a pass at every notification was measured
        to double the kills' time to their post-mortem."""
        if not self.notify.active:
            stop.wait(seconds)
            return
        deadline = self.clock() + int(seconds * 1e9)
        while not stop.is_set():
            hit = self.notify.poll((deadline - self.clock()) / 1e6)
            if hit is None:
                return
            now = self.clock()
            read_now = 0
            for cg in hit:
                n, later = self._read_subtree_now(cg, now, unless_read_since=now - self.sched.fast_ns)
                read_now += n
                deadline = min(deadline, later)
            self.limit_hits += read_now
            if read_now or deadline <= now:
                return

    def _read_subtree_now(self, cgroup: str, now: int, unless_read_since: Optional[int] = None) -> Tuple[int, int]:
        """Make ``cgroup`` and every watched cgroup below it due now; returns how many were, and
        when the earliest of the others is due. Those read after ``unless_read_since`` are made due
        one fast interval after that reading instead: a notification is never dropped (v1
        thresholds at 25% and 50% crossed 80 ms apart: the second one dropped left no reading of
        the cgroup holding at 62%), and a cgroup notifying 100 times a second is read at the fast
        rate, not at every notification."""
        n = 0
        later = 1 << 62
        for other, w in self._watched.items():
            if not cgroup_within(other, cgroup):
                continue
            if unless_read_since is None or w.read_ns <= unless_read_since:
                w.next_ns = now
                n += 1
            else:
                w.next_ns = min(w.next_ns, w.read_ns + self.sched.fast_ns)
                later = min(later, w.next_ns)
        return n, later

    def close(self) -> None:
        self.notify.close()

    def run(self, stop: threading.Event) -> None:
        self.hier.keep_files_open(self.kept_fds)
        try:
            self._run(stop)
        finally:
            self.hier.close_files()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat(self.clock())
            try:
                wait = self.tick()
            except Exception:  # a sampler must not die on one odd cgroup; count and go on
                self.errors += 1
                wait = self.sched.fast_ns / 1e9
            self.heartbeat.beat(self.clock(), int(wait * 1e9))
            try:
                self._wait(wait, stop)
            except Exception:  # notifications are a bonus: fall back to polling
                self.errors += 1
                self.close()

    # --- about the sampler itself (its readings are queried in self.store) ---
    def notifications(self) -> str:
        """How the kernel wakes the sampler when a limited cgroup fills up."""
        return self.notify.describe()

    def notified(self, cgroup: str) -> bool:
        """Whether the kernel wakes the sampler when this cgroup fills up (v2 inotify, v1 thresholds)."""
        return self.notify.notified(cgroup)


GRID_NS = 1_000_000_000


def _on_grid(t_ns: int, interval_ns: int) -> int:
    """``t_ns`` + ``interval_ns``; when that is a second or more, rounded down to a whole second (of
    CLOCK_MONOTONIC), so never later than before: the idle cgroups' readings and peeks, and the
    discoveries, then fall due together, in one pass a second, not in passes of their own (each
    pass goes over every watched cgroup: with 500 idle cgroups, 4.4 passes a second were a third
    of the sampler's CPU; bench/README.md). Nearer times (a cgroup filling up) are kept as they are."""
    due = t_ns + interval_ns
    if interval_ns < GRID_NS:
        return due
    return due // GRID_NS * GRID_NS


def _half_the_open_file_limit() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 32768 if soft == resource.RLIM_INFINITY else max(0, soft // 2 - 64)


def _mem_total() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            return procfs.parse_meminfo(f.read()).get("MemTotal")
    except OSError:
        return None


def now_ns() -> int:
    return time.monotonic_ns()


def clock_offset_ns() -> int:
    """Wall-clock minus CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into a date."""
    return time.time_ns() - time.monotonic_ns()
