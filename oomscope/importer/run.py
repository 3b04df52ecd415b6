"""``oomscope import`` as the command runs it: the logs (importer/sources.py), their kills
(importer/kills.py), and each kill written as record writes one: its capture (capture/writer.py),
then its index row and series by the post-mortem stage (postmortem/stage.py), in batches whose
waits for the disk are taken together (safefs.Batch). Post-mortems are rendered per series at
the end (each series' page, its first and last kill's post-mortem, each lone kill's), not per
kill: a storm's thousands of kills are one story, and ``oomscope report`` renders any capture.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, List, Optional, Tuple

from ..analysis.result import analyse_kill
from ..capture.writer import write_capture
from ..containers import NodeNames
from ..errors import ImportProblem, OomscopeError
from ..postmortem.finisher import Finished
from ..postmortem.index import OutputIndex
from ..postmortem.series import WINDOW_S
from ..postmortem.stage import PostMortems
from ..safefs import Batch, Dir
from ..terminal import terminal_safe
from .kills import Imported, iter_imports
from .sources import KMSG, LogSource, log_sources

#: kills written between two flushes (safefs.Batch): each flush waits for the disk once for all
#: of them; at most this long between two, so that what is printed keeps up with a slow log
_BATCH_KILLS = 256
_BATCH_SECONDS = 1.0


def run_import(paths: List[str], journal: bool, since: Optional[str], output: str,
               render_html: Callable[..., str], out, err, year: Optional[int] = None,
               series_window_s: float = WINDOW_S, render_series: Optional[Callable[..., str]] = None) -> List[str]:
    since_ts = parse_since(since) if since else None
    sources = log_sources(paths, journal)
    written: List[str] = []
    index = OutputIndex(output, series_window_s)
    for folder, why in index.skipped:
        err.write(f"oomscope: warning: {terminal_safe(os.path.join(output, folder))}: left out of the index: {terminal_safe(why[:300])}\n")
    batch = Batch()
    post = PostMortems(output, render_html, analyse_kill, index, err, batch=batch, render_series=render_series, on_demand=True)
    try:
        for source in sources:
            _import_source(source, since_ts, post, written, out, err, year)
        if written:
            pages = post.finish_on_demand()
            try:
                batch.flush()
            except OSError as exc:
                raise ImportProblem(f"cannot write to {output}: {exc.strerror or exc}") from None
            n = len(index.series.series())
            several = sum(1 for s in index.series.series() if len(s.kills) > 1)
            err.write(f"oomscope: {len(written)} kill(s) in {n} series ({several} of several kills: {output}/series/); "
                      f"{pages} post-mortem(s) rendered (each series' first and last kill, each lone kill); "
                      f"render any other: oomscope report {output}/<kill>/capture.json\n")
    finally:
        batch.close()
    if written:
        index.write()
    return written


def _import_source(source: LogSource, since_ts: Optional[float], post: PostMortems, written: List[str],
                   out, err, year: Optional[int] = None) -> None:
    name, output, batch = source.name, post.out_dir, post.batch
    problems: List[str] = []  # kills not read or not written
    read_problems: List[str] = []
    shown = 0
    found = 0
    pending: List[Tuple[Imported, "Future[str]"]] = []
    # batches handed to the writer, with their flush: said once it is done, oldest first
    inflight: "Deque[Tuple[List[Tuple[Imported, Future[str]]], Future[None]]]" = collections.deque()
    last_flush = time.monotonic()
    # The kill's folder and files are made, and each batch flushed, by one writer thread while the
    # main thread parses the next kills: making inodes and waiting for the disk is the disk's time
    # (mkdir, marker, capture: 0.1 ms a kill on this ext4 when quiet, 0.3-0.9 ms after many files
    # were deleted; a flush's two syncfs), the parse is the interpreter's. The batch is touched by
    # the writer alone; the main thread waits for it only when two batches are already queued.
    # The output folder is opened once (safefs.Dir walks the path from / at each opening).
    folder = Dir(output, create=True, batch=batch)
    writer = ThreadPoolExecutor(1, thread_name_prefix="oomscope-import-writer")

    def show_read_problems() -> None:
        nonlocal shown
        for p in read_problems[shown:]:
            err.write(f"oomscope: warning: {terminal_safe(name)}: {p}\n")
            problems.append(p)
        shown = len(read_problems)

    def said(writes: List[Tuple[Imported, "Future[str]"]], flushed: "Future[None]") -> None:
        done_kills: List[Tuple[Imported, str, Finished]] = []
        for imp, fut in writes:
            try:
                capture_path = fut.result()
                done_kills.append((imp, capture_path, post.kill(0, capture_path, imp.capture)))
            except OomscopeError:
                raise  # the output folder is refused: nothing more can be written
            except OSError as exc:
                raise ImportProblem(f"cannot write to {output}: {exc.strerror or exc}") from None
            except Exception as exc:  # one odd kill must not cost the others
                problems.append(f"kill {imp.capture.kill_id}: skipped ({type(exc).__name__}: {exc})")
                err.write(f"oomscope: warning: {terminal_safe(name)}: {terminal_safe(problems[-1][:500])}\n")
        try:
            flushed.result()
        except OomscopeError:
            raise
        except OSError as exc:
            raise ImportProblem(f"cannot write to {output}: {exc.strerror or exc}") from None
        for imp, capture_path, done in done_kills:  # on disk now: said
            written.append(_said(imp, capture_path, done, out, err))

    def flush(wait: bool) -> None:
        nonlocal pending, last_flush
        if pending:
            inflight.append((pending, writer.submit(batch.flush)))
            pending = []
        while inflight and (wait or len(inflight) > 2 or inflight[0][1].done()):
            said(*inflight.popleft())
        last_flush = time.monotonic()

    try:
        for imp in iter_imports(source.lines, since=since_ts, boot_wall=source.boot_wall if name == KMSG else None,
                                names=NodeNames() if source.this_host else None, problems=read_problems,
                                not_after=source.not_after, year=year, dated_by=source.dated_by):
            found += 1
            show_read_problems()  # as they come: the captures are written as they come too
            try:
                # capture.json on one line: json's C encoder, a third of the indented time
                text = imp.capture.to_json(None)
            except Exception as exc:  # one odd kill must not cost the others
                problems.append(f"kill {imp.capture.kill_id}: skipped ({type(exc).__name__}: {exc})")
                err.write(f"oomscope: warning: {terminal_safe(name)}: {terminal_safe(problems[-1][:500])}\n")
            else:
                pending.append((imp, writer.submit(write_capture, output, imp.capture, batch, None, text, folder)))
            if len(pending) >= _BATCH_KILLS or time.monotonic() - last_flush >= _BATCH_SECONDS:
                flush(wait=False)
        flush(wait=True)
    finally:
        writer.shutdown(wait=True)  # every write done (or failed) before the batch is closed
        folder.close()
    show_read_problems()
    err.write(f"oomscope: {terminal_safe(name)}: {found} kill(s)" + (f", {len(problems)} skipped" if problems else "") + "\n")


def _said(imp: Imported, capture_path: str, done: Finished, out, err) -> str:
    """A kill's line, once its files are on disk: the path of its post-mortem (or capture)."""
    cap = imp.capture
    if done.error:
        err.write(f"oomscope: error: post-mortem not rendered ({terminal_safe(done.error)}); the capture is at {terminal_safe(capture_path)}\n")
    state = ("full report" if imp.report.has_header else
             "report without its first lines" if imp.report.memory_stat or imp.report.memory else
             "summary line only" if imp.report.killed_from_summary else "Killed line only")
    label = cap.workload.label()
    out.write(f"{cap.times.kill_wall or cap.kill_id} kill pid={cap.victim.pid} comm={terminal_safe(cap.victim.comm)!r} "
              f"memcg={terminal_safe(cap.cgroup.oom_memcg or '?')}" + (f" workload={terminal_safe(label)!r}" if label else "")
              + f" ({state}) -> {terminal_safe(done.html_path or capture_path)}\n")
    return done.html_path or capture_path


def parse_since(text: str) -> float:
    """An ISO date or date-time (UTC unless it says), or a duration back from now: 2h, 30m, 7d."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ImportProblem(f"--since: not a date (2026-11-25, 2026-11-25T10:00) or a duration (2h, 7d): {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()
