"""``index.html`` of an output folder: every kill, newest first, linking to its post-mortem: its
rows and the page; the kills of one series (postmortem/series.py) as one row, linking to the
series page, with its latest kills under it. Which kills it holds is kept by postmortem/index.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

from ..analysis.attribution import top_and_others
from ..analysis.limit import limit_hit_of
from ..analysis.result import KillAnalysis
from ..analysis.verdict import OTHERS_SHARE
from ..model import Capture
from ..units import fmt_bytes
from .view import limit_text


@dataclass
class IndexRow:
    kill_id: str
    when: str
    victim: str
    cgroup: str
    usage: str
    limit: str
    categories: str
    incident: str
    href: str
    host: str = ""
    #: the workload in its own words: namespace/pod and container, a docker container, a unit
    workload: str = ""
    #: "kernel" (the kernel's OOM kill), "userspace" (a user-space killer's), "throttle" (a memory.high
    #: episode): the index lists each apart
    kind: str = "kernel"
    killer: str = ""  # a user-space kill's killer, a throttle episode's duration and stall


#: a category in an index cell: a few plain words, not the analysis' key ("anon_thp")
MOSTLY_WORDS = {
    "anon": "anonymous (heap)", "anon_thp": "anonymous, in huge pages", "file": "page cache",
    "shmem": "tmpfs / shared memory", "slab": "slab (kernel)", "kernel": "kernel (slab)",
    "kernel_stack": "kernel stacks", "pagetables": "page tables", "percpu": "per-CPU kernel memory",
    "sock": "socket buffers", "zswap": "zswap", "other_processes": "other processes",
}


def mostly(a) -> str:
    """What the charge was mostly made of, in the index's words; other processes when they held
    the share the verdict names them at (analysis/verdict.py, OTHERS_SHARE)."""
    others = next((p.bytes for p in a.reconciliation if p.key == "other_processes"), 0)
    return _mostly_words(a.top_categories, others, a.usage_bytes)


def _mostly_words(top: List[str], others: int, usage: Optional[int]) -> str:
    keys = list(top)
    if usage and others >= OTHERS_SHARE * usage:
        keys.append("other_processes")
    return ", ".join(MOSTLY_WORDS.get(k, k) for k in keys)


def row_for(capture: Capture, analysis: Optional[KillAnalysis] = None) -> IndexRow:
    """The index's row; the kill's analysis when the caller has it (record), else what a row
    shows of the attribution (a capture read from disk, import's kills: analysis/attribution.py
    top_and_others, as ``mostly(analyse(capture))`` says it)."""
    try:
        cats = mostly(analysis.attribution) if analysis is not None else _mostly_words(*top_and_others(capture), capture.at_kill.usage_bytes)
    except Exception:  # one odd capture must not cost the index
        cats = ""
    cg = capture.cgroup
    return IndexRow(
        kill_id=capture.kill_id,
        when=capture.times.kill_wall or "",
        victim=f"{capture.victim.pid} ({capture.victim.comm})",
        cgroup=cg.task_memcg or cg.oom_memcg or "?",
        usage=fmt_bytes(capture.at_kill.usage_bytes),
        limit=_limit(capture, analysis),
        categories=cats,
        incident=capture.incident.id if capture.incident and capture.incident.id != capture.kill_id else "",
        href=f"{capture.kill_id}/postmortem.html",
        host=capture.host.hostname or "",
        workload=_short_workload(capture),
        kind="throttle" if capture.kind == "throttle" else "userspace" if capture.killer.kind == "userspace" else "kernel",
        killer=(f"{capture.throttle.duration_s:.0f} s, stalled {100 * capture.throttle.share:.0f}%"
                if capture.kind == "throttle" and capture.throttle is not None else
                f"{capture.killer.known_as or capture.killer.comm} (pid {capture.killer.pid}), {capture.killer.signal}"
                if capture.killer.kind == "userspace" else ""),
    )


def _limit(capture: Capture, analysis: Optional[KillAnalysis]) -> str:
    """The limit's size; "unknown" where a cgroup's limit was hit and the log does not print it,
    "none" only where no cgroup limit was hit (analysis/limit.py)."""
    hit = analysis.limit_hit if analysis is not None else limit_hit_of(capture)
    text = limit_text(capture.at_kill.limit_bytes, hit.scope)
    return text.split(" (")[0] if text.startswith("unknown") else "none" if hit.scope == "host" else text


def _short_workload(capture: Capture) -> str:
    """The workload in an index cell: a pod by its name (a UID only as its first 8 digits)."""
    w = capture.workload
    if w.kind != "kubernetes":
        return w.label()
    pod = f"{w.namespace}/{w.pod}" if w.pod else f"pod {(w.pod_uid or '?')[:8]}…"
    return f"{pod}, {w.container or (w.container_id or '?')[:12]}"


#: the latest kills of a series listed under its row in the index (the series page lists them all)
SERIES_KILLS_SHOWN = 5


@dataclass
class SeriesRow:
    """A series in the index: its workload, kills, first and last, the verdict they share."""

    href: str
    workload: str
    host: str
    kills: int
    first: str
    last: str
    verdict: str
    victims: str
    cgroup: str
    usage: str
    limit: str
    rows: List[IndexRow]  # its latest kills, newest first
    more: int  # its kills not listed under it


def series_row(s, by_folder: Dict[str, IndexRow]) -> SeriesRow:
    """``s``: a postmortem/series.py Series of more than one kill."""
    rows = [by_folder[k.folder] for k in reversed(s.kills) if k.folder in by_folder]
    comms = []
    for k in s.kills:
        if k.comm not in comms:
            comms.append(k.comm)
    limits = [r.limit for r in rows[::-1]]
    limit = limits[-1] if limits else "?"
    if limits and len(set(limits)) > 1:
        limit = f"{limits[0]} → {limits[-1]}"
    return SeriesRow(href=f"series/{s.id}.html", workload=s.workload, host=s.host, kills=len(s.kills), first=s.first.when,
                     last=s.last.when, verdict=s.shared_mostly(), victims=", ".join(comms[:3]) + (", …" if len(comms) > 3 else ""),
                     cgroup=rows[0].cgroup if rows else "?", usage=rows[0].usage if rows else "?", limit=limit,
                     rows=rows[:SERIES_KILLS_SHOWN], more=max(0, len(s.kills) - SERIES_KILLS_SHOWN))


def render_index(rows: List[IndexRow], series: Optional[Sequence] = None,
                 by_folder: Optional[Dict[str, IndexRow]] = None) -> str:
    """index.html of an output folder: its rows, newest first; with ``series`` (newest first,
    postmortem/series.py) and the rows by kill folder, a series of several kills as one row."""
    return "".join(index_chunks(rows, series, by_folder))


def index_chunks(rows: List[IndexRow], series: Optional[Sequence] = None,
                 by_folder: Optional[Dict[str, IndexRow]] = None) -> Iterator[str]:
    """render_index's text in the pieces jinja2 generates, for a writer that writes them as they
    come (safefs.Dir.write): record's worker writes the page at every kill, and the page made
    whole was ~2 KiB of its memory per kill listed (bench/worker_growth.py)."""
    apart = {k: sorted((r for r in rows if r.kind == k), key=lambda r: r.when, reverse=True) for k in ("userspace", "throttle")}
    kernel = [r for r in rows if r.kind not in apart]
    if series is None or by_folder is None:
        items = [("kill", r) for r in sorted(kernel, key=lambda r: r.when, reverse=True)]
    else:
        items = [("series", series_row(s, by_folder)) if len(s.kills) > 1 else ("kill", by_folder[s.first.folder])
                 for s in series if s.first.folder in by_folder and by_folder[s.first.folder].kind not in apart]
    n_series = sum(1 for kind, _ in items if kind == "series")
    # jinja2 and the page modules when the page is made, not when the index's rows are: import's
    # start and its forked processes make rows and need none of them (importer/run.py)
    from .render import _env

    return _env().get_template("index.html.j2").generate(items=items, rows=kernel, n_series=n_series,
                                                         userspace=apart["userspace"], throttle=apart["throttle"])
