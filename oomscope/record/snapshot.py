"""The state at the kill from the memcg snapshot (bpf/memcg_snapshot.c): pure, snapshot in,
CgroupState out.

The snapshot holds, for the victim's memory cgroup and each ancestor, the statistics as last
flushed and what the flush has not folded in yet. The kernel's statistics are per-CPU deltas
folded into ``memcg_vmstats`` by the rstat flush (mm/memcontrol.c mem_cgroup_css_rstat_flush):

    hierarchical value of X = X.state + X.state_pending + (per-CPU deltas of X and of every
                              descendant) + (state_pending of every descendant)

The snapshot reads the cgroups on the victim's path only, so the "exact" view adds the deltas of
the path below X (the victim's cgroup and the cgroups between it and X): exact for the victim's
own cgroup, and for an ancestor short of what *other* children of it have not flushed yet (the
kernel flushes a subtree once its pending updates pass MEMCG_CHARGE_BATCH x CPUs:
mm/memcontrol.c memcg_vmstats_needs_flush). The "flushed" view is what memory.stat shows when no
flush runs first. Local (cgroup v1) values: state_local + this cgroup's per-CPU deltas.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ..kernel.cgroupfs import limit_or_none
from ..kernel.memcg_layout import V1_KEYS, V2_KEYS, unit_of
from ..layouts import MemcgLevel, MemcgSnapshot
from ..model import CgroupState, Source

EXACT = "exact"      # with the per-CPU deltas not yet flushed
FLUSHED = "flushed"  # as last flushed


def level_of(snap: MemcgSnapshot, cgroup_id: Optional[int]) -> Optional[int]:
    """The index of the level that is the cgroup with this id (directory inode), or None."""
    if cgroup_id is None:
        return None
    for i, lv in enumerate(snap.levels):
        if lv.cgroup_id == cgroup_id:
            return i
    return None


def level_at_limit(snap: MemcgSnapshot, page_size: int) -> Optional[int]:
    """Without the report's oom_memcg: the level with a limit that had the least room left (a memcg
    OOM is invoked when a charge failed at some level's max: mm/memcontrol.c try_charge)."""
    best, best_room = None, None
    for i, lv in enumerate(snap.levels):
        if lv.max_pages <= 0 or limit_or_none(lv.max_pages * page_size) is None:
            continue
        room = (lv.max_pages - lv.usage_pages) / lv.max_pages
        if best_room is None or room < best_room:
            best, best_room = i, room
    return best


def _values(snap: MemcgSnapshot, index: int, view: str) -> Dict[str, int]:
    lv = snap.levels[index]
    out = dict(lv.state)
    if view == EXACT:
        for below in snap.levels[:index + 1]:
            for item in out:
                out[item] += below.pending.get(item, 0) + below.unflushed.get(item, 0)
    return out


def _local(lv: MemcgLevel, view: str) -> Dict[str, int]:
    out = dict(lv.local)
    if view == EXACT:
        for item in out:
            out[item] += lv.unflushed.get(item, 0)
    return out


def memory_stat(snap: MemcgSnapshot, index: int, version: int, page_size: int, view: str = EXACT) -> Dict[str, int]:
    """memory.stat keys of one level, in bytes (events as counts), as the kernel prints them;
    keys whose item this kernel lacks or whose slot is unknown are left out. Negative sums (a
    per-CPU delta can be negative) read as 0, as memcg_page_state() has them."""
    hier = _values(snap, index, view)
    out: Dict[str, int] = {}
    if version == 1:
        local = _local(snap.levels[index], view)
        for k in V1_KEYS:
            if k.item in local:
                out[k.key] = max(0, local[k.item]) * unit_of(k.item, page_size)
        for k in V1_KEYS:
            if k.item in hier:
                out["total_" + k.key] = max(0, hier[k.item]) * unit_of(k.item, page_size)
    else:
        for k in V2_KEYS:
            if k.item in hier:
                out[k.key] = max(0, hier[k.item]) * unit_of(k.item, page_size)
        if "slab_reclaimable" in out and "slab_unreclaimable" in out:
            out["slab"] = out["slab_reclaimable"] + out["slab_unreclaimable"]
    return out


def state_from_snapshot(snap: MemcgSnapshot, index: int, version: int, page_size: int, cgroup: Optional[str],
                        view: str = EXACT) -> CgroupState:
    lv = snap.levels[index]
    st = CgroupState(source=Source.KERNEL_SNAPSHOT, usage_bytes=lv.usage_pages * page_size,
                     limit_bytes=limit_or_none(lv.max_pages * page_size), failcnt=lv.failcnt,
                     memory_stat=memory_stat(snap, index, version, page_size, view), age_ms=0.0, cgroup=cgroup)
    if lv.memsw_usage_pages is not None and version == 1:
        st.swap_usage_bytes = max(0, lv.memsw_usage_pages - lv.usage_pages) * page_size
        memsw_limit = limit_or_none((lv.memsw_max_pages or 0) * page_size)
        if memsw_limit is not None and st.limit_bytes is not None:
            st.swap_limit_bytes = max(0, memsw_limit - st.limit_bytes)
    return st


def compare(snapshot: Dict[str, int], report: Dict[str, int]) -> List[tuple]:
    """(key, snapshot value, report value, |difference|) for every size key both have, largest
    difference first: how the accuracy is measured (bench/snapshot_accuracy.py, system tests)."""
    from ..kernel.memcg_layout import is_size_key

    rows = [(k, snapshot[k], report[k], abs(snapshot[k] - report[k])) for k in report
            if k in snapshot and is_size_key(k)]
    return sorted(rows, key=lambda r: -r[3])
