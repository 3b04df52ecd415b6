"""Writes a kill's folder with its capture: ``<out>/<kill-id>/capture.json``, atomically, through
oomscope/safefs.py (no link followed, only oomscope's own files replaced, a marker that makes the
folder one ``--keep`` may remove). Record and import write every capture here; its post-mortem
comes after, from the post-mortem stage (postmortem/stage.py), so a post-mortem that fails to
render never costs the capture.

With a ``safefs.Batch`` (import), the file is on disk and under its name once the batch is flushed.
"""

from __future__ import annotations

from typing import Optional

from ..model import Capture
from ..safefs import Batch, Dir, Syncer


def write_capture(out_dir: str, capture: Capture, batch: Optional[Batch] = None, indent: Optional[int] = 2,
                  text: Optional[str] = None, into: Optional[Dir] = None, syncer: Optional[Syncer] = None) -> str:
    """A new kill folder with the capture alone: its path. ``indent``: of capture.json (None: one
    line, as import writes it, see Capture.to_json); ``text``: the capture's JSON made already
    (import makes it in its main thread and has the folder and file made by a writer thread);
    ``into``: ``out_dir`` opened already (import opens it once for thousands of kills);
    ``syncer``: its fsyncs taken by that thread (record), the path its token there."""
    out = Dir(out_dir, create=True, batch=batch) if into is None else into
    try:
        return write_capture_text(out, capture.kill_id, capture.to_json(indent) if text is None else text, syncer)
    finally:
        if into is None:
            out.close()


def write_capture_text(out: Dir, kill_id: str, text: str, syncer: Optional[Syncer] = None) -> str:
    """A new kill folder in ``out`` (opened with its batch, if any) with ``text`` as its
    capture.json: its path (import's writer process writes the JSON made by the parsing one)."""
    with out.make_kill_folder(kill_id) as folder:
        if syncer is None:
            return folder.write("capture.json", text)
        path = folder.write("capture.json", text, sync=False)
        syncer.add(folder, "capture.json", path)
        return path
