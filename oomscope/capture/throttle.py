"""A memory.high throttling episode as a capture of kind "throttle" (pure): nobody was killed; the
cgroup's state is its last reading of the episode, its timeline the minutes up to the episode's
end, its tasks as /proc showed them, each with its memcg reclaim time in the episode."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Dict, List, Optional

from .. import __version__
from ..layouts import ReclaimStats
from ..model import (Capture, CgroupInfo, CgroupState, Host, ThrottledTask, ThrottleEpisode, Task, Timeline, Times,
                     Victim)
from .assemble import choose_at_kill


def _wall(t_ns: int, offset_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp((t_ns + offset_ns) / 1e9, dt.timezone.utc)


def throttle_id(end: dt.datetime, cgroup: str) -> str:
    """Like a kill's id (the folder's name), with the cgroup's hash in place of a pid."""
    h = hashlib.sha256(cgroup.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return end.strftime("%Y%m%dT%H%M%S.") + f"{end.microsecond // 1000:03d}Z-throttle-{h}"


def build_throttle_capture(ep, threshold_share: float, cgroup_version: Optional[int], host: Host, clock_offset_ns: int,
                           state: Optional[CgroupState], timeline: List, tasks: List[Task],
                           reclaim: Dict[int, ReclaimStats], now_wall: Optional[dt.datetime] = None) -> Capture:
    """``ep``: record/throttle.Episode; ``reclaim``: each task's memcg reclaim in the episode."""
    start, end = _wall(ep.start_ns, clock_offset_ns), _wall(ep.end_ns, clock_offset_ns)
    throttled = []
    comms = {t.pid: t.comm for t in tasks}
    for pid, r in reclaim.items():
        if r.memcg_runs:
            throttled.append(ThrottledTask(pid, comms.get(pid, ""), round(r.memcg_ns / 1e6, 2), r.memcg_runs, r.memcg_pages))
    throttled.sort(key=lambda t: -t.reclaim_ms)
    episode = ThrottleEpisode(
        cgroup=ep.cgroup, start_wall=start.isoformat(timespec="milliseconds"), end_wall=end.isoformat(timespec="milliseconds"),
        duration_s=round(ep.duration_s, 3), memory_high_bytes=ep.memory_high_bytes, high_events=ep.high_events,
        stall_s=round(ep.some_stall_us / 1e6, 3), full_stall_s=round(ep.full_stall_us / 1e6, 3), share=round(ep.share, 4),
        threshold_share=threshold_share, usage_peak_bytes=ep.usage_peak_bytes, some_avg10_peak=ep.some_avg10_peak,
        full_avg10_peak=ep.full_avg10_peak, tasks=throttled)
    top = throttled[0] if throttled else None
    victim = Victim(pid=top.pid if top else 0, comm=top.comm if top else "")
    sources = {state.source: dataclasses.replace(state)} if state is not None else {}
    notes = [f"No process was killed: the cgroup was throttled at memory.high for {episode.duration_s:.1f} s, "
             f"stalled on memory {episode.share:.0%} of that time (record --throttle-share: {threshold_share:.0%})."]
    if top is None:
        notes.append("No task's memcg reclaim was counted (the vmscan tracepoints are missing, or the stall was the "
                     "penalty sleep alone).")
    cap = Capture(
        kill_id=throttle_id(end, ep.cgroup), victim=victim, oomscope_version=__version__,
        times=Times(kill_wall=end.isoformat(timespec="milliseconds"), kill_monotonic_ns=ep.end_ns,
                    captured_wall=(now_wall or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="milliseconds")),
        cgroup=CgroupInfo(version=cgroup_version, oom_memcg=ep.cgroup, task_memcg=ep.cgroup, constraint="MEMORY_HIGH"),
        at_kill=choose_at_kill(sources) if sources else CgroupState(), at_kill_sources=sources, tasks=list(tasks), host=host,
        notes=notes, timelines=[Timeline(ep.cgroup, list(timeline), thinned_by_age=True)] if timeline else [],
        kind="throttle", throttle=episode,
    )
    for t in cap.tasks:
        t.is_victim = top is not None and t.pid == top.pid
    return cap
