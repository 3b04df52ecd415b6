"""memory.high throttling episodes (issue 28): a cgroup that spends a large share of its time stalled
on memory while the kernel reclaims it at memory.high. Pure: readings in, episodes out.

A cgroup v2 over its memory.high is not killed: each task charging it reclaims
(mem_cgroup_handle_over_high, mm/memcontrol.c) and is then put to sleep for a penalty that grows
with the overage. Both count as a memory stall in the cgroup's PSI (memory.pressure ``some
total``, microseconds); memory.events ``high`` counts the times the cgroup went over. An *episode*
is a run of readings where ``high`` rose and the stall took at least ``share`` of the time between
two readings; it ends once ``quiet_s`` pass with neither, and is reported when it lasted at least
``min_s``. The stall counted is the PSI total's growth from the reading before the first one over
memory.high to the last reading with any stall: the episode's whole stall, whatever the readings'
spacing.

Why 10% by default (``record --throttle-share``): a tenth of the wall time with a task of the
cgroup stalled on memory is a slowdown its users see (a 100 ms request taking 110 ms or more), while
routine reclaim at memory.high (page cache trimmed in the background of a cache-heavy service)
stays well under 1%; systemd-oomd's default for killing, 60% over 30 s, is far above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

SHARE = 0.10
MIN_S = 2.0
QUIET_S = 5.0
STALE_BASELINE_S = 2.0  # readings further apart than this do not bound an episode's start
MAX_S = 600.0  # an episode longer than this is reported and a new one begins: a report is not held for hours


@dataclass
class ThrottleReading:
    t_ns: int
    high_events: int  # memory.events high
    memory_high_bytes: Optional[int]
    some_total_us: float  # memory.pressure some total
    full_total_us: float
    usage_bytes: Optional[int] = None
    some_avg10: Optional[float] = None
    full_avg10: Optional[float] = None


@dataclass
class Episode:
    cgroup: str
    start_ns: int
    end_ns: int
    high_events: int
    some_stall_us: float
    full_stall_us: float
    memory_high_bytes: Optional[int]
    usage_peak_bytes: Optional[int] = None
    some_avg10_peak: Optional[float] = None
    full_avg10_peak: Optional[float] = None
    readings: int = 0

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def share(self) -> float:
        return self.some_stall_us / 1e6 / self.duration_s if self.duration_s > 0 else 0.0


@dataclass
class _State:
    last: ThrottleReading
    episode: Optional[Episode] = None
    last_active_ns: int = 0


@dataclass
class ThrottleDetector:
    share: float = SHARE
    min_s: float = MIN_S
    quiet_s: float = QUIET_S
    max_s: float = MAX_S
    _cgroups: Dict[str, _State] = field(default_factory=dict)

    def feed(self, cgroup: str, r: ThrottleReading) -> Tuple[List[Episode], float]:
        """One reading of a cgroup: (the episodes it ended, the seconds of stall it added to an
        episode: the throttled-seconds metric)."""
        st = self._cgroups.get(cgroup)
        if st is None:
            self._cgroups[cgroup] = _State(r)
            return [], 0.0
        prev = st.last
        dt_us = (r.t_ns - prev.t_ns) / 1e3
        if dt_us <= 0:
            return [], 0.0
        st.last = r
        d_high = r.high_events - prev.high_events
        d_some = max(0.0, r.some_total_us - prev.some_total_us)
        d_full = max(0.0, r.full_total_us - prev.full_total_us)
        ended: List[Episode] = []
        if d_high < 0 or r.some_total_us < prev.some_total_us:  # the cgroup was made again: counters restarted
            ended += self._end(cgroup, st)
            return ended, 0.0
        # an episode begins only over the cgroup's own memory.high: memory.events high is hierarchical
        # (mm/memcontrol.c memcg_memory_event walks up), so a parent without one sees its throttled
        # child's events and stall. A reading without memory.high is still the baseline of the stall
        # once memory.high is set; one open episode goes on if memory.high is lifted
        own = r.memory_high_bytes is not None or prev.memory_high_bytes is not None or st.episode is not None
        # the share over at most STALE_BASELINE_S: a stale baseline would dilute the first interval's
        # stall below the share and lose it (the stall since memory.high was set)
        active = own and d_high > 0 and d_some >= self.share * min(dt_us, STALE_BASELINE_S * 1e6)
        added = 0.0
        if active:
            ep = st.episode
            if ep is None:
                # it began between the two readings; a baseline older than STALE_BASELINE_S (a cgroup
                # read seldom before it neared a limit: 6.12 VM run, a 4 s episode said 24.9 s) is no
                # start: the throttling began no later than the stall it already counts before r
                start = prev.t_ns if dt_us <= STALE_BASELINE_S * 1e6 else r.t_ns - int(d_some * 1e3)
                ep = st.episode = Episode(cgroup, start, r.t_ns, 0, 0.0, 0.0, r.memory_high_bytes)
            ep.end_ns = r.t_ns
            ep.high_events += d_high
            ep.some_stall_us += d_some
            ep.full_stall_us += d_full
            # the memory.high in force while throttled: a reading taken once it was lifted (back to
            # max, None) still counts the events and stall before the lift, not the limit (7.x VM run)
            if r.memory_high_bytes is not None:
                ep.memory_high_bytes = r.memory_high_bytes
            elif ep.memory_high_bytes is None:
                ep.memory_high_bytes = prev.memory_high_bytes
            ep.readings += 1
            ep.usage_peak_bytes = _max(ep.usage_peak_bytes, r.usage_bytes)
            ep.some_avg10_peak = _max(ep.some_avg10_peak, r.some_avg10)
            ep.full_avg10_peak = _max(ep.full_avg10_peak, r.full_avg10)
            st.last_active_ns = r.t_ns
            added = d_some / 1e6
            if ep.duration_s >= self.max_s:
                ended += self._end(cgroup, st)
        elif st.episode is not None:
            if d_some > 0:  # the stall's tail, between the last reading over memory.high and this one
                ep = st.episode
                ep.some_stall_us += d_some
                ep.full_stall_us += d_full
                # it ended no later than this reading and, stalled from the last one on, no later than
                # that stall after it: a reading long after (a cgroup read every 10 s once idle; the
                # 6.12 VM run said 23.6 s for ~4 s of throttling) is no end (the start's mirror)
                ep.end_ns = max(ep.end_ns, min(r.t_ns, prev.t_ns + int(d_some * 1e3)))
                added = d_some / 1e6
            if (r.t_ns - st.last_active_ns) / 1e9 >= self.quiet_s:
                ended += self._end(cgroup, st)
        return ended, added

    def _end(self, cgroup: str, st: _State) -> List[Episode]:
        ep, st.episode = st.episode, None
        return [ep] if ep is not None and ep.duration_s >= self.min_s else []

    def forget(self, cgroups) -> List[Episode]:
        """Cgroups gone: their episodes end (reported when long enough)."""
        out: List[Episode] = []
        for cg in list(cgroups):
            st = self._cgroups.pop(cg, None)
            if st is not None:
                out += self._end(cg, st)
        return out

    def flush(self) -> List[Episode]:
        return self.forget(list(self._cgroups))

    def is_active(self, cgroup: str) -> bool:
        st = self._cgroups.get(cgroup)
        return st is not None and st.episode is not None

    @property
    def active(self) -> List[str]:
        return [cg for cg, st in self._cgroups.items() if st.episode is not None]


def _max(a: Optional[float], b: Optional[float]):
    if a is None:
        return b
    return a if b is None else max(a, b)
