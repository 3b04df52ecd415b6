"""Memory cgroups, v1 and v2, behind one interface.

Parsers (``parse_*``) take file contents; ``MemoryHierarchy`` does the thin I/O with a swappable
root so tests can point it at a fixture tree. Cgroup paths are the kernel's ("/a/b", relative to
the hierarchy's root), as printed in the OOM report and /proc/<pid>/cgroup.

Cgroups vanish while we read them (their tasks exit and an orchestrator removes them): every
read of a cgroup file returns None for a file that is gone instead of raising.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import CgroupError
from ..model import CgroupState

# cgroup v1 shows "no limit" as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 with 4 KiB
# pages); the OOM report prints it in kB (9007199254740988kB). Anything this large is no limit.
UNLIMITED_THRESHOLD_BYTES = 1 << 60


#: the files peeked most often (usage, limit), kept open first (MemoryHierarchy._read_kept)
_HOT_FILES = frozenset(("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.current", "memory.max"))


def cgroup_within(child: str, parent: str) -> bool:
    """Whether cgroup path ``child`` is ``parent`` or below it ("/a/b" is within "/a", "/ab" is not)."""
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


def limit_or_none(value_bytes: Optional[int]) -> Optional[int]:
    if value_bytes is None or value_bytes >= UNLIMITED_THRESHOLD_BYTES:
        return None
    return value_bytes


def parse_memory_stat(text: str) -> Dict[str, int]:
    """memory.stat (v1 or v2): ``key value`` lines → dict. Unparseable lines are skipped.

    The keys are interned: the sampler reads memory.stat of every watched cgroup, and each key of
    each reading was its own string (~40 objects of ~60 bytes a reading on v1: 10 MB for a pass over 2000
    cgroups, measured with tracemalloc, bench/lean_breakdown.py). An interned string is freed with
    its last user, so keys from hostile text are not kept."""
    out: Dict[str, int] = {}
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[sys.intern(parts[0])] = int(parts[1])
        except ValueError:
            continue
    return out


parse_flat_keyed = parse_memory_stat  # memory.events has the same shape


def parse_pressure(text: str) -> Dict[str, float]:
    """memory.pressure (PSI): ``some avg10=0.00 avg60=0.00 avg300=0.00 total=0`` (and ``full``)
    → {"some_avg10": 0.0, ..., "some_total_us": 0.0, ...}."""
    out: Dict[str, float] = {}
    for line in text.split("\n"):
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep:
                continue
            try:
                out[f"{parts[0]}_{key}_us" if key == "total" else f"{parts[0]}_{key}"] = float(value)
            except ValueError:
                continue
    return out


def parse_limit(text: str) -> Optional[int]:
    """memory.max / memory.limit_in_bytes → bytes, or None for no limit ("max" or v1's huge value)."""
    value = text.strip()
    if value in ("max", ""):
        return None
    try:
        return limit_or_none(int(value))
    except ValueError:
        return None


def parse_mounts_for_memory(mounts_text: str) -> Optional[Tuple[str, int]]:
    """/proc/self/mounts → (mount point, version) of the hierarchy with the memory controller.

    A v1 mount lists "memory" among its options. A v2 mount is a candidate; whether it has the
    memory controller is known only from its cgroup.controllers (checked by the caller).
    """
    v2 = None
    for line in mounts_text.split("\n"):
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt, fstype, opts = parts[1], parts[2], parts[3].split(",")
        mnt = mnt.replace("\\040", " ")
        if fstype == "cgroup" and "memory" in opts:
            return mnt, 1
        if fstype == "cgroup2" and v2 is None:
            v2 = mnt
    if v2 is not None:
        return v2, 2
    return None


@dataclass
class MemoryHierarchy:
    """The mounted hierarchy that has the memory controller."""

    root: str
    version: int
    # cgroup -> filesystem path: the sampler reads ~10 files per cgroup per pass, and normalizing
    # the path each time was a tenth of its CPU with 500 cgroups (measured, bench/scale.py). Read
    # by every thread that reads cgroupfs (sampler, kmsg follower, metrics) without a lock (one
    # dict.get); every write holds _paths_lock, so the sampler's prune never iterates a dict another
    # thread is adding to ("dictionary changed size during iteration": tests/unit/test_cgroupfs_threads.py)
    _paths: Dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _paths_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    # (cgroup, file) -> a descriptor kept open by the sampler thread (``keep_files_open``)
    _kept: Optional[Dict[Tuple[str, str], int]] = field(default=None, init=False, repr=False, compare=False)
    _kept_owner: int = field(default=0, init=False, repr=False, compare=False)
    _kept_max: int = field(default=0, init=False, repr=False, compare=False)

    @classmethod
    def detect(cls, mounts_path: str = "/proc/self/mounts") -> "MemoryHierarchy":
        try:
            with open(mounts_path) as f:
                mounts = f.read()
        except OSError as exc:
            raise CgroupError(f"cannot read {mounts_path}: {exc.strerror}") from None
        found = parse_mounts_for_memory(mounts)
        if found is not None and found[1] == 2:
            try:
                with open(os.path.join(found[0], "cgroup.controllers")) as f:
                    if "memory" not in f.read().split():
                        found = None
            except OSError:
                found = None
        if found is None:
            raise CgroupError("no memory cgroup hierarchy is mounted (neither v1 'memory' nor cgroup2 with memory)")
        return cls(root=found[0], version=found[1])

    # --- paths ---
    def fs_path(self, cgroup: str) -> str:
        path = self._paths.get(cgroup)
        if path is not None:
            return path
        rel = cgroup.lstrip("/")
        path = os.path.normpath(os.path.join(self.root, rel))
        if not (path == self.root or path.startswith(self.root.rstrip("/") + "/")):
            raise CgroupError(f"cgroup path escapes the hierarchy: {cgroup!r}")
        with self._paths_lock:
            if len(self._paths) >= 16384:
                self._paths.clear()
            self._paths[cgroup] = path
        return path

    def cgroup_of(self, fs_path: str) -> str:
        rel = os.path.relpath(fs_path, self.root)
        return "/" if rel == "." else "/" + rel

    # --- descriptors kept open ---
    def keep_files_open(self, max_fds: int) -> None:
        """From now on the calling thread (the sampler's) keeps each counter file it reads open, up
        to ``max_fds`` of them, and reads it again with one pread at offset 0: 1 us instead of 8 for
        open, read, read, close (measured on this host, bench/README.md "A lean recorder"). A
        seq_file read at offset 0 starts the file over (fs/seq_file.c, seq_read_iter), so each
        pread is a new reading. cgroup.procs is never kept: cgroup v1 keeps a pid list per open
        file (kernel/cgroup/cgroup-v1.c, cgroup_pidlist_start). Other threads open and close as before."""
        self._kept = {}
        self._kept_owner = threading.get_ident()
        self._kept_max = max_fds

    def forget_files(self, cgroup: str) -> None:
        """Closes the kept descriptors of a cgroup no longer watched (the sampler thread only)."""
        kept = self._kept
        if kept is None or threading.get_ident() != self._kept_owner:
            return
        for key in [k for k in kept if k[0] == cgroup]:
            os.close(kept.pop(key))

    def forget_paths_except(self, cgroups) -> None:
        """Drops the cached paths of cgroups not in ``cgroups`` (gone, or never watched): with pods
        made and removed all day the cache otherwise filled to its cap before it was cleared (a
        sawtooth of up to 16,384 paths, ~5 MiB: the soak benchmark's recorder grew all its hour)."""
        with self._paths_lock:
            self._paths = {c: p for c, p in self._paths.items() if c in cgroups}

    def forget_files_except(self, cgroups) -> None:
        """Closes the kept descriptors of every cgroup not in ``cgroups`` (the sampler thread only):
        files read on the way to a limit (``limited_ancestor``) belong to cgroups that are never
        watched, so nothing else closes them once those cgroups are gone (the soak benchmark found
        700 descriptors of removed pods' limit files after half an hour of churn)."""
        kept = self._kept
        if kept is None or threading.get_ident() != self._kept_owner:
            return
        for key in [k for k in kept if k[0] not in cgroups]:
            os.close(kept.pop(key))

    def close_files(self) -> None:
        """Closes every kept descriptor (once the sampler thread has stopped)."""
        kept, self._kept = self._kept, None
        for fd in (kept or {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def _read_kept(self, kept: Dict[Tuple[str, str], int], cgroup: str, name: str) -> Optional[str]:
        key = (cgroup, name)
        fd = kept.get(key)
        if fd is not None:
            try:
                data = os.pread(fd, 65536, 0)
                if len(data) < 65536:
                    return data.decode("utf-8", "replace")
            except OSError:  # ENODEV: the cgroup was removed (maybe made again under the same name)
                pass
            del kept[key]
            os.close(fd)
        # Past 3/5 of the budget only the usage and limit files are kept: they are read most often
        # (peeks, and the checks of idle cgroups), memory.stat and the rest at full readings only.
        # 2000 cgroups on v1 want 14000 descriptors (7 files each); with a 20000 hard limit
        # (9936 kept), the cgroups met last had none kept, their usage opened at every peek.
        if len(kept) >= (self._kept_max if name in _HOT_FILES else self._kept_max * 3 // 5):
            return self._read_open(cgroup, name)
        try:
            fd = os.open(self.fs_path(cgroup) + "/" + name, os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, CgroupError):
            return None
        try:
            data = os.pread(fd, 65536, 0)
        except OSError:
            os.close(fd)
            return None
        if len(data) >= 65536:
            os.close(fd)
            return self._read_open(cgroup, name)
        kept[key] = fd
        return data.decode("utf-8", "replace")

    def _read(self, cgroup: str, name: str) -> Optional[str]:
        kept = self._kept
        if kept is not None and name != "cgroup.procs" and threading.get_ident() == self._kept_owner:
            return self._read_kept(kept, cgroup, name)
        return self._read_open(cgroup, name)

    def _read_open(self, cgroup: str, name: str) -> Optional[str]:
        # os.open/os.read rather than open(): half the cost per small file (measured, 500 cgroups)
        try:
            fd = os.open(self.fs_path(cgroup) + "/" + name, os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, CgroupError):
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", "replace")

    def _read_int(self, cgroup: str, name: str) -> Optional[int]:
        text = self._read(cgroup, name)
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            return None

    def exists(self, cgroup: str) -> bool:
        try:
            return os.path.isdir(self.fs_path(cgroup))
        except CgroupError:
            return False

    # --- what a cgroup holds ---
    def procs(self, cgroup: str) -> List[int]:
        text = self._read(cgroup, "cgroup.procs")
        if not text:
            return []
        return [int(p) for p in text.split() if p.isdigit()]

    def limit(self, cgroup: str) -> Optional[int]:
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        text = self._read(cgroup, name)
        return parse_limit(text) if text is not None else None

    def usage(self, cgroup: str) -> Optional[int]:
        """The memory counter alone: one small read, cheap enough to poll."""
        return self._read_int(cgroup, "memory.current" if self.version == 2 else "memory.usage_in_bytes")

    def read_state(self, cgroup: str, source: str) -> Optional[CgroupState]:
        """One reading of the cgroup's counters, or None when the cgroup is gone."""
        stat_text = self._read(cgroup, "memory.stat")
        if stat_text is None:
            return None
        state = CgroupState(source=source, cgroup=cgroup, memory_stat=parse_memory_stat(stat_text))
        if self.version == 1:
            state.usage_bytes = self._read_int(cgroup, "memory.usage_in_bytes")
            state.limit_bytes = limit_or_none(self._read_int(cgroup, "memory.limit_in_bytes"))
            state.failcnt = self._read_int(cgroup, "memory.failcnt")
            state.kmem_usage_bytes = self._read_int(cgroup, "memory.kmem.usage_in_bytes")
            memsw = self._read_int(cgroup, "memory.memsw.usage_in_bytes")
            if memsw is not None and state.usage_bytes is not None:
                state.swap_usage_bytes = max(0, memsw - state.usage_bytes)
            memsw_limit = limit_or_none(self._read_int(cgroup, "memory.memsw.limit_in_bytes"))
            if memsw_limit is not None and state.limit_bytes is not None:
                state.swap_limit_bytes = max(0, memsw_limit - state.limit_bytes)
        else:
            state.usage_bytes = self._read_int(cgroup, "memory.current")
            max_text = self._read(cgroup, "memory.max")
            state.limit_bytes = parse_limit(max_text) if max_text is not None else None
            state.swap_usage_bytes = self._read_int(cgroup, "memory.swap.current")
            swap_max = self._read(cgroup, "memory.swap.max")
            state.swap_limit_bytes = parse_limit(swap_max) if swap_max is not None else None
            events = self._read(cgroup, "memory.events")
            if events is not None:
                state.memory_events = parse_flat_keyed(events)
            high = self._read(cgroup, "memory.high")
            state.memory_high_bytes = parse_limit(high) if high is not None else None
            group = self._read(cgroup, "memory.oom.group")
            state.oom_group = group.strip() == "1" if group is not None else None
            pressure = self._read(cgroup, "memory.pressure")
            if pressure is not None:
                state.pressure = parse_pressure(pressure)
        return state

    def count(self) -> Optional[int]:
        """How many cgroups the hierarchy has, in one small read (None: unknown): v1's line of
        /proc/cgroups (the hierarchy's nr_cgrps, kernel/cgroup/cgroup.c proc_cgroupstats_show),
        v2's nr_descendants in the root's cgroup.stat. Unchanged, no cgroup was made or removed
        since (unless one of each, which a walk every few seconds catches all the same)."""
        try:
            if self.version == 1:
                with open("/proc/cgroups") as f:
                    for line in f:
                        parts = line.split()
                        if parts and parts[0] == "memory" and len(parts) >= 3:
                            return int(parts[2])
                return None
            text = self._read_open("/", "cgroup.stat")
            for line in (text or "").split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[0] == "nr_descendants":
                    return int(parts[1])
        except (OSError, ValueError):
            return None
        return None

    def walk(self, top: str = "/") -> Iterator[str]:
        """Every cgroup below (and including) ``top``, shallowest first; vanishing directories are
        skipped.

        Breadth first, so that a caller that stops after N cgroups (the sampler does) has every
        pod and container before any container's own sub-cgroups: a container with a delegated
        cgroup tree controls how many it makes and how deep (tests/unit/test_sampler.py).
        A cgroup directory's link count is 2 + its number of child cgroups (kernfs sets it from
        kn->dir.subdirs, fs/kernfs/inode.c): a leaf is not listed, which is most of them and
        made the walk 3x cheaper with 500 cgroups."""
        start = self.fs_path(top)
        queue = collections.deque([(top.rstrip("/") or "/", start)])
        try:
            if os.stat(start).st_nlink == 2:
                yield queue[0][0]
                return
        except OSError:
            return
        while queue:
            cgroup, path = queue.popleft()
            yield cgroup
            try:
                with os.scandir(path) as it:
                    children = [e for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # vanished
            prefix = "" if cgroup == "/" else cgroup
            for entry in children:
                try:
                    leaf = entry.stat(follow_symlinks=False).st_nlink == 2
                except OSError:
                    continue  # vanished
                if leaf:
                    yield f"{prefix}/{entry.name}"
                else:
                    queue.append((f"{prefix}/{entry.name}", entry.path))

    def limited_ancestor(self, cgroup: str) -> Optional[str]:
        """The nearest cgroup at or above ``cgroup`` with a memory limit (the one that can OOM)."""
        path = cgroup
        while True:
            if self.limit(path) is not None:
                return path
            if path == "/":
                return None
            path = os.path.dirname(path.rstrip("/")) or "/"


# --- making sandbox cgroups (lab, tests) ----------------------------------------------------


def create_cgroup(hier: MemoryHierarchy, cgroup: str, limit_bytes: Optional[int]) -> str:
    """Create a cgroup with a memory limit (None: no limit of its own, only its parent's);
    returns its filesystem path."""
    path = hier.fs_path(cgroup)
    if hier.version == 2:
        _enable_memory_controller(hier, os.path.dirname(path))
    try:
        os.mkdir(path)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc.strerror}") from None
    if limit_bytes is None:
        return path
    limit_file = "memory.max" if hier.version == 2 else "memory.limit_in_bytes"
    try:
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit_bytes))
        if hier.version == 2:
            # No swap for the sandbox: the kill comes at the limit, as on this project's hosts.
            try:
                with open(os.path.join(path, "memory.swap.max"), "w") as f:
                    f.write("0")
            except OSError:
                pass
    except OSError as exc:
        remove_cgroup(path)
        raise CgroupError(f"cannot set the memory limit of {path}: {exc.strerror}") from None
    return path


def _enable_memory_controller(hier: MemoryHierarchy, parent_path: str) -> None:
    # cgroup v2: a child has memory.* files only when its parent enables the controller.
    ctl = os.path.join(parent_path, "cgroup.subtree_control")
    try:
        with open(ctl) as f:
            if "memory" in f.read().split():
                return
        with open(ctl, "w") as f:
            f.write("+memory")
    except OSError as exc:
        raise CgroupError(f"cannot enable the memory controller in {parent_path}: {exc.strerror}") from None


def kill_tasks(path: str) -> None:
    """SIGKILL to every task in a sandbox cgroup that we made (only those: a task gone meanwhile is
    left alone)."""
    import signal

    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split() if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def remove_cgroup(path: str, kill_pids: Optional[List[int]] = None, timeout_s: float = 10.0) -> None:
    """Remove a sandbox cgroup that we made: kill the tasks in it (only those), then rmdir."""
    import time

    deadline = time.monotonic() + timeout_s
    while os.path.isdir(path):
        kill_tasks(path)
        try:
            os.rmdir(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise CgroupError(f"could not remove cgroup {path}") from None
            time.sleep(0.05)
