"""A JVM's own view of its memory, read from outside the process: its hsperfdata file.

Read-only and hands-off: the file is opened, read and closed. Never attached to, signalled or
mapped (a JVM that exits truncates it; a mapped read would then fault). The file sits in the
process's own filesystem, ``/proc/<pid>/root/tmp/hsperfdata_<user>/<pid in its namespace>``,
whose paths the workload controls: every component is opened below a directory descriptor with
O_NOFOLLOW (an absolute link inside a container would otherwise resolve against the host's root),
the file must be a regular file owned by the process's user, and at most MAX_BYTES are read.

A JVM started with ``-XX:-UsePerfData`` has no file: :func:`read_jvm` says so in its result.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Optional

from .hsperfdata import HsperfdataError, JvmMemory, jvm_memory, parse_counters

__all__ = ["JvmReading", "read_jvm", "is_java", "MAX_BYTES"]

MAX_BYTES = 1 << 20  # a JVM's file is 32 KiB by default (-XX:PerfDataMemorySize)


@dataclass(frozen=True)
class JvmReading:
    pid: int
    memory: Optional[JvmMemory]
    why_not: Optional[str] = None   # when memory is None: why (no file, unreadable, not parsed)


def _status_fields(proc: str, pid: int) -> dict:
    out = {}
    with open(f"{proc}/{pid}/status", "rb") as f:
        for line in f.read().split(b"\n"):
            key, _, value = line.partition(b":")
            out[key.decode("ascii", "replace")] = value.decode("utf-8", "replace").strip()
    return out


def is_java(pid: int, proc: str = "/proc") -> bool:
    """A HotSpot JVM: its executable is named java (the launcher), or it maps libjvm.so."""
    try:
        if os.path.basename(os.readlink(f"{proc}/{pid}/exe")) == "java":
            return True
        with open(f"{proc}/{pid}/maps", "rb") as f:
            return b"/libjvm.so" in f.read()
    except OSError:
        return False


def _open_below(dirfd: int, name: str, directory: bool) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if directory:
        flags |= os.O_DIRECTORY
    return os.open(name, flags, dir_fd=dirfd)


def read_jvm(pid: int, proc: str = "/proc") -> JvmReading:
    """The JVM's counters for ``pid`` (a host pid), or why they could not be read."""
    try:
        fields = _status_fields(proc, pid)
        uid = int(fields["Uid"].split()[0])
        nspid = int(fields.get("NSpid", str(pid)).split()[-1])
    except (OSError, KeyError, ValueError, IndexError) as exc:
        return JvmReading(pid, None, f"process gone or unreadable ({exc.__class__.__name__})")
    fds = []
    try:
        root = os.open(f"{proc}/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fds.append(root)
        tmp = _open_below(root, "tmp", directory=True)
        fds.append(tmp)
        candidates = [n for n in os.listdir(tmp) if n.startswith("hsperfdata_")]
        for name in sorted(candidates):
            try:
                d = _open_below(tmp, name, directory=True)
            except OSError:
                continue
            fds.append(d)
            try:
                fd = _open_below(d, str(nspid), directory=False)
            except OSError:
                continue
            fds.append(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                return JvmReading(pid, None, f"{name}/{nspid} is not a regular file of the process's user")
            data = os.pread(fd, MAX_BYTES, 0)
            try:
                return JvmReading(pid, jvm_memory(parse_counters(data)))
            except HsperfdataError as exc:
                return JvmReading(pid, None, f"hsperfdata not readable: {exc}")
        return JvmReading(pid, None, "no hsperfdata file: the JVM runs with -XX:-UsePerfData "
                                     "(or a private /tmp oomscope cannot see)")
    except OSError as exc:
        return JvmReading(pid, None, f"no hsperfdata file ({exc.strerror or exc.__class__.__name__})")
    finally:
        for fd in reversed(fds):
            os.close(fd)
