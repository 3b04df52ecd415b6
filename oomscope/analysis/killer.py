"""Who killed, by which rule, and what the kernel would have done: the verdict's first sentences
for a user-space kill (capture.killer, record/userkill.py)."""

from __future__ import annotations

from typing import List

from ..model import Capture
from ..units import fmt_bytes, fmt_pct

__all__ = ["killer_sentences", "throttle_sentences"]


def killer_sentences(capture: Capture) -> List[str]:
    k = capture.killer
    if k.kind != "userspace":
        return []
    who = f"{k.known_as} ({k.comm}, pid {k.pid}" if k.known_as else f"{k.comm or 'an unknown process'} (pid {k.pid}"
    who += (f", {k.exe}" if k.exe else "") + (f", {k.unit}" if k.unit else "") + ")"
    said = [f"Killed from user space, not by the kernel's OOM killer: {who} sent {k.signal}"
            + (" to pid " + str(capture.victim.pid) + f" ({capture.victim.comm})" if capture.victim.comm else "") + "."]
    if k.rule:
        text = f"By its rule: {k.rule}"
        if k.rule_met:
            text += f"; at the kill, {k.rule_met}"
        said.append(text.rstrip(".") + ".")
    if k.pressure_met:
        said.append("Memory pressure at the kill: " + "; ".join(k.pressure_met) + ".")
    elif not k.known_as:
        said.append("No memory pressure rule was met as oomscope read it.")
    p = k.pressure
    if p is not None and p.cgroup_limit_bytes and p.cgroup_usage_bytes is not None:
        room = p.cgroup_limit_bytes - p.cgroup_usage_bytes
        said.append(f"The kernel would not have killed it yet: {p.limit_cgroup or p.cgroup} held {fmt_bytes(p.cgroup_usage_bytes)} "
                    f"of its {fmt_bytes(p.cgroup_limit_bytes)} limit ({fmt_pct(p.cgroup_usage_bytes / p.cgroup_limit_bytes)}), "
                    f"{fmt_bytes(max(room, 0))} from it" + (": at its limit, the kernel reclaims before it kills." if room <= 0 else "."))
    elif p is not None and p.mem_available_bytes is not None:
        said.append(f"No cgroup limit applied: the kernel kills only when the host runs out, and {fmt_bytes(p.mem_available_bytes)} "
                    f"was available of {fmt_bytes(p.mem_total_bytes)}"
                    + (f" with {fmt_bytes(p.swap_free_bytes)} of swap free" if p.swap_total_bytes else " (no swap)") + ".")
    return said


def throttle_sentences(capture: Capture) -> List[str]:
    """A memory.high throttling episode (capture.kind "throttle"): how long, how much of it stalled,
    who stalled, and what to change."""
    t = capture.throttle
    if capture.kind != "throttle" or t is None:
        return []
    said = [f"Throttled, not killed: {t.cgroup} was over its memory.high ({fmt_bytes(t.memory_high_bytes)}) for "
            f"{t.duration_s:.1f} s ({t.high_events} times, memory.events high), and some task of it was stalled on memory "
            f"{t.stall_s:.1f} s of that time ({fmt_pct(t.share)}; every task at once {t.full_stall_s:.1f} s)."]
    if t.tasks:
        said.append("Time in memcg reclaim at memory.high, per task: " + ", ".join(
            f"pid {x.pid} ({x.comm or '?'}) {x.reclaim_ms / 1000:.2f} s in {x.reclaim_runs} runs" for x in t.tasks[:5])
            + " (the penalty sleep that follows reclaim is in the stall above, not here).")
    if t.some_avg10_peak is not None:
        said.append(f"Its memory PSI peaked at some avg10 {t.some_avg10_peak:.1f}%"
                    + (f", full avg10 {t.full_avg10_peak:.1f}%" if t.full_avg10_peak is not None else "") + ".")
    return said
