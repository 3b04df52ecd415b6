"""Series of kills: one workload killed again and again, as one story (issue 29).

A series is the kills of one workload (``containers.workload_key``: a pod by its UID, a container
by its id, a systemd unit, else the cgroup that hit its limit; the same key record's storm budget
and retention use) on one host, each within ``window_s`` of the one before it. Not a group kill's
incident (capture/groups.py: the victims of *one* OOM): a series spans OOMs, restarts and lives.

Series are derived from the captures of the output folder, never stored inside them: record's
worker, import and ``oomscope series DIR`` read the same folder and agree. ``SeriesIndex`` keeps
one small entry per kill (fed by postmortem/index.py as it reads the folder and as kills come) and
recomputes the series when asked (a sort of the entries: 4,446 kills in ~10 ms); ``series.json``
in the output folder is that index written out (the window it was made with, every series and
its kills), for ``report -f json`` of one capture and for scripts.

Where nothing names the workload (a kill whose kernel report was rate-limited away: no cgroup in
the log), the kills of a host are one series of an unknown workload, said so on its page: they
are together because nothing tells them apart, not because they are known to be one workload.

The window (``--series-window``, default 1 hour): kubelet restarts a crash-looping container
after 10 s, 20 s, 40 s ... capped at 5 minutes (CrashLoopBackOff), systemd's Restart= after
100 ms, docker's restart policy after at most a minute: a restarted workload that is killed again
is killed within its backoff plus one life. An hour keeps every restart of a crash loop whose
lives last up to ~55 minutes in one series, while a workload killed once a day (a nightly batch
job's spike) gets a new series each time: a new story, told with its own post-mortem. Kills
further apart are compared by hand from the index.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field, fields
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from ..containers import workload_key
from ..model import Capture

#: default of ``record --series-window`` and ``import --series-window`` (see the docstring)
WINDOW_S = 3600.0
#: the output folder's series index and the folder of the series pages
SERIES_JSON = "series.json"
SERIES_DIR = "series"
UNKNOWN = "unknown"

_BOOT = re.compile(r"^boot\+(\d+(?:\.\d+)?)s")


@dataclass
class SeriesKill:
    """What a series needs of one kill, taken from its capture once (the index keeps these)."""

    folder: str  # the kill folder's name in the output folder
    kill_id: str
    key: str  # workload_key, or UNKNOWN
    workload: str  # the workload in people's words
    host: str
    clock: str  # "wall" (t: Unix seconds) or "boot" (t: seconds since boot: an undated log)
    t: Optional[float]
    when: str  # as the capture says it (ISO 8601 or boot+...)
    pid: int = 0
    comm: str = ""
    usage_bytes: Optional[int] = None
    limit_bytes: Optional[int] = None
    mostly: str = ""  # the index's words for what filled the limit (report/index.py)


@dataclass
class Series:
    id: str  # the first kill's folder name
    key: str
    workload: str
    host: str
    kills: List[SeriesKill] = field(default_factory=list)

    @property
    def named(self) -> bool:
        return self.key != UNKNOWN

    @property
    def first(self) -> SeriesKill:
        return self.kills[0]

    @property
    def last(self) -> SeriesKill:
        return self.kills[-1]

    def shared_mostly(self) -> str:
        """What filled the limit, when every kill says the same; else the most said, with its count."""
        said = [k.mostly for k in self.kills if k.mostly]
        if not said:
            return ""
        top = max(set(said), key=said.count)
        return top if said.count(top) == len(self.kills) else f"{top} ({said.count(top)} of {len(self.kills)} kills)"

    def to_dict(self, no_page: Optional[set] = None) -> dict:
        kills = []
        for i, k in enumerate(self.kills):
            d = {name: getattr(k, name) for name in _KILL_FIELDS}  # asdict's result: its fields are plain values
            d.update(kill_number=i + 1, capture=f"{k.folder}/capture.json",
                     postmortem=None if no_page is not None and k.folder in no_page else f"{k.folder}/postmortem.html")
            kills.append(d)
        return {"id": self.id, "workload": self.workload, "key": self.key, "host": self.host, "named": self.named,
                "kills": len(self.kills), "first": self.first.when, "last": self.last.when,
                "verdict": self.shared_mostly(), "page": f"{SERIES_DIR}/{self.id}.html" if len(self.kills) > 1 else None,
                "kill_list": kills}


#: a SeriesKill's fields, all plain values (str, int, float, None): series.json lists them per kill
#: (dataclasses.asdict deep-copied each of them: ~0.05 s of a storm import's end, issue 29)
_KILL_FIELDS = tuple(f.name for f in fields(SeriesKill))


def _unix(iso: Optional[str]) -> Optional[float]:
    if not iso:
        return None
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def kill_time(capture: Capture) -> Tuple[str, Optional[float]]:
    """(clock, t): the kill's Unix time when dated, else its seconds since boot (an undated log:
    the kill id says ``boot+S``, or the kernel's timestamp), else ("boot", None)."""
    t = _unix(capture.times.kill_wall)
    if t is not None:
        return "wall", t
    m = _BOOT.match(capture.kill_id or "")
    if m:
        return "boot", float(m.group(1))
    if capture.times.kernel_report_usec is not None:
        return "boot", capture.times.kernel_report_usec / 1e6
    if capture.times.kill_monotonic_ns is not None:
        return "boot", capture.times.kill_monotonic_ns / 1e9
    return "boot", None


