"""The kernel waking the sampler when a limited cgroup fills up.

On cgroup v2 an inotify watch of each limited cgroup's memory.events (kernel/inotify.py): it
changes when the cgroup hits its limit. On v1 an eventfd on each limited cgroup's usage
thresholds (kernel/memcg_thresholds.py) at V1_THRESHOLD_RATIOS of its limit, set again when the
limit changes. One poll() waits on all of them. Used by the sampler thread alone.
"""

from __future__ import annotations

import select
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Set, Tuple, Union

from ..kernel import memcg_thresholds
from ..kernel.cgroupfs import MemoryHierarchy
from ..kernel.inotify import Inotify

#: cgroup v1: fractions of a limited cgroup's limit whose crossing wakes the sampler (the bands'
#: edges, and the limit itself: usage never passes it, so 99% is "hitting it")
V1_THRESHOLD_RATIOS = (0.25, 0.5, 0.9, 0.99)
#: cgroup v1: threads registering thresholds at once. Each registration waits for an RCU grace
#: period (synchronize_rcu() in __mem_cgroup_usage_register_event, mm/memcontrol-v1.c): ~10-17 ms
#: a write here, asleep, not on a CPU, so 2000 cgroups (8000 writes) held the sampler 2.3 minutes.
#: Concurrent waiters share a grace period: 1.07 ms a write with 32 threads (48 cgroups, measured
#: on this host, 6.18), 10 ms one at a time.
V1_REGISTER_THREADS = 32


def _register_all(hier: MemoryHierarchy, todo: List[Tuple[str, int]]) -> List[Union[int, OSError]]:
    """The eventfd of each (cgroup, limit), or the OSError that refused it, in order."""

    def one(item: Tuple[str, int]) -> Union[int, OSError]:
        cg, limit = item
        try:
            return memcg_thresholds.register(hier.fs_path(cg), [int(limit * r) for r in V1_THRESHOLD_RATIOS])
        except OSError as exc:
            return exc

    if len(todo) < 4:
        return [one(item) for item in todo]
    with ThreadPoolExecutor(min(V1_REGISTER_THREADS, len(todo)), thread_name_prefix="thresholds") as pool:
        return list(pool.map(one, todo))


class LimitNotifications:
    def __init__(self, hier: MemoryHierarchy, enabled: bool = True):
        self.hier = hier
        self._poll: Optional[select.poll] = None
        self._inotify: Optional[Inotify] = None
        self._wd_cgroup: Dict[int, str] = {}
        self._cgroup_wd: Dict[str, int] = {}
        self.v1 = enabled and hier.version == 1
        self._cgroup_efd: Dict[str, Tuple[Optional[int], int]] = {}  # cgroup -> (eventfd or None: refused, limit)
        self._efd_cgroup: Dict[int, str] = {}
        self.errors = 0  # cgroups whose notification could not be set up
        self.last_error: Optional[str] = None  # the latest of them: "cgroup: reason", for the log
        if enabled and hier.version == 2:
            try:
                self._inotify = Inotify()
            except (OSError, AttributeError):  # no inotify: poll only
                self._inotify = None
        if self._inotify is not None or self.v1:
            self._poll = select.poll()
            if self._inotify is not None:
                self._poll.register(self._inotify.fd, select.POLLIN)

    @property
    def active(self) -> bool:
        return self._poll is not None

    def sync(self, limited: Dict[str, Optional[int]]) -> None:
        """A notification on every limited cgroup ({cgroup: its limit, None before its first
        reading}), and none on the others."""
        if self._inotify is not None:
            for cg in [c for c in self._cgroup_wd if c not in limited]:
                wd = self._cgroup_wd.pop(cg)
                self._wd_cgroup.pop(wd, None)
                self._inotify.remove(wd)
            for cg in limited:
                if cg not in self._cgroup_wd:
                    wd = self._inotify.add(self.hier.fs_path(cg) + "/memory.events")
                    if wd is not None:
                        self._cgroup_wd[cg] = wd
                        self._wd_cgroup[wd] = cg
        if self.v1:
            for cg, (_efd, limit) in list(self._cgroup_efd.items()):
                if limited.get(cg) != limit:
                    self._drop_thresholds(cg)
            # the limit is known from the first reading (before it, None)
            todo = [(cg, limit) for cg, limit in limited.items() if limit and cg not in self._cgroup_efd]
            for (cg, limit), efd in zip(todo, _register_all(self.hier, todo)):
                if isinstance(efd, OSError):  # gone, read-only (systemd's ProtectControlGroups), out of descriptors: polled
                    self.errors += 1
                    self.last_error = f"{cg}: {efd.strerror or efd}"
                    self._cgroup_efd[cg] = (None, limit)  # not retried until its limit changes
                    continue
                self._cgroup_efd[cg] = (efd, limit)
                self._efd_cgroup[efd] = cg
                self._poll.register(efd, select.POLLIN)

    def _drop_thresholds(self, cg: str) -> None:
        efd, _limit = self._cgroup_efd.pop(cg)
        if efd is not None:
            self._efd_cgroup.pop(efd, None)
            self._poll.unregister(efd)
            memcg_thresholds.unregister(efd)

    def poll(self, timeout_ms: float) -> Optional[Set[str]]:
        """The cgroups that reported filling up within the timeout (empty: none); None when it
        timed out."""
        # poll(), not select(): one eventfd per limited cgroup on v1 passes FD_SETSIZE (1024)
        ready = self._poll.poll(max(0.0, timeout_ms))
        if not ready:
            return None
        hit: Set[str] = set()
        for fd, _mask in ready:
            if self._inotify is not None and fd == self._inotify.fd:
                hit |= {self._wd_cgroup.get(wd) for wd in self._inotify.read()} - {None}
                if self._inotify.overflowed:
                    self._inotify.overflowed = False
                    hit |= set(self._cgroup_wd)
            elif fd in self._efd_cgroup:
                memcg_thresholds.drain(fd)
                hit.add(self._efd_cgroup[fd])
        return hit

    def describe(self) -> str:
        """How the kernel wakes the sampler when a limited cgroup fills up."""
        if self._inotify is not None:
            return "memory.events (inotify)"
        if self.v1:
            return "usage thresholds at 25/50/90/99% (eventfd)"
        return "none, polling"

    def notified(self, cgroup: str) -> bool:
        return cgroup in self._cgroup_wd or self._cgroup_efd.get(cgroup, (None, 0))[0] is not None

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        for cg in list(self._cgroup_efd):
            self._drop_thresholds(cg)
        self.v1 = False
        self._poll = None
