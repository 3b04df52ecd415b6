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
import itertools
import os
import time
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool as BrokenExecutor
from typing import Any, Callable, Deque, Iterable, List, Optional, Tuple

from ..analysis.result import analyse_kill
from ..capture.writer import write_capture_text
from ..containers import NodeNames
from ..errors import ImportProblem, OomscopeError
from ..postmortem.finisher import Finished
from ..postmortem.index import OutputIndex, index_parts
from ..postmortem.series import WINDOW_S
from ..postmortem.stage import PostMortems
from ..safefs import Batch, Dir
from ..terminal import terminal_safe
from .kills import Imported, KillReader
from .sources import KMSG, LogSource, log_sources, map_log
from . import split
from .split import Worker, said_head, split_point

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


def render_html(capture, analysis=None) -> str:
    """A kill's post-mortem (report/render.py), its modules imported when the first is rendered:
    jinja2 and the page modules are ~0.03 s of import's start otherwise, before the log's reading
    is split between two processes, with the second core idle (issue 29, bench/README.md)."""
    from ..report.render import render_html as render

    return render(capture, analysis)


def render_series(series, read, has_page) -> str:
    """A series page (postmortem/worker.py), its modules imported when the first is rendered."""
    from ..postmortem.worker import render_series as render

    return render(series, read, has_page)


def warm_pages() -> None:
    """The end's modules imported and its pages' templates loaded (the post-mortem's, the series',
    the index's: ~0.065 s with jinja2's import; report/template_cache.py): done while this process
    waits for the worker (importer/split.py), the end then renders at once."""
    from ..postmortem import worker  # noqa: F401 (render_series' modules)
    from ..report.render import load_templates

    load_templates("postmortem.html.j2", "series.html.j2", "index.html.j2")


