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
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool as BrokenExecutor
from typing import Any, Callable, Deque, List, Optional, Tuple

from ..analysis.result import analyse_kill
from ..capture.writer import write_capture_text
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
    name, output = source.name, post.out_dir
    problems: List[str] = []  # kills not read or not written
    read_problems: List[str] = []
    shown = 0
    found = 0
    pending: List[Tuple[Imported, str]] = []  # parsed, its JSON made, not yet handed to the writer
    # batches handed to the writer: said once written and flushed, oldest first
    inflight: "Deque[Tuple[List[Imported], Future[_Written]]]" = collections.deque()
    last_flush = time.monotonic()
    writer = _writer()

    def show_read_problems() -> None:
        nonlocal shown
        for p in read_problems[shown:]:
            err.write(f"oomscope: warning: {terminal_safe(name)}: {p}\n")
            problems.append(p)
        shown = len(read_problems)

    def said(imps: List[Imported], fut: "Future[_Written]") -> None:
        try:
            results, flush_error = fut.result()
        except BrokenExecutor:
            raise ImportProblem(f"cannot write to {output}: the writer process ended") from None
        done_kills: List[Tuple[Imported, str, Finished]] = []
        for imp, (kind, what) in zip(imps, results):
            if kind == "refused":
                raise what  # the output folder is refused (safefs.UnsafeOutput): nothing more can be written
            if kind == "oserror":
                raise ImportProblem(f"cannot write to {output}: {what}")
            if kind == "error":  # one odd kill must not cost the others
                problems.append(f"kill {imp.capture.kill_id}: skipped ({what})")
                err.write(f"oomscope: warning: {terminal_safe(name)}: {terminal_safe(problems[-1][:500])}\n")
                continue
            done_kills.append((imp, what, post.kill(0, what, imp.capture)))
        if flush_error is not None:
            raise flush_error
        for imp, capture_path, done in done_kills:  # on disk now: said
            written.append(_said(imp, capture_path, done, out, err))

    def flush(wait: bool) -> None:
        nonlocal pending, last_flush
        if pending:
            try:
                fut = writer.submit(_write_batch, output, [(imp.capture.kill_id, text) for imp, text in pending])
            except BrokenExecutor:
                raise ImportProblem(f"cannot write to {output}: the writer process ended") from None
            inflight.append(([imp for imp, _ in pending], fut))
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
                pending.append((imp, text))
            if len(pending) >= _BATCH_KILLS or time.monotonic() - last_flush >= _BATCH_SECONDS:
                flush(wait=False)
        flush(wait=True)
    finally:
        writer.shutdown(wait=True)  # every write done (or failed): a batch's files are its own (_write_batch)
    show_read_problems()
    err.write(f"oomscope: {terminal_safe(name)}: {found} kill(s)" + (f", {len(problems)} skipped" if problems else "") + "\n")


#: a batch's outcome from the writer: per kill ("ok", path) / ("oserror", why) / ("refused", the
#: OomscopeError) / ("error", "Type: why"), then its flush's error (None: on disk)
_Written = Tuple[List[Tuple[str, Any]], Optional[OomscopeError]]


def _writer() -> Executor:
    """The kill folders and captures are made, and each batch flushed, by a writer process
    (forked: it has this one's modules and safefs settings) while this one parses the next kills:
    the parse is the interpreter's time, making inodes and waiting for the disk the kernel's
    (mkdir, marker, capture: 0.1 ms a kill on this ext4 when quiet, 0.3-0.9 ms after many files
    were deleted; two syncfs a batch), and a writer thread in this process took the GIL back
    from the parse at each of its system calls (measured for issue 29: the thread's writes took
    1.0-1.3 s of a storm's 4.2 s, the parse 2.0 s). A thread where a process cannot be had."""
    try:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ImportError, ValueError, NotImplementedError):
        return ThreadPoolExecutor(1, thread_name_prefix="oomscope-import-writer")


def _write_batch(output: str, items: List[Tuple[str, str]]) -> _Written:
    """In the writer: each kill's folder and capture.json (capture/writer.py), then the batch's
    waits for the disk taken together (safefs.Batch). Its own batch and folder descriptor: nothing
    shared with the parsing process but the output folder."""
    batch = Batch()
    results: List[Tuple[str, Any]] = []
    flush_error: Optional[OomscopeError] = None
    try:
        try:
            folder = Dir(output, create=True, batch=batch)
        except OomscopeError as exc:
            return [("refused", exc)] * len(items), None
        except OSError as exc:
            return [("oserror", str(exc.strerror or exc))] * len(items), None
        with folder:
            for kill_id, text in items:
                try:
                    results.append(("ok", write_capture_text(folder, kill_id, text)))
                except OomscopeError as exc:
                    results.append(("refused", exc))
                except OSError as exc:
                    results.append(("oserror", str(exc.strerror or exc)))
                except Exception as exc:  # one odd kill must not cost the others
                    results.append(("error", f"{type(exc).__name__}: {exc}"))
        try:
            batch.flush()
        except OomscopeError as exc:
            flush_error = exc
        except OSError as exc:
            flush_error = ImportProblem(f"cannot write to {output}: {exc.strerror or exc}")
    finally:
        batch.close()
    return results, flush_error


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
