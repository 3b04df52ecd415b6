"""Where ``oomscope import`` reads kernel logs from: files (plain, through mmap, or .gz), stdin,
the running host's /dev/kmsg or its journal. Each is a ``LogSource``: the lines that can belong
to OOM reports (kernel/logscan.py), its name, and what dates its lines (a file's modification
time, the host's boot time). No parsing of reports here: importer/kills.py does it.
"""

from __future__ import annotations

import functools
import mmap
import os
import stat
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

from ..errors import ImportProblem
from ..kernel.kmsg import KmsgReader, kmsg_escape
from ..kernel.logformats import full_date
from ..kernel.logscan import fast_report_regions, region_lines, region_texts, report_lines
from ..terminal import terminal_safe

KMSG = "/dev/kmsg"
JOURNAL = "journalctl -k"


@dataclass
class LogSource:
    lines: Iterator[str]
    name: str
    #: a log file's modification time: no line of it was written later (dates without a year)
    not_after: Optional[float] = None
    #: the wall time of the printk clock's zero (the running host's /dev/kmsg), to date its lines
    boot_wall: Optional[float] = None
    #: a date with its year elsewhere in the log (a plain file's), for dates printed without one
    dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None
    #: a file named on the command line (importer/split.py maps a plain one to read it in two parts)
    path: Optional[str] = None

    @property
    def this_host(self) -> bool:
        """The running host's own log: its cgroups can be named (containers.NodeNames)."""
        return self.name in (KMSG, JOURNAL)


def log_sources(paths: List[str], journal: bool) -> List[LogSource]:
    """The logs an import reads: the journal (--journal), then the files; none named, this host's."""
    sources = [LogSource(journal_lines(), JOURNAL)] if journal else []
    sources += [LogSource(open_log(p), p, not_after=file_mtime(p), dated_by=functools.partial(full_date_of, p),
                          path=p if p != "-" else None) for p in paths]
    if not sources:
        lines, name = host_log()
        # printk's clock runs with CLOCK_MONOTONIC here
        sources.append(LogSource(lines, name, boot_wall=time.time() - time.monotonic() if name == KMSG else None))
    return sources


def open_log(path: str) -> Iterator[str]:
    """The lines of a log file that can belong to OOM reports (kernel/logscan.py): a plain file is
    scanned through mmap, a gzip'd one (by its magic bytes, not its name) and stdin ("-") are
    decompressed or read in blocks and scanned the same way."""
    if path == "-":
        yield from _scan_stream(sys.stdin.buffer, "stdin")
        return
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ImportProblem(f"cannot read {path}: {exc.strerror}") from None
    with f:
        magic = f.read(2)
        f.seek(0)
        if magic == b"\x1f\x8b":
            yield from _scan_stream(_Gunzip(f), path)
            return
        try:
            buf = _map(f.fileno())
        except (OSError, ValueError):  # empty file, or not mappable (a pipe, /proc)
            yield from _scan_stream(f, path)
            return
        with buf:
            yield from report_lines(buf)


