"""The post-mortem as Markdown (to paste into a ticket) and as JSON (the analysis result).

JSON's ``verdict.categories`` names the one or two categories that explain the kill, largest
first, from one fixed vocabulary: anon, anon_thp, file, shmem, slab, kernel_stack, pagetables,
percpu, vmalloc, kernel, sock, zswap (see analysis/attribution.py).
"""

from __future__ import annotations

import dataclasses
import json

from ..analysis.advice import advise, trend_of
from ..analysis.attribution import analyse
from ..model import Capture
from ..terminal import json_safe, terminal_safe
from .view import build_view


def render_json(capture: Capture) -> str:
    a = analyse(capture)
    view = build_view(capture, a)
    out = {
        "kill_id": capture.kill_id,
        "victim": {"pid": capture.victim.pid, "comm": capture.victim.comm, "rss_bytes": capture.victim.rss_bytes},
        "cgroup": dataclasses.asdict(capture.cgroup),
        "verdict": {"categories": a.top_categories, "text": view.verdict},
        "analysis": dataclasses.asdict(a),
        "trend": dataclasses.asdict(trend_of(capture)),
        "advice": [dataclasses.asdict(x) for x in advise(capture, a)],
        "incident": dataclasses.asdict(capture.incident) if capture.incident else None,
        "notes": capture.notes,
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


def render_markdown(capture: Capture) -> str:
    a = analyse(capture)
    v = build_view(capture, a)
    lines = [f"### OOM kill: {_md(v.headline)}", "", f"`{terminal_safe(capture.kill_id).replace('`', chr(39))}`", ""]
    lines += [f"- {_md(t)}" for t in v.verdict]
    lines += ["", "| | |", "|---|---|"]
    lines += [f"| {_md(kv.key)} | {_md(kv.value)} |" for kv in v.facts]
    if v.categories:
        lines += ["", "| Category | Charged | Share of usage |", "|---|---:|---:|"]
        lines += [f"| {_md(r.cells[0])} | {_md(r.cells[1])} | {_md(r.cells[2])} |" for r in v.categories]
    if v.reconciliation:
        lines += ["", _md(v.reconciliation_summary), "", "| Part of the gap | Bytes |", "|---|---:|"]
        lines += [f"| {_md(r.cells[0])} | {_md(r.cells[1])} |" for r in v.reconciliation]
    if v.advice:
        lines += ["", "**What to change**", ""]
        lines += [f"- *{_md(r.cells[0])}*: **{_md(r.cells[1])}.** {_md(r.cells[2])}" for r in v.advice]
    if v.notes:
        lines += [""] + [f"> {_md(n)}" for n in v.notes]
    return "\n".join(lines) + "\n"
