"""A series page (issue 29): one workload's repeated kills, from analysis/series.py's
SeriesAnalysis to a view model, then series.html.j2. One self-contained file like the
post-mortem: autoescape and the same finalize (report/render.py), inline CSS and SVG, no script."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from ..analysis.series import SeriesAnalysis, duration, rate
from ..units import fmt_bytes
from .render import _env

#: the lives drawn on the time axis (the latest ones)
LIVES_DRAWN = 12
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#393b79", "#637939")
W, H = 640, 220  # the plot area of the lives, in SVG units


@dataclass
class KillRow:
    number: int
    when: str
    after: str  # time since the series' first kill
    victim: str
    usage: str
    limit: str
    cause: str
    trend: str
    life: str
    growth: str
    href: str
    page: bool  # its post-mortem is rendered (else the link is its capture)


@dataclass
class Line:
    label: str
    colour: str
    points: str  # SVG polyline points


@dataclass
class Tick:
    at: float
    label: str


@dataclass
class SeriesView:
    title: str
    workload: str
    host: str
    named: bool
    kills_total: int
    first: str
    last: str
    verdict: str
    pattern_text: str
    same: List[str]
    changed: List[str]
    advice: List[Tuple[str, str]]
    rows: List[KillRow]
    lines: List[Line] = field(default_factory=list)
    limits: List[Tick] = field(default_factory=list)  # y of each distinct limit
    x_ticks: List[Tick] = field(default_factory=list)
    y_ticks: List[Tick] = field(default_factory=list)
    lives_note: str = ""
    #: the lives' chart in words, its SVG's <desc> (issue 26): each life drawn, its length and rate, the limits
    desc: str = ""
    width: int = W
    height: int = H


def _ticks(top: float, n: int = 5) -> List[float]:
    """Round steps from 0 to ``top``."""
    if top <= 0:
        return [0.0]
    raw = top / n
    mag = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(top // step) + 1)]


def build_series_view(a: SeriesAnalysis, has_page: Callable[[str], bool], series_id: str = "") -> SeriesView:
    """``has_page(folder)``: whether that kill's postmortem.html is written (links from series/)."""
    rows = []
    for k in a.kills:
        page = has_page(k.folder)
        life = duration(k.life_s) if k.life_s is not None else "unknown"
        if k.life_from == "previous kill":
            life = f"at most {life} (since the previous kill)"
        rows.append(KillRow(number=k.number, when=k.when, after=duration(k.t_s) if k.t_s else "first",
                            victim=f"{k.pid} ({k.comm})", usage=fmt_bytes(k.usage_bytes), limit=fmt_bytes(k.limit_bytes),
                            cause=k.cause, trend=k.trend, life=life, growth=rate(k.growth_bytes_per_s),
                            href=f"../{k.folder}/{'postmortem.html' if page else 'capture.json'}", page=page))
    v = SeriesView(title=f"oomscope: {a.kills_total} kills of {a.workload}", workload=a.workload, host="", named=a.named,
                   kills_total=a.kills_total, first=a.first, last=a.last, verdict=a.verdict,
                   pattern_text=a.pattern_text, same=a.same, changed=a.changed, advice=a.advice, rows=rows[::-1])
    drawn = [k for k in a.kills if len(k.points) >= 2][-LIVES_DRAWN:]
    if drawn:
        x_top = max(k.points[-1][0] for k in drawn) or 1.0
        y_top = max([u for k in drawn for _, u in k.points] + [k.limit_bytes or 0 for k in drawn]) or 1
        y_top *= 1.05
        for i, k in enumerate(drawn):
            pts = " ".join(f"{W * t / x_top:.1f},{H - H * u / y_top:.1f}" for t, u in k.points)
            v.lines.append(Line(label=f"kill {k.number}: {duration(k.life_s)}, {rate(k.growth_bytes_per_s)}",
                                colour=COLOURS[i % len(COLOURS)], points=pts))
        for lim in sorted({k.limit_bytes for k in drawn if k.limit_bytes}):
            v.limits.append(Tick(at=round(H - H * lim / y_top, 1), label=f"limit {fmt_bytes(lim)}"))
        unit, name = (60.0, "min") if x_top >= 120 else (1.0, "s")
        v.x_ticks = [Tick(at=round(W * x / x_top, 1), label=f"{x / unit:g} {name}") for x in _ticks(x_top / unit)
                     for x in [x * unit]]
        mib = 1 << 20
        v.y_ticks = [Tick(at=round(H - H * y * mib / y_top, 1), label=f"{y:g} MiB") for y in _ticks(y_top / mib)]
        left = len([k for k in a.kills if len(k.points) >= 2]) - len(drawn)
        v.desc = "; ".join([f"{ln.label}, highest {fmt_bytes(max(u for _t, u in k.points))}" for ln, k in zip(v.lines, drawn)]
                           + [t.label for t in v.limits]) + "."
        v.lives_note = f"The latest {len(drawn)} lives" + (f" ({left} earlier ones not drawn)" if left else "")
    else:
        v.lives_note = ("No timeline in these captures (imported from a kernel log, or recorded without a reading before the "
                        "kill): each life's length is at most the time since the previous kill.")
    return v


def render_series_html(a: SeriesAnalysis, has_page: Callable[[str], bool], host: Optional[str] = None) -> str:
    view = build_series_view(a, has_page)
    view.host = host or ""
    return _env().get_template("series.html.j2").render(v=view)
