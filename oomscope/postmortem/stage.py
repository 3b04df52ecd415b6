"""The post-mortem stage's work on one kill whose capture is written: its analysis, its
post-mortem (postmortem.html) and its row in the output folder's index.html, in the calling
process. Record has it done in its worker (postmortem/worker.py); import does it itself, in a
``safefs.Batch`` (importer/run.py): one way to finish a kill for both.

The analysis, the renderer and the index are passed in: this module imports neither pandas nor
jinja2 (postmortem/worker.py wires the real ones).

Series (postmortem/series.py): the index keeps every kill's series; a series' page
(``series/<id>.html``) is written with the index, once its kills changed. ``on_demand`` (import):
no kill is analysed or rendered as it comes; at the end (``finish_on_demand``) each series page
is written, with the post-mortems of each series' first and last kill and of each kill that
stands alone; ``oomscope report`` renders any other capture later.
"""

from __future__ import annotations

import collections
import os
import stat
import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from ..model import Capture
from ..capture.writer import write_capture
from ..safefs import Batch, Dir
from ..terminal import terminal_safe
from .cause import cause_words
from .finisher import HTML, Finished
from .series import SERIES_DIR

#: the latest kills of a series read (and analysed) for its page
SERIES_KILLS_READ = 20


class PostMortems:
    """Analyses and renders kills and keeps the output folder's index, in the calling process."""

    def __init__(self, out_dir: str, render_html: Callable[..., str], analyse: Optional[Callable[[Capture], Any]],
                 index, err: TextIO, batch: Optional[Batch] = None,
                 render_series: Optional[Callable[..., str]] = None, on_demand: bool = False):
        self.out_dir = out_dir
        #: (series, [(entry, capture, analysis)], has_page) -> html (report/series.py, wired by the caller)
        self.render_series = render_series
        self.on_demand = on_demand
        #: the latest kills analysed here, by folder: a series page reads them from here, not again
        #: from disk and analysed again (in a storm, a page a second would cost ~50 ms of the queue)
        self._recent: "collections.OrderedDict[str, Tuple[Capture, Any]]" = collections.OrderedDict()
        self.batch = batch  # import's: the post-mortems are on disk once it is flushed
        self.render_html = render_html  # (capture, analysis=None) -> html
        self.analyse = analyse
        self.index = index  # add(capture_path, capture, analysis=None), remove(folder), write() (postmortem/index.py)
        self.err = err
        self._index_dirty = False
        self._index_written = 0.0

    def kill(self, job: int, capture_path: str, capture: Capture) -> Finished:
        folder = os.path.basename(os.path.dirname(capture_path))
        if self.on_demand:  # import: the capture alone now; pages per series at the end
            self.index.add(capture_path, capture, None, page=False)
            self._index_dirty = True
            return Finished(job, None, None, "", None)  # series: at the end (a sort per kill would be n²)
        analysis = None
        if self.analyse is not None:
            try:
                analysis = self.analyse(capture)
            except Exception:  # the renderer says what fails; the capture is written regardless
                analysis = None
        category = analysis.top_categories[0] if analysis is not None and analysis.top_categories else ""
        html_path, error = self._render(capture_path, capture, analysis)
        self.index.add(capture_path, capture, analysis)
        if self.render_series is not None:
            self._recent[folder] = (capture, analysis)
            while len(self._recent) > SERIES_KILLS_READ:
                self._recent.popitem(last=False)
        self._index_dirty = True
        return Finished(job, html_path, error, category, cause_words(capture, analysis), series=self._series_info(folder))

    def kill_made(self, job: int, capture_path: str, row, entry) -> Finished:
        """As ``kill`` on demand (import), for a kill whose index row and series entry were made
        already (postmortem/index.py index_parts, by import's second process)."""
        self.index.add_parts(os.path.basename(os.path.dirname(capture_path)), row, entry, page=False)
        self._index_dirty = True
        return Finished(job, None, None, "", None)

    def _series_info(self, folder: str) -> Optional[Dict[str, Any]]:
        series = getattr(self.index, "series", None)
        return series.info(folder) if series is not None else None

    def rerender(self, capture_path: str, capture: Capture) -> None:
        """A memory.oom.group's first post-mortem, again, now listing every victim."""
        if os.path.exists(os.path.join(os.path.dirname(capture_path), HTML)):
            _, error = self._render(capture_path, capture, None)
            if error:
                self.err.write(f"oomscope: error: post-mortem of {terminal_safe(capture.kill_id)} not re-rendered: {error}\n")
        self.index.add(capture_path, capture)
        folder = os.path.basename(os.path.dirname(capture_path))
        if folder in self._recent:
            self._recent[folder] = (capture, self._recent[folder][1])
        self._index_dirty = True

    def remove(self, folder: str) -> None:
        self._recent.pop(folder, None)
        self.index.remove(folder)
        self._index_dirty = True

    def _render(self, capture_path: str, capture: Capture, analysis: Any) -> Tuple[Optional[str], Optional[str]]:
        # Not fsynced (record's worker; import's batch syncs as before): a post-mortem is made again
        # from its capture.json, which record wrote durably first (`oomscope report` renders it; the
        # index links to the capture where a crash left no page or an empty one). Its two fsyncs
        # were half the worker's time on a kill, and each a journal commit that record's own
        # capture fsyncs queued behind in a storm (bench/README.md, issue 29).
        return write_post_mortem(self.out_dir, capture_path, lambda: self.render_html(capture, analysis)
                                 if analysis is not None else self.render_html(capture), self.batch, sync=False)

    def write_index(self, force: bool = False) -> None:
        """index.html, at most once a second while kills come in (in a storm, rewriting it for
        every kill took a fifth of the time of writing the kills: measured, 385 kills), and at the end."""
        now = time.monotonic()
        if not self._index_dirty or (not force and now - self._index_written < 1.0):
            return
        try:
            if not self.on_demand:
                self.write_series_pages()
            self.index.write()
            self._index_dirty = False
            self._index_written = now
        except OSError as exc:
            self.err.write(f"oomscope: error: could not write index.html: {exc}\n")

    def write_series_pages(self, every: bool = False) -> None:
        """The page of each series that gained a kill (``every``: of each series of several kills)."""
        series = getattr(self.index, "series", None)
        if series is None or self.render_series is None:
            return
        todo = [s for s in series.series() if len(s.kills) > 1] if every else series.take_changed()
        self._prune_series_pages({s.id for s in series.series() if len(s.kills) > 1})
        for s in todo:
            try:
                html = self.render_series(s, self._read_series(s), lambda f: f not in self.index.no_page)
                with Dir(os.path.join(self.out_dir, SERIES_DIR), create=True, batch=self.batch) as out:
                    out.write(f"{s.id}.html", html)
            except Exception as exc:  # one series' page must not cost the others or the index
                self.err.write(f"oomscope: error: the page of the series {terminal_safe(s.id)} not written: "
                               f"{terminal_safe(f'{type(exc).__name__}: {exc}')[:300]}\n")

    def _prune_series_pages(self, current: set) -> None:
        """Removes the pages of series that are no more (their kills removed by --keep, or the
        series' first kill, which names it, removed): only regular files of ours, never a link."""
        if not os.path.isdir(os.path.join(self.out_dir, SERIES_DIR)):
            return
        try:
            with Dir(os.path.join(self.out_dir, SERIES_DIR)) as d:
                for name in os.listdir(d.fd):
                    if not name.endswith(".html") or name[:-5] in current:
                        continue
                    st = d.lstat(name)
                    if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                        os.unlink(name, dir_fd=d.fd)
        except OSError as exc:
            self.err.write(f"oomscope: warning: old series pages not removed: {terminal_safe(str(exc))[:300]}\n")

    def _read_series(self, s) -> List[Tuple[Any, Capture, Any]]:
        """(entry, capture, analysis) of the series' latest kills, oldest first; a capture that
        cannot be read back is left out."""
        out = []
        with Dir(self.out_dir) as top:
            for k in s.kills[-SERIES_KILLS_READ:]:
                if k.folder in self._recent:
                    out.append((k,) + self._recent[k.folder])
                    continue
                try:
                    with top.subdir(k.folder) as d:
                        cap = Capture.from_json(d.read("capture.json").decode("utf-8"))
                except Exception:
                    continue
                out.append((k, cap, self._analysed(cap)))
        return out

    def _analysed(self, cap: Capture):
        """The capture's analysis, or None (no analyser, or it failed: the page says unknown)."""
        if self.analyse is None:
            return None
        try:
            return self.analyse(cap)
        except Exception:
            return None

    def finish_on_demand(self) -> int:
        """Import's end: the post-mortems of each series' first and last kill and of each kill
        that stands alone, then every series page and the index. Returns the post-mortems written."""
        series = getattr(self.index, "series", None)
        if series is None:
            return 0
        wanted = []
        for s in series.series():
            wanted += [k for k in ([s.first] if len(s.kills) == 1 else [s.first, s.last])
                       if k.folder in self.index.no_page]  # a kill rendered before (an earlier run) is left as it is
        rendered = 0
        with Dir(self.out_dir) as top:
            for k in wanted:
                try:
                    with top.subdir(k.folder) as d:
                        cap = Capture.from_json(d.read("capture.json").decode("utf-8"))
                except Exception as exc:
                    self.err.write(f"oomscope: error: {terminal_safe(k.folder)}: its capture could not be read back: "
                                   f"{terminal_safe(str(exc))[:300]}\n")
                    continue
                analysis = self._analysed(cap)
                path = os.path.join(self.out_dir, k.folder, "capture.json")
                html_path, error = self._render(path, cap, analysis)
                if html_path:
                    self.index.page(k.folder, True)
                    rendered += 1
                elif error:
                    self.err.write(f"oomscope: error: post-mortem of {terminal_safe(k.kill_id)} not rendered: {error}\n")
        self.write_series_pages(every=True)
        self._index_dirty = True
        return rendered

    def index_overdue(self, after_s: float) -> bool:
        """A pending index.html last written more than ``after_s`` ago."""
        return self._index_dirty and time.monotonic() - self._index_written >= after_s

    @property
    def index_due(self) -> Optional[float]:
        """Seconds until a pending index.html is due, or None when nothing is pending."""
        return max(0.0, self._index_written + 1.0 - time.monotonic()) if self._index_dirty else None


