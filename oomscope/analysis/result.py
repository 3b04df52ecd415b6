"""One analysis of one kill: attribution, trend, advice and verdict, computed once
(``analyse_kill``) and handed to every renderer (HTML, Markdown, JSON, the index) and to record's
log line and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..model import Capture
from .advice import Advice, Trend, advise, trend_of
from .attribution import Analysis, analyse
from .verdict import Verdict, verdict_of


@dataclass
class KillAnalysis:
    attribution: Analysis
    trend: Trend
    advice: List[Advice] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def top_categories(self) -> List[str]:
        """The one or two categories that explain the kill, largest first."""
        return self.attribution.top_categories


def analyse_kill(capture: Capture) -> KillAnalysis:
    a = analyse(capture)
    trend = trend_of(capture)
    return KillAnalysis(attribution=a, trend=trend, advice=advise(capture, a, trend), verdict=verdict_of(capture, a, trend))
