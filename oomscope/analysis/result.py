"""One analysis of one kill: attribution, trend, advice, verdict and what the dashboards
and the runtime showed (analysis/shown.py), computed once
(``analyse_kill``) and handed to every renderer (HTML, Markdown, JSON, the index) and to record's
log line and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..model import Capture
from .advice import HEAP_GROWTH, JVM_NATIVE_GROWTH, Advice, Trend, advise, trend_of
from .attribution import Analysis, analyse
from .limit import LimitHit, limit_hit_of
from .shown import OUTSIDE_HEAP, Shown, java_advice, shown_of
from .verdict import Verdict, verdict_of


@dataclass
class KillAnalysis:
    attribution: Analysis
    trend: Trend
    advice: List[Advice] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    #: what the dashboards and the runtime (a JVM's heap) showed beside the kernel's charge
    shown: Shown = field(default_factory=lambda: Shown(None))
    #: which limit was hit, in the reader's terms (analysis/limit.py)
    limit_hit: LimitHit = field(default_factory=lambda: LimitHit(None, "unknown", None))

    @property
    def top_categories(self) -> List[str]:
        """The one or two categories that explain the kill, largest first."""
        return self.attribution.top_categories


def analyse_kill(capture: Capture) -> KillAnalysis:
    a = analyse(capture)
    hit = limit_hit_of(capture)
    trend = trend_of(capture)
    shown = shown_of(capture, a)
    advice = advise(capture, a, trend)
    java = [Advice(case, title, text, evidence) for case, title, text, evidence in java_advice(shown, a.limit_bytes)]
    # the JVM's flags need no more limit: before the advice that says "fix the items above first"
    at = next((i for i, x in enumerate(advice) if x.case in ("more_limit", "delay_only")), len(advice))
    advice[at:at] = java
    if any(x.title == OUTSIDE_HEAP for x in java):
        # the JVM's memory grew outside its heap: a heap profile would not show the leak
        for x in advice:
            if x.case == "delay_only":
                x.text = x.text.replace(HEAP_GROWTH, JVM_NATIVE_GROWTH)
    return KillAnalysis(attribution=a, trend=trend, advice=advice, verdict=verdict_of(capture, a, trend, hit, shown), shown=shown,
                        limit_hit=hit)
