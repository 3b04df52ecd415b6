"""inotify on cgroup v2 ``memory.events`` files: a wake-up the moment a cgroup hits its limit.

When a charge fails at ``memory.max``, the kernel counts a ``max`` event and notifies
``memory.events`` of the cgroup and of every ancestor (``memcg_memory_event()`` and
``cgroup_file_notify()`` in mm/memcontrol.c and kernel/cgroup/cgroup.c: kernfs_notify, an
IN_MODIFY, at most once per 10 ms per file). That is before reclaim gives up and the OOM killer
runs, so a sampler woken by it can read the cgroup while it is full. Polling cannot: a cgroup
filled in 200 ms between two peeks was measured read 2 s before its kill (the test VMs).

Only what that needs is wrapped, with ctypes (the standard library has no inotify): a
non-blocking descriptor for select(), IN_MODIFY watches, and the watch descriptors of the events
read. cgroup v1 has no memory.events; its usage thresholds do the same job there
(kernel/memcg_thresholds.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from typing import List, Optional

IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000  # the watch was removed (the file's cgroup was deleted)
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class Inotify:
    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self.fd = fd
        self.overflowed = False

    def fileno(self) -> int:
        return self.fd

    def add(self, path: str) -> Optional[int]:
        """A watch for modifications of ``path``; None when it cannot be watched (gone, or
        fs.inotify.max_user_watches reached)."""
        wd = self._add(self.fd, os.fsencode(path), IN_MODIFY)
        return wd if wd >= 0 else None

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already removed it: nothing to do

    def read(self) -> List[int]:
        """Watch descriptors of the modifications since the last read (IN_IGNORED left out)."""
        wds: List[int] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return wds
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self.overflowed = True  # events were lost: the caller reads everything
                elif not mask & IN_IGNORED:
                    wds.append(wd)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
