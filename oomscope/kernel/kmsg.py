"""The kernel log as /dev/kmsg gives it: records, their escapes, and reading them.

Parsers are pure: text in, records out. ``KmsgReader`` and ``KmsgFollower`` are the thin I/O part.
The kernel's OOM report read from these records is in kernel/oom_report.py, which imports this
module (never the other way round).

A /dev/kmsg read returns one *record*: ``prio,seq,usec,flags[,...];text`` followed by optional
`` KEY=value`` lines (each starting with a space). The record's own newlines, like every byte
below 0x20, from 0x7f up, and the backslash, are escaped as ``\\xNN`` (devkmsg_read() in
kernel/printk/printk.c). A record can hold several lines: Debian's 6.1 (cgroup v2) prints the whole
memory.stat block of an OOM report as one record, while 6.18's v1 path prints one record per line
(docs/kernel-facts.md). A record is kept whole here: kernel/oom_report.py splits only the records that
are blocks of data lines, so a name that holds a newline neither forges a report line nor hides one.

Lines are split on ``\\n`` only, never with ``str.splitlines``, which also splits on U+2028,
U+2029, U+0085, U+001C-U+001E, VT, FF and CR: characters a cgroup or process name may hold.
"""

from __future__ import annotations

import errno
import os
import re
import time
from typing import List, NamedTuple, Optional

# --- records --------------------------------------------------------------------------------


class KmsgRecord(NamedTuple):
    """One kernel log record. A NamedTuple: imports make one per log line (measured: a frozen
    dataclass took a third of the time of reading a report's lines)."""

    level: int
    facility: int
    seq: int
    usec: int  # microseconds since boot (the printk clock)
    text: str  # newlines unescaped: may hold several lines

    def lines(self) -> List[str]:
        return self.text.split("\n")


_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    """/dev/kmsg's ``\\xNN`` escapes are bytes: a UTF-8 name (``/caf\\xc3\\xa9``) is decoded as
    UTF-8 (``/café``); bytes that are not UTF-8 stay visible as ``\\xNN``."""
    if "\\x" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "backslashreplace")


def kmsg_escape(text: str) -> str:
    """A record's text as /dev/kmsg gives it (the inverse of ``_unescape``): backslash, control
    characters and DEL as ``\\xNN``. Text that is unescaped again must be escaped again first, or a
    name holding a literal ``\\x1b`` or ``\\x0a`` would become an ESC or a newline."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(f"\\x{ord(ch):02x}" if ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7f else ch for ch in text)


def parse_record(raw: str) -> Optional[KmsgRecord]:
    """One /dev/kmsg record (as one read returns it) → KmsgRecord, or None if it is not one."""
    head, sep, rest = raw.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    if len(fields) < 3:
        return None
    try:
        prio = int(fields[0])
        seq = int(fields[1])
        usec = int(fields[2])
    except ValueError:
        return None
    if not (0 <= prio < 1 << 31 and 0 <= seq < 1 << 64 and 0 <= usec < 1 << 64):
        return None  # no kernel numbers its records so
    # The message is everything up to the first newline; the dictionary lines that follow
    # (" SUBSYSTEM=...", " DEVICE=...") are metadata, not text.
    message = rest.split("\n", 1)[0]
    return KmsgRecord(level=prio & 7, facility=prio >> 3, seq=seq, usec=usec, text=_unescape(message))


def parse_kmsg_dump(text: str) -> List[KmsgRecord]:
    """A file of records as ``cat /dev/kmsg`` writes them (one per line, dict lines indented)."""
    records = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line or line.startswith(" "):
            continue
        rec = parse_record(line)
        if rec is not None:
            records.append(rec)
    return records


class KmsgReader:
    """Reads records from /dev/kmsg. Non-blocking; survives the ring buffer wrapping (EPIPE)."""

    def __init__(self, path: str = "/dev/kmsg", from_end: bool = True):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.lost_records = 0  # records overwritten before we read them
        self._last_seq: Optional[int] = None
        if from_end:
            os.lseek(self.fd, 0, os.SEEK_END)

    def fileno(self) -> int:
        return self.fd

    def read_available(self, limit: int = 100000) -> List[KmsgRecord]:
        out = []
        for _ in range(limit):
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    # The kernel overwrote records we had not read yet; the next read returns the
                    # oldest record still there. Count the gap from the sequence numbers.
                    continue
                if exc.errno == errno.EINVAL:  # a record longer than our buffer
                    continue
                raise
            if not raw:
                break
            rec = parse_record(raw.decode("utf-8", "replace"))
            if rec is None:
                continue
            if self._last_seq is not None and rec.seq > self._last_seq + 1:
                self.lost_records += rec.seq - self._last_seq - 1
            self._last_seq = rec.seq
            out.append(rec)
        return out

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class KmsgFollower:
    """Follows /dev/kmsg in its own thread, so that slow work elsewhere (writing post-mortems)
    never makes the reader fall behind: the kernel's log buffer (128 KiB on this project's
    machines) wraps within seconds in an OOM storm (docs/kernel-facts.md).

    ``take()`` returns the records read since the last call. At most ``max_pending`` records are
    held; beyond that the oldest are dropped and counted in ``dropped``.
    """

    def __init__(self, reader: "KmsgReader", interval_s: float = 0.01, max_pending: int = 500_000):
        import collections
        import threading

        self.reader = reader
        self.interval_s = interval_s
        self.dropped = 0
        self._pending: "collections.deque[KmsgRecord]" = collections.deque()
        self._max = max_pending
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: Optional[BaseException] = None
        #: CLOCK_MONOTONIC by which the thread promises to be back (record/watchdog.py reads it)
        self.due_ns = 0
        self._thread = threading.Thread(target=self._run, name="kmsg", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        # Sleep in poll() until the kernel logs something: waking every 10 ms to find nothing was
        # 0.6% of a core, two thirds of an idle record's CPU (measured). After a wake-up the wait
        # below lets a report's ~60 records arrive, so a storm is read in batches.
        poller = select.poll()
        poller.register(self.reader.fileno(), select.POLLIN | select.POLLPRI)
        while not self._stop.is_set():
            self.due_ns = time.monotonic_ns() + 250_000_000
            try:
                if not poller.poll(250):
                    continue  # nothing logged; look at the stop flag again
                records = self.reader.read_available()
            except OSError as exc:  # keep the collector alive; say it once
                self.error = exc
                return
            if records:
                with self._lock:
                    self._pending.extend(records)
                    while len(self._pending) > self._max:
                        self._pending.popleft()
                        self.dropped += 1
            self._stop.wait(self.interval_s)

    def take(self) -> List[KmsgRecord]:
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    @property
    def thread(self):
        return self._thread

    @property
    def lost_records(self) -> int:
        return self.reader.lost_records + self.dropped

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.reader.close()
