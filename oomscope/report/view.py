"""View model of a post-mortem: plain strings and numbers, built from a capture and its one
analysis (analysis/result.py: attribution, trend, advice, verdict), which decides everything;
here it is only formatted. Typed rows, one dataclass per table.

Templates get only this; they format nothing and compute nothing. Every string from the kernel
(comm, cgroup paths, command lines, log lines) stays raw here and is escaped by jinja2's autoescape.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass, field
from typing import List, Optional

from ..analysis.result import KillAnalysis, analyse_kill
from ..model import Capture
from .sites_view import SitesView, sites_view
from ..units import fmt_bytes, fmt_pct  # noqa: F401 - fmt_bytes: also the index's

SOURCE_LABELS = {
    "kernel_report": "the kernel's OOM report (exact, printed at the kill)",
    "last_sample": "oomscope's last sample before the kill",
    "kernel_log": "the kernel's OOM report, from a log (oomscope import)",
    "kernel_snapshot": "the memory cgroup's own counters, read in the kernel at the victim's SIGKILL",
    # charge tracking's, removed: only in captures of schema 4 and older
    "reconstructed": ("the last sample before the kill plus the in-kernel charge counters up to it "
                      "(charge tracking, an approximation written by oomscope before schema 5)"),
    "after_kill": "a read after the kill (memory may already be freed)",
    "bpf": "the oom:mark_victim tracepoint, at the kill",
    "proc_read": "/proc/<pid>/cgroup read on the event",
    "sampler_scan": "the cgroup's process list at the last sample",
    "fork_parent": "the cgroup of the victim's parent (children start in their parent's cgroup)",
    "none": "not available",
}

#: the colours of the bars' parts; two parts of one bar are at least 10 apart in CIE76 delta E
#: (tests/unit/test_colours.py): the kernel's kinds are shades of one purple, told apart by lightness
PALETTE = {
    "anon": "#d9534f", "file": "#5bc0de", "shmem": "#f0ad4e", "slab": "#9b59b6", "kernel_stack": "#2e4053",
    "pagetables": "#6c3483", "percpu": "#d7bde2", "vmalloc": "#bb8fce", "kernel": "#4a235a", "sock": "#16a085",
    "zswap": "#717d7e", "unexplained": "#bdc3c7", "other_processes": "#e67e22", "rest": "#dfe3e6",
    "victim": "#7b241c", "heap": "#1e8449", "metaspace": "#76d7c4", "native": "#f39c12",
}


MAX_TASK_ROWS = 100


@dataclass
class BarSegment:
    key: str
    label: str
    value: str
    pct: str
    x: float
    width: float
    color: str


@dataclass
class CategoryRow:
    label: str
    charged: str
    share: str


@dataclass
class DetailRow:
    label: str
    size: str
    of: str


@dataclass
class GapRow:
    label: str
    size: str
    explanation: str
    #: "start" (the figure the ledger starts from), "part" or "total" (the charge it ends at)
    kind: str = "part"


@dataclass
class TaskRow:
    pid: str
    comm: str
    rss: str
    rss_anon: str
    rss_file: str
    rss_shmem: str
    pgtables: str
    oom_score_adj: str
    cmdline: str
    is_victim: bool = False


@dataclass
class ProvenanceRow:
    what: str
    source: str


@dataclass
class IncidentRow:
    pid: str
    comm: str
    href: str  # its post-mortem; "" for this page
    is_victim: bool = False


@dataclass
class AdviceRow:
    case: str
    title: str
    text: str
    evidence: str


@dataclass
class KeyValue:
    key: str
    value: str


@dataclass
class ToolRow:
    """One tool's figure at the kill (analysis/dashboards.py)."""

    name: str
    value: str
    formula: str
    source: str
    is_charge: bool = False


@dataclass
class ScrapeRow:
    interval: str
    value: str
    when: str
    range: str


@dataclass
class JavaView:
    """One JVM read before the kill: its own figures, and its RSS split into heap and outside it."""

    title: str
    read: str
    figures: List[KeyValue]
    bar: List[BarSegment]
    parts: List[GapRow]
    summary: str
    runtime: str = "The JVM's"  # whose view: "The JVM's", "The Go runtime's"


@dataclass
class ShownView:
    sentences: List[str]
    tools: List[ToolRow]
    scrapes: List[ScrapeRow]
    java: List[JavaView]
    notes: List[str]


