"""The kills of an output folder, one row each, kept as kills are written and removed, and
written as its index.html (the rows and the page: report/index.py), by series (postmortem/series.py:
each kill's entry is kept beside its row; series.json is written with the page)."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from ..analysis.result import KillAnalysis
from ..errors import OomscopeError
from ..model import Capture
from ..report.index import IndexRow, render_index, row_for
from ..safefs import Dir
from .finisher import HTML
from .series import SERIES_JSON, WINDOW_S, SeriesIndex, SeriesKill, entry_for, read_series_json, read_window


def index_parts(capture: Capture, analysis: Optional[KillAnalysis] = None) -> Tuple[IndexRow, Optional[SeriesKill]]:
    """A kill's row in the index and, for a kernel's kill, its series entry (its folder is given
    by OutputIndex.add_parts): user-space kills and throttle episodes are listed apart, in no series."""
    try:
        row = row_for(capture, analysis)
    except Exception:  # one odd capture gets a row of what is certain
        row = IndexRow(kill_id=str(capture.kill_id), when=str(capture.times.kill_wall or ""), victim=f"{capture.victim.pid}",
                       cgroup="?", usage="?", limit="?", categories="", incident="", href="")
    return row, (entry_for("", capture, row.categories) if row.kind == "kernel" else None)


class OutputIndex:
    """Keeps one row per kill folder of ``out_dir`` and writes index.html."""

    def __init__(self, out_dir: str, window_s: float = WINDOW_S):
        self.out_dir = out_dir
        self.rows: Dict[str, IndexRow] = {}
        self.series = SeriesIndex(window_s)
        #: kill folders without a postmortem.html (import renders on demand: postmortem/stage.py)
        self.no_page: set = set()
        #: kill folders whose capture could not be read: (folder, one-line reason)
        self.skipped: List[Tuple[str, str]] = []
        try:
            out = Dir(out_dir)
        except FileNotFoundError:
            return
        with out:
            for name, _ in out.kill_folders():
                # One capture is read at a time and any failure costs only that one row: a capture
                # planted or damaged in the output folder must not stop record or import.
                try:
                    with out.subdir(name) as folder:
                        cap = Capture.from_json(folder.read("capture.json").decode("utf-8"))
                        page = folder.lstat(HTML) is not None
                    self._add(name, cap, page=page)
                except FileNotFoundError:
                    continue
                except (OSError, UnicodeDecodeError) as exc:
                    self.skipped.append((name, getattr(exc, "strerror", None) or str(exc)))
                except OomscopeError as exc:
                    self.skipped.append((name, str(exc)))
                except Exception as exc:  # any other failure of one capture
                    self.skipped.append((name, f"{type(exc).__name__}: {exc}"))

    def _add(self, folder: str, capture: Capture, analysis: Optional[KillAnalysis] = None, page: bool = True) -> None:
        self.add_parts(folder, *index_parts(capture, analysis), page=page)

    def add_parts(self, folder: str, row: IndexRow, entry: Optional[SeriesKill], page: bool = True) -> None:
        """A kill by its row and series entry made already (index_parts: import's second process makes them)."""
        self.rows[folder] = row
        if entry is not None:
            entry.folder = folder
            self.series.add(entry)
        self.page(folder, page)

    def page(self, folder: str, written: bool = True) -> None:
        """Whether the kill's postmortem.html is there: the index links to it, else to its capture."""
        if written:
            self.no_page.discard(folder)
        else:
            self.no_page.add(folder)
        row = self.rows.get(folder)
        if row is not None:
            row.href = f"{folder}/capture.json" if folder in self.no_page else f"{folder}/{HTML}"

    def remove(self, folder: str) -> None:
        self.rows.pop(folder, None)
        self.no_page.discard(folder)
        self.series.remove(folder)

    def add(self, capture_path: str, capture: Capture, analysis: Optional[KillAnalysis] = None, page: bool = True) -> None:
        self._add(os.path.basename(os.path.dirname(capture_path)), capture, analysis, page)

    def render(self) -> str:
        return render_index(list(self.rows.values()), self.series.series(), self.rows)

    def write(self) -> Optional[str]:
        """Writes index.html and series.json (through safefs)."""
        with Dir(self.out_dir, create=True) as out:
            out.write(SERIES_JSON, self.series.to_json())
            return out.write("index.html", self.render())


# The series of a folder, as report -f json and `oomscope series DIR` ask for them: here, beside the
# OutputIndex they read (series.py knows series, not folders of kills: no import back to here).
def series_of_capture(capture_path: str, capture: Capture) -> Optional[dict]:
    """``report -f json``'s ``series`` of a capture in an output folder: from its series.json when
    that lists the kill, else recomputed from the folder's captures; None outside an output folder."""
    kill_dir = os.path.dirname(capture_path)
    out_dir, folder = os.path.dirname(kill_dir), os.path.basename(kill_dir)
    if not os.path.isfile(os.path.join(kill_dir, ".oomscope-kill")):
        return None
    data = read_series_json(out_dir)
    for s in (data or {}).get("series", []):
        if not isinstance(s, dict):
            continue
        kills = s.get("kill_list") or []
        for n, k in enumerate(kills):
            if isinstance(k, dict) and k.get("folder") == folder and k.get("kill_id") == capture.kill_id:
                return {"id": s.get("id"), "kill_number": n + 1, "kills_so_far": len(kills), "workload": s.get("workload")}
    return folder_series(out_dir).series.info(folder)


def folder_series(out_dir: str, window_s: Optional[float] = None):
    """The output folder's kills and series (postmortem/index.py's OutputIndex), with ``window_s``,
    else the window its series.json was written with, else the default."""
    if not os.path.isdir(out_dir):
        raise OomscopeError(f"{out_dir}: not a folder")
    if window_s is None:
        window_s = read_window(out_dir)
    return OutputIndex(out_dir, WINDOW_S if window_s is None else window_s)
