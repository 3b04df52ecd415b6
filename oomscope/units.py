"""Sizes as people type them ("64M", "512MiB", "1G", "1048576")."""

from __future__ import annotations

import re

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
