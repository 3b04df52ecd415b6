"""Giving back what compiling the BPF programs left in the recorder (bench/README.md, "A lean
recorder", measured on this host: 226 MiB resident before, of which 68 MiB heap and 81 MiB of
libLLVM and libclang-cpp mapped).

- ``trim_heap``: the compile frees most of what it allocated, but glibc keeps freed heap for
  reuse; malloc_trim(3) returns it to the kernel (28 MiB here).
- ``drop_compiler_pages``: LLVM and clang are used only to compile (bcc links them, so they stay
  mapped: dlclose cannot unload them). Their pages that were never written are the file's own
  content: MADV_DONTNEED unmaps them from the recorder, and an access that still needs one (a
  later compile) faults it back in from the page cache (mm/madvise.c; a private file mapping is
  "repopulated from the underlying mapped file"). A mapping with any written (copied, anonymous)
  page, or that is writable, is left alone: dropping it would lose the copy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import List, Optional, Tuple

MADV_DONTNEED = 4
COMPILER_LIBS = ("libLLVM", "libclang")


def _libc() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def trim_heap() -> bool:
    """malloc_trim(0): True when glibc gave memory back (False too on a libc without it)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    return bool(libc.malloc_trim(0))


def clean_file_mappings(smaps: str, names=COMPILER_LIBS) -> List[Tuple[int, int, str]]:
    """(start, length, path) of the mappings of files whose name contains one of ``names``,
    read-only and without one anonymous (written) page, from /proc/PID/smaps text."""
    out: List[Tuple[int, int, str]] = []
    current = None
    for line in smaps.split("\n"):
        first = line.split(None, 1)[0] if line else ""
        if "-" in first and not first.endswith(":"):
            if current is not None and current[3]:
                out.append(current[:3])
            parts = line.split()
            path = parts[5] if len(parts) >= 6 else ""
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            keep = "w" not in parts[1] and any(n in path.rsplit("/", 1)[-1] for n in names)
            current = (lo, hi - lo, path, keep)
        elif current is not None and first == "Anonymous:" and int(line.split()[1]) != 0:
            current = current[:3] + (False,)
    if current is not None and current[3]:
        out.append(current[:3])
    return out


def drop_compiler_pages() -> int:
    """Unmaps the never-written pages of LLVM and clang from this process; returns the bytes of
    mappings dropped (they fault back in if used again)."""
    libc = _libc()
    if libc is None:
        return 0
    try:
        with open("/proc/self/smaps") as f:
            maps = clean_file_mappings(f.read())
    except OSError:
        return 0
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    dropped = 0
    for start, length, _path in maps:
        if libc.madvise(start, length, MADV_DONTNEED) == 0:
            dropped += length
    return dropped