def series_key(capture: Capture) -> Tuple[str, str]:
    """(key, the workload in words) of a capture's series."""
    key = workload_key(capture.workload, capture.cgroup)
    if key == "cgroup ?":
        return UNKNOWN, "unknown workload (no cgroup: the kernel's report of these kills was not seen)"
    label = capture.workload.label()
    if capture.workload.kind == "kubernetes" and not capture.workload.pod:
        label = f"pod {capture.workload.pod_uid}"  # a pod's containers share its series
    elif capture.workload.kind == "kubernetes":
        label = f"{capture.workload.namespace}/{capture.workload.pod}"
    return key, label or key


def entry_for(folder: str, capture: Capture, mostly: str = "") -> SeriesKill:
    key, label = series_key(capture)
    clock, t = kill_time(capture)
    return SeriesKill(folder=folder, kill_id=capture.kill_id, key=key, workload=label, host=capture.host.hostname or "",
                      clock=clock, t=t, when=capture.times.kill_wall or capture.kill_id, pid=capture.victim.pid,
                      comm=capture.victim.comm, usage_bytes=capture.at_kill.usage_bytes,
                      limit_bytes=capture.at_kill.limit_bytes, mostly=mostly)


def build_series(kills: Iterable[SeriesKill], window_s: float = WINDOW_S) -> List[Series]:
    """The series of these kills, newest last kill first. A kill with no time stands alone."""
    groups: Dict[Tuple[str, str, str], List[SeriesKill]] = {}
    alone: List[SeriesKill] = []
    for k in kills:
        if k.t is None:
            alone.append(k)
        else:
            groups.setdefault((k.host, k.key, k.clock), []).append(k)
    out: List[Series] = []
    for (host, key, _clock), ks in groups.items():
        ks.sort(key=lambda k: (k.t, k.folder))
        cur: Optional[Series] = None
        for k in ks:
            if cur is None or k.t - cur.last.t > window_s:
                cur = Series(id=k.folder, key=key, workload=k.workload, host=host)
                out.append(cur)
            cur.kills.append(k)
    out += [Series(id=k.folder, key=k.key, workload=k.workload, host=k.host, kills=[k]) for k in alone]
    out.sort(key=lambda s: (s.last.clock == "wall", s.last.t or 0.0), reverse=True)
    return out


