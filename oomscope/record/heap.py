"""The recorder's C heap (glibc malloc): at most two arenas, and free pages handed back. Opt-in.

Measured in the soak (bench/soak.py, bench/README.md "Soak", the hour of 2026-12-06, recorders
side by side on one churn): with glibc's defaults the recorder's other arenas (a thread's own
arena, 64 MiB-aligned mappings) grew +4.1 MiB/h after the start-up steps; with ``arenas`` +1.5,
with ``trim`` +1.4. But the two recorders that trimmed missed kernel reports the default one
joined (b: 2 of 715, and 1 kill not recorded at all; c: 1 of 610), so neither is the default:
``malloc_trim`` (called from the sampler thread, every 10 s) holds each arena's lock while it
walks it, and the cause is not yet shown. An hour with growth sites attaching (bench/README.md,
2026-12-06 20:28): defaults +11.0 MiB/h, ``trim`` +11.3, each 715 of 715 kills with the report:
no loss, and no gain either; it stays opt-in. The rest of the growth is Python objects (pymalloc's
arenas, +7 MiB/h with or without this): structures with caps (bench/soak_bounds.py) filling,
and pymalloc keeping an arena while any object in it lives.

``configure()`` runs first thing in the recorder's process, before any thread starts (an arena
limit set later is not applied to arenas already made); ``trim()`` hands every free page of every
arena back to the kernel (``malloc_trim(0)``: madvise(MADV_DONTNEED) on whole free pages, since
glibc 2.8), called by the sampler after a full discovery and by the post-mortem worker when idle,
at most every TRIM_EVERY_S. Where the C library is not glibc (musl has neither call) both do nothing.

A trim never runs while a kill is in flight: the collector passes ``set_busy`` a test (a kill
pending in the joiner, a post-mortem being built), and trim() waits for the next quiet call, since
the collector's allocations wait on the arena lock malloc_trim holds. Each call is timed
(``stats()``: count, skipped, longest, total; a trim over SLOW_TRIM_S is said at once).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from typing import Callable, Dict, Optional

M_ARENA_MAX = -8  # glibc malloc.h
ARENA_MAX = 2
#: trim() does its work at most this often (malloc_trim walks every arena's free chunks)
TRIM_EVERY_S = 10.0

_libc = None
_enabled = False
#: a trim that took longer than this is said on stderr when it ends
SLOW_TRIM_S = 0.1

_last_trim = 0.0
_busy: Optional[Callable[[], bool]] = None
_stats: Dict[str, float] = {"trims": 0, "skipped_busy": 0, "max_s": 0.0, "total_s": 0.0}


def _glibc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def configure(env: Optional[dict] = None) -> bool:
    """OOMSCOPE_MALLOC=arenas: glibc limited to ARENA_MAX arenas, and trim() works; =trim: trim()
    alone. Unset (the default) or anything else: glibc's defaults. False when off or not glibc."""
    global _libc, _enabled
    env = os.environ if env is None else env
    mode = env.get("OOMSCOPE_MALLOC", "").strip().lower()
    _libc = _glibc() if mode in ("arenas", "trim") else None
    if _libc is None:
        _enabled = False
        return False
    _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _libc.malloc_trim.argtypes = [ctypes.c_size_t]
    _enabled = mode == "trim" or bool(_libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    return _enabled


def set_busy(busy: Optional[Callable[[], bool]]) -> None:
    """trim() does nothing while ``busy()`` is true (a kill in flight)."""
    global _busy
    _busy = busy


def stats() -> Dict[str, float]:
    """Trims run, trims put off because a kill was in flight, the longest and total seconds."""
    return dict(_stats)


def trim(now: Optional[float] = None, err=None) -> bool:
    """Give free heap pages back to the kernel, at most every TRIM_EVERY_S and never while
    busy(); True if it ran."""
    global _last_trim
    if not _enabled or _libc is None:
        return False
    now = time.monotonic() if now is None else now
    if now - _last_trim < TRIM_EVERY_S:
        return False
    if _busy is not None and _busy():
        _stats["skipped_busy"] += 1
        return False
    _last_trim = now
    t0 = time.monotonic()
    _libc.malloc_trim(0)
    took = time.monotonic() - t0
    _stats["trims"] += 1
    _stats["total_s"] += took
    _stats["max_s"] = max(_stats["max_s"], took)
    if took > SLOW_TRIM_S:
        err = sys.stderr if err is None else err
        err.write(f"oomscope: heap: malloc_trim took {took * 1000:.0f} ms\n")
        err.flush()
    return True
