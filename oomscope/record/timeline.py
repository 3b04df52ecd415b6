"""The minutes before a kill: a compact, bounded history of each watched cgroup.

One point per ``spacing_s`` at most, ``capacity`` points per cgroup, stored as columns of float32
(a byte count of 4 GiB keeps 24 bits of precision: 256 bytes, plenty for a chart). Bound per
cgroup: capacity x len(FIELDS) x 4 bytes = 600 x 20 x 4 = 48 KiB; 500 cgroups = 24 MiB. With a
point per second at most, 600 points are at least the last 10 minutes (slow-sampled cgroups,
one sample per 5 s, keep 50 minutes).
"""

from __future__ import annotations

import array
import math
from typing import Dict, List, Optional

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
        values.update(reclaim_runs=t["runs"], reclaim_empty_runs=t["empty_runs"], reclaim_pages=t["pages"],
                      reclaim_ms=t["ms"], alloc_retry_checks=t["alloc_retry_checks"],
                      alloc_no_progress_max=t["alloc_no_progress_max"], compact_retries=t["compact_retries"])
    return values


class TimelineRing:
    def __init__(self, capacity: int = 600, spacing_s: float = 1.0):
        self.capacity = capacity
        self.spacing_ns = int(spacing_s * 1e9)
        self._t = array.array("q")
        self._cols = {f: array.array("f") for f in FIELDS}
        self._start = 0  # index of the oldest point once the ring is full

    def __len__(self) -> int:
        return len(self._t)

    def _last_t(self) -> Optional[int]:
        if not self._t:
            return None
        return self._t[(self._start - 1) % len(self._t)] if len(self._t) == self.capacity else self._t[-1]

    def add(self, t_ns: int, values: Dict[str, Optional[float]], force: bool = False) -> bool:
        last = self._last_t()
        if not force and last is not None and t_ns - last < self.spacing_ns:
            return False
        row = [math.nan if values.get(f) is None else float(values[f]) for f in FIELDS]
        if len(self._t) < self.capacity:
            self._t.append(t_ns)
            for f, v in zip(FIELDS, row):
                self._cols[f].append(v)
        else:
            i = self._start
            self._t[i] = t_ns
            for f, v in zip(FIELDS, row):
                self._cols[f][i] = v
            self._start = (i + 1) % self.capacity
        return True

    def points(self, kill_ns: int, until_ns: Optional[int] = None) -> List[TimelinePoint]:
        """Oldest first, with t_ms relative to the kill (negative: before it)."""
        n = len(self._t)
        order = list(range(self._start, n)) + list(range(0, self._start)) if n == self.capacity else list(range(n))
        out = []
        for i in order:
            t = self._t[i]
            if until_ns is not None and t > until_ns:
                continue
            kw = {}
            for f in FIELDS:
                v = self._cols[f][i]
                if math.isnan(v):
                    kw[f] = None
                elif f.startswith("psi_") or f == "reclaim_ms":
                    kw[f] = round(float(v), 2)
                else:
                    kw[f] = int(v)
            out.append(TimelinePoint(t_ms=round((t - kill_ns) / 1e6, 1), **kw))
        return out