@dataclass
class PostMortemView:
    title: str
    kill_id: str
    headline: str
    verdict: List[str]
    facts: List[KeyValue]
    bar: List[BarSegment]
    categories: List[CategoryRow]
    details: List[DetailRow]
    reconciliation_bar: List[BarSegment]
    reconciliation: List[GapRow]
    reconciliation_summary: str
    tasks: List[TaskRow]
    tasks_source: str
    host: List[KeyValue]
    provenance: List[ProvenanceRow]
    notes: List[str]
    kernel_lines: List[str]
    #: the rule the ledger follows (attribution.ACCOUNTING), the bars' scale, the RSS caveat under the tasks
    accounting: str = ""
    bar_scale: str = ""
    tasks_note: str = ""
    analysis_notes: List[str] = field(default_factory=list)
    host_memory: List[KeyValue] = field(default_factory=list)
    tasks_title: str = "Processes in the cgroup at the kill"
    incident_summary: str = ""
    incident: List[IncidentRow] = field(default_factory=list)
    advice: List[AdviceRow] = field(default_factory=list)
    trend: str = ""
    timeline_title: str = ""
    #: the whole timeline, and its last 10 minutes apart when it is much longer (record/timeline.py
    #: keeps hours, thinned with age: drawn whole, the minutes before the kill are a sliver)
    timeline_charts: List["TimelineChart"] = field(default_factory=list)
    shown: Optional[ShownView] = None
    #: kills of this workload that record counted but did not write before this one (a storm)
    not_written: str = ""
    #: which code held the memory and who hit the limit (issue 27, report/sites_view.py); None: not sampled
    sites: Optional[SitesView] = None


@dataclass
class Series:
    key: str
    label: str
    color: str
    points: str  # SVG polyline points, in a 600 x 200 box


@dataclass
class TimelineChart:
    span: str  # what stretch of time it draws, in words
    series: List[Series]
    limit_y: Optional[float]
    axis: List[KeyValue]  # y labels (key = y, value = text)
    xaxis: List[KeyValue]  # x labels (key = x in the 600-wide box, value = time before the kill)
    #: the chart in words, for a screen reader and a text-only reader (its SVG's <desc>, issue 26):
    #: each line's first, last and highest value and the limit, the figures it draws
    desc: str = ""


ADVICE_CASES = {"more_limit": "More limit fixes this", "delay_only": "More limit only delays this",
                "no_more_limit": "Needs no more limit", "context": "Context"}
TIMELINE_SERIES = [("usage_bytes", "Usage", "#1f5fa8"), ("anon_bytes", "Anonymous", PALETTE["anon"]),
                   ("file_bytes", "Page cache", PALETTE["file"]), ("shmem_bytes", "tmpfs / shmem", PALETTE["shmem"]),
                   ("slab_bytes", "Slab", PALETTE["slab"]), ("kernel_bytes", "Kernel", "#8d6e63")]
#: the limit's dashed line: the text's colour (a rule, not a series); the JVM's heap line
LIMIT_COLOUR = "#1d2329"
JVM_HEAP_COLOUR = PALETTE["heap"]
#: dark mode (prefers-color-scheme: dark): what changes against a dark background; the template's
#: CSS gives these to the lines by class (a CSS rule wins over the stroke attribute). Two lines of one
#: chart are at least 20 apart in CIE76 delta E in both schemes (tests/unit/test_colours.py; Anonymous
#: and the limit were 12.7, slab and kernel 11.3)
DARK_COLOURS = {"usage_bytes": "#7fb2f0", "limit": "#e6e9ec"}


#: a timeline longer than this is drawn whole and its last ZOOM_MS apart
ZOOM_AFTER_MS = 20 * 60_000
ZOOM_MS = 10 * 60_000


def _ago(ms: float) -> str:
    """A time relative to the kill, in the unit that reads best: "-45 s", "-7.5 min", "-3 h 20 min"
    ("+2 s": after it, a reading taken as the kill was handled)."""
    if ms > 0:
        return f"+{_duration(ms)}"
    s = round(-ms / 1000)
    if s < 120:
        return f"-{s} s" if s else "0 s"
    if s < 2 * 3600:
        m = s / 60
        return f"-{m:.0f} min" if s % 60 == 0 or m >= 20 else f"-{m:.1f} min"
    h, m = divmod(round(s / 60), 60)
    return f"-{h} h {m} min" if m else f"-{h} h"


def _duration(ms: float) -> str:
    """A length of time in the units of _ago: "24.1 s", "7.5 min", "45 min", "5.8 h"."""
    s = ms / 1000
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        m = s / 60
        return f"{m:.0f} min" if round(s) % 60 == 0 or m >= 20 else f"{m:.1f} min"
    return f"{s / 3600:.1f} h".replace(".0 h", " h")


