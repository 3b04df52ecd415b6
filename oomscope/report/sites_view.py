"""Which code held the memory (issue 27): the capture's allocation sites and limit hitters as view
rows, and a flame graph as inline SVG (no script: each box's full name is its <title>).

Plain data for the template (post-mortem section beside the ledger's anonymous row); the capture's
text (frames, comm) is the workload's: escaped by the template's autoescape like every other text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ..model import Capture
from ..units import fmt_bytes, fmt_pct

#: rows of the table, boxes of the flame graph
TOP_ROWS = 8
FLAME_SITES = 12
FLAME_DEPTH = 12
FLAME_WIDTH = 1000
FLAME_ROW = 18
SOURCES = {"page_faults": "sampled page faults still resident", "go_heap": "Go heap profile"}


@dataclass
class SiteRow:
    rank: int
    function: str  # innermost frame
    callers: str  # the next frames, innermost first
    process: str
    held: str
    share: str  # of the charge at the kill
    faults: str
    source: str
    notes: List[str] = field(default_factory=list)


@dataclass
class HitterRow:
    process: str
    stall: str
    runs: str
    stack: str
    kernel: str


@dataclass
class FlameBox:
    x: float
    y: int
    width: float
    label: str  # shown when it fits
    title: str  # the full name, the bytes and the share
    color: str


@dataclass
class SitesView:
    rows: List[SiteRow]
    hitters: List[HitterRow]
    summary: str
    method: str
    notes: List[str]
    flame: List[FlameBox]
    flame_height: int


def sites_view(capture: Capture) -> Optional[SitesView]:
    sites = list(capture.allocation_sites)
    for r in capture.runtimes:
        sites.extend(getattr(r, "allocation_sites", ()))
    sites.sort(key=lambda s: -(s.bytes or 0))
    if not sites and not capture.limit_hitters:
        return None
    charge = capture.at_kill.usage_bytes
    rows = []
    for i, s in enumerate(sites[:TOP_ROWS]):
        frames = s.frames or ["(no stack)"]
        rows.append(SiteRow(
            rank=i + 1, function=frames[0], callers=" ← ".join(frames[1:5]) + (" …" if len(frames) > 5 else ""),
            process=f"{s.comm or '?'} ({s.pid})" if s.pid is not None else (s.comm or ""),
            held=fmt_bytes(s.bytes), share=fmt_pct(s.bytes / charge) if charge else "",
            faults=str(s.faults_sampled) if s.faults_sampled is not None else "",
            source=SOURCES.get(s.source, s.source), notes=list(s.unsymbolized[:3])))
    held = sum(s.bytes for s in sites if s.source == "page_faults")
    sm = capture.allocation_sampling
    summary = ""
    if rows:
        top = sites[0]
        summary = (f"{top.frames[0] if top.frames else 'Unnamed code'} held the most: {fmt_bytes(top.bytes)}"
                   + (f", {fmt_pct(top.bytes / charge)} of the charge at the kill" if charge else "") + ".")
        if sm is not None and top.source == "page_faults":
            summary += (f" Only what grew while the cgroup was near its limit is measured (sampling began "
                        f"{abs(sm.sampled_from_ms or 0) / 1000:.1f} s before the kill): the memory allocated "
                        f"before is in no row.")
    method = ""
    if sm is not None:
        method = (f"One page fault in {sm.period} of the cgroup's processes was sampled from "
                  f"{abs(sm.sampled_from_ms or 0) / 1000:.1f} s before the kill (when the cgroup neared its limit); "
                  f"the sampled pages still present were checked {abs(sm.checked_ms or 0):.0f} ms before it. "
                  f"Sites sampled: {fmt_bytes(held)} held in all. {sm.estimate[:1].upper() + sm.estimate[1:]}.")
    notes = list(sm.notes) if sm is not None else []
    stat = capture.at_kill.memory_stat
    thp = stat.get("anon_thp", stat.get("rss_huge", 0))
    if sm is not None and thp:
        # a fault that maps a transparent huge page maps 2 MiB at once, and the sampling counts a
        # sampled fault as one page (the lab's churn on Debian's 6.12, THP "always": fewer sampled
        # faults for three times the bytes; oomscope/workloads_native/leak_native.c)
        notes.append(f"{fmt_bytes(thp)} of the anonymous memory was in transparent huge pages at the kill: a "
                     f"sampled fault that mapped a huge page counts as one {fmt_bytes(sm.page_size_bytes)} page here, so "
                     f"code that grew through huge pages is under-counted in these rows (by up to 512 times).")
    hitters = [HitterRow(process=f"{h.comm} ({h.pid}{'' if h.tid == h.pid else f', thread {h.tid}'})",
                         stall=f"{h.stall_ms:.1f} ms (longest {h.max_stall_ms:.1f})", runs=str(h.runs),
                         stack=" ← ".join(h.frames[:5]) or "(no user stack)", kernel=" ← ".join(h.kernel_frames[:6]))
               for h in capture.limit_hitters[:5]]
    flame, height = _flame(sites[:FLAME_SITES])
    return SitesView(rows, hitters, summary, method, notes, flame, height)


def _flame(sites) -> tuple:
    """An icicle of the sites' stacks, outermost frame on top, each box as wide as the bytes held
    below it; stacks merged frame by frame from the outermost."""
    total = sum(s.bytes for s in sites if s.bytes > 0)
    if total <= 0:
        return [], 0
    tree: dict = {}
    for s in sites:
        if s.bytes <= 0 or not s.frames:
            continue
        node = tree
        for name in list(reversed(s.frames))[-FLAME_DEPTH:]:
            entry = node.setdefault(name, [0, {}])
            entry[0] += s.bytes
            node = entry[1]
    boxes: List[FlameBox] = []
    depth = 0

    def walk(node: dict, x: float, level: int) -> None:
        nonlocal depth
        depth = max(depth, level + 1)
        for name, (size, kids) in sorted(node.items(), key=lambda kv: -kv[1][0]):
            width = FLAME_WIDTH * size / total
            label = name if width >= 7 * len(name) + 4 else (name[: int(width / 7) - 1] + "…" if width > 28 else "")
            boxes.append(FlameBox(round(x, 2), level * FLAME_ROW, round(width, 2), label,
                                  f"{name}: {fmt_bytes(size)} ({fmt_pct(size / total)})", _color(name)))
            walk(kids, x, level + 1)
            x += width

    walk(tree, 0.0, 0)
    return boxes, depth * FLAME_ROW


def _color(name: str) -> str:
    h = sum(name.encode("utf-8", "replace")) % 40
    return f"hsl({10 + h}, 75%, {62 + h % 10}%)"
