"""The recorder's C heap (glibc malloc): at most two arenas, and free pages handed back. Opt-in.

Measured in the soak (bench/soak.py, bench/README.md "Soak", the hour of 2026-12-06, recorders
side by side on one churn): with glibc's defaults the recorder's other arenas (a thread's own
arena, 64 MiB-aligned mappings) grew +4.1 MiB/h after the start-up steps; with ``arenas`` +1.5,
with ``trim`` +1.4. But the two recorders that trimmed missed kernel reports the default one
joined (b: 2 of 715, and 1 kill not recorded at all; c: 1 of 610), so neither is the default:
``malloc_trim`` (called from the sampler thread, every 10 s) holds each arena's lock while it
walks it, and the cause is not yet shown. The rest of the growth is Python objects (pymalloc's
arenas, +7 MiB/h with or without this): structures with caps (bench/soak_bounds.py) filling,
and pymalloc keeping an arena while any object in it lives.

``configure()`` runs first thing in the recorder's process, before any thread starts (an arena
limit set later is not applied to arenas already made); ``trim()`` hands every free page of every
arena back to the kernel (``malloc_trim(0)``: madvise(MADV_DONTNEED) on whole free pages, since
glibc 2.8), called by the sampler after a full discovery and by the post-mortem worker when idle,
at most every TRIM_EVERY_S. Where the C library is not glibc (musl has neither call) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from typing import Optional

M_ARENA_MAX = -8  # glibc malloc.h
ARENA_MAX = 2
#: trim() does its work at most this often (malloc_trim walks every arena's free chunks)
TRIM_EVERY_S = 10.0

_libc = None
_enabled = False
_last_trim = 0.0


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


def trim(now: Optional[float] = None) -> bool:
    """Give free heap pages back to the kernel, at most every TRIM_EVERY_S; True if it ran."""
    global _last_trim
    if not _enabled or _libc is None:
        return False
    now = time.monotonic() if now is None else now
    if now - _last_trim < TRIM_EVERY_S:
        return False
    _last_trim = now
    _libc.malloc_trim(0)
    return True
