"""Finding the OOM reports in a large log without reading every line in Python.

A log of a busy host is mostly other messages (in a fleet's logs, OOM reports are a few percent
of the lines). A ``for line in file`` loop tops out near 0.4 GB/s here, while one compiled regex
over an mmap of the file runs near 3 GB/s (measured, issue 7). So: scan the bytes for the lines
a report is made of, cut out the regions from a report's first line to its ``Killed process``
line, and hand only those to the line parsers (kernel/logformats.py, kernel/kmsg.py).

A region opens at ``invoked oom-killer`` (or, for a report whose start is missing, at its first
cgroup line) and closes at the ``Killed process`` or ``oom_reaper`` line that ends the kill;
OOM reports never interleave with each other (oom_lock, mm/oom_kill.c).

Two scanners give the same regions (tested on every fixture):
- ``report_regions``: one regex over every anchor, run only on the lines that hold one of three
  literals every anchor contains (found with ``bytes.find``): an alternation of literals over
  the whole text loses the regex engine's fast literal search (~200 MB/s here).
- ``fast_report_regions``: finds only ``Killed process`` (every kill prints it) with the C
  library's ``memmem`` where it can be called (``_Finder``: 0.21-0.24 s of CPU for a 1 GiB log
  here, against 0.40-0.41 s for ``bytes.find``, whose skip table is a 64-bit bloom that every
  lower-case letter of a log hits; grep -c: 0.26 s; measured for issue 29), else ``bytes.find``,
  then looks *backwards* from each for its header within the gap since the previous kill, and
  for a kill with no header (rate-limited, or a log cut at the report's start) for its cgroup
  lines within the 256 KiB before it. Text after the last kill (a report
  whose Killed line is missing or cut off) goes through ``report_regions``.

An ``oom-kill:`` summary without its Killed line (a ``grep oom-kill`` excerpt) is a kill of
its own for import, found where ``report_regions`` reads: a log with no Killed line at all, or
after the last one. Between two kills of a large log it is not looked for: that would be a second
pass over the gaps, most of a quiet log (issue 18: within 3x grep).
"""

from __future__ import annotations

import ctypes
import re
from typing import Callable, Iterable, Iterator, Optional, Tuple

_ANCHOR = re.compile(
    rb"invoked oom-killer|Killed process|oom_reaper: reaped process|killed as a result of limit of"
    rb"|Memory cgroup stats for|memory: usage|memory\.oom\.group set|oom-kill:|or sacrifice child"
)
_ENDS = (b"Killed process", b"oom_reaper: reaped process")


def _past_continuations(buf, line_end: int, n: int) -> int:
    """The end of a record: dmesg prints a record's further lines indented under it (a comm or a
    cgroup name with a newline in it), and they belong to the same record."""
    while line_end < n and buf[line_end:line_end + 1] == b" ":
        nxt = buf.find(b"\n", line_end)
        line_end = n if nxt < 0 else nxt + 1
    return line_end


#: every anchor holds one of these: bytes.find runs near memory speed, the alternation above at
#: ~200 MB/s (measured, issue 18: a gzip'd or piped log is scanned in blocks, and the text after a
#: block's last kill, most of a quiet log, went through the regex)
_PREFILTER = (b"oom", b"emory", b"illed")


def _anchors(buf) -> Iterator["re.Match[bytes]"]:
    """The anchors' matches, in order: the regex runs only on the lines that hold a prefilter literal."""
    n = len(buf)
    pos = 0
    nxt = {lit: buf.find(lit) for lit in _PREFILTER}
    while True:
        found = [p for p in nxt.values() if p >= 0]
        if not found:
            return
        at = min(found)
        line_start = max(pos, buf.rfind(b"\n", 0, at) + 1)
        line_end = buf.find(b"\n", at)
        line_end = n if line_end < 0 else line_end + 1
        yield from _ANCHOR.finditer(buf, line_start, line_end)
        pos = line_end
        for lit, p in nxt.items():
            if 0 <= p < pos:
                nxt[lit] = buf.find(lit, pos)


def report_regions(buf) -> Iterator[Tuple[int, int]]:
    """(start, end) byte offsets of whole lines that hold OOM reports, in order."""
    start = None
    n = len(buf)
    for m in _anchors(buf):
        kind = m.group()
        line_start = buf.rfind(b"\n", 0, m.start()) + 1
        if start is not None and line_start < start:
            continue  # another anchor on a line already inside the region
        line_end = buf.find(b"\n", m.end())
        line_end = n if line_end < 0 else line_end + 1
        if kind in _ENDS:
            line_end = _past_continuations(buf, line_end, n)
            yield (line_start if start is None else start, line_end)
            start = None
        elif kind == b"invoked oom-killer":
            if start is not None and start < line_start:
                yield (start, line_start)  # a report cut short by the next one
            start = line_start
        elif start is None:
            start = line_start
    if start is not None:
        yield (start, n)