class MappedLog:
    """A plain log file mapped, with the regions of its reports (kernel/logscan.py)."""

    def __init__(self, buf: mmap.mmap):
        self.buf = buf
        self.regions: List[Tuple[int, int]] = list(fast_report_regions(buf))

    def lines(self, lo: int = 0, hi: Optional[int] = None) -> Iterator[str]:
        """The lines of regions[lo:hi], as open_log gives them."""
        return region_lines(self.buf, self.regions[lo:hi])

    def texts(self, lo: int = 0, hi: Optional[int] = None) -> Iterator[str]:
        """The text of each of regions[lo:hi] (its lines are those ``lines`` gives)."""
        return region_texts(self.buf, self.regions[lo:hi])

    def close(self) -> None:
        self.buf.close()

    def __enter__(self) -> "MappedLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def map_log(path: str) -> Optional[MappedLog]:
    """A plain file mapped and scanned (as open_log reads it); None for a .gz or what cannot be
    mapped (open_log reads those; a FIFO is not opened here: its bytes are read once)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError:
        pass  # open_log says why it cannot be read
    else:
        return _map_regular(path)
    return None


def _map_regular(path: str) -> Optional[MappedLog]:
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ImportProblem(f"cannot read {path}: {exc.strerror}") from None
    with f:
        if f.read(2) == b"\x1f\x8b":
            return None
        try:
            buf = _map(f.fileno())
        except (OSError, ValueError):  # empty file, or not mappable (a pipe, /proc)
            return None
    try:
        return MappedLog(buf)
    except BaseException:
        buf.close()
        raise


def full_date_of(path: str) -> Optional[Tuple[float, str]]:
    """A date with its year in a plain log file (kernel/logformats.py full_date), read without
    effects; None for stdin, a .gz, what is not a regular file, or a log without one."""
    if path == "-":
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.pread(fd, 2, 0) == b"\x1f\x8b":
            return None
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
            return full_date(buf)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _map(fd: int) -> mmap.mmap:
    """The file mapped private and writable (never written: a private mapping's pages are the
    page cache's until one is written), so that its memory has an address the C library's memmem
    can scan (kernel/logscan.py); read-only where that is refused (strict overcommit counts a
    private writable mapping's size against the commit limit)."""
    try:
        return mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)


def _scan_stream(raw, name: str, block: int = 64 << 20) -> Iterator[str]:
    """Blocks of whole lines from a stream, scanned for reports. A report still open at the end
    of a block (its Killed line is in the next one) is carried over with the partial line."""
    carry = b""
    try:
        while True:
            data = raw.read(block)
            if not data:
                break
            buf = carry + data
            cut = buf.rfind(b"\n") + 1
            whole, carry = buf[:cut], buf[cut:]
            regions = list(fast_report_regions(whole))  # as a file's mmap: report_regions' one regex is 10x slower (2.2 s for a 417 MB journal export)
            if regions and regions[-1][1] == len(whole) and not _ends_a_kill(whole[regions[-1][0]:]):
                carry = whole[regions[-1][0]:] + carry
                regions.pop()
            for s, e in regions:
                yield from whole[s:e].decode("utf-8", "replace").split("\n")  # never splitlines(): U+2028 & co. are text
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or damaged .gz: keep what was read
        sys.stderr.write(f"oomscope: warning: {terminal_safe(f'{name}: {exc}')}; the rest of the file is skipped\n")
    if carry:
        yield from report_lines(carry)


class _Gunzip:
    """A .gz file's bytes, decompressed by zlib in large blocks, its members one after another.
    gzip.GzipFile took 2.4x zcat's time on a 1 GiB log, this about zcat's (issue 18). A file
    cut short raises EOFError at its end, damaged data zlib.error."""

    def __init__(self, f, raw_block: int = 16 << 20):
        self._f = f
        self._raw_block = raw_block
        self._d = zlib.decompressobj(wbits=31)  # a gzip header and trailer

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" only at the end of the file."""
        d = self._d
        while True:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            elif d.eof:  # this member is over: another may follow (cat a.gz b.gz)
                data = d.unused_data or self._f.read(self._raw_block)
                if not data.strip(b"\0"):
                    return b""  # the end (tar and some writers pad with zeros)
                d = self._d = zlib.decompressobj(wbits=31)
            else:
                data = self._f.read(self._raw_block)
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            out = d.decompress(data, n)
            if out:
                return out


def _ends_a_kill(region: bytes) -> bool:
    lines = region.rstrip(b"\n").split(b"\n")
    while len(lines) > 1 and lines[-1].startswith(b" "):  # a record's indented further lines
        lines.pop()
    return b"Killed process" in lines[-1] or b"oom_reaper: reaped process" in lines[-1]


def file_mtime(path: str) -> Optional[float]:
    """A log file's modification time: no line of it was written later (the year of dates printed
    without one); None for stdin and what is not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime if path != "-" and stat.S_ISREG(st.st_mode) else None


def host_log() -> Tuple[Iterator[str], str]:
    """The running host's kernel log: /dev/kmsg from its start, else the journal."""
    try:
        reader = KmsgReader(from_end=False)
    except OSError:
        reader = None
    if reader is not None:
        records = []
        try:
            while True:
                batch = reader.read_available()
                if not batch:
                    break
                records.extend(batch)
        finally:
            reader.close()
        # the records' text is unescaped: escaped again, so that reading it as /dev/kmsg text does
        # not unescape a name's literal "\x0a" a second time
        return iter(f"{(r.facility << 3) | r.level},{r.seq},{r.usec},-;{kmsg_escape(r.text)}" for r in records), KMSG
    try:
        return journal_lines(timeout_s=120), JOURNAL
    except ImportProblem as exc:
        raise ImportProblem(f"cannot read the kernel log: no /dev/kmsg and no journalctl ({exc.__cause__})") from None


def journal_lines(timeout_s: float = 300) -> Iterator[str]:
    """The kernel's messages in the journal, as JSON lines (journalctl -k -o json)."""
    try:
        out = subprocess.run(["journalctl", "-k", "-o", "json", "--no-pager"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImportProblem(f"cannot run journalctl: {exc}") from exc
    return iter(out.stdout.split("\n"))