def _timeline(capture: Capture):
    """The charts of the oom_memcg's timeline, and their title."""
    if not capture.timelines or len(capture.timelines[0].points) < 2:
        return [], ""
    tl = capture.timelines[0]
    pts = tl.points
    charts = [_chart(capture, pts, tl.thinned_by_age)]
    end = max(0.0, pts[-1].t_ms)  # the charts end at the kill, or at the last point after it
    if end - pts[0].t_ms > ZOOM_AFTER_MS:
        recent = [p for p in pts if p.t_ms >= end - ZOOM_MS]
        if len(recent) >= 2:
            charts.append(_chart(capture, recent, False))
    hours = end - pts[0].t_ms >= 3_600_000
    return charts, f"The {'hours' if hours else 'minutes'} before the kill: {tl.cgroup}"


def _own_heap(r) -> Optional[int]:
    """A runtime reading's (or earlier point's) heap as its dashboards show it: a JVM's heap used,
    a Go program's heap in use."""
    return r.heap_used_bytes if r.heap_used_bytes is not None else r.heap_inuse_bytes


def _chart(capture: Capture, pts, thinned: bool) -> TimelineChart:
    """Polylines of these timeline points, scaled to the limit (or the largest value)."""
    t0, t1 = pts[0].t_ms, max(0.0, pts[-1].t_ms)
    span = (t1 - t0) or 1.0
    top = max([p.limit_bytes or 0 for p in pts] + [getattr(p, k) or 0 for p in pts for k, _l, _c in TIMELINE_SERIES]) or 1
    series = []
    for key, label, color in TIMELINE_SERIES:
        coords = [(600 * (p.t_ms - t0) / span, 200 - 190 * getattr(p, key) / top) for p in pts if getattr(p, key) is not None]
        if len(coords) >= 2 and any(getattr(p, key) for p in pts):
            series.append(Series(key, label, color, " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)))
    # the JVM's own view beside the kernel's: its heap used, from its earlier readings and its last
    jvm = next((r for r in capture.runtimes if r.pid == capture.victim.pid and _own_heap(r) is not None), None)
    if jvm is not None and jvm.read_ms_before_kill is not None:
        heap = [(h.t_ms, _own_heap(h)) for h in jvm.heap_history if _own_heap(h) is not None]
        heap.append((-jvm.read_ms_before_kill, _own_heap(jvm)))
        heap = [(t, b) for t, b in heap if t0 <= t <= t1 or t == -jvm.read_ms_before_kill]
        if heap:
            coords = [(600 * min(1.0, max(0.0, (t - t0) / span)), 200 - 190 * min(b, top) / top) for t, b in heap]
            if len(coords) == 1:
                coords.insert(0, (max(0.0, coords[0][0] - 4), coords[0][1]))  # one reading: a short tick
            series.append(Series("jvm_heap", f"{'Go heap in use' if jvm.kind == 'go' else 'JVM heap used'} (pid {jvm.pid}, its own view)", JVM_HEAP_COLOUR,
                                 " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)))
    limit = pts[-1].limit_bytes
    limit_y = round(200 - 190 * limit / top, 1) if limit else None
    axis = [KeyValue(f"{200 - 190 * f:.1f}", fmt_bytes(int(top * f))) for f in (0.0, 0.5, 1.0)]
    xaxis = []
    for f in (0.0, 0.25, 0.5, 0.75, 1.0):
        t = t0 + f * span
        xaxis.append(KeyValue(f"{600 * f:.1f}", "the kill" if f == 1.0 and t1 == 0 else _ago(t)))
    # t1 is the kill, or a last reading after it (taken as the kill was handled)
    span_text = f"{_duration(-t0)} before the kill to {'the kill' if t1 == 0 else f'{_duration(t1)} after it'}"
    if thinned and -t0 > ZOOM_MS:
        span_text += (" (every reading of the last 10 minutes; before them, the highest reading of each "
                      "2 minutes, and of each 15 minutes past 2 hours)")
    return TimelineChart(span_text, series, limit_y, axis, xaxis, _chart_desc(pts, series, limit, jvm, t1))


def _chart_desc(pts, series: List[Series], limit: Optional[int], jvm, t1: float) -> str:
    """What the chart draws, in figures: per line its first and last value (when) and its highest,
    then the limit ("Usage from 2.0 MiB at -24 s to 64.0 MiB at the kill, highest 64.0 MiB; ...")."""
    end = "the kill" if t1 == 0 else _ago(t1)
    parts = []
    for s in series:
        if s.key == "jvm_heap":
            parts.append(f"{s.label}: {fmt_bytes(_own_heap(jvm))} at its last reading, "
                         f"{_ago(-jvm.read_ms_before_kill)}")
            continue
        vals = [(p.t_ms, getattr(p, s.key)) for p in pts if getattr(p, s.key) is not None]
        if not vals:
            continue
        (ta, a), (tb, b) = vals[0], vals[-1]
        high = max(v for _t, v in vals)
        parts.append(f"{s.label} from {fmt_bytes(int(a))} at {_ago(ta)} to {fmt_bytes(int(b))} at "
                     f"{end if tb == t1 else _ago(tb)}, highest {fmt_bytes(int(high))}")
    parts.append(f"limit {fmt_bytes(int(limit))} (dashed)" if limit else "no limit drawn")
    return "; ".join(parts) + "."


def _bar(items, total: Optional[int]) -> List[BarSegment]:
    items = [(k, label, b) for k, label, b in items if b > 0]
    denom = max(total or 0, sum(b for _, _, b in items)) or 1
    x = 0.0
    out = []
    for key, label, b in items:
        w = 100.0 * b / denom
        out.append(BarSegment(key, label, fmt_bytes(b), fmt_pct(b / denom), round(x, 3), round(w, 3),
                              PALETTE.get(key, "#7f8c8d")))
        x += w
    return out


def build_view(capture: Capture, analysis: Optional[KillAnalysis] = None) -> PostMortemView:
    result = analysis if analysis is not None else analyse_kill(capture)
    a = result.attribution
    v, cg, ak = capture.victim, capture.cgroup, capture.at_kill
    where = cg.task_memcg or cg.oom_memcg or "an unknown cgroup"
    # the headline names the workload as its owner knows it (a pod's container, a unit): a
    # Kubernetes path is 200 characters, a phone's whole first screen (issue 26); the path is a fact
    where = capture.workload.label() or where
    headline = f"pid {v.pid} ({v.comm or '?'}) was OOM-killed in {where}"
    if capture.kind == "throttle":  # nobody was killed (issue 28)
        headline = f"{where} was throttled at memory.high" + (f" for {capture.throttle.duration_s:.0f} s" if capture.throttle else "")
    elif capture.killer.kind == "userspace":
        headline = (f"pid {v.pid} ({v.comm or '?'}) was killed from user space by "
                    f"{capture.killer.known_as or capture.killer.comm or '?'} in {where}")
    hm = capture.host_memory_at_kill

    facts = [
        KeyValue("Killed", f"pid {v.pid} ({v.comm})"),
        KeyValue("When", _kill_when(capture.times)),
        KeyValue("Cgroup that hit its limit (oom_memcg)", cg.oom_memcg or "—"),
        KeyValue("Victim's cgroup (task_memcg)", cg.task_memcg or "—"),
        KeyValue("Usage at the kill", fmt_bytes(ak.usage_bytes)),
        KeyValue("Limit that was hit", _limit_hit_text(result.limit_hit)),
        KeyValue("Limit", limit_text(ak.limit_bytes, result.limit_hit.scope)),
        KeyValue("Times the limit was hit (failcnt)", "—" if ak.failcnt is None else str(ak.failcnt)),
        KeyValue("Victim RSS (anon / file / shmem)",
                 f"{fmt_bytes(v.rss_bytes)} ({fmt_bytes(v.anon_rss_bytes)} / {fmt_bytes(v.file_rss_bytes)} / {fmt_bytes(v.shmem_rss_bytes)})"),
        KeyValue("Victim virtual size (reserved, total_vm)", _reserved(v.total_vm_bytes, v.rss_bytes, ak.limit_bytes)),
        KeyValue("Victim oom_score_adj", "—" if v.oom_score_adj is None else str(v.oom_score_adj)),
        KeyValue("Triggered by", f"pid {capture.trigger.pid} ({capture.trigger.comm})" if capture.trigger.pid else "—"),
    ]
    if v.cmdline:
        facts.insert(1, KeyValue("Command line", v.cmdline))
    wl = capture.workload
    if wl.label():
        text = wl.label() + (f" ({wl.runtime})" if wl.runtime and wl.kind == "kubernetes" else "")
        if wl.qos:
            text += f", QoS {wl.qos}"
        facts.insert(1, KeyValue("Workload", text))

    cat_items = [(c.key, c.label, c.bytes) for c in a.categories if c.bytes > 0]
    categories = [CategoryRow(c.label, fmt_bytes(c.bytes), fmt_pct(c.share_of_usage)) for c in a.categories]
    details = [DetailRow(d.label, fmt_bytes(d.bytes), d.of) for d in a.details]

    # The ledger: the victim's RSS, each signed part, the charge (they sum exactly: attribution.py).
    rec_items, reconciliation = [], []
    if a.victim_rss_bytes is not None and a.reconciliation:
        # the bar shows the charge: the victim's RSS less its pages charged elsewhere, then the rest
        charged_here = a.victim_rss_bytes + sum(p.bytes for p in a.reconciliation if p.bytes < 0)
        rec_items.append(("victim", "Victim's RSS, charged here", charged_here))
        rec_items += [(p.key, p.label, p.bytes) for p in a.reconciliation if p.bytes > 0]
        reconciliation.append(GapRow("The victim's RSS (what ps/top showed)", fmt_bytes(a.victim_rss_bytes),
                                     "anon-rss + file-rss + shmem-rss of the killed process", kind="start"))
        reconciliation += [GapRow(p.label, ("+" if p.bytes > 0 else "") + fmt_bytes(p.bytes), p.explanation)
                           for p in a.reconciliation]
        reconciliation.append(GapRow("The kernel's charge", fmt_bytes(a.usage_bytes),
                                     "what the kernel compared with the limit", kind="total"))
    if a.gap_bytes is not None and a.gap_bytes <= 0:
        rec_summary = (f"Per-process monitoring of the victim saw {fmt_bytes(a.victim_rss_bytes)}, no less than the "
                       f"{fmt_bytes(a.usage_bytes)} the kernel charged the cgroup: RSS counts file pages the victim maps "
                       "even when they were charged elsewhere (or before it joined the cgroup).")
    elif a.gap_bytes is not None:
        rec_summary = (f"Per-process monitoring of the victim saw {fmt_bytes(a.victim_rss_bytes)}; the kernel charged the cgroup "
                       f"{fmt_bytes(a.usage_bytes)}. From one to the other:")
    else:
        rec_summary = "The victim's RSS or the cgroup's usage is unknown, so the two cannot be compared."

    tasks = []
    # A global OOM's table lists every process of the host: show the largest.
    for t in sorted(capture.tasks, key=lambda t: -(t.rss_bytes or 0))[:MAX_TASK_ROWS]:
        tasks.append(TaskRow(str(t.pid), t.comm, fmt_bytes(t.rss_bytes), fmt_bytes(t.anon_rss_bytes),
                             fmt_bytes(t.file_rss_bytes), fmt_bytes(t.shmem_rss_bytes), fmt_bytes(t.pgtables_bytes),
                             "—" if t.oom_score_adj is None else str(t.oom_score_adj), t.cmdline or "", is_victim=t.is_victim))
    tasks_note = ""
    if len(capture.tasks) > 1 and ak.usage_bytes is not None and not hm:
        total = sum(t.rss_bytes or 0 for t in capture.tasks)
        tasks_note = (f"RSS is what each process maps, not what it was charged: these {len(capture.tasks)} RSS add up to "
                      f"{fmt_bytes(total)} against a charge of {fmt_bytes(ak.usage_bytes)}. A page shared after fork() counts in "
                      "every sharer's RSS and is charged once"
                      + (f" ({fmt_bytes(a.others_shared_bytes)} of the others' anonymous RSS is such pages)" if a.others_shared_bytes else "")
                      + "; a file page counts in RSS even when another cgroup was charged for it.")
    tasks_source = SOURCE_LABELS.get(capture.tasks[0].source, capture.tasks[0].source) if capture.tasks else "none"
    if len(capture.tasks) > MAX_TASK_ROWS:
        tasks_source += f"; the {MAX_TASK_ROWS} largest of {len(capture.tasks)} processes"

    h = capture.host
    swap = ("unknown" if h.swap_total_bytes is None else "none" if not h.swap_total_bytes
            else f"{fmt_bytes(h.swap_total_bytes)} ({fmt_bytes(h.swap_free_bytes)} free)")
    host = [
        KeyValue("Host", h.hostname or "—"),
        KeyValue("Kernel", h.kernel_release or "—"),
        KeyValue("cgroup version", f"v{h.cgroup_version}" if h.cgroup_version else "—"),
        KeyValue("Transparent huge pages", f"enabled={h.thp_enabled or '—'}, defrag={h.thp_defrag or '—'}, shmem={h.thp_shmem_enabled or '—'}"),
        KeyValue("Memory", fmt_bytes(h.mem_total_bytes)),
        KeyValue("Swap", swap),
        KeyValue("Cgroup swap at the kill", _swap_text(ak, h)),
        KeyValue("vm.overcommit_memory", "—" if h.overcommit_memory is None else str(h.overcommit_memory)),
        KeyValue("vm.oom_dump_tasks", "—" if h.oom_dump_tasks is None else str(h.oom_dump_tasks)),
    ]

    for kv in _cgroup_settings(capture):
        host.append(kv)

    provenance = [
        ProvenanceRow("State of the cgroup (usage, limit, memory.stat)", SOURCE_LABELS.get(ak.source, ak.source)),
        ProvenanceRow("Victim's RSS", SOURCE_LABELS.get(v.source, v.source)),
        ProvenanceRow("Which cgroup", SOURCE_LABELS.get(cg.source, cg.source)),
        ProvenanceRow("Processes", tasks_source),
    ]
    for name, st in capture.at_kill_sources.items():
        age = "" if st.age_ms is None else (f", {st.age_ms:.0f} ms before the kill" if st.age_ms >= 0 else f", {-st.age_ms:.0f} ms after the kill")
        provenance.append(ProvenanceRow(f"Also read: {name.replace('_', ' ')}",
                                        f"usage {fmt_bytes(st.usage_bytes)}, anon {fmt_bytes(_anon(st.memory_stat))}{age}"))

    host_memory = []
    labels = [("ram", "RAM"), ("free", "Free"), ("active_anon", "Anonymous, active"), ("inactive_anon", "Anonymous, inactive"),
              ("active_file", "Page cache, active"), ("inactive_file", "Page cache, inactive"), ("shmem", "Shared memory / tmpfs"),
              ("slab_reclaimable", "Slab, reclaimable"), ("slab_unreclaimable", "Slab, unreclaimable"),
              ("pagetables", "Page tables"), ("unevictable", "Unevictable"), ("dirty", "Dirty"), ("writeback", "Under writeback"),
              ("swap_total", "Swap"), ("swap_free", "Swap free")]
    for key, label in labels:
        if key in hm:
            host_memory.append(KeyValue(label, fmt_bytes(hm[key])))

    incident_summary, incident_rows = "", []
    inc = capture.incident
    if inc is not None and inc.group_kill:
        incident_summary = (f"The kernel killed every task of {inc.group_cgroup} at once because memory.oom.group is set "
                            f"there ({len(inc.victims)} victims so far). Kubernetes sets it on every container on cgroup v2 "
                            "since 1.28, so a pod's sidecars die with its main process.")
        for x in inc.victims:
            # no link to this post-mortem itself, nor to a victim whose capture is not known (kill_id null)
            link = "" if x.kill_id in (None, capture.kill_id) else f"../{urllib.parse.quote(x.kill_id, safe='+')}/postmortem.html"
            incident_rows.append(IncidentRow(str(x.pid), x.comm, link, is_victim=x.pid == v.pid))

    advice_rows = [AdviceRow(ADVICE_CASES.get(x.case, x.case), x.title, x.text, "; ".join(str(e) for e in x.evidence)) for x in result.advice]
    charts, tl_title = _timeline(capture)

    return PostMortemView(
        not_written=not_written_sentence(capture),
        shown=_shown(result),
        advice=advice_rows,
        trend=result.trend.text,
        timeline_title=tl_title,
        timeline_charts=charts,
        tasks_title="Processes on the host at the kill" if hm else "Processes in the cgroup at the kill",
        host_memory=host_memory,
        incident_summary=incident_summary,
        incident=incident_rows,
        title=f"OOM kill: {v.comm or v.pid} in {where}",
        kill_id=capture.kill_id,
        headline=headline,
        verdict=list(result.verdict.sentences),
        facts=facts,
        bar=_bar(cat_items, ak.usage_bytes),
        categories=categories,
        details=details,
        reconciliation_bar=_bar(rec_items, ak.usage_bytes),
        reconciliation=reconciliation,
        reconciliation_summary=rec_summary,
        tasks=tasks,
        tasks_source=tasks_source,
        host=host,
        provenance=provenance,
        notes=list(capture.notes),
        kernel_lines=list(capture.kernel_report.lines),
        analysis_notes=list(a.notes),
        accounting=a.accounting if reconciliation else "",
        bar_scale=(f"{fmt_bytes(ak.usage_bytes)}, the kernel's charge" if ak.usage_bytes else
                   f"{fmt_bytes(sum(b for _k, _l, b in cat_items))}, the sum of the kinds shown (the charge is unknown)"
                   if cat_items else ""),
        tasks_note=tasks_note,
        sites=sites_view(capture),
    )


def limit_text(limit_bytes: Optional[int], scope: str) -> str:
    """The limit's size; a cgroup's limit was hit but not printed: unknown, never "none" (issue 26)."""
    if limit_bytes is not None:
        return fmt_bytes(limit_bytes)
    if scope == "host":
        return "none hit (the host ran out)"
    return "unknown (not in the capture)" if scope != "unknown" else "unknown"


def _kill_when(times) -> str:
    """The kill's time as the capture has it: an imported log's local time without its zone is
    said so, with no offset and no digits the log did not print (issue 26)."""
    if not times.kill_wall:
        return "—"
    if getattr(times, "kill_wall_zone", "") == "unknown":
        return f"{times.kill_wall.replace('T', ' ')} (local time, zone unknown)"
    return times.kill_wall


def _limit_hit_text(hit) -> str:
    text = hit.name[:1].upper() + hit.name[1:]
    return f"{text}: {hit.cgroup}" if hit.cgroup else text


def not_written_sentence(capture: Capture) -> str:
    """The kills of this workload not written since the previous post-mortem (record/budget.py)."""
    nw = capture.not_written
    if nw is None or nw.count <= 0:
        return ""
    who = capture.workload.label() or capture.cgroup.oom_memcg or capture.cgroup.task_memcg or "this workload"
    first, last = _when(nw.first_wall), _when(nw.last_wall)
    span = f"at {first}" if first == last else f"between {first} and {last}"
    kills = "1 more kill" if nw.count == 1 else f"{nw.count} more kills"
    return (f"{kills} of {who} {span} {'was' if nw.count == 1 else 'were'} counted but not written (no capture, "
            f"no post-mortem): its storm exceeded the budget of {nw.budget or 'record'} per workload. "
            f"This post-mortem is the next one written; the earlier ones of the storm stand for them.")


def _when(iso: Optional[str]) -> str:
    """An ISO 8601 time, to the second, in UTC words."""
    if not iso:
        return "an unknown time"
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _reserved(total_vm: Optional[int], rss: Optional[int], limit: Optional[int]) -> str:
    """Virtual size beside resident: reserving is free, a page is charged when first touched."""
    if total_vm is None:
        return "—"
    text = f"{fmt_bytes(total_vm)}"
    if limit and total_vm >= 2 * limit:
        text += f" ({total_vm / limit:.1f}x the limit)"
    if rss is not None:
        text += f", of which {fmt_bytes(rss)} resident: only pages it touched were charged, not what it reserved"
    return text


def _fmt_opt(v) -> str:
    return "—" if v is None else str(v)


def _shown(result: KillAnalysis) -> ShownView:
    sh = result.shown
    tools = [ToolRow(f.name, fmt_bytes(f.bytes) if f.bytes is not None else "unknown", f.formula, f.source,
                     is_charge=f.key == "kernel_charge") for f in sh.figures]
    scrapes = []
    for sc in sh.scrapes:
        if sc.bytes is None:
            scrapes.append(ScrapeRow(f"every {sc.interval_s} s", "unknown", "the timeline does not reach back that far", "—"))
        else:
            scrapes.append(ScrapeRow(f"every {sc.interval_s} s", fmt_bytes(sc.bytes), f"{sc.age_ms / 1000:.1f} s before the kill",
                                     f"{fmt_bytes(sc.low_bytes)} to {fmt_bytes(sc.high_bytes)}"))
    java = []
    for j in sh.java:
        r = j.reading
        figures = [
            KeyValue("Heap used (what heap dashboards show)", fmt_bytes(r.heap_used_bytes)),
            KeyValue("Heap committed / max", f"{fmt_bytes(r.heap_committed_bytes)} / {fmt_bytes(r.heap_max_bytes)}"),
            KeyValue("Young / old generation used", f"{fmt_bytes(r.young_used_bytes)} / {fmt_bytes(r.old_used_bytes)}"),
            KeyValue("Metaspace used / committed", f"{fmt_bytes(r.metaspace_used_bytes)} / {fmt_bytes(r.metaspace_committed_bytes)}"),
            KeyValue("Compressed class space used / committed",
                     f"{fmt_bytes(r.class_space_used_bytes)} / {fmt_bytes(r.class_space_committed_bytes)}"),
            KeyValue("Live threads", _fmt_opt(r.threads)),
            KeyValue("GCs (young / full), GC time", f"{_fmt_opt(r.young_gc_count)} / {_fmt_opt(r.full_gc_count)}, "
                     + ("—" if r.gc_time_ms is None else f"{r.gc_time_ms:.0f} ms")),
            KeyValue("RSS at the kill", fmt_bytes(j.rss_bytes)),
            KeyValue("JVM", r.vm_version or "—"),
            KeyValue("JVM memory flags", r.vm_args or "—"),  # the others are never kept (hsperfdata.memory_flags)
        ]
        summary = ("Its RSS at the kill is unknown: the split into heap and the rest cannot be made."
                   if j.outside_heap_bytes is None else
                   f"Of its {fmt_bytes(j.rss_bytes)} RSS, at least {fmt_bytes(j.outside_heap_bytes)} lay outside the Java heap, "
                   "where no heap dashboard looks.")
        read = "" if j.read_ms_before_kill is None else f"read {j.read_ms_before_kill:.0f} ms before the kill from its hsperfdata file"
        java.append(JavaView(f"pid {j.pid} ({j.comm or 'java'}){' (victim)' if j.is_victim else ''}", read, figures,
                             _bar([(p.key, p.label, p.bytes or 0) for p in j.parts], j.rss_bytes),
                             [GapRow(p.label, fmt_bytes(p.bytes), p.explanation) for p in j.parts], summary))
    java += [_go_view(j) for j in sh.go]
    return ShownView(list(sh.sentences), tools, scrapes, java, list(sh.notes))


def _go_view(j) -> JavaView:
    """One Go program read before the kill (runtimes/go.py): its runtime's figures and its RSS split."""
    r = j.reading
    figures = [
        KeyValue("Heap in use (HeapInuse: what Go dashboards show)", fmt_bytes(r.heap_inuse_bytes)),
        KeyValue("Heap objects (HeapAlloc)", fmt_bytes(r.heap_alloc_bytes)),
        KeyValue("The GC's goal (NextGC)", fmt_bytes(r.heap_goal_bytes)),
        KeyValue("GOMEMLIMIT", "none set" if r.memory_limit_bytes is None else fmt_bytes(r.memory_limit_bytes)),
        KeyValue("GOGC", "off" if r.gc_percent is None else f"{r.gc_percent}"),
        KeyValue("Free spans kept (HeapIdle - HeapReleased)", fmt_bytes(r.heap_free_bytes)),
        KeyValue("RSS at the kill", fmt_bytes(j.rss_bytes)),
        KeyValue("Go", r.vm_version or "—"),
    ]
    summary = ("Its RSS at the kill is unknown: the split into heap and the rest cannot be made."
               if j.outside_heap_bytes is None else
               f"Of its {fmt_bytes(j.rss_bytes)} RSS, {fmt_bytes(j.outside_heap_bytes)} lay outside the Go heap in use, "
               "where no Go heap dashboard looks.")
    read = ("" if j.read_ms_before_kill is None else
            f"read {j.read_ms_before_kill:.0f} ms before the kill from its memory (its runtime's state, never attached)")
    return JavaView(f"pid {j.pid} ({j.comm or 'go'}){' (victim)' if j.is_victim else ''}", read, figures,
                    _bar([(p.key, p.label, p.bytes or 0) for p in j.parts], j.rss_bytes),
                    [GapRow(p.label, fmt_bytes(p.bytes), p.explanation) for p in j.parts], summary, "The Go runtime's")


def _swap_text(ak, h) -> str:
    used = fmt_bytes(ak.swap_usage_bytes)
    if h.swap_total_bytes is None:
        return f"{used}; whether the host has swap is unknown"
    if not h.swap_total_bytes:
        return f"{used}: the host has no swap"
    if ak.swap_limit_bytes == 0:
        return f"{used}: swap was not available to this cgroup (its swap limit is 0)"
    if ak.swap_limit_bytes is None:
        return f"{used} in use; the cgroup could use all of the host's swap"
    return f"{used} in use of a {fmt_bytes(ak.swap_limit_bytes)} swap limit"


def _cgroup_settings(capture: Capture) -> List[KeyValue]:
    """cgroup v2 settings and counters from the readings oomscope took (last sample, after)."""
    out: List[KeyValue] = []
    readings = [capture.at_kill_sources.get(k) for k in ("last_sample", "after_kill")]
    readings = [r for r in readings if r is not None]
    if not readings:
        return out
    first = readings[0]
    if any(r.memory_high_bytes is not None for r in readings):
        high = next(r.memory_high_bytes for r in readings if r.memory_high_bytes is not None)
        out.append(KeyValue("memory.high (throttling above it)", fmt_bytes(high)))
    if any(r.oom_group is not None for r in readings):
        group = next(r.oom_group for r in readings if r.oom_group is not None)
        out.append(KeyValue("memory.oom.group", "1: the whole cgroup is killed together" if group else "0"))
    events = readings[-1].memory_events
    if events:
        out.append(KeyValue(f"memory.events ({readings[-1].source.replace('_', ' ')})",
                            ", ".join(f"{k} {v}" for k, v in events.items())))
    if first.pressure:
        p = first.pressure
        out.append(KeyValue(f"Memory pressure, PSI ({first.source.replace('_', ' ')})",
                            f"some {p.get('some_avg10', 0):.2f}% / full {p.get('full_avg10', 0):.2f}% over 10 s"))
    return out


def _anon(stat) -> Optional[int]:
    for k in ("anon", "total_rss", "rss"):
        if k in stat:
            return stat[k]
    return None
