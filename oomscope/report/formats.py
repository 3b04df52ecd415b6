"""The post-mortem as Markdown (to paste into a ticket) and as JSON (the analysis result).

JSON's ``verdict.categories`` names the one or two categories that explain the kill, largest
first, from one fixed vocabulary: anon, anon_thp, file, shmem, slab, kernel_stack, pagetables,
percpu, vmalloc, kernel, sock, zswap (see analysis/attribution.py).

JSON's ``dashboards`` lists what each tool would have shown at the kill, [{key, name, bytes (null:
unknown), formula, source}] (analysis/dashboards.py); ``dashboards_said`` the sentences "Your
dashboard showed X; the kernel killed at Y; the difference, Z, was A, B and C."; ``scrapes`` what a
15 s / 60 s scrape of the usage last saw; ``runtimes`` each JVM read before the kill (the capture's
figures, with ``rss_bytes``, ``outside_heap_bytes`` and ``rss_split``), and those that could not be
read (``why_not``); ``runtime_notes`` what could not be read and why, in words.
"""

from __future__ import annotations

import dataclasses
import json

from typing import Optional

from ..analysis.result import KillAnalysis, analyse_kill
from ..model import Capture
from ..terminal import json_safe, terminal_safe
from .view import build_view


def render_json(capture: Capture, analysis: Optional[KillAnalysis] = None) -> str:
    result = analysis if analysis is not None else analyse_kill(capture)
    verdict = dataclasses.asdict(result.verdict)
    out = {
        "kill_id": capture.kill_id,
        "victim": {"pid": capture.victim.pid, "comm": capture.victim.comm, "rss_bytes": capture.victim.rss_bytes},
        "cgroup": dataclasses.asdict(capture.cgroup),
        # the structured verdict (analysis/verdict.py); "text" is its sentences, as before
        "verdict": {"categories": result.top_categories, "text": verdict.pop("sentences"),
                    **{k: v for k, v in verdict.items() if k != "categories"}},
        "analysis": dataclasses.asdict(result.attribution),
        "trend": dataclasses.asdict(result.trend),
        "advice": [dataclasses.asdict(x) for x in result.advice],
        "incident": dataclasses.asdict(capture.incident) if capture.incident else None,
        "notes": capture.notes,
        # what each tool showed at the kill (analysis/dashboards.py), and the runtimes' own views
        "dashboards": [{"key": f.key, "name": f.name, "bytes": f.bytes, "formula": f.formula, "source": f.source}
                       for f in result.shown.figures],
        "dashboards_said": result.shown.sentences,
        "scrapes": [dataclasses.asdict(s) for s in result.shown.scrapes],
        "runtimes": [dict(dataclasses.asdict(j.reading), rss_bytes=j.rss_bytes, outside_heap_bytes=j.outside_heap_bytes,
                          rss_split=[dataclasses.asdict(p) for p in j.parts])
                     for j in result.shown.java]
                    + [dataclasses.asdict(r) for r in capture.runtimes if r.why_not is not None],
        "runtime_notes": result.shown.notes,
    }
    # Readable UTF-8 (a /café cgroup stays /café), with every control, C1 and bidi character
    # escaped as \uNNNN: this goes to a terminal by default (terminal.py).
    return json_safe(json.dumps(out, indent=2, ensure_ascii=False)) + "\n"


def _md(text: str) -> str:
    """Kernel strings in Markdown: no markup, no HTML, no line breaks, nothing that acts on a
    terminal (the summary goes to stdout by default)."""
    text = terminal_safe(str(text).replace("\n", " ").replace("\r", " "))
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text


def render_markdown(capture: Capture, analysis: Optional[KillAnalysis] = None) -> str:
    v = build_view(capture, analysis if analysis is not None else analyse_kill(capture))
    lines = [f"### OOM kill: {_md(v.headline)}", "", f"`{terminal_safe(capture.kill_id).replace('`', chr(39))}`", ""]
    lines += [f"- {_md(t)}" for t in v.verdict]
    if v.shown is not None:
        sh = v.shown
        lines += ["", "**What your dashboards showed, beside what the kernel charged**", ""]
        lines += [x for t in sh.sentences for x in (_md(t), "")][:-1]
        lines += ["", "| Tool | At the kill | Formula | Source |", "|---|---:|---|---|"]
        lines += [f"| {_md(r.name)} | {r.value} | {_md(r.formula)} | {_md(r.source)} |" for r in sh.tools]
        if sh.scrapes:
            lines += ["", "| A scrape of the usage | Last value (worst case) | Taken | Range in that interval |", "|---|---:|---|---:|"]
            lines += [f"| {r.interval} | {r.value} | {_md(r.when)} | {r.range} |" for r in sh.scrapes]
        for j in sh.java:
            lines += ["", f"*The JVM's own view: {_md(j.title)}*" + (f", {_md(j.read)}" if j.read else ""), "", _md(j.summary), "",
                      "| Part of its RSS | Bytes | What it is |", "|---|---:|---|"]
            lines += [f"| {_md(r.label)} | {r.size} | {_md(r.explanation)} |" for r in j.parts]
            lines += [""] + [f"- {_md(kv.key)}: {_md(kv.value)}" for kv in j.figures]
        if sh.notes:
            lines += [""] + [f"> {_md(n)}" for n in sh.notes]
    lines += ["", "| | |", "|---|---|"]
    lines += [f"| {_md(kv.key)} | {_md(kv.value)} |" for kv in v.facts]
    if v.categories:
        lines += ["", "| Category | Charged | Share of usage |", "|---|---:|---:|"]
        lines += [f"| {_md(r.label)} | {_md(r.charged)} | {_md(r.share)} |" for r in v.categories]
    if v.reconciliation:
        lines += ["", _md(v.reconciliation_summary), "", "| Part of the gap | Bytes |", "|---|---:|"]
        lines += [f"| {_md(r.label)} | {_md(r.size)} |" for r in v.reconciliation]
    if v.advice:
        lines += ["", "**What to change**", ""]
        lines += [f"- *{_md(r.case)}*: **{_md(r.title)}.** {_md(r.text)}" for r in v.advice]
    if v.notes:
        lines += [""] + [f"> {_md(n)}" for n in v.notes]
    return "\n".join(lines) + "\n"
