"""What one recorded kill leaves on disk: its capture and post-mortem (record/writer.py), the
rewrite of its memory.oom.group's first post-mortem, the output folder's index and retention
(record/retention.py).

Rendering and the index are passed in (``render_html``, an index object with add/remove/write):
record/ imports nothing from analysis/ or report/. The one analysis of a kill comes in with it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO, Tuple

from ..kernel.kmsg import OomReport
from ..model import Capture
from ..terminal import terminal_safe
from .incidents import GroupLinker, Head
from .retention import Retention
from .writer import atomic_write, write_kill


@dataclass
class Written:
    capture_path: str
    html_path: Optional[str]
    render_error: Optional[str] = None


class Outputs:
    def __init__(self, out_dir: str, render_html: Callable[..., str], index, retention: Optional[Retention],
                 err: TextIO):
        self.out_dir = out_dir
        self.render_html = render_html  # (capture, analysis=None) -> html
        self.index = index  # add(capture_path, capture, analysis=None), remove(folder), write(atomic_write)
        self.retention = retention
        self.err = err
        self.groups = GroupLinker()
        self._index_dirty = False
        self._index_written = 0.0

    def head_for(self, report: Optional[OomReport], kill_ns: int) -> Tuple[Optional[Head], Optional[str]]:
        """A member of a memory.oom.group kill: the group's first victim (written already, with the
        kernel's report for the whole group), and the group's cgroup."""
        group = report.group_kill_cgroup if report is not None and not report.has_header else None
        if group is None:
            return None, None
        return self.groups.head_for(group, kill_ns), group

    def write(self, capture: Capture, analysis: Any, kill_ns: int,
              head: Optional[Head] = None, group: Optional[str] = None) -> Written:
        if head is not None:
            self.groups.link(head, capture, group)

        def render(cap: Capture) -> str:
            return self.render_html(cap, analysis) if analysis is not None else self.render_html(cap)

        capture_path, html_path, render_error = write_kill(self.out_dir, capture, render)
        self.groups.note_written(Head(capture, capture_path, html_path, kill_ns,
                                      capture.at_kill_sources.get("kernel_report")))
        if head is not None:
            self._rewrite(head)
        if render_error:
            self.err.write(f"oomscope: error: post-mortem not rendered ({terminal_safe(render_error)}); the capture is at {capture_path}\n")
        self.index.add(capture_path, capture, analysis)
        if head is not None:
            self.index.add(head.capture_path, head.capture)
        if self.retention is not None:
            for folder in self.retention.prune(self.out_dir, keep={os.path.dirname(capture_path)}):
                self.index.remove(folder)
        self._index_dirty = True
        self.write_index()
        return Written(capture_path, html_path, render_error)

    def write_index(self, force: bool = False) -> None:
        """index.html, at most once a second while kills come in (in a storm, rewriting it for
        every kill took a fifth of the time of writing the kills: measured, 385 kills), and at the end."""
        now = time.monotonic()
        if not self._index_dirty or (not force and now - self._index_written < 1.0):
            return
        try:
            self.index.write(atomic_write)
            self._index_dirty = False
            self._index_written = now
        except OSError as exc:
            self.err.write(f"oomscope: error: could not write index.html: {exc}\n")

    def _rewrite(self, head: Head) -> None:
        """The first victim's capture and post-mortem, again, now listing every victim."""
        atomic_write(head.capture_path, head.capture.to_json())
        if head.html_path is not None:
            try:
                atomic_write(head.html_path, self.render_html(head.capture))
            except Exception as exc:  # noqa: BLE001 - the capture is written; say what failed
                self.err.write(f"oomscope: error: post-mortem of {terminal_safe(head.capture.kill_id)} not re-rendered: "
                               f"{terminal_safe(str(exc))}\n")
