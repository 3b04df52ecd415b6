"""/proc/<pid>/pagemap: which of a process's pages are present now (Documentation/admin-guide/mm/pagemap.rst).

One 64-bit entry per virtual page: bit 63 present, bit 62 swapped, bit 61 file-page or shared
anonymous, bits 0-54 the frame number (zero without CAP_SYS_ADMIN since 4.2: not needed here).
Readable by root (PTRACE_MODE_READ) while the process lives; nothing in the process changes.

``parse_entries`` is pure; ``residency`` reads the entries of a list of pages, coalescing pages
that lie close together into one read, with bounds on the reads and bytes.
"""

from __future__ import annotations

import os
import struct
from typing import Dict, Iterable, List, Tuple

__all__ = ["PRESENT", "SWAPPED", "FILE_OR_SHARED", "parse_entries", "residency", "MAX_READ_BYTES", "MAX_READS"]

PRESENT = 1 << 63
SWAPPED = 1 << 62
FILE_OR_SHARED = 1 << 61
ENTRY = 8
#: pages closer than this (in pages) are read in one pread: 32 entries = 256 bytes of pagemap (at
#: most 8 MiB read for the 32,768 sampled pages, however sparse)
GAP_PAGES = 32
#: a run read at once is at most this many entries (64 KiB of pagemap)
MAX_RUN_PAGES = 8192
#: at most this many bytes and reads of pagemap per call (a sampled page each: 32,768 pages at most)
MAX_READ_BYTES = 4 << 20
MAX_READS = 40_000

# page states
ABSENT, ANON, FILE, SWAP = 0, 1, 2, 3


def parse_entries(data: bytes) -> List[int]:
    """The entries of a pagemap read, as integers (a trailing partial entry is dropped)."""
    n = len(data) // ENTRY
    return list(struct.unpack(f"<{n}Q", data[: n * ENTRY]))


def state_of(entry: int) -> int:
    """ANON (present, private anonymous), FILE (present, file-backed or shared), SWAP or ABSENT."""
    if entry & PRESENT:
        return FILE if entry & FILE_OR_SHARED else ANON
    if entry & SWAPPED:
        return SWAP
    return ABSENT


def _runs(pages: List[int], page_size: int) -> List[Tuple[int, int]]:
    """Sorted page numbers grouped into (first page number, count) runs to read."""
    runs: List[Tuple[int, int]] = []
    for pn in pages:
        if runs and pn - (runs[-1][0] + runs[-1][1] - 1) <= GAP_PAGES and pn - runs[-1][0] < MAX_RUN_PAGES:
            runs[-1] = (runs[-1][0], pn - runs[-1][0] + 1)
        else:
            runs.append((pn, 1))
    return runs


def residency(pid: int, addresses: Iterable[int], page_size: int = 4096, proc: str = "/proc") -> Dict[int, int]:
    """{page address: state} for the pages of ``addresses`` in ``pid``, read now. Pages not read
    (the bounds, the process gone) are missing from the result."""
    pages = sorted({a // page_size for a in addresses if 0 <= a < (1 << 57)})
    out: Dict[int, int] = {}
    if not pages:
        return out
    try:
        fd = os.open(f"{proc}/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return out
    try:
        budget, reads = MAX_READ_BYTES, 0
        wanted = set(pages)
        for first, count in _runs(pages, page_size):
            size = count * ENTRY
            if size > budget or reads >= MAX_READS:
                break
            try:
                data = os.pread(fd, size, first * ENTRY)
            except OSError:
                continue  # a hole the kernel refuses: the pages stay unknown
            budget -= size
            reads += 1
            for i, entry in enumerate(parse_entries(data)):
                pn = first + i
                if pn in wanted:
                    out[pn * page_size] = state_of(entry)
    finally:
        os.close(fd)
    return out