_KILLED = b"Killed process"
_HEADER = b"invoked oom-killer"
#: before 4.19 "<message>: Kill process N (comm) score S or sacrifice child" came just before the
#: Killed line, and only it says whether a bare kill was a cgroup's or the host's
_HEADLESS = (b"killed as a result of limit of", b"memory: usage", b"Memory cgroup stats for", b"memory.oom.group set", b"oom-kill:",
             b"or sacrifice child")
HEADLESS_WINDOW = 256 << 10


def _libc_memmem() -> Optional[Callable]:
    try:
        fn = ctypes.CDLL(None).memmem  # glibc and musl both have it
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return fn


_MEMMEM = _libc_memmem()


class _Finder:
    """``buf.find(needle, start)`` by the C library's memmem when ``buf``'s memory can be
    addressed (bytes, a bytearray, a writable or private mmap), else by ``buf.find``. The address
    is held only while the finder is open (a buffer with an export cannot be closed or resized)."""

    def __init__(self, buf):
        self.buf = buf
        self.n = len(buf)
        self._ref = None
        self.base = 0
        if _MEMMEM is None or not self.n:
            return
        try:
            if isinstance(buf, bytes):
                self._ref = ctypes.c_char_p(buf)  # the bytes' own memory, not a copy
                self.base = ctypes.cast(self._ref, ctypes.c_void_p).value or 0
            else:
                self._ref = ctypes.c_char.from_buffer(buf)  # a writable buffer (a read-only mmap is not)
                self.base = ctypes.addressof(self._ref)
        except (TypeError, ValueError, BufferError):
            self._ref, self.base = None, 0

    def find(self, needle: bytes, start: int) -> int:
        if not self.base or start >= self.n:
            return self.buf.find(needle, start)
        start = max(start, 0)
        hit = _MEMMEM(self.base + start, self.n - start, needle, len(needle))
        return hit - self.base if hit else -1

    def close(self) -> None:
        self._ref, self.base = None, 0


def fast_report_regions(buf) -> Iterator[Tuple[int, int]]:
    finder = _Finder(buf)
    try:
        yield from _fast_report_regions(buf, finder)
    finally:
        finder.close()


def _fast_report_regions(buf, finder: _Finder) -> Iterator[Tuple[int, int]]:
    n = len(buf)
    prev_end = 0
    at = finder.find(_KILLED, 0)
    while at >= 0:
        line_start = buf.rfind(b"\n", 0, at) + 1
        line_end = buf.find(b"\n", at)
        line_end = _past_continuations(buf, n if line_end < 0 else line_end + 1, n)
        if line_start >= prev_end:
            header = buf.rfind(_HEADER, prev_end, line_start)
            if header >= 0:
                start = buf.rfind(b"\n", 0, header) + 1
            else:
                lo = max(prev_end, line_start - HEADLESS_WINDOW)
                found = [p for p in (buf.find(a, lo, line_start) for a in _HEADLESS) if p >= 0]
                start = buf.rfind(b"\n", 0, min(found)) + 1 if found else line_start
                start = max(start, prev_end)
            yield (start, line_end)
            prev_end = line_end
        at = finder.find(_KILLED, line_end)
    if prev_end < n:
        for s, e in report_regions(buf[prev_end:]):
            yield (prev_end + s, prev_end + e)


def report_lines(buf, fast: bool = True) -> Iterator[str]:
    """The lines of every report region, decoded (invalid UTF-8 replaced)."""
    return region_lines(buf, (fast_report_regions if fast else report_regions)(buf))


def region_lines(buf, regions: Iterable[Tuple[int, int]]) -> Iterator[str]:
    """The lines of these regions of ``buf``, decoded (invalid UTF-8 replaced)."""
    for text in region_texts(buf, regions):
        yield from text.split("\n")  # never splitlines(): U+2028 & co. are text


def region_texts(buf, regions: Iterable[Tuple[int, int]]) -> Iterator[str]:
    """The text of each of these regions of ``buf``, decoded (invalid UTF-8 replaced)."""
    for s, e in regions:
        yield bytes(buf[s:e]).decode("utf-8", "replace")
