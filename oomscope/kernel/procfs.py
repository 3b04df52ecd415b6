"""/proc: processes and host settings. Parsers take text; readers take a swappable root."""

from __future__ import annotations

import os
import socket
from typing import Dict, Optional

from ..model import Host, Task

PROC = "/proc"
SYS = "/sys"


def parse_proc_cgroup(text: str) -> Dict[str, str]:
    """/proc/<pid>/cgroup → {controller: path}; the v2 line ("0::/path") is under key ""."""
    out: Dict[str, str] = {}
    for line in text.split("\n"):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        if controllers == "":
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def memory_cgroup_from_proc(text: str, version: int) -> Optional[str]:
    """The memory cgroup path in /proc/<pid>/cgroup text.

    A task that has already exited reads as "/" (measured in an OOM storm: docs/kernel-facts.md):
    "/" is returned as None, unknown, never as the root cgroup.
    """
    groups = parse_proc_cgroup(text)
    path = groups.get("memory") if version == 1 else groups.get("")
    if not path or path == "/":
        return None
    return path


def parse_status(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def _kb(status: Dict[str, str], key: str) -> Optional[int]:
    value = status.get(key)
    if not value:
        return None
    try:
        return int(value.split()[0]) * 1024
    except (ValueError, IndexError):
        return None


def task_from_status(pid: int, status: Dict[str, str], source: str) -> Task:
    uid = status.get("Uid", "").split()
    tgid = status.get("Tgid")
    return Task(
        pid=pid,
        comm=status.get("Name", ""),
        tgid=int(tgid) if tgid and tgid.isdigit() else None,
        uid=int(uid[0]) if uid and uid[0].isdigit() else None,
        total_vm_bytes=_kb(status, "VmSize"),
        rss_bytes=_kb(status, "VmRSS"),
        anon_rss_bytes=_kb(status, "RssAnon"),
        file_rss_bytes=_kb(status, "RssFile"),
        shmem_rss_bytes=_kb(status, "RssShmem"),
        pgtables_bytes=_kb(status, "VmPTE"),
        swap_bytes=_kb(status, "VmSwap"),
        source=source,
    )


def _read(path: str, limit: int = 1 << 20) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def read_task(pid: int, source: str, proc: str = PROC) -> Optional[Task]:
    """A process as /proc shows it now, or None if it is gone."""
    status = _read(f"{proc}/{pid}/status")
    if status is None:
        return None
    task = task_from_status(pid, parse_status(status), source)
    adj = _read(f"{proc}/{pid}/oom_score_adj")
    if adj and adj.strip().lstrip("-").isdigit():
        task.oom_score_adj = int(adj)
    task.cmdline = read_cmdline(pid, proc)
    return task


def read_cmdline(pid: int, proc: str = PROC, limit: int = 4096) -> Optional[str]:
    raw = _read(f"{proc}/{pid}/cmdline", limit)
    if raw is None:
        return None
    return raw.replace("\0", " ").strip()


def read_comm(pid: int, proc: str = PROC) -> Optional[str]:
    text = _read(f"{proc}/{pid}/comm")
    return text.rstrip("\n") if text is not None else None


def read_memory_cgroup(pid: int, version: int, proc: str = PROC) -> Optional[str]:
    text = _read(f"{proc}/{pid}/cgroup")
    return memory_cgroup_from_proc(text, version) if text is not None else None


def parse_meminfo(text: str) -> Dict[str, int]:
    """/proc/meminfo → {key: bytes} (kB values converted; HugePages_* counts kept as counts)."""
    out: Dict[str, int] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        parts = value.split()
        if not sep or not parts:
            continue
        try:
            n = int(parts[0])
        except ValueError:
            continue
        out[key] = n * 1024 if len(parts) > 1 and parts[1] == "kB" else n
    return out


def bracketed_mode(text: Optional[str]) -> Optional[str]:
    """``always [madvise] never`` → ``madvise``."""
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip() or None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def read_host(cgroup_version: Optional[int], proc: str = PROC, sys: str = SYS) -> Host:
    meminfo = parse_meminfo(_read(f"{proc}/meminfo") or "")
    thp = f"{sys}/kernel/mm/transparent_hugepage"
    return Host(
        hostname=socket.gethostname(),
        kernel_release=os.uname().release,
        cgroup_version=cgroup_version,
        thp_enabled=bracketed_mode(_read(f"{thp}/enabled")),
        thp_defrag=bracketed_mode(_read(f"{thp}/defrag")),
        thp_shmem_enabled=bracketed_mode(_read(f"{thp}/shmem_enabled")),
        mem_total_bytes=meminfo.get("MemTotal"),
        swap_total_bytes=meminfo.get("SwapTotal"),
        swap_free_bytes=meminfo.get("SwapFree"),
        overcommit_memory=_int(_read(f"{proc}/sys/vm/overcommit_memory")),
        oom_dump_tasks=_int(_read(f"{proc}/sys/vm/oom_dump_tasks")),
        panic_on_oom=_int(_read(f"{proc}/sys/vm/panic_on_oom")),
        page_size_bytes=os.sysconf("SC_PAGE_SIZE"),
    )
