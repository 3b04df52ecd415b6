"""Sizes as people type them ("64M", "512MiB", "1G", "1048576")."""

from __future__ import annotations

import re
from typing import Optional

from .errors import OomscopeError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise OomscopeError(f"not a size: {text!r} (examples: 64M, 512MiB, 1G)")
    value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise OomscopeError(f"size must be positive: {text!r}")
    return value


def fmt_bytes(v: Optional[int]) -> str:
    """A size for people: 1.5 MiB, 2.00 GiB; an em dash when unknown."""
    if v is None:
        return "—"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 1 << 30:
        return f"{sign}{v / (1 << 30):.2f} GiB"
    if v >= 1 << 20:
        return f"{sign}{v / (1 << 20):.1f} MiB"
    if v >= 1 << 10:
        return f"{sign}{v / (1 << 10):.0f} KiB"
    return f"{sign}{v} B"


def fmt_pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def within_target(got: int, want: int) -> bool:
    """Two readings of one size agree: equal, or within max(0.5%, 256 KiB) (the kernel snapshot's
    accuracy target, and the capture's test of a memory.stat adding up to its charge)."""
    return abs(got - want) <= max(0.005 * abs(want), 256 << 10)
