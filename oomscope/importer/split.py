"""A large log read by two processes (issue 29: a storm's parse is the import's time, ~2 s of one
core for 4,446 kills, and this machine has two; bench/README.md has the figures).

The log's report regions (kernel/logscan.py) are cut in two at a report's header: this process
reads the first part as ever (importer/run.py), a forked one the second, and writes its kills
itself. What a reader carries from one line to the next (the year of a yearless syslog, the
made-up clock of undated lines, the record count, the parser's state, the lines dated by their
printk time) is the second process's to know exactly: it reads the first part too, for that
state alone (state_at: the lines skimmed up to the first part's last header, the parser from
there), then its own part with it: its kills are those the log read at one go gives
(tests/unit/test_import_split.py). A header ends every group kill (kernel/oom_report.py: the
parser forgets the last group), so the first part's kills are complete at the cut: this process
gives them out without waiting.

If the second part does not begin with a header after all (a line that only looks like one, or
one a parser in another state could read otherwise), the worker says so before writing anything,
and this process reads the second part itself, on from its own state. If the worker dies, the
kills it said it wrote are kept and this process reads the second part for the rest (a batch
written but not said is written again: its kills' folders get a suffix, nothing is lost).
Two kills of the same id (the same pid at the same microsecond: a log pasted twice) on both sides
of the cut may swap their folder names (``<id>``, ``<id>.1``): both processes make folders at once.

The worker's outcome is a file of pickled records (a temporary file, not a pipe: nothing waits
on the reader), read once the worker has ended: per batch the kills made (kill id, the line that
says it, its index row and series entry, or why it was skipped) and what the writer did with
each, then ("end", kills read, the read problems). Whether it reads the second part at all is
said at once through a pipe (one byte).
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import tempfile
import threading
import time
from typing import IO, Any, Iterator, List, Optional, Tuple

from ..postmortem.index import index_parts
from ..terminal import terminal_safe
from .kills import KillReader, NotAHeader

#: a log whose report regions hold less than this is read by one process (~300 kills, ~0.15 s of
#: reading here: the fork and the second process's own start cost ~10 ms; the storm's 4,446 kills are ~14 MB)
SPLIT_MIN_BYTES = 1 << 20
#: the share of the regions' bytes this process reads: the worker reads the first part too, for its
#: state, at ~45% of the cost of reading it (measured for issue 29), and writes its own kills in its
#: own time, while this process's are written by the writer process beside it. 0.45 against 0.6,
#: the same code paired (issue 29, fifth pass, load ~3, 2 x 7 runs): the storm's wall 1.17x and
#: 1.21x, CPU 0.99x. Since the worker reads by regions (eighth pass) it ended ~0.4 s before this
#: process at 0.6 (each process's end timed, 3 runs each, ninth pass); at 0.55 0.10-0.21 s before
#: it, at 0.5 0.10-0.16 s (this process then says the worker's kills and renders the end's pages,
#: ~0.2 s). The storm paired against 0.6, 11 runs, load 0.6-1.5: 0.5 wall 0.947, 0.55 0.928, alike
#: within the noise (bench/README.md): 0.5, the even cut, of two alike
SPLIT_SHARE = 0.5
_HEADER = b"invoked oom-killer"
#: kills the worker writes between two flushes (as importer/run.py)
_BATCH_KILLS = 256
_BATCH_SECONDS = 1.0


def can_fork() -> bool:
    """A process can be forked here, no thread of this one would be copied half-way (the worker
    is forked before the writer process and any thread), and there is a second CPU to run it on:
    on one, the worker's skim of the first part and its start are only more work for the same core."""
    return hasattr(os, "fork") and threading.active_count() == 1 and cpus() > 1


def cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's cpuset, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split_point(buf, regions: List[Tuple[int, int]], share: Optional[float] = None, min_bytes: Optional[int] = None) -> Optional[int]:
    """The index of the region where the second part begins: the first at or after ``share`` of
    the regions' bytes whose first line holds a report's header; None when the log is too small
    or has no such region after the first."""
    share = SPLIT_SHARE if share is None else share
    min_bytes = SPLIT_MIN_BYTES if min_bytes is None else min_bytes
    total = sum(e - s for s, e in regions)
    if total < min_bytes or len(regions) < 2:
        return None
    want = total * share
    done = 0
    for k, (s, e) in enumerate(regions):
        if k > 0 and done >= want and starts_a_report(buf, s, e):
            return k
        done += e - s
    return None


def starts_a_report(buf, s: int, e: int) -> bool:
    """The region's first line holds a header and does not continue the line before (an indented line)."""
    nl = buf.find(b"\n", s, e)
    first = buf[s:e if nl < 0 else nl]
    return _HEADER in first and first[:1] not in (b" ", b"")


