"""The post-mortem as Markdown (to paste into a ticket) and as JSON (the analysis result).

JSON's ``verdict.categories`` names the one or two categories that explain the kill, largest
first, from one fixed vocabulary: anon, anon_thp, file, shmem, slab, kernel_stack, pagetables,
percpu, vmalloc, kernel, sock, zswap (see analysis/attribution.py).
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
