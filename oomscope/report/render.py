"""Renders a post-mortem: capture → its one analysis (analysis/result.py) → view model → jinja2 template.

Autoescape is on for every template: process names, cgroup paths and command lines are chosen by
whoever runs the workload; control, C1 and bidi characters in them are escaped as text
(``_finalize``). The HTML is one self-contained file: inline CSS and SVG, no script, no
external asset, and a Content-Security-Policy that forbids loading anything.
"""

from __future__ import annotations

import functools

import jinja2
import markupsafe

from typing import Optional

from ..analysis.result import KillAnalysis
from ..model import Capture
from ..terminal import terminal_safe
from .template_cache import package_cache
from .view import DARK_COLOURS, LIMIT_COLOUR, TIMELINE_SERIES, build_view


def _finalize(value):
    """Every value a template prints: control, C1 and bidi characters of a name escaped as text
    (terminal.py), so the file is safe to ``cat`` and a name cannot reorder the page; then
    autoescape does the markup."""
    # ~200 values a page, ~10k pages in an import's storm: the common case (a plain printable ASCII
    # str) is answered without a call; Markup is a str subclass, so ``type(...) is str`` skips it
    if type(value) is str:
        return value if value.isascii() and value.isprintable() else terminal_safe(value, keep_newlines=True)
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return terminal_safe(value, keep_newlines=True)
    return value


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("oomscope.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        auto_reload=False,  # the templates ship with the package: no stat of the file per page
    )
    # compiled once, kept beside the package's .pyc (report/template_cache.py): ~35 ms a process
    env.bytecode_cache = package_cache(env)
    # the chart's colours the CSS needs, light and dark (report/view.py)
    env.globals["colours"] = dict({k: c for k, _l, c in TIMELINE_SERIES}, limit=LIMIT_COLOUR)
    env.globals["dark"] = DARK_COLOURS
    return env


def load_templates(*names: str) -> None:
    """Pages' templates loaded (compiled, or read from report/template_cache.py) ahead of the
    first page that needs them: record's worker before its first kill, import while it waits."""
    env = _env()
    for name in names:
        env.get_template(name)


def render_html(capture: Capture, analysis: Optional[KillAnalysis] = None) -> str:
    view = build_view(capture, analysis)
    return _env().get_template("postmortem.html.j2").render(v=view)
