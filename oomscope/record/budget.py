"""A storm's share: how many of a workload's kills get a capture and a post-mortem.

One tenant that dies 60 times a second (a respawning process in a small cgroup: measured here)
wrote ~60 KB per kill, 13 GB an hour, and under ``--keep N`` flushed every other tenant's
post-mortems. Each workload (``workload_key``: a pod, a container, a systemd unit, else the cgroup
that hit its limit) has a token bucket: a burst of ``burst`` full post-mortems, then one every
``every_s`` seconds. A kill beyond it is not written (no capture, no post-mortem) but counted: the
next kill of the workload that is written carries the count and the times (``model.NotWritten``),
its post-mortem says it, and record's log and metrics count it as it happens. Its BPF event and
kernel report are still joined: only what is written is limited.

The disk side (a byte budget per workload, and ``--keep`` never taking a workload's last
post-mortem for another's) is in record/retention.py.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..containers import workload_key  # noqa: F401  (the budget's key; kept in containers.py, shared with postmortem/series.py)
from ..model import NotWritten

#: defaults of ``record --workload-burst`` and ``--workload-every`` (README.md, "record")
BURST = 10
EVERY_S = 60.0
#: default of ``record --workload-disk``: the most one workload's kill folders take on disk before
#: its own oldest are removed (~900 post-mortems of ~72 KB: 15 hours of a storm at the rate above)
DISK_BYTES = 64 << 20
#: default of ``record --max-disk``: the most all kill folders take on disk together. Each
#: workload's budget does not bound the sum: a tenant whose many pods each die (a Deployment of
#: crash-looping replicas, a Job's new pod at each retry) is many workloads, and with --keep 30d
#: it could fill the node's disk (the soak's rate, a new pod killed every 2.5 s, wrote ~100 MB/h:
#: ~69 KiB a kill folder on ext4, bench/README.md "Soak"). 1 GiB holds ~15,000 of them.
MAX_DISK_BYTES = 1 << 30
#: workloads whose buckets are kept; beyond, the one touched longest ago is forgotten (its count of
#: kills not written, if any, is said in the log first)
MAX_WORKLOADS = 4096


def budget_words(burst: int, every_s: float) -> str:
    """The budget in a few words, as the post-mortem and the log say it."""
    return f"{burst} post-mortem{'s' if burst != 1 else ''} in a row, then one every {every_s:g} s"


@dataclass
class _Bucket:
    tokens: float
    at_s: float  # the clock when ``tokens`` was last brought up to date
    dropped: int = 0
    first_wall: Optional[str] = None  # of the first kill not written since the last written one
    last_wall: Optional[str] = None


@dataclass
class Admission:
    write: bool
    #: a written kill: the kills of its workload not written since the previous written one
    not_written: Optional[NotWritten] = None
    #: a kill not written that begins a run of them: record says so once in its log
    starts_drop: bool = False


class Budget:
    """Token buckets, one per workload. ``every_s`` 0 (or ``burst`` 0): no limit."""

    def __init__(self, burst: int = BURST, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic,
                 max_workloads: int = MAX_WORKLOADS):
        self.burst = burst
        self.every_s = every_s
        self.clock = clock
        self.max_workloads = max_workloads
        self._buckets: "collections.OrderedDict[str, _Bucket]" = collections.OrderedDict()
        #: (workload, NotWritten) of buckets forgotten with kills still unsaid (the caller logs them)
        self.forgotten: List[tuple] = []

    @property
    def limited(self) -> bool:
        return self.burst > 0 and self.every_s > 0

    def words(self) -> str:
        return budget_words(self.burst, self.every_s) if self.limited else "no limit"

    def admit(self, key: str, wall: Optional[str]) -> Admission:
        """Whether this kill of workload ``key`` (at ``wall``, ISO 8601) is written."""
        if not self.limited:
            return Admission(True)
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(tokens=float(self.burst), at_s=now)
            self._forget_beyond()
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at_s) / self.every_s)
            b.at_s = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            said = self._take(b)
            return Admission(True, said)
        b.dropped += 1
        b.first_wall = b.first_wall or wall
        b.last_wall = wall
        return Admission(False, starts_drop=b.dropped == 1)

    def pending(self) -> List[tuple]:
        """(workload, NotWritten) of every workload with kills not written since its last written
        one (said in the log when record stops: no later post-mortem will say them)."""
        return [(k, self._summary(b)) for k, b in self._buckets.items() if b.dropped]

    def _take(self, b: _Bucket) -> Optional[NotWritten]:
        if not b.dropped:
            return None
        said = self._summary(b)
        b.dropped, b.first_wall, b.last_wall = 0, None, None
        return said

    def _summary(self, b: _Bucket) -> NotWritten:
        return NotWritten(count=b.dropped, first_wall=b.first_wall, last_wall=b.last_wall, budget=self.words())

    def _forget_beyond(self) -> None:
        # A bucket refilled by now with no kill left unsaid admits as a new one would: forgotten,
        # oldest first (the soak: every kill a new pod; 4,096 buckets kept otherwise, ~1.3 MiB,
        # filling for 5.7 hours at a kill every 5 s: bench/soak_bounds.py)
        now = self.clock()
        while self._buckets:
            key, b = next(iter(self._buckets.items()))
            if b.dropped or b.tokens + max(0.0, now - b.at_s) / self.every_s < self.burst or len(self._buckets) == 1:
                break
            del self._buckets[key]
        while len(self._buckets) > self.max_workloads:
            key, b = self._buckets.popitem(last=False)
            if b.dropped:
                self.forgotten.append((key, self._summary(b)))
