"""Renders a post-mortem: capture → its one analysis (analysis/result.py) → view model → jinja2 template.

Autoescape is on for every template: process names, cgroup paths and command lines are chosen by
whoever runs the workload. The HTML is one self-contained file: inline CSS and SVG, no script, no
external asset, and a Content-Security-Policy that forbids loading anything.
"""

from __future__ import annotations

import functools

import jinja2

from typing import Optional

from ..analysis.result import KillAnalysis
from ..model import Capture
from .view import build_view


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("oomscope.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(capture: Capture, analysis: Optional[KillAnalysis] = None) -> str:
    view = build_view(capture, analysis)
    return _env().get_template("postmortem.html.j2").render(v=view)
