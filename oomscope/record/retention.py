"""`record --keep N|Nd`: prune old post-mortems, newest kept; and each workload's disk budget.

Only kill folders are touched: real folders (never a link) of ours holding the marker oomscope
writes when it makes one (safefs.MARKER), not folders that merely hold a capture.json; and only
the files oomscope writes in them: a folder with anything else in it is emptied of ours and left
in place.

Storms are shared out by workload (record/budget.py ``workload_key``; a ``Ledger`` knows each kill
folder's, read once from the captures on disk, then kept up to date by record): ``--keep N`` takes
from the workload with the most kill folders first (its oldest first), so one tenant's storm never
takes another's last post-mortems: every workload keeps its newest while there are at most N
workloads (beyond that, the count N wins: those whose newest kill is oldest go). ``--keep Nd``
stays a plain age limit. ``Ledger.trim`` holds a workload to its byte budget
(``record --workload-disk``) by removing its own oldest post-mortems, never its newest.
"""

from __future__ import annotations

import heapq
import json
import os
import stat
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import OomscopeError
from ..model import CgroupInfo, Workload
from ..safefs import MARKER, OURS, Dir
from .budget import workload_key

#: the most of a capture read to learn its workload (oomscope's are tens of KB)
READ_LIMIT = 16 << 20
#: the workload of a kill folder whose capture cannot be read
UNKNOWN = "?"
#: a kill folder this old (seconds, by its capture's time) is measured for good, post-mortem or not
SETTLED_S = 600.0
#: --max-disk, once reached, removes down to this share below it: the choice walks every folder
#: (14 ms at 15,000 folders, 1 GiB of them), once per ~5% of the folders written, not at every kill
TOTAL_SLACK = 0.05


@dataclass
class Retention:
    count: Optional[int] = None
    max_age_s: Optional[float] = None

    @classmethod
    def parse(cls, text: str) -> "Retention":
        t = text.strip().lower()
        try:
            if t.endswith("d"):
                days = float(t[:-1])
                if days <= 0:
                    raise ValueError
                return cls(max_age_s=days * 86400)
            n = int(t)
            if n < 1:
                raise ValueError
            return cls(count=n)
        except ValueError:
            raise OomscopeError(f"--keep must be a number of post-mortems (100) or of days (7d), not {text!r}") from None

    def prune(self, out_dir: str, keep: Iterable[str] = (), now: Optional[float] = None,
              ledger: Optional["Ledger"] = None) -> List[str]:
        """Removes the kill folders beyond the limit; returns their names. ``ledger``: the kill
        folders as record knows them (else read from ``out_dir`` now)."""
        now = time.time() if now is None else now
        keep = {os.path.basename(os.path.abspath(k)) for k in keep}
        try:
            out = Dir(out_dir)
        except FileNotFoundError:
            return []
        with out:
            if ledger is None:
                ledger = Ledger.read(out)
            removed = []
            for name in self.choose(ledger.folders, keep, now):
                ledger.discard(name)
                if out.remove_kill_folder(name):
                    removed.append(name)
        return removed

    def choose(self, folders: Dict[str, "Folder"], keep: Set[str] = frozenset(), now: Optional[float] = None) -> List[str]:
        """The kill folders to remove (a pure function of the ledger): those older than the age
        limit, then, while more than ``count`` are left, the oldest of the workload with the most
        (ties: the one whose oldest is oldest) down to one each, then the oldest overall."""
        now = time.time() if now is None else now
        gone = [n for n, f in folders.items() if n not in keep and self.max_age_s is not None and now - f.time > self.max_age_s]
        if self.count is None:
            return gone
        dropped = set(gone)
        left = {n: f for n, f in folders.items() if n not in dropped}
        # a folder in ``keep`` older than the newest ``count`` is kept beyond them (it takes no one's place)
        ranked = sorted(((f.time, n) for n, f in left.items()), reverse=True)
        extra = len(left) - self.count - sum(1 for _t, n in ranked[self.count:] if n in keep)
        if extra <= 0:
            return gone
        held: Dict[str, int] = {}
        removable: Dict[str, List[tuple]] = {}
        for n, f in left.items():
            held[f.workload] = held.get(f.workload, 0) + 1
            if n not in keep:
                removable.setdefault(f.workload, []).append((f.time, n, 1))
        for items in removable.values():
            items.sort(reverse=True)  # oldest last: popped first
        taken, extra = take_heaviest(removable, held, extra, least=1)
        gone += taken
        if extra > 0:  # more workloads than --keep N: the count wins, oldest first
            rest = sorted((items[-1][0], items[-1][1]) for items in removable.values() if items)
            gone.extend(n for _t, n in rest[:extra])
        return gone


