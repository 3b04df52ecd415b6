"""Joins the two records of one kill: the BPF ``oom:mark_victim`` event and the kernel's report.

Either may come alone: the kernel rate-limits its report (only the ``Killed process`` line is
always printed), a /dev/kmsg reader that falls behind loses records (EPIPE), and a perf buffer
can drop events in a storm. A kill is *ready* when both parts are in, or when the missing part
has had its time to arrive. Matching is by victim pid, nearest in time: bpf_ktime_get_ns()
(CLOCK_MONOTONIC) and the printk clock (local_clock, not slewed by NTP) agree to a few ms here,
and still did after 8 hours of uptime (measured: at 411 s the event 2.01 ms before the Killed
line, 411348566 us against 411350580 us; at 28,700 s, 2.08 ms before it). Where NTP slews
CLOCK_MONOTONIC and not the printk clock, the two may part over weeks of uptime (not seen here):
the offset is learnt from the kills that have both parts (KillJoiner.printk_offset_ns), a part
waiting for its other part is joined to it whatever their times say (_waiting_is_this_kill),
and each kill's time is on the BPF clock (PendingKill.kill_ns, report_ns); finished kills are
remembered on the printk clock, to compare a group kill's repeat with them.
Pure logic: no I/O, times passed in, so it is unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..kernel.oom_report import OomReport
from ..layouts import EV_MARK_VICTIM, EV_REAP_FINISHED, SNAP_MARK_VICTIM, MemcgSnapshot, OomEvent

MATCH_WINDOW_NS = 10_000_000_000  # a report and an event of the same pid this close are one kill


@dataclass
class PendingKill:
    pid: int
    first_seen_ns: int  # CLOCK_MONOTONIC when the first part reached us
    event: Optional[OomEvent] = None
    report: Optional[OomReport] = None
    proc_cgroup: Optional[str] = None  # /proc/<pid>/cgroup read as soon as the event arrived
    parent_cgroup: Optional[str] = None  # the cgroup of the victim's parent (fork), read then
    proc_cmdline: Optional[str] = None  # /proc/<pid>/cmdline read then (empty once the mm is gone)
    reaped_ns: Optional[int] = None
    duplicates: int = 0  # extra Killed lines for this pid (a memory.oom.group kill repeats it)
    #: the kernel snapshot taken by the victim's pid when the kill has no event (lost in a
    #: storm, or still unread when the Killed line's wait ended): the collector's
    memcg_snapshot: Optional[MemcgSnapshot] = None

    @property
    def snapshot(self) -> Optional[MemcgSnapshot]:
        """The memory cgroup's counters at the SIGKILL: the event's, else the one taken by pid."""
        if self.event is not None and self.event.memcg_snapshot is not None:
            return self.event.memcg_snapshot
        return self.memcg_snapshot

    #: the Killed line's time on the BPF clock (CLOCK_MONOTONIC): its printk time less the offset
    #: the joiner has learnt (KillJoiner.printk_offset_ns: moved with it while it waits)
    report_ns: Optional[int] = None

    @property
    def kill_ns(self) -> Optional[int]:
        """When the kill happened, on CLOCK_MONOTONIC: its event's time, else its Killed line's."""
        if self.event is not None:
            return self.event.ts_ns
        return self.report_ns


#: finished kills remembered (a group kill's repeat of a victim already written comes within a
#: minute); beyond RECENT_KEPT the older ones are dropped, at most once a second. Every kill on the
#: host counts, in --cgroup's scope or not: 10,000 kept filled for hours and held ~1 MiB
RECENT_KEPT = 1000
RECENT_NS = 60_000_000_000
LEARNT = 5  # the printk clock's offsets kept, from the last kills joined


@dataclass
class KillJoiner:
    #: how long a BPF event waits for its Killed line (kmsg can lag behind in a storm)
    report_wait_ns: int = 2_000_000_000
    #: how long a Killed line waits for its BPF event
    event_wait_ns: int = 1_000_000_000
    pending: List[PendingKill] = field(default_factory=list)
    #: pid -> (the finished kill's time on the printk clock, when record wrote it): a group kill's
    #: Killed line naming it again is compared Killed line with Killed line, on the printk clock
    _recent: Dict[int, Tuple[int, int]] = field(default_factory=dict)
    #: pid -> (when record finished its kill without an event, whether it was written: False
    #: outside --cgroup or beyond the storm budget). A late event is matched by when it came (record's own clock), not by a
    #: kernel time, so that no offset is needed to match it
    _without_event: Dict[int, Tuple[int, bool]] = field(default_factory=dict)
    late_events: int = 0  # events that came after their kill was written without them
    #: pid -> (when record finished its kill without the kernel's report, whether it was written):
    #: its report read later (kmsg behind in a storm) is that kill's, not a second kill
    _without_report: Dict[int, Tuple[int, bool]] = field(default_factory=dict)
    late_reports: int = 0  # reports (or Killed lines) that came after their kill was written without them
    _pruned_ns: int = 0
    #: the printk clock less the BPF clock, learnt from kills joined with both times; 0 until one
    #: is. Kept up to date, so that the two may part slowly (NTP slewing CLOCK_MONOTONIC, not the
    #: printk clock) without a kill going unjoined or dated on the wrong clock.
    printk_offset_ns: int = 0
    _offsets: List[int] = field(default_factory=list)  # the last LEARNT of them: their median is the offset

    def _report_ns(self, rep: OomReport) -> Optional[int]:
        return rep.killed_usec * 1000 - self.printk_offset_ns if rep.killed_usec is not None else None

    def _learn(self, k: PendingKill) -> None:
        """The offset from a kill with both times, its Killed line seen (not a time completed from
        the oom_reaper's line, 2 s later since 5.18: kernel/oom_report.py). The median of the last
        LEARNT: once three are learnt, one wrong pair (a pid reused within the wait) does not move
        it. Killed lines still waiting are moved to the new offset."""
        rep, ev = k.report, k.event
        if ev is None or rep is None or rep.killed is None or not rep.killed.seen or rep.killed_usec is None:
            return
        self._offsets = (self._offsets + [rep.killed_usec * 1000 - ev.ts_ns])[-LEARNT:]
        new = sorted(self._offsets)[len(self._offsets) // 2]
        delta, self.printk_offset_ns = new - self.printk_offset_ns, new
        if delta:
            for w in self.pending:
                if w.event is None and w.report_ns is not None:
                    w.report_ns -= delta

    def not_written(self, pid: int) -> None:
        """A finished kill record does not write (outside --cgroup, or counted by the storm
        budget): its event, read late, is dropped as before but not counted as a loss
        (late_events, late_reports: they alert)."""
        for parts in (self._without_event, self._without_report):
            if pid in parts:
                parts[pid] = (parts[pid][0], False)

    def add_event(self, ev: OomEvent, now_ns: int) -> Optional[PendingKill]:
        if ev.kind == EV_REAP_FINISHED:
            for k in self.pending:
                if k.pid == ev.victim_pid and k.reaped_ns is None:
                    k.reaped_ns = ev.ts_ns
            return None
        if ev.kind != EV_MARK_VICTIM:
            return None
        waiting = [k for k in self.pending if k.pid == ev.victim_pid and k.event is None]
        # the nearest in time; else one waiting whatever its time says (_waiting_is_this_kill)
        near = [k for k in waiting if _close(k.kill_ns, ev.ts_ns)]
        if near or waiting:
            k = min(near, key=lambda k: abs((k.kill_ns or 0) - ev.ts_ns)) if near else waiting[0]
            k.event = ev
            self._learn(k)
            return k
        written, scoped = self._without_event.pop(ev.victim_pid, (None, True))
        if written is not None and now_ns - written <= MATCH_WINDOW_NS:
            # its Killed line waited event_wait_ns and was written without it: a second capture
            # of the same kill would count it twice. Only such kills: a task is marked a victim
            # once (TIF_MEMDIE), so an event of a pid whose kill had its event is a new kill.
            # One outside --cgroup was never written: nothing lost.
            if scoped:
                self.late_events += 1
            return None
        kill = PendingKill(pid=ev.victim_pid, first_seen_ns=now_ns, event=ev)
        self.pending.append(kill)
        return kill

    def add_report(self, rep: OomReport, now_ns: int) -> Optional[PendingKill]:
        if rep.killed is None:
            return None
        pid = rep.killed.pid
        t = self._report_ns(rep)
        best = None
        for k in self.pending:
            if k.pid != pid or not _close(k.kill_ns, t):
                continue
            if k.report is None:
                if best is None or abs((k.kill_ns or 0) - (t or 0)) < abs((best.kill_ns or 0) - (t or 0)):
                    best = k
            elif not rep.has_header:
                k.duplicates += 1  # the same victim named again by a group kill
                return None
        if best is None:
            best = next((k for k in self.pending if k.pid == pid and k.report is None), None)  # _waiting_is_this_kill
        if best is not None:
            best.report = rep
            best.report_ns = t
            self._learn(best)
            return best
        recent = self._recent.get(pid)
        same_as_recent = recent is not None and _close(recent[0], rep.killed_usec * 1000 if rep.killed_usec is not None else None)
        without = self._without_report.get(pid)
        by_kernel_times = bool(self._offsets) and t is not None
        if without is not None and (same_as_recent if by_kernel_times else
                                    same_as_recent or now_ns - without[0] <= MATCH_WINDOW_NS):
            # its kill was written from its event alone (the report came later than
            # report_wait_ns: kmsg behind in a storm): a second capture would count it twice.
            # A victim is named by one report's Killed line (a group kill's members by lines
            # without a header), so a report of this pid at this time is that kill's; matched by
            # the kernel's times once an offset is learnt, else also by when it came (record's
            # clock). Counted once: the entry stays (not counted again) so that a group kill's
            # repeat of the same victim is dropped as such until it is pruned.
            if without[1]:
                self.late_reports += 1
                self._without_report[pid] = (without[0], False)
            return None
        if not rep.has_header and same_as_recent:
            return None  # a group kill's repeat of a victim already written
        kill = PendingKill(pid=pid, first_seen_ns=now_ns, report=rep, report_ns=t)
        self.pending.append(kill)
        return kill

    def ready(self, now_ns: int, flush: bool = False) -> List[PendingKill]:
        out, keep = [], []
        for k in self.pending:
            age = now_ns - k.first_seen_ns
            done = (
                flush
                or (k.event is not None and k.report is not None)
                or (k.report is None and age >= self.report_wait_ns)
                or (k.event is None and age >= self.event_wait_ns)
            )
            (out if done else keep).append(k)
        self.pending = keep
        for k in out:
            printk = k.report.killed_usec * 1000 if k.report is not None and k.report.killed_usec is not None else \
                (k.event.ts_ns + self.printk_offset_ns if k.event is not None else None)
            if printk is not None:
                self._recent[k.pid] = (printk, now_ns)
            if k.event is None:
                self._without_event[k.pid] = (now_ns, True)
            else:
                self._without_event.pop(k.pid, None)  # an earlier kill of a reused pid: not this one's
            if k.report is not None:
                self._without_report.pop(k.pid, None)
            elif not _marked_without_sigkill(k.event):
                self._without_report[k.pid] = (now_ns, True)
        if len(self._recent) + len(self._without_event) + len(self._without_report) > RECENT_KEPT \
                and now_ns - self._pruned_ns >= 1_000_000_000:
            self._pruned_ns = now_ns
            cutoff = now_ns - RECENT_NS
            self._recent = {p: v for p, v in self._recent.items() if v[1] >= cutoff}
            self._without_event = {p: w for p, w in self._without_event.items() if w[0] >= cutoff}
            self._without_report = {p: w for p, w in self._without_report.items() if w[0] >= cutoff}
        return out


# _waiting_is_this_kill: a part waiting for its other part, of the same pid, is the same kill
# whatever the two clocks say. A part waits at most report_wait_ns, the kernel log is followed
# from its end (kernel/kmsg.py), and two kills of one pid seconds apart would need the pid space
# to wrap in between: so the first kill after the clocks parted is joined, and its offset learnt.
# (A group kill's Killed line naming its victim again finds that kill's report already in: it
# is matched by time, as a duplicate, and by the finished kills' times once written.)


def _marked_without_sigkill(ev: Optional[OomEvent]) -> bool:
    """A victim marked without the OOM killer's SIGKILL (task_will_free_mem: already exiting,
    mm/oom_kill.c) gets no Killed line: a later line naming it (a group kill's) is not its report."""
    snap = ev.memcg_snapshot if ev is not None else None
    return snap is not None and snap.kind == SNAP_MARK_VICTIM


def _close(a: Optional[int], b: Optional[int]) -> bool:
    if a is None or b is None:
        return True
    return abs(a - b) <= MATCH_WINDOW_NS
