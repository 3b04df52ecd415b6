"""The state at the kill, reconstructed from a sample and the in-kernel charge counters.

``bpf/charge_tracking.c`` sums, per watched cgroup, the deltas of the stat items below from the
memcg:* tracepoints (6.13+), and snapshots the sums at oom:mark_victim. Here:

    at the kill = last memory.stat sample + (counters at the kill - counters at that sample)

Which items, and why only these: the tracepoints report ``val`` after
``memcg_state_val_in_pages()`` (mm/memcontrol.c), so items counted in pages arrive exact, while
byte- and kB-counted items (slab_*_B, kernel_stack_KB, percpu_B, zswap_B) arrive rounded to
whole pages, with a floor of one page per update: they cannot be summed. Those keys keep the
sample's value and are listed in ``keys_from_sample``.

How large the error is: the counters themselves are exact (every update is traced before the
kernel batches it). memory.stat, in the sample and in the kernel's report alike, is flushed from
per-CPU batches lazily: an update is folded in once a CPU has MEMCG_CHARGE_BATCH (64) pages of
pending changes or on the 2 s periodic flush (mm/memcontrol.c, memcg_rstat_updated and
flush_memcg_stats_dwork). So each reading can lag by at most 64 pages per CPU per cgroup: 512 KiB
on this 2-CPU machine, and the comparison of two readings by twice that, which is inside the
1 MiB floor of the accuracy target. On a 64-CPU host the bound is 16 MiB per reading; the design
bounds it by sampling fast (100 ms) near the limit, so the deltas added are small.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from ..layouts import TRACKED
from ..model import SOURCE_RECONSTRUCTED, CgroupState


# What the memory counter (usage) is charged with, as tracked items: anon, page cache (with
# shmem), kernel memory, and on v2 socket buffers (mm/memcontrol.c charges all four to memory).
_USAGE_ITEMS = {1: ("NR_ANON_MAPPED", "NR_FILE_PAGES", "MEMCG_KMEM"),
                2: ("NR_ANON_MAPPED", "NR_FILE_PAGES", "MEMCG_KMEM", "MEMCG_SOCK")}

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

Counters = Dict[int, Sequence[int]]  # cgroup id -> value per TRACKED index


def _delta(base: Counters, at_kill: Counters, ids: Sequence[int], index: int) -> int:
    return sum(at_kill[i][index] - base[i][index] for i in ids)


def reconstruct(version: int, sample: CgroupState, self_id: int, subtree_ids: Sequence[int],
                base: Counters, at_kill: Counters, age_ms: Optional[float],
                hit_limit: bool = True) -> Optional[CgroupState]:
    """The cgroup's state at the kill, or None when the counters do not cover its subtree.

    ``base`` holds the counters read right after ``sample``; ``at_kill`` the snapshot taken at
    oom:mark_victim. Both must cover ``subtree_ids`` (the cgroup and every descendant)."""
    if any(i not in base or i not in at_kill for i in subtree_ids) or self_id not in subtree_ids:
        return None
    stat = dict(sample.memory_stat)
    tracked_keys = set()
    for index, item in enumerate(TRACKED):
        unit = 1 if item.event else PAGE_SIZE
        if version == 1 and item.v1_key:
            for key, ids in ((item.v1_key, [self_id]), ("total_" + item.v1_key, subtree_ids)):
                if key in stat:
                    stat[key] = max(0, stat[key] + unit * _delta(base, at_kill, ids, index))
                    tracked_keys.add(key)
        elif version == 2 and item.v2_key and item.v2_key in stat:
            stat[item.v2_key] = max(0, stat[item.v2_key] + unit * _delta(base, at_kill, subtree_ids, index))
            tracked_keys.add(item.v2_key)
    usage = sample.usage_bytes
    if hit_limit and sample.limit_bytes:
        # The memory counter is not a stat item: no tracepoint follows it. But a memcg OOM is
        # invoked only after a charge failed at the limit (try_charge, mm/memcontrol.c), so the
        # counter was within one charge of the limit then, less what earlier victims were still
        # uncharging (measured in a storm: up to 5 MiB below a 64 MiB limit in the report).
        usage = sample.limit_bytes
    elif usage is not None:
        names = [t.enum_name for t in TRACKED]
        usage += PAGE_SIZE * sum(_delta(base, at_kill, subtree_ids, names.index(n)) for n in _USAGE_ITEMS[version])
        if sample.limit_bytes:
            usage = min(usage, sample.limit_bytes)  # the counter cannot pass its limit
    state = CgroupState(
        source=SOURCE_RECONSTRUCTED, usage_bytes=usage, limit_bytes=sample.limit_bytes, failcnt=sample.failcnt,
        memory_stat=stat, kmem_usage_bytes=sample.kmem_usage_bytes, swap_usage_bytes=sample.swap_usage_bytes,
        swap_limit_bytes=sample.swap_limit_bytes, memory_events=dict(sample.memory_events),
        memory_high_bytes=sample.memory_high_bytes, oom_group=sample.oom_group, pressure=dict(sample.pressure),
        age_ms=0.0, cgroup=sample.cgroup, keys_from_sample=sorted(k for k in stat if k not in tracked_keys),
        base_age_ms=age_ms)
    return state


def choose_watched(candidates: List[Tuple[float, str, List[Tuple[str, int]]]], slots: int) -> List[Tuple[str, int]]:
    """Which cgroups get counter slots: the fullest cgroups first, each with its whole subtree.

    ``candidates``: (usage/limit, cgroup, [(path, id) of it and its descendants]). A subtree that
    does not fit in the slots left is not watched (partial sums would be wrong, not approximate).
    """
    out: List[Tuple[str, int]] = []
    seen = set()
    for _ratio, _cg, subtree in sorted(candidates, key=lambda c: -c[0]):
        new = [(p, i) for p, i in subtree if i not in seen]
        if len(out) + len(new) > slots:
            continue
        out.extend(new)
        seen.update(i for _p, i in new)
    return out
