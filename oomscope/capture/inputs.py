"""What capture assembly takes besides a kill's event and its report: what is the same for every
kill a recorder or an import sees (``Recording``), and what was read about one kill (``Evidence``,
gathered by record/evidence.py; an import has none)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..model import CgroupState, CgroupUsage, Host, RuntimeReading, Source, Task, Timeline

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # of the machine running oomscope: only when the kill host's is unknown


@dataclass
class Recording:
    """What is the same for every kill a recorder (or an import) sees."""

    cgroup_version: Optional[int] = None
    host: Host = field(default_factory=Host)
    clock_offset_ns: int = 0  # wall clock minus CLOCK_MONOTONIC
    #: the provenance of every figure taken from the kernel's OOM report: kernel_report (read from
    #: /dev/kmsg as it was printed: record) or kernel_log (a log that kept it: import)
    report_source: Source = Source.KERNEL_REPORT


@dataclass
class Evidence:
    """What was read about one kill besides its event and its report (record/evidence.py gathers
    it for the cgroups a Placement names). Readings only: no decision about the kill."""

    last_sample: Optional[CgroupState] = None
    #: the memcg's own counters read in the kernel at the SIGKILL (record/snapshot.py)
    kernel_snapshot: Optional[CgroupState] = None
    #: whether the recorder could take kernel snapshots: "on", or "unavailable: <why>" ("": not recorded live)
    snapshot_status: str = ""
    #: a stats flush moved the counters of the described level or one below it during each of the
    #: snapshot's reads (bpf/memcg_snapshot.c snap_check): its statistics may miss or double one
    #: CPU's unflushed part; its usage is exact
    snapshot_torn: bool = False
    after_kill: Optional[CgroupState] = None
    timelines: List[Timeline] = field(default_factory=list)
    #: pid -> (comm, cmdline) known from before the kill
    proc_info: Dict[int, Tuple[str, Optional[str]]] = field(default_factory=dict)
    #: the cgroup's processes read from /proc after the kill (when the report has no tasks table)
    live_tasks: List[Task] = field(default_factory=list)
    reaped_ns: Optional[int] = None
    duplicates: int = 0
    #: a member of a memory.oom.group kill: the state in the first victim's report, and its tasks
    incident_state: Optional[CgroupState] = None
    incident_tasks: List[Task] = field(default_factory=list)
    #: cgroups below oom_memcg with their usage just before the kill (shared the limit)
    sharing: List[CgroupUsage] = field(default_factory=list)
    #: the runtimes' own views (a JVM's heap) of the cgroup's processes, last read before the kill
    runtimes: List[RuntimeReading] = field(default_factory=list)
