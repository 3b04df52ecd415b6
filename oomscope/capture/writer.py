"""Writes a kill's folder: ``<out>/<kill-id>/capture.json`` and ``postmortem.html``, atomically,
through oomscope/safefs.py (no link followed, only oomscope's own files replaced, a marker that
makes the folder one ``--keep`` may remove).

The capture is written first; a post-mortem that fails to render never costs the capture.
With a ``safefs.Batch`` (import), the files are on disk and under their names once the batch is
flushed.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from ..model import Capture
from ..terminal import terminal_safe
from ..safefs import Batch, Dir, atomic_write  # noqa: F401 - atomic_write: re-exported for its callers


def write_capture(out_dir: str, capture: Capture) -> str:
    """A new kill folder with the capture alone (record: its post-mortem comes from the post-mortem stage, postmortem/)."""
    with Dir(out_dir, create=True) as out, out.make_kill_folder(capture.kill_id) as folder:
        return folder.write("capture.json", capture.to_json())


def write_kill(
    out_dir: str, capture: Capture, render_html: Callable[[Capture], str], batch: Optional[Batch] = None,
    indent: Optional[int] = 2,
) -> Tuple[str, Optional[str], Optional[str]]:
    """Returns (capture path, post-mortem path or None, rendering error or None). ``indent``: of
    capture.json (None: one line, as import writes it, see Capture.to_json)."""
    with Dir(out_dir, create=True, batch=batch) as out, out.make_kill_folder(capture.kill_id) as folder:
        capture_path = folder.write("capture.json", capture.to_json(indent))
        try:
            html = render_html(capture)
        except Exception as exc:  # the capture is safe on disk; say what failed
            return capture_path, None, terminal_safe(f"{type(exc).__name__}: {exc}")[:500]
        html_path = folder.write("postmortem.html", html)
    return capture_path, html_path, None