class InProcess:
    """A Finisher that does the work at once, in the recorder (tests; the worker's own core)."""

    def __init__(self, post: PostMortems):
        self.post = post
        self._next = 0
        self._done: List[Finished] = []

    def kill(self, capture_path: str, capture: Capture) -> int:
        self._next += 1
        self._done.append(self.post.kill(self._next, capture_path, capture))
        self.post.write_index()
        return self._next

    def rerender(self, capture_path: str, capture: Capture) -> None:
        self.post.rerender(capture_path, capture)

    def remove(self, folder: str) -> None:
        self.post.remove(folder)

    def results(self) -> List[Finished]:
        self.post.write_index()
        done, self._done = self._done, []
        return done

    @property
    def busy(self) -> bool:
        """Work asked for and not done: here, an index.html waiting for its second."""
        return self.post.index_due is not None

    def finish(self, timeout_s: float = 0.0) -> List[Finished]:
        self.post.write_index(force=True)
        return self.results()

    def close(self) -> None:
        self.post.write_index(force=True)


def write_post_mortem(out_dir: str, capture_path: str, render: Callable[[], str],
                      batch: Optional[Batch] = None, sync: bool = True) -> Tuple[Optional[str], Optional[str]]:
    """postmortem.html beside a capture written already: (its path, None), or (None, why not in
    one line): the capture is safe on disk whatever fails here. ``sync=False``: not fsynced
    (safefs.Dir.write)."""
    try:
        html = render()
        folder = os.path.basename(os.path.dirname(capture_path))
        with Dir(out_dir, batch=batch) as out, out.subdir(folder) as kill_dir:
            return kill_dir.write(HTML, html, sync=sync), None
    except Exception as exc:  # the capture is safe on disk; say what failed
        return None, terminal_safe(f"{type(exc).__name__}: {exc}")[:500]


def write_kill(out_dir: str, capture: Capture, render_html: Callable[[Capture], str], batch: Optional[Batch] = None,
               indent: Optional[int] = 2) -> Tuple[str, Optional[str], Optional[str]]:
    """A kill's capture, then its post-mortem: (capture path, post-mortem path or None, rendering
    error or None)."""
    capture_path = write_capture(out_dir, capture, batch, indent)
    html_path, error = write_post_mortem(out_dir, capture_path, lambda: render_html(capture), batch)
    return capture_path, html_path, error