def _import_source(source: LogSource, since_ts: Optional[float], post: PostMortems, written: List[str],
                   out, err, year: Optional[int] = None) -> None:
    name, output = source.name, post.out_dir
    problems: List[str] = []  # kills not read or not written
    read_problems: List[str] = []
    shown = 0
    found = 0
    # Parsed, made into what is written and said (its JSON, index row, series entry and line), not
    # yet handed to the writer: a kill's capture is not kept while its batch is written, as the
    # worker keeps none (importer/split.py). Up to three batches of captures held alive were
    # traversed again and again by the cyclic GC: 0.93-1.06 -> 0.71-0.74 s of CPU for the storm's
    # reading, JSON and rows (best of 5, bench/README.md, issue 29, sixth pass).
    pending: List[_Made] = []
    # batches handed to the writer: said once written and flushed, oldest first
    inflight: "Deque[Tuple[List[_Made], Future[_Written]]]" = collections.deque()
    last_flush = time.monotonic()
    reader_args = dict(since=since_ts, boot_wall=source.boot_wall if name == KMSG else None, year=year,
                       names=NodeNames() if source.this_host else None, not_after=source.not_after, dated_by=source.dated_by)
    reader = KillReader(problems=read_problems, **reader_args)
    mapped = map_log(source.path) if source.path is not None else None
    k = split_point(mapped.buf, mapped.regions) if mapped is not None else None
    worker: Optional[Worker] = None
    if k is not None and split.can_fork():
        for stream in (out, err):
            stream.flush()  # nothing said is said twice by the fork
        try:
            worker = Worker(mapped, k, reader_args, output, _write_batch)
        except OSError:
            worker = None
    writer = _writer()

    def show_read_problems() -> None:
        nonlocal shown
        for p in read_problems[shown:]:
            err.write(f"oomscope: warning: {terminal_safe(name)}: {p}\n")
            problems.append(p)
        shown = len(read_problems)

    def skipped(kill_id: str, why: str) -> None:
        problems.append(f"kill {kill_id}: skipped ({why})")
        err.write(f"oomscope: warning: {terminal_safe(name)}: {terminal_safe(problems[-1][:500])}\n")

    def done(results: List[Tuple[str, Any]], flush_error: Optional[OomscopeError],
             kills: List[Tuple[str, Callable[[int, str], Finished], Callable[[str, Finished], Tuple[str, str]]]]) -> None:
        """A batch written: each kill's outcome, then each kill written said (on disk now)."""
        done_kills: List[Tuple[str, Finished, Callable[[str, Finished], Tuple[str, str]]]] = []
        for (kill_id, finish, say), (kind, what) in zip(kills, results):
            if kind == "refused":
                raise what  # the output folder is refused (safefs.UnsafeOutput): nothing more can be written
            if kind == "oserror":
                raise ImportProblem(f"cannot write to {output}: {what}")
            if kind == "error":  # one odd kill must not cost the others
                skipped(kill_id, what)
                continue
            done_kills.append((what, finish(0, what), say))
        if flush_error is not None:
            raise flush_error
        lines = []
        for capture_path, fin, say in done_kills:
            path, line = say(capture_path, fin)
            written.append(path)
            lines.append(line)
        if lines:  # a batch's lines in one write (each would be a system call where stdout is unbuffered)
            out.write("".join(lines))

    def made_kills(made: List[_Made]) -> List[Tuple[str, Callable[[int, str], Finished], Callable[[str, Finished], Tuple[str, str]]]]:
        """A batch's kills as done() takes them: each one's index row and series entry made
        already (PostMortems.kill_made: as PostMortems.kill makes them on demand)."""
        return [(kill_id, lambda job, path, row=row, entry=entry: post.kill_made(job, path, row, entry),
                 lambda path, fin, head=head: said_line(path, fin, head)) for kill_id, head, row, entry, _ in made]

    def said(made: List[_Made], fut: "Future[_Written]") -> None:
        try:
            results, flush_error = fut.result()
        except BrokenExecutor:
            raise ImportProblem(f"cannot write to {output}: the writer process ended") from None
        done(results, flush_error, made_kills(made))

    def flush(wait: bool) -> None:
        nonlocal pending, last_flush
        if pending:
            try:
                fut = writer.submit(_write_batch, output, [(m[0], m[4]) for m in pending])
            except BrokenExecutor:
                raise ImportProblem(f"cannot write to {output}: the writer process ended") from None
            inflight.append((pending, fut))
            pending = []
        while inflight and (wait or len(inflight) > 2 or inflight[0][1].done()):
            said(*inflight.popleft())
        last_flush = time.monotonic()

    def take(kills: Iterable[Imported]) -> None:
        nonlocal found
        for imp in kills:
            found += 1
            show_read_problems()  # as they come: the captures are written as they come too
            cap = imp.capture
            try:
                # capture.json on one line: json's C encoder, a third of the indented time
                text = cap.to_json(None, fast=True)
            except Exception as exc:  # one odd kill must not cost the others
                skipped(cap.kill_id, f"{type(exc).__name__}: {exc}")
            else:
                # its index row and series entry now: a kill given by the reader is complete (a
                # group kill's are given once the group is over: importer/kills.py)
                row, entry = index_parts(cap)
                pending.append((cap.kill_id, said_head(imp), row, entry, text))
            if len(pending) >= _BATCH_KILLS or time.monotonic() - last_flush >= _BATCH_SECONDS:
                flush(wait=False)

    def said_line(path: str, fin: Finished, head: str) -> Tuple[str, str]:
        """A kill's line, once its capture is on disk (its post-mortem is rendered on demand)."""
        return path, head + terminal_safe(path) + "\n"

    try:
        if mapped is None:
            take(reader.read(source.lines))
            take(reader.end())
        elif worker is None:
            take(reader.read_regions(mapped.texts()))
            take(reader.end())
        else:
            take(reader.read_regions(mapped.texts(0, k)))
            if not worker.verdict():  # the second part does not begin with a header: read on here
                take(reader.read_regions(mapped.texts(k)))
                take(reader.end())
            else:
                take(reader.flush())  # the first part's last kills: a header ends every group kill
                flush(wait=True)
                if not worker.ended():  # a core is idle until it ends: the end's pages made ready
                    warm_pages()
                worker.wait()
                ended, taken = False, 0
                for rec in worker.records():
                    if rec[0] == "batch":
                        _, made, results, flush_error = rec
                        ok = []
                        for m in made:
                            taken += 1
                            if m[4] is not None:
                                skipped(m[0], m[4])
                            else:
                                ok.append(m)
                        done(results, flush_error, made_kills(ok))
                    elif rec[0] == "end":
                        ended = True
                        found += rec[1]
                        read_problems.extend(rec[2])
                if not ended:  # the worker died: the kills it did not write are read here
                    err.write(f"oomscope: warning: {terminal_safe(name)}: the second reading process ended early; "
                              f"its {taken} kill(s) are kept, the rest is read again here\n")
                    found += taken
                    take(itertools.islice(itertools.chain(reader.read_regions(mapped.texts(k)), reader.end()), taken, None))
        flush(wait=True)
    finally:
        if worker is not None:
            worker.stop()
        writer.shutdown(wait=True)  # every write done (or failed): a batch's files are its own (_write_batch)
        if mapped is not None:
            mapped.close()
    show_read_problems()
    err.write(f"oomscope: {terminal_safe(name)}: {found} kill(s)" + (f", {len(problems)} skipped" if problems else "") + "\n")


#: a kill made and not yet said: (kill id, its line up to its path, its index row, its series entry,
#: its capture's JSON here / why it was skipped in the worker's records)
_Made = Tuple[str, Optional[str], Any, Any, Optional[str]]

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