def take_heaviest(removable: Dict[str, List[tuple]], held: Dict[str, int], excess: int,
                  least: Optional[int] = None) -> Tuple[List[str], int]:
    """The share-out of --keep N (by folders) and --max-disk (by bytes): while ``excess`` > 0, the
    workload holding most (``held``; ties: the one whose oldest is oldest) gives up its oldest
    removable folder (``removable[w]``: (time, name, weight), oldest last; popped as taken). Stops
    when nothing is left to take, or when the workload holding most holds ``least`` or less.
    Returns the names taken and the excess left."""
    heap = [(-held[w], items[-1][0], w) for w, items in removable.items() if items]
    heapq.heapify(heap)
    gone: List[str] = []
    while excess > 0 and heap:
        neg, _oldest, w = heapq.heappop(heap)
        if least is not None and -neg <= least:
            break  # every workload is down to ``least``
        items = removable[w]
        _t, name, weight = items.pop()
        gone.append(name)
        held[w] -= weight
        excess -= weight
        if items:
            heapq.heappush(heap, (-held[w], items[-1][0], w))
    return gone, excess


@dataclass
class Folder:
    """A kill folder as the ledger knows it."""

    workload: str
    time: float  # its capture's modification time
    bytes: Optional[int] = None  # on disk, once measured with its post-mortem in it


