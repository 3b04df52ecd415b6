"""Writes a kill's folder: ``<out>/<kill-id>/capture.json`` and ``postmortem.html``, atomically.

The capture is written first; a post-mortem that fails to render never costs the capture.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Optional, Tuple

from ..model import Capture


def atomic_write(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def kill_dir(out_dir: str, kill_id: str) -> str:
    """A new folder for this kill; a suffix keeps two kills in the same millisecond apart."""
    os.makedirs(out_dir, exist_ok=True)
    for n in range(1000):
        path = os.path.join(out_dir, kill_id if n == 0 else f"{kill_id}.{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise OSError(f"too many kills named {kill_id} in {out_dir}")


def write_kill(
    out_dir: str, capture: Capture, render_html: Callable[[Capture], str]
) -> Tuple[str, Optional[str], Optional[str]]:
    """Returns (capture path, post-mortem path or None, rendering error or None)."""
    folder = kill_dir(out_dir, capture.kill_id)
    capture_path = os.path.join(folder, "capture.json")
    atomic_write(capture_path, capture.to_json())
    html_path = os.path.join(folder, "postmortem.html")
    try:
        html = render_html(capture)
    except Exception as exc:  # the capture is safe on disk; say what failed
        return capture_path, None, f"{type(exc).__name__}: {exc}"
    atomic_write(html_path, html)
    return capture_path, html_path, None