class Worker:
    """The second part's reader and writer, in a forked process (see the module)."""

    def __init__(self, mapped, k: int, reader_args: dict, output: str, write_batch):
        self.pid = 0
        self._status: Optional[int] = None  # its wait status, once ended() saw it end
        self._out: Optional[IO[bytes]] = tempfile.TemporaryFile(prefix="oomscope-import-")
        try:
            self._said, said = os.pipe()
        except OSError:
            self._out.close()
            raise
        try:
            pid = os.fork()
        except OSError:
            self._out.close()
            os.close(self._said)
            os.close(said)
            raise
        if pid == 0:  # the worker: never back into the caller
            code = 0
            try:
                os.close(self._said)
                _work(self._out, said, mapped, k, reader_args, output, write_batch)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(said)
        self.pid = pid

    def verdict(self) -> bool:
        """Whether the worker reads the second part (it begins with a header): True; False when
        it does not, or the worker ended before saying (it then wrote nothing)."""
        if self._said < 0:
            return False
        try:
            said = os.read(self._said, 1)
        except OSError:
            said = b""
        os.close(self._said)
        self._said = -1
        return said == b"1"

    def ended(self) -> bool:
        """Whether the worker has ended (not waited for: wait() says how)."""
        if not self.pid or self._status is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False
        self._status = status
        return True

    def wait(self) -> Optional[int]:
        """Waits for the worker's end: its exit status (None: it was already waited for)."""
        if not self.pid:
            return None
        status = self._status
        if status is None:
            _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        self._status = None
        return os.waitstatus_to_exitcode(status)

    def records(self) -> Iterator[Any]:
        """The worker's records, once it has ended; those of a worker cut short end where it died."""
        f = self._out
        if f is None:
            return
        f.seek(0)
        while True:
            try:
                yield pickle.load(f)
            except (EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError, IndexError):
                return

    def stop(self) -> None:
        """Ends the worker (the import failed, or is over) and closes its file."""
        if self._said >= 0:
            os.close(self._said)
            self._said = -1
        if self.pid:
            if not self.ended():  # a pid reaped by ended() may be another's now
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


def _work(out: IO[bytes], said: int, mapped, k: int, reader_args: dict, output: str, write_batch) -> None:
    def record(obj) -> None:
        pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)

    reader = state_at(mapped, k, reader_args)
    problems: List[str] = []
    reader.problems = problems
    kills = reader.read_regions(mapped.texts(k), first_is_header=True)
    try:
        first = next(kills, None)
    except NotAHeader:
        os.write(said, b"0")
        return
    os.write(said, b"1")  # at once: the caller waits on it once its own part is read
    os.close(said)
    found = 0
    made: List[tuple] = []
    items: List[Tuple[str, str]] = []
    last = time.monotonic()

    def flush() -> None:
        nonlocal made, items, last
        results, flush_error = write_batch(output, items) if items else ([], None)
        record(("batch", made, results, flush_error))
        out.flush()
        made, items, last = [], [], time.monotonic()

    for imp in itertools.chain([first] if first is not None else [], kills, reader.end()):
        found += 1
        cap = imp.capture
        try:
            text = cap.to_json(None, fast=True)  # capture.json on one line (as importer/run.py)
        except Exception as exc:  # one odd kill must not cost the others
            made.append((cap.kill_id, None, None, None, f"{type(exc).__name__}: {exc}"))
        else:
            row, entry = index_parts(cap)
            made.append((cap.kill_id, said_head(imp), row, entry, None))
            items.append((cap.kill_id, text))
        if len(made) >= _BATCH_KILLS or time.monotonic() - last >= _BATCH_SECONDS:
            flush()
    if made:
        flush()
    record(("end", found, problems))
    out.flush()


#: walls (importer/kills.py) drops its lines past 100,000 as reports come: a skim is exact below that
_WALLS_KEPT = 100_000


def state_at(mapped, k: int, reader_args: dict) -> KillReader:
    """A reader as it is after regions[:k]. The parser's state is the lines' since the last
    header (a header forgets the report before it, kernel/oom_report.py), so the regions before
    the last one that begins with a header are skimmed for the reader's state alone (the year,
    the made-up clock, the record count, the lines kept by their time: ~40% of a full read),
    unless a line there could outlive a header; else the whole first part is read."""
    j = next((i for i in range(k - 1, 0, -1) if starts_a_report(mapped.buf, *mapped.regions[i])), 0)
    if j > 0:
        reader = KillReader(**dict(reader_args, problems=None))
        if reader.skim_regions(mapped.texts(0, j)):
            try:
                for _ in reader.read_regions(mapped.texts(j, k), capture=False, first_is_header=True):
                    pass
                if reader.kept <= _WALLS_KEPT:
                    return reader
            except NotAHeader:
                pass
    reader = KillReader(**dict(reader_args, problems=None))
    for _ in reader.read_regions(mapped.texts(0, k), capture=False):
        pass
    return reader


def said_head(imp) -> str:
    """A kill's line up to the path it was written to (importer/run.py says it once it is on disk)."""
    cap = imp.capture
    state = ("full report" if imp.report.has_header else
             "report without its first lines" if imp.report.memory_stat or imp.report.memory else
             "summary line only" if imp.report.killed_from_summary else "Killed line only")
    label = cap.workload.label()
    return (f"{cap.times.kill_wall or cap.kill_id} kill pid={cap.victim.pid} comm={terminal_safe(cap.victim.comm)!r} "
            f"memcg={terminal_safe(cap.cgroup.oom_memcg or '?')}" + (f" workload={terminal_safe(label)!r}" if label else "")
            + f" ({state}) -> ")
