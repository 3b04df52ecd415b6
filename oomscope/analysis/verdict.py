"""The verdict: the few statements that explain a kill, decided here from the capture and its
attribution, each with the figures it rests on. Renderers print ``sentences`` (or the figures);
they decide nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..model import Capture
from ..units import fmt_bytes, fmt_pct
from .advice import Trend
from .attribution import Analysis
from .killer import killer_sentences, throttle_sentences
from .limit import LimitHit, limit_hit_of
from .shown import Shown, flag_bytes


@dataclass
class Verdict:
    #: "host" (no cgroup limit was hit: the node ran out), "limit" (a cgroup hit its limit),
    #: "userspace" (a user-space killer: no limit was hit), "throttle" (a memory.high episode: no
    #: kill), or "unknown" (neither can be said)
    kind: str = "unknown"
    constraint: Optional[str] = None
    limit_cgroup: Optional[str] = None
    usage_bytes: Optional[int] = None
    limit_bytes: Optional[int] = None
    #: the limit hit was an ancestor's: (oom_memcg, task_memcg)
    parent_limit: Optional[Tuple[str, str]] = None
    #: the categories that explain the kill, largest first (attribution's top_categories)
    categories: List[str] = field(default_factory=list)
    victim_rss_bytes: Optional[int] = None
    #: charged to the cgroup outside the victim's RSS (<= 0: none)
    gap_bytes: Optional[int] = None
    #: a memory.oom.group kill: (the group's cgroup, how many victims)
    group_kill: Optional[Tuple[str, int]] = None
    trend: str = "unknown"  # Trend.kind
    #: which limit was hit, in the reader's terms (analysis/limit.py)
    limit_hit: Optional[LimitHit] = None
    sentences: List[str] = field(default_factory=list)


#: other processes holding at least this share of the charge are named in the verdict
OTHERS_SHARE = 0.15


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _jvm_split(j, limit: Optional[int]) -> str:
    """The killed JVM's RSS split by its own counters: the verdict's diagnosis when one was read."""
    parts = {p.key: p for p in j.parts}
    r = j.reading
    heap = parts.get("heap")
    when = f" (read {j.read_ms_before_kill:.0f} ms before the kill)" if j.read_ms_before_kill is not None else ""
    text = f"The killed process is a JVM; by its own counters{when}, of its {fmt_bytes(j.rss_bytes)} RSS"
    if heap is not None:
        text += (f", the Java heap held {'at most ' if 'at most' in heap.label else ''}{fmt_bytes(heap.bytes)} "
                 f"({fmt_bytes(r.heap_used_bytes)} in use: what a heap dashboard shows)")
    if "metaspace" in parts:
        text += f", metaspace {fmt_bytes(parts['metaspace'].bytes)}"
    if "mapped_files" in parts:
        text += f", mapped files {fmt_bytes(parts['mapped_files'].bytes)}"
    native = parts.get("native")
    if native is not None and native.bytes:
        text += (f", and {'at least ' if 'lower bound' in native.explanation else ''}{fmt_bytes(native.bytes)} was native memory "
                 "outside the heap (direct buffers, thread stacks, code cache, GC structures, malloc)")
    direct = flag_bytes(r.vm_args, "MaxDirectMemorySize")
    if direct is not None:
        text += (f"; -XX:MaxDirectMemorySize allowed direct buffers up to {fmt_bytes(direct)}"
                 + (f", {direct / limit:.1f}x the limit" if limit else ""))
    if limit and r.heap_max_bytes and r.heap_max_bytes >= limit:
        text += f"; its heap may grow to {fmt_bytes(r.heap_max_bytes)}, {r.heap_max_bytes / limit:.1f}x the limit"
    return text + "."


def verdict_of(capture: Capture, a: Analysis, trend: Trend, hit: Optional[LimitHit] = None,
               shown: Optional[Shown] = None) -> Verdict:
    v, cg, ak = capture.victim, capture.cgroup, capture.at_kill
    hit = hit if hit is not None else limit_hit_of(capture)
    out = Verdict(constraint=cg.constraint, usage_bytes=ak.usage_bytes, limit_bytes=ak.limit_bytes,
                  categories=list(a.top_categories), victim_rss_bytes=a.victim_rss_bytes, gap_bytes=a.gap_bytes,
                  trend=trend.kind, limit_hit=hit)
    said = out.sentences
    hm = capture.host_memory_at_kill
    if capture.kind == "throttle":
        out.kind = "throttle"  # nobody was killed: a memory.high throttling episode (analysis/killer.py)
        said.extend(throttle_sentences(capture))
    elif capture.killer.kind == "userspace":
        out.kind = "userspace"  # no limit was hit: who killed, by which rule (analysis/killer.py)
        said.extend(killer_sentences(capture))
    elif hit.scope == "host":
        out.kind = "host"
        text = f"No cgroup limit was hit ({cg.constraint}): the host itself ran out of memory"
        if hm.get("ram") and "free" in hm:
            text += f", with {fmt_bytes(hm['free'])} free of {fmt_bytes(hm['ram'])} of RAM"
            if "swap_total" in hm:
                text += f" and {fmt_bytes(hm.get('swap_free'))} of {fmt_bytes(hm['swap_total'])} swap free"
        said.append(text + ". The kernel killed the process with the highest OOM score on the whole host, "
                    "wherever it ran; raising a container's limit would not have prevented it.")
    elif hit.scope != "unknown" or cg.constraint == "CONSTRAINT_MEMCG" or (ak.usage_bytes is not None and ak.limit_bytes):
        # a cgroup's limit was hit (CONSTRAINT_MEMCG, or its figures): whose, in the reader's terms,
        # with its size where the capture has it, said as unknown where it does not (issue 26)
        out.kind = "limit"
        out.limit_cgroup = hit.cgroup
        missing = "not in the log" if "kernel_log" in (cg.source, v.source) else "not in the capture"
        if hit.cgroup is None:
            text = f"A memory cgroup's limit was hit; which cgroup's, and its size, are {missing}"
        elif ak.usage_bytes is not None and ak.limit_bytes:
            text = (f"The limit that was hit was {hit.name}: the memory cgroup {hit.cgroup} reached {fmt_bytes(ak.usage_bytes)} "
                    f"charged of {fmt_bytes(ak.limit_bytes)} ({fmt_pct(ak.usage_bytes / ak.limit_bytes)})")
        else:
            text = f"The limit that was hit was {hit.name}: the memory cgroup {hit.cgroup}; its size and what was charged are {missing}"
        said.append(text + ".")
        if cg.oom_memcg and cg.task_memcg and cg.oom_memcg != cg.task_memcg:
            out.parent_limit = (cg.oom_memcg, cg.task_memcg)
        if hit.consequence or (out.parent_limit and cg.sharing):
            text = hit.consequence.rstrip(".")
            if out.parent_limit and cg.sharing:
                text += ("; " if text else "") + ("every cgroup below it shared that limit: "
                         + ", ".join(f"{u.path} ({fmt_bytes(u.usage_bytes)})" for u in cg.sharing[:8]))
                if len(cg.sharing) > 8:
                    text += f" and {len(cg.sharing) - 8} more"
            said.append(text[:1].upper() + text[1:] + ".")
    else:
        said.append("Whether a cgroup's limit was hit or the host ran out of memory is not in the "
                    + ("log" if "kernel_log" in (cg.source, v.source) else "capture") + ".")
    if a.categories and ak.usage_bytes:
        # "anon_thp" names anonymous memory mostly in huge pages: the anon category, said with its huge part
        keys = ["anon" if k == "anon_thp" else k for k in a.top_categories]
        tops = sorted((c for c in a.categories if c.key in keys), key=lambda c: keys.index(c.key))
        huge = next((d.bytes for d in a.details if d.key in ("anon_thp", "rss_huge")), None)

        jvm = next((j for j in (shown.java if shown is not None else []) if j.is_victim and j.parts), None)

        def said_of(c) -> str:
            # a JVM's "heap" in the category's label reads as the Java heap: say what it holds (issue 26)
            label = ("anonymous memory (the JVM's Java heap and its native memory together)" if jvm is not None and c.key == "anon"
                     else _lower_first(c.label))
            text = f"{label} ({fmt_bytes(c.bytes)}, {fmt_pct(c.share_of_usage)}"
            if c.key == "anon" and "anon_thp" in a.top_categories and huge:
                text += f"; {fmt_bytes(huge)} of it in transparent huge pages"
            return text + ")"
        words = " and ".join(said_of(c) for c in tops)
        if words:
            said.append(f"Most of the charge was {words}.")
        if jvm is not None:
            said.append(_jvm_split(jvm, ak.limit_bytes))
    others = next((p.bytes for p in a.reconciliation if p.key == "other_processes"), 0)
    group = next((p.bytes for p in a.reconciliation if p.key == "group_others"), 0)
    if ak.usage_bytes and group >= OTHERS_SHARE * ak.usage_bytes and capture.incident is not None:
        # a group member's page names the processes killed with it, as the first victim's does (issue 26)
        listed = {t.pid for t in capture.tasks} | {v.pid}
        names = ", ".join(f"pid {x.pid} ({x.comm})" for x in capture.incident.victims if x.pid not in listed)
        said.append(f"The group's other processes, killed with it, held {fmt_bytes(group)} of anonymous memory in the charge "
                    f"({fmt_pct(group / ak.usage_bytes)}): {names}.")
    if ak.usage_bytes and others >= OTHERS_SHARE * ak.usage_bytes:
        # A helper that held a large share is what the reader needs first, named (issue 15).
        helpers = sorted((t for t in capture.tasks if t.pid != v.pid and t.rss_bytes),
                         key=lambda t: -(t.rss_bytes or 0))
        named = ", ".join(f"pid {t.pid} ({t.comm}, RSS {fmt_bytes(t.rss_bytes)}"
                          + (f", {fmt_bytes(t.anon_rss_bytes)} of it anonymous" if t.anon_rss_bytes is not None and t.anon_rss_bytes != t.rss_bytes else "")
                          + ")" for t in helpers[:3])
        out.categories.append("other_processes")
        shared = (f"; their RSS also counts {fmt_bytes(a.others_shared_bytes)} of anonymous pages shared after fork(), "
                  "charged once" if a.others_shared_bytes else "")
        said.append(f"Other processes of the cgroup held {fmt_bytes(others)} of anonymous memory in the charge "
                    f"({fmt_pct(others / ak.usage_bytes)})" + (f": {named}" if named else "") + shared + ".")
    if a.victim_rss_bytes is not None and a.gap_bytes is not None and ak.usage_bytes:
        if a.gap_bytes > 0:
            biggest = max(a.reconciliation, key=lambda p: p.bytes) if a.reconciliation else None
            text = (f"The victim's own RSS was {fmt_bytes(a.victim_rss_bytes)}, {fmt_bytes(a.gap_bytes)} "
                    f"({fmt_pct(a.gap_bytes / ak.usage_bytes)} of the charge) less than the charge")
            less = [p for p in a.reconciliation if p.bytes < 0]
            if biggest is not None and biggest.bytes > 0 and (less or biggest.bytes > a.gap_bytes):
                # a part larger than the difference is no "largest part" of it (issue 26: 22.7 MiB of a
                # 17.5 MiB difference): say the parts, and what is taken off
                plus = [p for p in a.reconciliation if p.bytes > 0]
                text += ("; the difference is " + ", ".join(f"{fmt_bytes(p.bytes)} of {_lower_first(p.label)}" for p in plus)
                         + (", less " + " and ".join(f"{fmt_bytes(-p.bytes)} of {_lower_first(p.label)}" for p in less) if less else ""))
            elif biggest is not None and biggest.bytes > 0:
                text += f"; the largest part of the difference: {_lower_first(biggest.label)} ({fmt_bytes(biggest.bytes)})"
            said.append(text + ".")
        else:
            # RSS above the charge: it counts pages charged elsewhere (the ledger's negative rows)
            over = [p for p in a.reconciliation if p.bytes < 0]
            rest = a.victim_rss_bytes + sum(p.bytes for p in over)
            if a.gap_bytes < 0 and over:
                said.append(f"The victim's own RSS ({fmt_bytes(a.victim_rss_bytes)}) was more than the charge: it counts "
                            + " and ".join(f"{fmt_bytes(-p.bytes)} of " + _lower_first(p.label.replace("The victim's ", "its "))
                                           for p in over)
                            + f"; the rest of it, {fmt_bytes(rest)}, is {fmt_pct(rest / ak.usage_bytes)} of the charge.")
            else:
                said.append(f"The victim's own RSS ({fmt_bytes(a.victim_rss_bytes)}) accounts for the whole charge.")
    inc = capture.incident
    if inc is not None and inc.group_kill:
        out.group_kill = (inc.group_cgroup, len(inc.victims))
        n = len(inc.victims)
        said.append(f"This was a group kill: {n} processes of {inc.group_cgroup} were killed together (memory.oom.group)." if n != 1 else
                    f"This was a group kill: every process of {inc.group_cgroup} was killed together (memory.oom.group); "
                    "one of them is known.")
    if trend.kind in ("leak", "plateau", "spike"):
        said.append(trend.text)
    return out
