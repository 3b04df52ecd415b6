"""What each tool on the engineer's screens would have shown at the kill, from the same state.

The kernel compares one number with the limit: the cgroup's charge (v2 ``memory.current``, v1
``memory.usage_in_bytes``). Dashboards show others, each derived from the same memory.stat by a
formula in the tool's own source:

- working set (cAdvisor's ``container_memory_working_set_bytes``; kubelet eviction, metrics-server
  and so ``kubectl top`` use it): usage minus inactive file, 0 if that is negative. cAdvisor,
  ``container/libcontainer/handler.go`` (setMemoryStats): the key is ``total_inactive_file`` on
  v1 and ``inactive_file`` on v2.
- ``docker stats`` MEM USAGE: the docker CLI, ``cli/command/container/stats_helpers.go``
  (calculateMemUsageUnixNoCache): usage minus ``total_inactive_file`` (v1) or ``inactive_file``
  (v2), and only when it is below usage (else usage itself: no clamp to 0 as cAdvisor's). Docker
  19.03 and older subtracted ``cache`` instead (v1), which hides all page cache.
- cAdvisor's ``container_memory_rss``: v1 ``total_rss``, v2 ``anon``; ``container_memory_cache``:
  v1 ``total_cache``, v2 ``file``; ``container_memory_swap``: v1 ``total_swap``, v2 the swap in
  use (memory.swap.current); ``container_memory_usage_bytes``: the charge itself.
- ``ps``/``top`` RSS: the victim's, and the sum over the cgroup's processes. A sum of RSS counts a
  page shared by two processes twice and counts file pages charged to another cgroup, while it
  leaves out what the kernel charges to no process (page cache of closed files, tmpfs, slab).

Plain data in, plain data out; no pandas, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["ToolFigure", "ScrapeView", "what_tools_showed", "last_scrapes"]


@dataclass(frozen=True)
class ToolFigure:
    key: str                 # a stable name for JSON and tests
    name: str                # what the engineer knows it as
    bytes: Optional[int]     # None: the capture lacks what the formula needs (shown as unknown)
    formula: str             # the formula, in the terms of this hierarchy's files
    source: str              # where the formula comes from


@dataclass(frozen=True)
class ScrapeView:
    interval_s: int
    bytes: Optional[int]     # what the last scrape in the worst case saw (the reading nearest to
    age_ms: Optional[float]  # ``interval_s`` before the kill), and how long before the kill
    low_bytes: Optional[int]   # the range over every reading in that last interval
    high_bytes: Optional[int]


def _stat(stat: Dict[str, int], version: Optional[int], v1_key: str, v2_key: str) -> Optional[int]:
    if version == 1:
        return stat.get(v1_key)
    if version == 2:
        return stat.get(v2_key)
    return stat.get(v2_key, stat.get(v1_key))


def _minus(usage: Optional[int], sub: Optional[int]) -> Optional[int]:
    if usage is None or sub is None:
        return None
    return max(0, usage - sub)


def _docker(usage: Optional[int], inactive: Optional[int]) -> Optional[int]:
    """The docker CLI subtracts inactive file only when it is below usage; else it shows usage
    itself (calculateMemUsageUnixNoCache), where cAdvisor's working set clamps to 0."""
    if usage is None or inactive is None:
        return None
    return usage - inactive if inactive < usage else usage


def what_tools_showed(usage_bytes: Optional[int], memory_stat: Dict[str, int], version: Optional[int],
                      swap_bytes: Optional[int] = None, victim_rss_bytes: Optional[int] = None,
                      tasks_rss_bytes: Sequence[Optional[int]] = ()) -> List[ToolFigure]:
    """Each tool's figure for the killed cgroup, from one state (the at-kill memory.stat and
    usage). ``version`` is the cgroup version the keys come from (1, 2, or None if unknown)."""
    v1 = version == 1
    inactive_key = "total_inactive_file" if v1 else "inactive_file"
    inactive = _stat(memory_stat, version, "total_inactive_file", "inactive_file")
    usage_file = "memory.usage_in_bytes" if v1 else "memory.current"
    out = [
        ToolFigure("kernel_charge", "Kernel's charge (compared with the limit)", usage_bytes, usage_file,
                   "the kernel: mm/memcontrol.c (page_counter), printed as 'memory: usage' in its OOM report"),
        ToolFigure("working_set", "Working set (kubectl top, metrics-server, kubelet eviction; "
                   "container_memory_working_set_bytes)", _minus(usage_bytes, inactive),
                   f"{usage_file} - {inactive_key}", "cAdvisor container/libcontainer/handler.go (setMemoryStats)"),
        ToolFigure("docker_stats", "docker stats MEM USAGE", _docker(usage_bytes, inactive),
                   f"{usage_file} - {inactive_key}" + (" (docker 19.03 and older: - total_cache)" if v1 else ""),
                   "docker CLI cli/command/container/stats_helpers.go (calculateMemUsageUnixNoCache)"),
        ToolFigure("cadvisor_rss", "container_memory_rss", _stat(memory_stat, version, "total_rss", "anon"),
                   "total_rss" if v1 else "anon", "cAdvisor container/libcontainer/handler.go"),
        ToolFigure("cadvisor_cache", "container_memory_cache", _stat(memory_stat, version, "total_cache", "file"),
                   "total_cache" if v1 else "file", "cAdvisor container/libcontainer/handler.go"),
        ToolFigure("cadvisor_swap", "container_memory_swap",
                   _stat(memory_stat, version, "total_swap", "__none__") if v1 else swap_bytes,
                   "total_swap" if v1 else "memory.swap.current", "cAdvisor container/libcontainer/handler.go"),
    ]
    out.append(ToolFigure("victim_rss", "ps/top RSS of the killed process", victim_rss_bytes,
                          "anon-rss + file-rss + shmem-rss", "the kernel's 'Killed process' line (mm/oom_kill.c)"))
    known = [r for r in tasks_rss_bytes if r is not None]
    total = sum(known) if known and len(known) == len(tasks_rss_bytes) else None
    n = len(tasks_rss_bytes)
    out.append(ToolFigure("tasks_rss_sum", f"Sum of RSS over the cgroup's {n} process{'' if n == 1 else 'es'}", total,
                          "sum of rss over the task table (a page shared by n processes counted n times)",
                          "the kernel's task table in its OOM report (mm/oom_kill.c, dump_task)"))
    return out


def last_scrapes(points: Sequence[Tuple[float, Optional[int]]], intervals_s: Sequence[int] = (15, 60)) -> List[ScrapeView]:
    """What a dashboard scraping every N seconds would last have shown before the kill.

    ``points`` are (t_ms relative to the kill, <= 0; value in bytes) readings of the same figure.
    The scrape's phase is unknown: its last scrape was between 0 and N s before the kill, so the
    worst case is the oldest reading within those N s (never one from before them: an age beyond
    the interval, and a value outside the interval's range, issue 26), and the range over the
    interval's readings is given too. An interval the timeline does not reach back to, or without
    a reading in it, gives unknowns (never 0 B)."""
    pts = sorted((t, v) for t, v in points if t <= 0 and v is not None)
    out: List[ScrapeView] = []
    for n in intervals_s:
        window = [(t, v) for t, v in pts if t >= -n * 1000]
        if not window or pts[0][0] > -n * 1000 * 0.8:  # the timeline starts too late to tell
            out.append(ScrapeView(n, None, None, None, None))
            continue
        t, v = window[0]
        vals = [v for _, v in window]
        out.append(ScrapeView(n, v, -t, min(vals), max(vals)))
    return out
