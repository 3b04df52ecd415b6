"""A JVM's own view of its memory, read from outside the process: its hsperfdata file.

Read-only and hands-off: the file is opened, read and closed. Never attached to, signalled or
mapped (a JVM that exits truncates it; a mapped read would then fault). The file sits in the
process's own filesystem, ``/proc/<pid>/root/tmp/hsperfdata_<user>/<pid in its namespace>``,
whose paths the workload controls, so every step is taken as a container's attacker would plant it:

- every component is opened below a directory descriptor with O_NOFOLLOW (an absolute link inside
  a container would otherwise resolve against the host's root);
- the file is first opened with O_PATH, which opens nothing (no driver's open, no FIFO peer
  woken), checked to be a regular file owned by the process's user, and only then reopened for
  reading through that descriptor (the same inode: no race), with O_NOCTTY;
- /tmp is listed up to MAX_TMP_ENTRIES entries, at most MAX_FOLDERS ``hsperfdata_*`` folders owned
  by the process's user are tried, each descriptor closed before the next; the folder found is
  returned, so the caller tries it first next time and /tmp is listed once per JVM;
- at most MAX_BYTES are read, and the parser has its own bounds and time budget (hsperfdata.py).

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
#: entries of a process's /tmp looked at to find its hsperfdata folder (20,000 planted folders
#: cost 72 ms a read before this bound; 4,096 entries are listed in about 3 ms here)
MAX_TMP_ENTRIES = 4096
#: hsperfdata_* folders of the process's user tried, one descriptor open at a time
MAX_FOLDERS = 16
#: bytes of /proc/<pid>/maps read to find libjvm.so (a JVM's maps: 30-200 KiB; a process can make
#: 65,530 mappings with long names, hundreds of MiB)
MAX_MAPS_BYTES = 1 << 20


@dataclass(frozen=True)
class JvmReading:
    pid: int
    memory: Optional[JvmMemory]
    why_not: Optional[str] = None   # when memory is None: why (no file, unreadable, not parsed)
    folder: Optional[str] = None    # the hsperfdata_<user> folder the file was found in


def _status_fields(proc: str, pid: int) -> dict:
    out = {}
    with open(f"{proc}/{pid}/status", "rb") as f:
        for line in f.read().split(b"\n"):
            key, _, value = line.partition(b":")
            out[key.decode("ascii", "replace")] = value.decode("utf-8", "replace").strip()
    return out


def is_java(pid: int, proc: str = "/proc") -> bool:
    """A HotSpot JVM: its executable is named java (the launcher), or it maps libjvm.so (looked
    for in the first MAX_MAPS_BYTES of its maps)."""
    try:
        if os.path.basename(os.readlink(f"{proc}/{pid}/exe")) == "java":
            return True
        with open(f"{proc}/{pid}/maps", "rb") as f:
            done, tail = 0, b""
            while done < MAX_MAPS_BYTES:
                chunk = f.read(min(65536, MAX_MAPS_BYTES - done))
                if not chunk:
                    break
                done += len(chunk)
                if b"/libjvm.so" in tail + chunk:
                    return True
                tail = chunk[-16:]
            return False
    except OSError:
        return False


def _open_dir_below(dirfd: int, name: str) -> int:
    # O_DIRECTORY fails before any driver's open is called (fs/namei.c, do_open): no effects
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)


def _read_regular_file(dirfd: int, name: str, uid: int) -> bytes:
    """The first MAX_BYTES of ``name`` below ``dirfd``, if it is a regular file of ``uid``.
    Looked at through O_PATH first, which opens nothing; then reopened through that descriptor."""
    path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            raise _NotTheFile()
        fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
    try:
        return os.pread(fd, MAX_BYTES, 0)
    finally:
        os.close(fd)


class _NotTheFile(Exception):
    pass


def _candidate_folders(tmp: int, uid: int) -> tuple:
    """(hsperfdata_* folders of ``uid`` in ``tmp``, up to MAX_FOLDERS; why the search stopped short
    or None). /tmp is listed up to MAX_TMP_ENTRIES entries."""
    found, seen = [], 0
    with os.scandir(tmp) as it:
        for entry in it:
            seen += 1
            if seen > MAX_TMP_ENTRIES:
                return sorted(found), f"/tmp has more than {MAX_TMP_ENTRIES} entries: not searched further"
            if not entry.name.startswith("hsperfdata_"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                found.append(entry.name)
                if len(found) > MAX_FOLDERS:
                    return sorted(found[:MAX_FOLDERS]), f"more than {MAX_FOLDERS} hsperfdata folders of the process's user"
    return sorted(found), None


def read_jvm(pid: int, proc: str = "/proc", folder: Optional[str] = None) -> JvmReading:
    """The JVM's counters for ``pid`` (a host pid), or why they could not be read. ``folder``: the
    hsperfdata folder found at an earlier reading of this pid, tried first."""
    try:
        fields = _status_fields(proc, pid)
        uid = int(fields["Uid"].split()[0])
        nspid = int(fields.get("NSpid", str(pid)).split()[-1])
    except (OSError, KeyError, ValueError, IndexError) as exc:
        return JvmReading(pid, None, f"process gone or unreadable ({exc.__class__.__name__})")
    root = tmp = -1
    try:
        root = os.open(f"{proc}/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        tmp = _open_dir_below(root, "tmp")
        if folder is not None:
            names, short = [folder], None
        else:
            names, short = _candidate_folders(tmp, uid)
        for name in names:
            try:
                d = _open_dir_below(tmp, name)
            except OSError:
                continue
            try:
                data = _read_regular_file(d, str(nspid), uid)
            except FileNotFoundError:
                continue
            except _NotTheFile:
                return JvmReading(pid, None, f"{name}/{nspid} is not a regular file of the process's user", name)
            finally:
                os.close(d)
            try:
                return JvmReading(pid, jvm_memory(parse_counters(data)), folder=name)
            except HsperfdataError as exc:
                return JvmReading(pid, None, f"hsperfdata not readable: {exc}", name)
        if short is not None:
            return JvmReading(pid, None, f"no hsperfdata file found: {short}")
        return JvmReading(pid, None, "no hsperfdata file: the JVM runs with -XX:-UsePerfData "
                                     "(or a private /tmp oomscope cannot see)")
    except OSError as exc:
        return JvmReading(pid, None, f"no hsperfdata file ({exc.strerror or exc.__class__.__name__})")
    finally:
        for fd in (tmp, root):
            if fd >= 0:
                os.close(fd)
