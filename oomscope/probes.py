"""The BPF probes. The only module that imports bcc, and only when probes are loaded.

Loads ``bpf/oom_events.c`` (installed as package data ``oomscope.bpf``) with ``-D`` flags derived
from the running kernel's tracepoint format files, and yields plain ``OomEvent`` records.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

from .errors import ProbeError
from .kernel import headers, tracefs

EV_MARK_VICTIM = 1  # keep in step with bpf/oomscope.h
EV_REAP_FINISHED = 2
F_COMM, F_RSS, F_UID, F_PGTABLES, F_SCORE_ADJ = 1, 2, 4, 8, 16


@dataclass
class OomEvent:
    """One event from the kernel, in plain Python types. kB as the tracepoint gives them."""

    kind: int
    ts_ns: int
    victim_pid: int
    victim_comm: Optional[str]
    total_vm_kb: Optional[int]
    anon_rss_kb: Optional[int]
    file_rss_kb: Optional[int]
    shmem_rss_kb: Optional[int]
    uid: Optional[int]
    pgtables_kb: Optional[int]
    oom_score_adj: Optional[int]
    trigger_tgid: int
    trigger_tid: int
    trigger_comm: str
    trigger_cgroup_id: int
    cpu: int
    victim_parent_pid: Optional[int] = None  # from sched:sched_process_fork when seen


def _comm(raw: bytes) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def event_from_raw(raw) -> OomEvent:
    f = raw.fields
    has_rss = bool(f & F_RSS)
    return OomEvent(
        kind=raw.kind,
        ts_ns=raw.ts_ns,
        victim_pid=raw.victim_pid,
        victim_comm=_comm(raw.victim_comm) if f & F_COMM else None,
        total_vm_kb=raw.total_vm_kb if has_rss else None,
        anon_rss_kb=raw.anon_rss_kb if has_rss else None,
        file_rss_kb=raw.file_rss_kb if has_rss else None,
        shmem_rss_kb=raw.shmem_rss_kb if has_rss else None,
        uid=raw.uid if f & F_UID else None,
        pgtables_kb=raw.pgtables_kb if f & F_PGTABLES else None,
        oom_score_adj=raw.oom_score_adj if f & F_SCORE_ADJ else None,
        trigger_tgid=raw.trigger_tgid,
        trigger_tid=raw.trigger_tid,
        trigger_comm=_comm(raw.trigger_comm),
        trigger_cgroup_id=raw.trigger_cgroup_id,
        cpu=raw.cpu,
        victim_parent_pid=raw.victim_parent_pid or None,
    )


def cflags_for_kernel(tracefs_path: Optional[str] = None) -> List[str]:
    """-D flags for the fields this kernel's oom tracepoints carry (detected, not assumed)."""
    fields = tracefs.tracepoint_fields("oom", "mark_victim", tracefs_path)
    if fields is None:
        raise ProbeError("this kernel has no oom:mark_victim tracepoint (CONFIG_TRACEPOINTS?)")
    names = {f.name: f for f in fields}
    if "pid" not in names:
        raise ProbeError("oom:mark_victim has no pid field; unknown tracepoint layout")
    flags = []
    comm = names.get("comm")
    if comm is not None:
        flags.append("-DMV_COMM_DATA_LOC" if "__data_loc" in comm.ctype else "-DMV_COMM_ARRAY")
    if {"total_vm", "anon_rss", "file_rss", "shmem_rss"} <= names.keys():
        flags.append("-DMV_HAS_RSS")
    for name, flag in (("uid", "-DMV_HAS_UID"), ("pgtables", "-DMV_HAS_PGTABLES"),
                       ("oom_score_adj", "-DMV_HAS_SCORE_ADJ")):
        if name in names:
            flags.append(flag)
    reap = tracefs.tracepoint_fields("oom", "finish_task_reaping", tracefs_path)
    if reap is not None and any(f.name == "pid" for f in reap):
        flags.append("-DHAVE_FINISH_TASK_REAPING")
    fork = tracefs.tracepoint_fields("sched", "sched_process_fork", tracefs_path)
    if fork is not None and {"parent_pid", "child_pid"} <= {f.name for f in fork}:
        flags.append("-DHAVE_SCHED_PROCESS_FORK")
    return flags


@contextlib.contextmanager
def bpf_source_dir() -> Iterator[str]:
    ref = importlib.resources.files("oomscope.bpf") / "oom_events.c"
    with importlib.resources.as_file(ref) as path:
        yield str(path)


class OomProbes:
    """Attached probes; ``poll()`` calls back with OomEvent records."""

    def __init__(self, on_event: Callable[[OomEvent], None], page_cnt: int = 256):
        if os.geteuid() != 0:
            raise ProbeError("loading BPF programs needs root (run with sudo)")
        tracefs_path = tracefs.ensure_tracefs()
        self.cflags = cflags_for_kernel(tracefs_path)
        self.headers = headers.find_headers()
        if self.headers.path is None:
            raise ProbeError(self.headers.how)
        headers.apply_headers(self.headers)
        try:
            from bcc import BPF  # noqa: WPS433 - the one place bcc is imported
        except ImportError:
            raise ProbeError("bcc is not importable (apt-get install python3-bpfcc; run setup.sh)") from None
        self.lost = 0
        self._on_event = on_event
        with bpf_source_dir() as src:
            try:
                self.bpf = BPF(src_file=src.encode(), cflags=[f"-I{os.path.dirname(src)}"] + self.cflags)
            except Exception as exc:  # bcc raises bare Exception on compile/attach failure
                raise ProbeError(f"could not compile or attach the BPF programs: {exc}") from None
        # Big per-CPU buffers: a storm makes hundreds of kills a second (KERNEL-NOTES.md).
        self.bpf["oom_events"].open_perf_buffer(self._cb, page_cnt=page_cnt, lost_cb=self._lost_cb)

    def _cb(self, cpu, data, size) -> None:
        raw = self.bpf["oom_events"].event(data)
        self._on_event(event_from_raw(raw))

    def _lost_cb(self, count) -> None:
        self.lost += count

    def poll(self, timeout_ms: int) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bpf.cleanup()
