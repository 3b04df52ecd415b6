"""A series of kills analysed as one story (issue 29): each life's length and growth, what stayed
the same and what changed between kills, the pattern (a leak that restarts, a load that spikes),
and what to change, resting on every kill read. The series itself (which kills) is
postmortem/series.py's; each kill's own analysis is analysis/result.py's.

A *life* is the time from the workload's (re)start to its kill. With a timeline (record), it starts
at the lowest usage after the previous kill (the restarted process begins small), and its growth
is the least-squares slope of the usage from there to the kill. Without one (import: the log has
only the kernel's report), its length is at most the time since the previous kill (restart delay
included) and its growth is not known.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..model import Capture
from ..units import fmt_bytes

#: lives whose lengths (or growth rates) differ by less than this coefficient of variation are "alike"
ALIKE_CV = 0.35


@dataclass
class KillInSeries:
    number: int  # 1 for the series' first kill
    folder: str
    when: str
    t_s: Optional[float]  # seconds since the series' first kill
    pid: int
    comm: str
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]
    mostly: str  # what filled the limit, in the index's words
    cause: str  # cause_words when analysed, else ``mostly``
    trend: str  # the kill's own trend (analysis/advice.py): leak, plateau, spike, unknown
    life_s: Optional[float] = None
    life_from: str = ""  # "timeline": measured; "previous kill": at most the time since it
    growth_bytes_per_s: Optional[float] = None
    #: the life's usage: (seconds since its start, bytes), from the timeline, the kill last
    points: List[Tuple[float, int]] = field(default_factory=list)
    allocation_sites: int = 0


@dataclass
class SeriesAnalysis:
    workload: str
    named: bool
    kills_total: int
    first: str  # when the series' first and last kills happened
    last: str
    kills: List[KillInSeries]  # those read (the latest ones), oldest first
    pattern: str  # "leak" (a leak that restarts), "spike" (a load that spikes), "unclear"
    pattern_text: str
    same: List[str]
    changed: List[str]
    advice: List[Tuple[str, str]]  # (title, text)
    verdict: str  # what they share, in one line


def _fit(points: Sequence[Tuple[float, int]]) -> Optional[float]:
    """Least-squares slope (bytes per second) of (seconds, bytes)."""
    if len(points) < 2:
        return None
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def life_of(capture: Capture, since_previous_s: Optional[float]) -> Tuple[Optional[float], str, List[Tuple[float, int]], Optional[float]]:
    """(life in seconds, how it is known, its points, growth in bytes/s) of one kill."""
    tl = capture.timelines[0] if capture.timelines else None
    pts = [(p.t_ms / 1000.0, p.usage_bytes) for p in (tl.points if tl else []) if p.usage_bytes is not None and p.t_ms <= 0]
    if since_previous_s is not None:
        pts = [p for p in pts if p[0] >= -since_previous_s]
    if len(pts) >= 2:
        lowest = min(p[1] for p in pts)
        start = next(p[0] for p in pts if p[1] == lowest)
        life = [(t - start, u) for t, u in pts if t >= start]
        if capture.at_kill.usage_bytes is not None and (not life or life[-1][0] < -start):
            life.append((-start, capture.at_kill.usage_bytes))
        if -start > 0:
            return -start, "timeline", life, _fit(life)
    if since_previous_s is not None:
        return since_previous_s, "previous kill", [], None
    return None, "", [], None


def _cv(values: List[float]) -> Optional[float]:
    if len(values) < 2 or statistics.mean(values) <= 0:
        return None
    return statistics.pstdev(values) / statistics.mean(values)


def duration(s: Optional[float]) -> str:
    if s is None:
        return "unknown"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def rate(bps: Optional[float]) -> str:
    if bps is None:
        return "unknown"
    per_min = bps * 60
    sign = "-" if per_min < 0 else ""
    return f"{sign}{fmt_bytes(int(abs(per_min)))}/min"


def analyse_series(series: Any, read: Sequence[Tuple[Any, Capture, Any]],
                   cause_words: Optional[Callable[[Capture, Any], str]] = None) -> SeriesAnalysis:
    """``series``: a postmortem/series.py Series; ``read``: (its SeriesKill, the capture, the
    kill's KillAnalysis or None) of the kills read, oldest first (the latest of the series);
    ``cause_words``: a kill's cause in words (postmortem/cause.py)."""
    numbers = {k.folder: i + 1 for i, k in enumerate(series.kills)}
    t0 = series.first.t
    kills: List[KillInSeries] = []
    for entry, cap, analysis in read:
        n = numbers.get(entry.folder, 0)
        prev = series.kills[n - 2] if n >= 2 else None
        since = (entry.t - prev.t) if prev is not None and entry.t is not None and prev.t is not None else None
        life, how, pts, growth = life_of(cap, since)
        trend = getattr(getattr(analysis, "verdict", None), "trend", "unknown") if analysis is not None else "unknown"
        kills.append(KillInSeries(
            number=n, folder=entry.folder, when=entry.when, t_s=(entry.t - t0) if entry.t is not None and t0 is not None else None,
            pid=entry.pid, comm=entry.comm, usage_bytes=entry.usage_bytes, limit_bytes=entry.limit_bytes, mostly=entry.mostly,
            cause=cause_words(cap, analysis) if analysis is not None and cause_words is not None else (entry.mostly or "not analysed"), trend=trend,
            life_s=life, life_from=how, growth_bytes_per_s=growth, points=pts, allocation_sites=len(cap.allocation_sites)))
    same, changed = _compare(series, kills)
    pattern, pattern_text = _pattern(kills)
    return SeriesAnalysis(workload=series.workload, named=series.named, kills_total=len(series.kills),
                          first=series.first.when, last=series.last.when, kills=kills,
                          pattern=pattern, pattern_text=pattern_text, same=same, changed=changed,
                          advice=_advice(series, kills, pattern), verdict=_shared(kills, pattern))


def _compare(series: Any, kills: List[KillInSeries]) -> Tuple[List[str], List[str]]:
    same: List[str] = []
    changed: List[str] = []
    n = len(series.kills)
    # the limit, over every kill of the series (the index's entries hold it)
    steps = []
    for a, b in zip(series.kills, series.kills[1:]):
        if a.limit_bytes is not None and b.limit_bytes is not None and a.limit_bytes != b.limit_bytes:
            steps.append((a, b))
    limits = [k.limit_bytes for k in series.kills if k.limit_bytes is not None]
    if limits and not steps:
        same.append(f"The limit was {fmt_bytes(limits[0])} at every kill" + ("" if len(limits) == n else " where it is known") + ".")
    for a, b in steps:
        word = "raised" if b.limit_bytes > a.limit_bytes else "lowered"
        changed.append(f"The limit was {word} from {fmt_bytes(a.limit_bytes)} to {fmt_bytes(b.limit_bytes)} between kill "
                       f"{series.kills.index(a) + 1} and kill {series.kills.index(b) + 1}"
                       + (", and the kills went on." if word == "raised" else "."))
    comms = [k.comm for k in series.kills]
    distinct = sorted(set(comms), key=comms.index)
    pids = {k.pid for k in series.kills}
    if len(distinct) == 1:
        same.append(f"The victim was {distinct[0] or '?'} every time"
                    + (" (a new pid each time: a restarted process)." if len(pids) == n else "."))
    else:
        changed.append("A different victim: " + ", ".join(f"{c or '?'} ({comms.count(c)} kills)" for c in distinct) + ".")
    usages = [k.usage_bytes for k in series.kills if k.usage_bytes is not None]
    if usages:
        lo, hi = min(usages), max(usages)
        if hi - lo <= 0.05 * hi:
            same.append(f"Each kill came at the same usage: {fmt_bytes(lo)}" + (f" to {fmt_bytes(hi)}" if hi != lo else "") + ".")
        else:
            changed.append(f"The usage at the kill ranged from {fmt_bytes(lo)} to {fmt_bytes(hi)}.")
    mostly = [k.mostly for k in series.kills if k.mostly]
    if mostly and len(set(mostly)) == 1 and len(mostly) == n:
        same.append(f"Every kill was mostly {mostly[0]}.")
    elif mostly:
        changed.append("What filled the limit differed: " + ", ".join(f"{m} ({mostly.count(m)})" for m in sorted(set(mostly), key=mostly.index)) + ".")
    lives = [k.life_s for k in kills if k.life_s is not None and k.life_from == "timeline"]
    cv = _cv(lives)
    if cv is not None:
        text = (duration(lives[0]) if duration(min(lives)) == duration(max(lives)) else
                f"from {duration(min(lives))} to {duration(max(lives))} (median {duration(statistics.median(lives))})")
        (same if cv < ALIKE_CV else changed).append(f"Each life (restart to kill) lasted {text}.")
    growth = [k.growth_bytes_per_s for k in kills if k.growth_bytes_per_s is not None]
    gcv = _cv(growth)
    if gcv is not None:
        text = rate(growth[0]) if rate(min(growth)) == rate(max(growth)) else f"from {rate(min(growth))} to {rate(max(growth))}"
        (same if gcv < ALIKE_CV else changed).append(f"Usage grew {text} in each life.")
    gaps = [b.t - a.t for a, b in zip(series.kills, series.kills[1:]) if a.t is not None and b.t is not None]
    if gaps:
        same.append(f"A kill every {duration(statistics.median(gaps))}" + ("." if duration(min(gaps)) == duration(max(gaps)) else
                    f" (median; from {duration(min(gaps))} to {duration(max(gaps))})."))
    return same, changed


def _pattern(kills: List[KillInSeries]) -> Tuple[str, str]:
    trends = [k.trend for k in kills if k.trend != "unknown"]
    leak = sum(1 for t in trends if t == "leak")
    spike = sum(1 for t in trends if t in ("spike", "plateau"))
    lives = [k.life_s for k in kills if k.life_s is not None and k.life_from == "timeline"]
    growth = [k.growth_bytes_per_s for k in kills if k.growth_bytes_per_s is not None]
    steady = len(lives) >= 2 and (_cv(lives) or 0) < ALIKE_CV and growth and all(g > 0 for g in growth)
    if trends and leak * 2 > len(trends) or (not trends and steady):
        med_g = statistics.median(growth) if growth else None
        med_l = statistics.median(lives) if lives else None
        return "leak", ("A leak that restarts: each life climbs steadily"
                        + (f" (median {rate(med_g)})" if med_g is not None else "")
                        + (f" until the limit, after about {duration(med_l)}" if med_l is not None else " until the limit")
                        + "; the kill gives the memory back and the restarted process takes it again.")
    if trends and spike * 2 > len(trends):
        return "spike", ("A load that spikes: the kills come after sudden bursts or at a peak, not at the end of a steady "
                         "climb; the lives between them are " + ("irregular." if (_cv(lives) or 0) >= ALIKE_CV else "of similar length."))
    if not trends and not lives:
        return "unclear", ("Not known: the captures hold no timeline (imported from a log): only the kills' times, usages and "
                           "limits are compared.")
    return "unclear", "Neither a steady climb nor a burst in most kills: see each kill's post-mortem."


def _advice(series: Any, kills: List[KillInSeries], pattern: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    n = len(series.kills)
    limits = [k.limit_bytes for k in series.kills if k.limit_bytes is not None]
    raised = any(b > a for a, b in zip(limits, limits[1:]))
    growth = [k.growth_bytes_per_s for k in kills if k.growth_bytes_per_s is not None and k.growth_bytes_per_s > 0]
    if not series.named:
        out.append(("Name the workload first", "These kills have no cgroup in the log (their kernel reports were rate-limited "
                    "away), so they are together only because nothing tells them apart: the kills with a full report, "
                    "in the index, say which workloads died; record (rather than import) names every kill."))
    if pattern == "leak":
        text = "Every life ends at the limit after the same climb: more limit only delays the next kill."
        if growth:
            g = statistics.median(growth)
            text += (f" At {rate(g)}, each extra 100 MiB of limit buys about {duration((100 << 20) / g)} of life "
                     f"before the same kill.")
        if raised:
            text += " The limit was already raised during this series and the kills went on."
        sites = max((k.allocation_sites for k in kills), default=0)
        text += (" The latest post-mortem's allocation sites name the code that held the memory." if sites else
                 " Find what grows (a heap profile of one life, or record's allocation sites near the limit) and fix it; "
                 "until then, a restart before the limit (at a lower usage) trades a kill for a planned restart.")
        out.append(("Fix the leak, not the limit", text))
    elif pattern == "spike":
        peak = max((k.usage_bytes for k in series.kills if k.usage_bytes is not None), default=None)
        text = "The workload needs more than its limit at its peaks."
        if peak:
            text += (f" The highest usage at a kill was {fmt_bytes(peak)}: a limit of at least {fmt_bytes(int(peak * 1.25))} "
                     f"(25% headroom) holds the bursts seen so far, or bound the burst itself (concurrency, batch or queue size).")
        out.append(("Size the limit for the peak, or bound the burst", text))
    mostly = [k.mostly for k in series.kills if k.mostly]
    if mostly and len(set(mostly)) == 1 and len(mostly) == n:
        out.append(("One cause for all of them", f"All {n} kills were mostly {mostly[0]}: the latest kill's post-mortem "
                    f"(its advice, with numbers) speaks for the whole series."))
    if n >= 3:
        out.append(("Alert on the series, not each kill", f"{n} kills of one workload: oomscope_oom_kill_series_total counts "
                    "series, oomscope_oom_kills_total kills; a restart loop shows as one series whose kills keep growing."))
    return out


def _shared(kills: List[KillInSeries], pattern: str) -> str:
    causes = [k.mostly for k in kills if k.mostly]
    words = {"leak": "a leak that restarts", "spike": "a load that spikes"}.get(pattern, "")
    top = max(set(causes), key=causes.count) if causes else ""
    shared = top if causes and causes.count(top) == len(kills) else (f"mostly {top} in {causes.count(top)} of {len(kills)}" if top else "")
    return "; ".join(x for x in (shared, words) if x) or "not known"
