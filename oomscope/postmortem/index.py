"""The kills of an output folder, one row each, kept as kills are written and removed, and
written as its index.html (the rows and the page: report/index.py), by series (postmortem/series.py:
each kill's entry is kept beside its row; series.json is written with the page)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from typing import Dict, List, Optional, Tuple

from ..analysis.result import KillAnalysis
from ..errors import OomscopeError
from ..model import Capture
from ..report.index import IndexRow, index_chunks, render_index, row_for
from ..safefs import Dir
from .finisher import HTML
from .series import SERIES_DIR, SERIES_JSON, WINDOW_S, SeriesIndex, SeriesKill, entry_for, read_series_json, read_window


def index_parts(capture: Capture, analysis: Optional[KillAnalysis] = None) -> Tuple[IndexRow, Optional[SeriesKill]]:
    """A kill's row in the index and, for a kernel's kill, its series entry (its folder is given
    by OutputIndex.add_parts): user-space kills and throttle episodes are listed apart, in no series."""
    try:
        row = row_for(capture, analysis)
    except Exception:  # one odd capture gets a row of what is certain
        row = IndexRow(kill_id=str(capture.kill_id), when=str(capture.times.kill_wall or ""), victim=f"{capture.victim.pid}",
                       cgroup="?", usage="?", limit="?", categories="", incident="", href="")
    return row, (entry_for("", capture, row.categories) if row.kind == "kernel" else None)


#: record's worker keeps the rows and series entries it made beside index.html, each with its
#: capture's modification time, inode and size, so that its next start reads again only the
#: captures that changed or came since: it exits when idle and starts again at the next kill, and
#: reading every capture of the folder cost that kill 0.65 s with 500 kill folders, 2.1 s with
#: 2000 (bench/README.md, issue 29). The index made from it is the one made from the captures
#: (tests/unit/test_index_cache.py); the file is read as untrusted (its fields typed, its size bounded).
INDEX_CACHE = ".oomscope-index.json"
INDEX_CACHE_VERSION = 1
MAX_INDEX_CACHE = 64 << 20


class OutputIndex:
    """Keeps one row per kill folder of ``out_dir`` and writes index.html (with ``cache``, also
    INDEX_CACHE: record's worker)."""

    def __init__(self, out_dir: str, window_s: float = WINDOW_S, cache: bool = False):
        self.out_dir = out_dir
        self.rows: Dict[str, IndexRow] = {}
        self.series = SeriesIndex(window_s)
        #: kill folders without a postmortem.html (import renders on demand: postmortem/stage.py)
        self.no_page: set = set()
        #: kill folders whose capture could not be read: (folder, one-line reason)
        self.skipped: List[Tuple[str, str]] = []
        self.cache = cache
        #: each folder's capture as it was when its row was made: (mtime ns, inode, size) (for INDEX_CACHE)
        self._stats: Dict[str, Tuple[int, int, int]] = {}
        #: folders whose row came from INDEX_CACHE at start (the rest were read from their capture)
        self.cached = 0
        self._cache_dirty = False  # rows made or removed since INDEX_CACHE was read or written
        try:
            out = Dir(out_dir)
        except FileNotFoundError:
            return
        with out:
            known = _read_cache(out) if cache else {}
            for name, _ in out.kill_folders():
                hit = known.get(name)
                if hit is not None:
                    try:
                        with out.subdir(name) as folder:
                            st = folder.lstat("capture.json")
                            page = _has_page(folder)
                    except OSError:
                        st = None
                    # the same file, unchanged: a rewrite is a new inode (safefs), an edit in place
                    # another size or time (the coarse clock's tick is a few ms: all three are asked)
                    if st is not None and _stat_key(st) == hit[0]:
                        self.add_parts(name, hit[1], hit[2], page=page, changed=False)
                        self._stats[name] = hit[0]
                        self.cached += 1
                        continue
                # One capture is read at a time and any failure costs only that one row: a capture
                # planted or damaged in the output folder must not stop record or import.
                try:
                    with out.subdir(name) as folder:
                        st = folder.lstat("capture.json") if cache else None
                        cap = Capture.from_json(folder.read("capture.json").decode("utf-8"))
                        page = _has_page(folder)
                    self._add(name, cap, page=page)
                    if st is not None:
                        self._stats[name] = _stat_key(st)
                        self._cache_dirty = True
                except FileNotFoundError:
                    continue
                except (OSError, UnicodeDecodeError) as exc:
                    self.skipped.append((name, getattr(exc, "strerror", None) or str(exc)))
                except OomscopeError as exc:
                    self.skipped.append((name, str(exc)))
                except Exception as exc:  # any other failure of one capture
                    self.skipped.append((name, f"{type(exc).__name__}: {exc}"))
        self._cache_dirty |= self.cached != len(known)  # folders gone or changed since it was written
        if self.cached:
            # The pages of series read from the cache were written by the worker that kept it (at
            # its last index, before it left): not again at this start (50 series of 2000 kills:
            # 1.6 s, the first index after every idle exit, bench/README.md). One missing is due.
            self._pages_missing()

    def _pages_missing(self) -> None:
        try:
            with Dir(os.path.join(self.out_dir, SERIES_DIR)) as d:
                have = {n[:-5] for n in os.listdir(d.fd) if n.endswith(".html")}
        except OSError:
            have = set()
        for s in self.series.series():
            if len(s.kills) > 1 and s.id not in have:
                self.series.mark_changed(s.id)

    def _add(self, folder: str, capture: Capture, analysis: Optional[KillAnalysis] = None, page: bool = True) -> None:
        self.add_parts(folder, *index_parts(capture, analysis), page=page)

    def add_parts(self, folder: str, row: IndexRow, entry: Optional[SeriesKill], page: bool = True,
                  changed: bool = True) -> None:
        """A kill by its row and series entry made already (index_parts: import's second process
        makes them; INDEX_CACHE keeps them). ``changed``: its series' page is due."""
        _share_strings(folder, row, entry)
        self.rows[folder] = row
        if entry is not None:
            entry.folder = folder
            self.series.add(entry, changed)
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
        self._cache_dirty |= self._stats.pop(folder, None) is not None
        self.no_page.discard(folder)
        self.series.remove(folder)

    def add(self, capture_path: str, capture: Capture, analysis: Optional[KillAnalysis] = None, page: bool = True) -> None:
        folder = os.path.basename(os.path.dirname(capture_path))
        self._add(folder, capture, analysis, page)
        if self.cache:  # the capture as written now (a rewritten one, a group's first, too)
            self._cache_dirty = True
            try:
                self._stats[folder] = _stat_key(os.stat(capture_path, follow_symlinks=False))
            except OSError:
                self._stats.pop(folder, None)

    def render(self) -> str:
        return render_index(list(self.rows.values()), self.series.series(), self.rows)

    def write(self) -> Optional[str]:
        """Writes index.html and series.json (through safefs), each as it is made: never whole in
        memory (record's worker writes them at every kill: bench/worker_growth.py)."""
        with Dir(self.out_dir, create=True) as out:
            out.write(SERIES_JSON, self.series.json_chunks())
            return out.write("index.html", index_chunks(list(self.rows.values()), self.series.series(), self.rows))

    def write_cache(self) -> None:
        """INDEX_CACHE (with ``cache``): by record's worker as it leaves (idle or stopped), not with
        every index.html of a storm (1.5 MB of JSON at 2000 kills). A worker that died leaves an
        older one: the captures written since are read at its next start."""
        if self.cache and self._cache_dirty:
            with Dir(self.out_dir, create=True) as out:
                out.write(INDEX_CACHE, self._cache_json())
            self._cache_dirty = False

    def _cache_json(self) -> str:
        kills = {}
        for folder, row in self.rows.items():
            if folder in self._stats:
                entry = self.series.entries.get(folder)
                kills[folder] = {"stat": list(self._stats[folder]), "row": dataclasses.asdict(row),
                                 "entry": dataclasses.asdict(entry) if entry is not None else None}
        return json.dumps({"version": INDEX_CACHE_VERSION, "kills": kills}, ensure_ascii=False)


#: fields that repeat from kill to kill (sizes, categories, host, command): one string each, shared
_ROW_COMMON = ("usage", "limit", "categories", "incident", "host", "kind", "killer")
_ENTRY_COMMON = ("host", "clock", "comm", "mostly")
#: the shared strings: a table of our own, not sys.intern. Interned strings are immortal on CPython
#: 3.12.0-3.12.5 (python/cpython#113993, made mortal again in 3.12.6 and 3.13), and a workload names
#: its command and host: one new name a kill would stay for the process's life. Bounded: emptied
#: when full (what was shared stays shared; later kills share anew).
_SHARED: Dict[str, str] = {}
_SHARED_MAX = 4096


def _shared(value: str) -> str:
    got = _SHARED.get(value)
    if got is not None:
        return got
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def _share_strings(folder: str, row: IndexRow, entry: Optional[SeriesKill]) -> None:
    """The row and series entry of a kill hold one string for what they repeat: the folder's name
    (the kill id, in both), its time, the workload, and what repeats from kill to kill (one string in _SHARED).
    Both are kept for every kill folder while record's worker runs (issue 24's soak: a kill every
    5 s never let it leave); they were 1.7 KiB a kill with a Kubernetes pod's names, 1.0 KiB now
    (tests/unit/test_index_memory.py)."""
    for name in _ROW_COMMON:
        value = getattr(row, name)
        if type(value) is str:
            setattr(row, name, _shared(value))
    if row.kill_id == folder:
        row.kill_id = folder
    if entry is None:
        return
    for name in _ENTRY_COMMON:
        value = getattr(entry, name)
        if type(value) is str:
            setattr(entry, name, _shared(value))
    if entry.kill_id == row.kill_id:
        entry.kill_id = row.kill_id
    if entry.when == row.when:
        entry.when = row.when
    if entry.workload == entry.key:
        entry.workload = entry.key


def _has_page(folder: Dir) -> bool:
    """A postmortem.html with something in it: record's worker writes it without an fsync
    (postmortem/stage.py), so a crash may leave it empty; the row then links to the capture."""
    st = folder.lstat(HTML)
    return st is not None and st.st_size > 0


def _stat_key(st: os.stat_result) -> Tuple[int, int, int]:
    return st.st_mtime_ns, st.st_ino, st.st_size


@functools.lru_cache(maxsize=None)
def _field_types(cls) -> Dict[str, tuple]:
    """Each field's allowed types: (str,), (float, NoneType) for Optional[float], ..."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) or (hints[f.name],) for f in dataclasses.fields(cls)}


def _typed(cls, data) -> Optional[object]:
    """``cls`` (a dataclass of plain fields) from ``data``, or None when a field is missing, unknown
    or of another type than its declared one (the file is in the output folder: read as untrusted)."""
    if not isinstance(data, dict):
        return None
    types = _field_types(cls)
    if data.keys() != types.keys():
        return None
    for name, value in data.items():
        allowed = types[name]
        if float in allowed and type(value) is int:
            continue  # JSON writes 3.0 as 3.0, but an int field read as float would differ
        if type(value) not in allowed:
            return None
    return cls(**data)


def _read_cache(out: Dir) -> Dict[str, Tuple[Tuple[int, int, int], IndexRow, Optional[SeriesKill]]]:
    """INDEX_CACHE as {folder: (capture's _stat_key, row, series entry)}; {} when absent, too large, of
    another version or not what this code writes (then every capture is read, as without it)."""
    try:
        data = json.loads(out.read(INDEX_CACHE, MAX_INDEX_CACHE).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_CACHE_VERSION or not isinstance(data.get("kills"), dict):
        return {}
    got: Dict[str, Tuple[Tuple[int, int, int], IndexRow, Optional[SeriesKill]]] = {}
    for folder, k in data["kills"].items():
        key = k.get("stat") if isinstance(k, dict) else None
        if not isinstance(key, list) or len(key) != 3 or any(type(x) is not int for x in key):
            continue
        row = _typed(IndexRow, k.get("row"))
        entry = _typed(SeriesKill, k["entry"]) if k.get("entry") is not None else None
        if row is None or (k.get("entry") is not None and entry is None):
            continue
        got[folder] = ((key[0], key[1], key[2]), row, entry)  # type: ignore[assignment]
    return got


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