class Ledger:
    """The kill folders of an output folder and each one's workload: read once (``read``), then
    kept up to date by record as it writes and removes them, so that each kill costs no scan of
    the folder."""

    def __init__(self) -> None:
        self.folders: Dict[str, Folder] = {}
        #: bytes of the folders whose size is known for good (Folder.bytes set), and the names of
        #: those not measured for good yet (new, or read at the start): trim_total's sum without a
        #: stat of every folder at every kill
        self._measured = 0
        self._unmeasured: Set[str] = set()

    @classmethod
    def read(cls, out: Dir) -> "Ledger":
        ledger = cls()
        for name, t in out.kill_folders():
            ledger.folders[name] = Folder(_workload_on_disk(out, name), t)
            ledger._unmeasured.add(name)
        return ledger

    def add(self, name: str, workload: str, t: Optional[float] = None) -> None:
        self.discard(name)  # (a name written again: its old size leaves the sum)
        self.folders[name] = Folder(workload, time.time() if t is None else t)
        self._unmeasured.add(name)

    def discard(self, name: str) -> None:
        f = self.folders.pop(name, None)
        if f is not None and f.bytes is not None:
            self._measured -= f.bytes
        self._unmeasured.discard(name)

    def trim(self, out_dir: str, workload: str, max_bytes: int) -> List[str]:
        """Removes the workload's oldest kill folders while its folders take more than
        ``max_bytes`` on disk; never its newest. Returns their names."""
        mine = sorted((f.time, n) for n, f in self.folders.items() if f.workload == workload)
        if len(mine) <= 1:
            return []
        removed = []
        with Dir(out_dir) as out:
            total = sum(self._bytes(out, n) for _t, n in mine)
            for _t, name in mine[:-1]:
                if total <= max_bytes:
                    break
                total -= self._bytes(out, name)
                self.discard(name)
                if out.remove_kill_folder(name):
                    removed.append(name)
        return removed

    def trim_total(self, out_dir: str, max_bytes: int, keep: Set[str] = frozenset(),
                   now: Optional[float] = None, slack: float = TOTAL_SLACK) -> List[str]:
        """Once all kill folders take more than ``max_bytes`` on disk, removes them down to
        ``slack`` below it: the oldest of the workload whose folders take most (its newest kept),
        until every workload is down to its newest; then the oldest overall, the disk's limit
        winning over the count of workloads. Never a folder in ``keep`` (names: the kill just
        written). Returns their names."""
        now = time.time() if now is None else now
        with Dir(out_dir) as out:
            total = self.total_bytes(out, now)
            if total <= max_bytes:
                return []
            max_bytes -= int(max_bytes * slack)
            held: Dict[str, int] = {}
            removable: Dict[str, List[tuple]] = {}
            for n, f in self.folders.items():
                size = self._bytes(out, n, now)
                held[f.workload] = held.get(f.workload, 0) + size
                removable.setdefault(f.workload, []).append((f.time, n, size))
            for items in removable.values():
                items.sort(reverse=True)  # newest first; oldest last: popped first
                del items[0]  # each workload's newest is taken last (below)
                items[:] = [i for i in items if i[1] not in keep]
            gone, over = take_heaviest(removable, held, total - max_bytes)
            total = max_bytes + over
            if total > max_bytes:  # every workload down to its newest: the oldest of them go
                taken = set(gone)
                newest = sorted((f.time, n) for n, f in self.folders.items() if n not in keep and n not in taken)
                for _t, name in newest:
                    if total <= max_bytes:
                        break
                    gone.append(name)
                    total -= self._bytes(out, name, now)
            removed = []
            for name in gone:
                self.discard(name)
                if out.remove_kill_folder(name):
                    removed.append(name)
        return removed

    def total_bytes(self, out: Dir, now: Optional[float] = None) -> int:
        """What the kill folders take on disk: those measured for good, and the others measured now."""
        now = time.time() if now is None else now
        return self._measured + sum(self._bytes(out, n, now) for n in list(self._unmeasured))

    def _bytes(self, out: Dir, name: str, now: Optional[float] = None) -> int:
        f = self.folders.get(name)
        if f is None:
            return 0
        if f.bytes is not None:
            return f.bytes
        n, done = folder_bytes(out, name)
        # A folder whose post-mortem never came (its render failed) is taken as it is once it is
        # older than the worker takes: not measured again at every kill
        if done or (now is not None and now - f.time > SETTLED_S):
            f.bytes = n
            self._measured += n
            self._unmeasured.discard(name)
        return n


def folder_bytes(out: Dir, name: str) -> tuple:
    """(bytes a kill folder takes on disk: the folder and oomscope's files in it, whether its
    post-mortem is there yet)."""
    total, done = 0, False
    try:
        st = out.lstat(name)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return 0, True
        total += st.st_blocks * 512
        with out.subdir(name) as sub:
            for n in OURS + (MARKER,):
                fst = sub.lstat(n)
                if fst is not None and stat.S_ISREG(fst.st_mode):
                    total += fst.st_blocks * 512
                    done = done or n == "postmortem.html"
    except OSError:
        return total, True
    return total, done


def _workload_on_disk(out: Dir, name: str) -> str:
    """A kill folder's workload, from its capture (UNKNOWN when it cannot be read)."""
    try:
        with out.subdir(name) as sub:
            data = json.loads(sub.read("capture.json", READ_LIMIT))
        w, cg = data.get("workload") or {}, data.get("cgroup") or {}
        workload = Workload(**{k: v for k, v in w.items() if k in Workload.__dataclass_fields__ and k != "notes"
                               and (v is None or isinstance(v, str))})
        cgroup = CgroupInfo(**{k: v for k, v in cg.items() if k in ("task_memcg", "oom_memcg") and (v is None or isinstance(v, str))})
        return workload_key(workload, cgroup)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return UNKNOWN
