"""The hours before a kill: a compact, bounded history of each watched cgroup.

Retention by age (``TIERS``): every point of the last 10 minutes (one per ``spacing_s`` at most,
``capacity`` at most); from 10 minutes to 2 hours one point per 2 minutes; from 2 to 12 hours one
per 15 minutes; nothing older. The point a thinned stretch keeps is its highest usage, a whole
reading (a spike is not averaged away, and the categories of a point still add up). A slow leak's
trend is then seen over hours, and a cgroup holds at most 600 + 56 + 41 points; one read every
30 s (an idle one, record/sampler.py) 20 + 56 + 41.

A point is one row of ``len(FIELDS)`` float32 (a byte count of 4 GiB keeps 24 bits of
precision: 256 bytes, plenty for a chart) and its int64 time: 100 bytes of data. Per cgroup at
most 697 points for one read a second or more, 117 for an idle one: 75 KB and 13 KB with the
arrays' and objects' overhead (measured: ``bench/timeline_retention.py``, 500 idle cgroups 6.2 MiB
after 12 hours, against 32.5 MiB for the flat 600 points this replaced). A reading equal to the
one before it (an idle cgroup's, read every 30 s) is not stored again: its point costs its time
and a count, 8-12 bytes, so an idle cgroup unchanged for 12 hours holds 117 points in about 1.5 KB
(issue 29: 2000 watched cgroups).
"""

from __future__ import annotations

import array
import math
from typing import Dict, List, Optional, Tuple

from ..model import CgroupState, TimelinePoint

# Column names = TimelinePoint fields (minus t_ms).
FIELDS = (
    "usage_bytes", "limit_bytes", "anon_bytes", "anon_thp_bytes", "file_bytes", "file_dirty_bytes",
    "file_writeback_bytes", "shmem_bytes", "slab_bytes", "kernel_bytes", "sock_bytes", "swap_bytes",
    "failcnt", "max_events", "psi_some_avg10", "psi_full_avg10",
    "reclaim_runs", "reclaim_empty_runs", "reclaim_pages", "reclaim_ms",
    "alloc_retry_checks", "alloc_no_progress_max", "compact_retries",
)


def _stat(stat: Dict[str, int], version: int, v1: Optional[str], v2: Optional[str]) -> Optional[int]:
    if version == 1:
        if v1 is None:
            return None
        return stat.get("total_" + v1, stat.get(v1))
    return stat.get(v2) if v2 else None


def point_values(state: CgroupState, version: int, reclaim=None) -> Dict[str, Optional[float]]:
    """The timeline columns of one reading (sizes in bytes, hierarchical like the kernel's report)."""
    st = state.memory_stat
    shmem = _stat(st, version, "shmem", "shmem")
    file_ = _stat(st, version, "cache", "file")
    slab = None
    kernel = None
    if version == 2:
        if "slab_reclaimable" in st or "slab_unreclaimable" in st:
            slab = st.get("slab_reclaimable", 0) + st.get("slab_unreclaimable", 0)
        kernel = st.get("kernel")
    else:
        kernel = state.kmem_usage_bytes
    values = {
        "usage_bytes": state.usage_bytes,
        "limit_bytes": state.limit_bytes,
        "anon_bytes": _stat(st, version, "rss", "anon"),
        "anon_thp_bytes": _stat(st, version, "rss_huge", "anon_thp"),
        # page cache without shmem, as in the attribution's categories
        "file_bytes": None if file_ is None else max(0, file_ - (shmem or 0)),
        "file_dirty_bytes": _stat(st, version, "dirty", "file_dirty"),
        "file_writeback_bytes": _stat(st, version, "writeback", "file_writeback"),
        "shmem_bytes": shmem,
        "slab_bytes": slab,
        "kernel_bytes": kernel,
        "sock_bytes": st.get("sock") if version == 2 else None,
        "swap_bytes": state.swap_usage_bytes,
        "failcnt": state.failcnt,
        "max_events": state.memory_events.get("max") if state.memory_events else None,
        "psi_some_avg10": state.pressure.get("some_avg10") if state.pressure else None,
        "psi_full_avg10": state.pressure.get("full_avg10") if state.pressure else None,
    }
    if reclaim is not None:
        t = reclaim.totals()
        values.update(reclaim_runs=t.runs, reclaim_empty_runs=t.empty_runs, reclaim_pages=t.pages,
                      reclaim_ms=t.ms, alloc_retry_checks=t.alloc_retry_checks,
                      alloc_no_progress_max=t.alloc_no_progress_max, compact_retries=t.compact_retries)
    return values


#: (age at which a point moves on to the next tier, width of that tier's buckets) in seconds;
#: the first tier keeps every point, the last tier's points are dropped at its age.
TIERS = ((600, 120), (2 * 3600, 900), (12 * 3600, None))
_WIDTH = len(FIELDS)
_USAGE = FIELDS.index("usage_bytes")


def _row(values: Dict[str, Optional[float]]) -> List[float]:
    return [math.nan if values.get(f) is None else float(values[f]) for f in FIELDS]


def _usage(row, start: int = 0) -> float:
    """The usage of the row at ``start``; an unknown one below every known one."""
    u = row[start + _USAGE]
    return -math.inf if math.isnan(u) else u


def _point(t_ns: int, row, kill_ns: int) -> TimelinePoint:
    kw = {}
    for f, v in zip(FIELDS, row):
        if math.isnan(v):
            kw[f] = None
        elif f.startswith("psi_") or f == "reclaim_ms":
            kw[f] = round(float(v), 2)
        else:
            kw[f] = int(v)
    return TimelinePoint(t_ms=round((t_ns - kill_ns) / 1e6, 1), **kw)