class SeriesIndex:
    """One entry per kill folder; the series recomputed when asked after a change."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self.entries: Dict[str, SeriesKill] = {}
        self._series: Optional[List[Series]] = None
        self._of: Dict[str, Tuple[Series, int]] = {}
        #: series ids whose kills changed since the last ``take_changed`` (their pages are due)
        self._changed_folders: set = set()

    def add(self, entry: SeriesKill, changed: bool = True) -> None:
        """``changed``: its series' page is due (not for a kill whose page was written before:
        record's worker starting from the rows it kept, postmortem/index.py INDEX_CACHE)."""
        self.entries[entry.folder] = entry
        self._series = None
        if changed:
            self._changed_folders.add(entry.folder)

    def mark_changed(self, folder: str) -> None:
        """The page of this kill's series is due."""
        self._changed_folders.add(folder)

    def remove(self, folder: str) -> None:
        found = self.of(folder) if folder in self.entries else None
        if self.entries.pop(folder, None) is not None:
            self._series = None
            # the kills left of its series: their page is due (renamed when the first one went)
            self._changed_folders |= {k.folder for k in found[0].kills if k.folder != folder} if found else set()
            self._changed_folders.discard(folder)

    def series(self) -> List[Series]:
        if self._series is None:
            self._series = build_series(self.entries.values(), self.window_s)
            self._of = {k.folder: (s, i + 1) for s in self._series for i, k in enumerate(s.kills)}
        return self._series

    def of(self, folder: str) -> Optional[Tuple[Series, int]]:
        """(the kill's series, its number in it)."""
        self.series()
        return self._of.get(folder)

    def info(self, folder: str) -> Optional[dict]:
        """``report -f json``'s ``series``: {id, kill_number, kills_so_far, workload}; kills_so_far
        counts the series' kills known now (later ones included)."""
        found = self.of(folder)
        if found is None:
            return None
        s, n = found
        return {"id": s.id, "kill_number": n, "kills_so_far": len(s.kills), "workload": s.workload}

    def take_changed(self) -> List[Series]:
        """The series (of more than one kill) that gained a kill since the last call."""
        folders, self._changed_folders = self._changed_folders, set()
        seen: Dict[str, Series] = {}
        for f in folders:
            found = self.of(f)
            if found is not None and len(found[0].kills) > 1:
                seen[found[0].id] = found[0]
        return list(seen.values())

    def to_json(self, no_page: Optional[set] = None, indent: Optional[int] = None) -> str:
        if indent is None:
            return "".join(self.json_chunks(no_page))
        return json.dumps({"window_s": self.window_s, "series": [s.to_dict(no_page) for s in self.series()]},
                          ensure_ascii=True, indent=indent, separators=(",", ": "))

    def json_chunks(self, no_page: Optional[set] = None) -> Iterator[str]:
        """to_json() (one line) a series at a time, for a writer that writes them as they come
        (safefs.Dir.write): every kill's dict at once was ~1 KiB of record's worker's memory per
        kill, at every series.json it writes (bench/worker_growth.py). The same text."""
        yield '{"window_s":' + json.dumps(self.window_s) + ',"series":['
        for i, s in enumerate(self.series()):
            yield ("," if i else "") + json.dumps(s.to_dict(no_page), ensure_ascii=True, separators=(",", ":"))
        yield "]}"


def read_series_json(out_dir: str) -> Optional[dict]:
    """``out_dir``'s series.json as written (None: none, or not readable)."""
    try:
        with open(os.path.join(out_dir, SERIES_JSON), "rb") as f:
            data = json.loads(f.read(64 << 20))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("series"), list) else None


def read_window(out_dir: str) -> Optional[float]:
    """The window series.json of ``out_dir`` was made with (None: no readable series.json)."""
    w = (read_series_json(out_dir) or {}).get("window_s")
    return float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 else None


def describe_series(index, fmt: str = "text") -> str:
    """``oomscope series DIR``: JSON (every series with its kills) or a line per series."""
    from ..errors import OomscopeError
    from ..terminal import json_safe, terminal_safe
    from ..units import fmt_bytes

    if fmt == "json":
        return json_safe(index.series.to_json(index.no_page, indent=2)) + "\n"
    if fmt != "text":
        raise OomscopeError(f"unknown format {fmt!r} (text or json)")
    lines = []
    for s in index.series.series():
        last = s.last
        what = (f"{len(s.kills)} kills, {s.first.when} .. {last.when}" if len(s.kills) > 1 else f"1 kill, {last.when}")
        page = f" -> {SERIES_DIR}/{s.id}.html" if len(s.kills) > 1 else ""
        lines.append(terminal_safe(f"{s.id}: {s.workload}{' on ' + s.host if s.host else ''}: {what}; last {last.comm} "
                                   f"at {fmt_bytes(last.usage_bytes)} of {fmt_bytes(last.limit_bytes)}; "
                                   f"{s.shared_mostly() or 'not analysed'}{page}"))
    skipped = [f"(left out: {f}: {why[:200]})" for f, why in index.skipped]
    return "".join(line + "\n" for line in lines + [terminal_safe(x) for x in skipped]) or "no kills in the folder\n"
