"""The cause of a kill in a few plain words, for record's line per kill and its JSON log line:
made in the post-mortem stage (postmortem/stage.py), from the one analysis (analysis/verdict.py), so the line and the
page never disagree."""

from __future__ import annotations

from typing import Any

from ..model import Capture


def cause_words(c: Capture, analysis: Any) -> str:
    """The cause in a few plain words, from the one analysis (analysis/verdict.py): what filled
    the limit (the largest categories with their shares), other processes when they held a large
    share, and the trend when it is known."""
    v, a = getattr(analysis, "verdict", None), getattr(analysis, "attribution", None)
    if v is None or a is None:  # no analysis (or only its categories)
        return ", ".join(getattr(analysis, "top_categories", None) or []) or "not analysed"
    if v.kind == "host":
        return "the host ran out of memory (no cgroup limit was hit)"
    if v.kind == "throttle" and c.throttle is not None:
        return (f"throttled at memory.high for {c.throttle.duration_s:.0f} s, stalled {100 * c.throttle.share:.0f}% "
                "of it (no kill)")
    if v.kind == "userspace":
        k = c.killer
        return (f"killed from user space by {k.known_as or k.comm or 'an unknown process'} ({k.signal})"
                + (f": {k.pressure_met[0]}" if k.pressure_met else ""))
    # "anon_thp" is anonymous memory mostly in huge pages: the anon category, said so
    keys = ["anon" if k == "anon_thp" else k for k in a.top_categories]
    tops = sorted((x for x in a.categories if x.key in keys), key=lambda x: keys.index(x.key))
    huge = "anon_thp" in a.top_categories

    def label(x) -> str:
        text = x.label[:1].lower() + x.label[1:]
        return text[:-1] + "; mostly in huge pages)" if huge and x.key == "anon" and text.endswith(")") else text
    words = [f"{label(x)} {100 * x.share_of_usage:.0f}%" for x in tops if x.share_of_usage is not None]
    # a JVM's "heap" above is the process's, not the Java heap: say where a JVM's memory was
    shown = getattr(analysis, "shown", None)
    for j in getattr(shown, "java", None) or []:
        native = next((p.bytes for p in j.parts if p.key == "native"), 0)
        if j.is_victim and a.usage_bytes and native >= 0.25 * a.usage_bytes:
            words.append(f"native memory outside the Java heap {100 * native / a.usage_bytes:.0f}%")
    if "other_processes" in v.categories and a.usage_bytes:
        held = next((p.bytes for p in a.reconciliation if p.key == "other_processes"), 0)
        words.append(f"other processes held {100 * held / a.usage_bytes:.0f}%")
    if v.trend == "leak":
        words.append("rising steadily (a leak)")
    elif v.trend in ("plateau", "spike"):
        words.append("a peak" if v.trend == "plateau" else "a sudden burst")
    if not words:
        return "the limit was hit; what filled it is not in the capture" if v.kind == "limit" else "unknown"
    return ", ".join(words)