def point(t_ns: int, values: Dict[str, Optional[float]], kill_ns: int) -> TimelinePoint:
    """One reading's point, as ``TimelineRing.points`` gives it (float32 precision included)."""
    return _point(t_ns, array.array("f", _row(values)), kill_ns)


class _Tier:
    """Points oldest first: their times, and their values as rows of one float32 array; a row read
    again unchanged (an idle cgroup's) is not stored again: ``n`` counts the points of each row
    (measured: 2000 idle cgroups, bench/lean_breakdown.py)."""

    __slots__ = ("t", "v", "n", "last_bucket")

    def __init__(self):
        self.t = array.array("q")
        self.v = array.array("f")
        self.n = array.array("I")  # points per row of v, in order
        self.last_bucket = None  # the bucket of the last point (a thinned tier's)

    def __len__(self) -> int:
        return len(self.t)

    def append(self, t_ns: int, row) -> None:
        self.t.append(t_ns)
        row = row if isinstance(row, array.array) else array.array("f", row)
        if len(self.n) and self.v[-_WIDTH:].tobytes() == row.tobytes():  # bytes: NaN is equal to NaN here
            self.n[-1] += 1
        else:
            self.v.extend(row)
            self.n.append(1)

    def pop_oldest(self):
        t, row = self.t[0], self.v[:_WIDTH]
        # a memmove of at most 600 rows (60 KB, microseconds), at most once per point
        del self.t[0]
        if self.n[0] > 1:
            self.n[0] -= 1
        else:
            del self.n[0]
            del self.v[:_WIDTH]
        return t, row

    def replace_last(self, t_ns: int, row) -> None:
        self.t[-1] = t_ns
        if self.v[-_WIDTH:].tobytes() == row.tobytes():
            return  # the same reading again: only its time moves
        if self.n[-1] == 1:
            del self.v[-_WIDTH:]
            del self.n[-1]
        else:
            self.n[-1] -= 1
        if len(self.n) and self.v[-_WIDTH:].tobytes() == row.tobytes():
            self.n[-1] += 1
        else:
            self.v.extend(row)
            self.n.append(1)

    def last_usage(self) -> float:
        return _usage(self.v, len(self.v) - _WIDTH)

    def rows(self):
        """(time, row) of each point, oldest first."""
        v, n = self.v, self.n
        r, left = 0, (n[0] if len(n) else 0)
        for t in self.t:
            if not left:
                r += 1
                left = n[r]
            left -= 1
            yield t, v[r * _WIDTH:(r + 1) * _WIDTH]


#: the tiers' ages and bucket widths in ns, by tiers: one copy shared by every ring
_TIER_NS: Dict[tuple, Tuple[Tuple[int, ...], Tuple[Optional[int], ...]]] = {}


class TimelineRing:
    """One cgroup's points, thinned with age (see the module's docstring). A thinned tier is made
    when its first point arrives: a cgroup watched less than 10 minutes has one tier."""

    __slots__ = ("capacity", "spacing_ns", "_tiers", "_bucket_ns", "_age_ns")

    def __init__(self, capacity: int = 600, spacing_s: float = 1.0, tiers=TIERS):
        self.capacity = capacity
        self.spacing_ns = int(spacing_s * 1e9)
        ns = _TIER_NS.get(tiers)
        if ns is None:
            ns = _TIER_NS[tiers] = (tuple(int(age * 1e9) for age, _ in tiers),
                                    (None,) + tuple(int(w * 1e9) for _, w in tiers[:-1]))
        self._age_ns, self._bucket_ns = ns
        self._tiers: List[Optional[_Tier]] = [_Tier()] + [None] * (len(tiers) - 1)

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiers if t is not None)

    def _last_t(self) -> Optional[int]:
        recent = self._tiers[0]
        return recent.t[-1] if len(recent) else None

    def add(self, t_ns: int, values: Dict[str, Optional[float]], force: bool = False) -> bool:
        last = self._last_t()
        if last is not None and (t_ns < last or (not force and t_ns - last < self.spacing_ns)):
            return False  # never older than the last point, forced or not: the points stay in order
        self._tiers[0].append(t_ns, _row(values))
        self._age(t_ns)
        return True

    def _age(self, now_ns: int) -> None:
        """Move the points past their tier's age on, each tier keeping its bucket's highest usage."""
        tiers = self._tiers
        for i, tier in enumerate(tiers):
            if tier is None:
                continue
            cap = self.capacity if i == 0 else None
            while len(tier) and (now_ns - tier.t[0] >= self._age_ns[i] or (cap is not None and len(tier) > cap)):
                t, row = tier.pop_oldest()
                if i + 1 == len(tiers):
                    continue  # older than the last tier: dropped
                nxt = tiers[i + 1]
                if nxt is None:
                    nxt = tiers[i + 1] = _Tier()
                bucket = t // self._bucket_ns[i + 1]
                if len(nxt) and nxt.last_bucket == bucket:
                    if _usage(row) >= nxt.last_usage():
                        nxt.replace_last(t, row)
                    continue
                nxt.append(t, row)
                nxt.last_bucket = bucket

    def points(self, kill_ns: int, until_ns: Optional[int] = None) -> List[TimelinePoint]:
        """Oldest first, with t_ms relative to the kill (negative: before it)."""
        out = []
        for tier in reversed(self._tiers):
            if tier is None:
                continue
            for t, row in tier.rows():
                if until_ns is not None and t > until_ns:
                    continue
                out.append(_point(t, row, kill_ns))
        return out
