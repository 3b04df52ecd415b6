"""The capture: everything oomscope knows about one OOM kill.

One module shared by every stage (record, import, analysis, report). A capture is written as
versioned JSON (``capture.json``); ``docs/capture-schema.md`` documents every field.

Units are in the field names (``_bytes``, ``_kb``, ``_ns``, ``_ms``). Figures the kernel states in
kB or pages are converted to bytes when the capture is built, never later.

Every figure about the cgroup says where it came from (its *provenance*, a ``Source``):

- ``kernel_report``: the kernel's own OOM report from /dev/kmsg, printed at the kill (exact).
- ``last_sample``:   oomscope's last periodic read of cgroupfs before the kill (``age_ms`` old).
- ``after_kill``:    cgroupfs read after the kill reached user space (memory may already be freed).
- ``bpf``:           the ``oom:mark_victim`` tracepoint, read in the kernel at the kill.
- ``kernel_log``:    the kernel's OOM report as a log kept it (``oomscope import``).
- ``kernel_snapshot``: the memory cgroup's own counters, read by a BPF program at the victim's
  SIGKILL (bpf/memcg_snapshot.c), with the per-CPU deltas not yet flushed.
- ``reconstructed``: the last sample plus the in-kernel charge counters' deltas up to the kill
  (charge tracking, removed: no longer written since schema 5, still read in older captures).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .errors import CaptureError
from .terminal import terminal_safe

#: 2: Host.page_size_bytes (the kill host's page size); provenance is one of ``Source``.
#: 3: ``runtimes``, the runtime's own view of its memory (a JVM's hsperfdata) before the kill.
#: 4: the ``kernel_snapshot`` source (at_kill and at_kill_sources), read in the kernel at the SIGKILL.
#: 5: charge tracking removed: no ``charge_tracking``, no ``reconstructed`` source, no cgroup
#:    state ``keys_from_sample``/``base_age_ms``; ``kernel_snapshot_status`` says whether the
#:    recorder could take kernel snapshots.
#: 6: ``Timeline.thinned_by_age``: the recorder's timelines keep hours, older points thinned.
#: 7: the model said once: ``at_kill`` is a cgroup state (the one type of ``at_kill_sources``, so
#:    it also carries ``cgroup``, ``memory_events``, ``memory_high_bytes``, ``oom_group``,
#:    ``pressure``); a task's RSS fields are named as the victim's (``anon_rss_bytes``,
#:    ``file_rss_bytes``, ``shmem_rss_bytes``; were ``rss_anon_bytes``, ...); reclaim figures are
#:    one type (``Reclaim``, was ``ReclaimAtKill``). Older captures load through ``_upgrade``.
#: Captures of schema 1 to 4 still load (page size unknown in 1; no runtimes in 1 and 2; no
#: kernel snapshot before 4; a ``reconstructed`` state of 4 or older is read and shown as such,
#: its ``charge_tracking`` and reconstruction details ignored).
SCHEMA_VERSION = 7
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5, 6, 7)


class Source(str, enum.Enum):
    """Where a figure came from (its provenance). str-valued, so the JSON holds the plain name and
    a Source compares equal to it."""

    KERNEL_REPORT = "kernel_report"  # the kernel's OOM report from /dev/kmsg, printed at the kill
    KERNEL_LOG = "kernel_log"        # the same report as a log kept it (oomscope import)
    KERNEL_SNAPSHOT = "kernel_snapshot"  # the memcg's own counters, read in the kernel at the SIGKILL
    RECONSTRUCTED = "reconstructed"  # charge tracking's (removed): read in captures of schema 4 and older, never written
    LAST_SAMPLE = "last_sample"      # oomscope's last read of cgroupfs before the kill
    AFTER_KILL = "after_kill"        # cgroupfs or /proc read after the kill reached user space
    BPF = "bpf"                      # the oom:mark_victim tracepoint, read in the kernel at the kill
    PROC_READ = "proc_read"          # the victim's cgroup: /proc/<pid>/cgroup read on the event
    SAMPLER_SCAN = "sampler_scan"    # the victim's cgroup: its process list at the last sample
    FORK_PARENT = "fork_parent"      # the victim's cgroup: its parent's (children start there)
    NONE = "none"

    __str__ = str.__str__  # the plain name in f-strings and str(), on every Python version
    __format__ = str.__format__


# best first for the state of the cgroup at the kill
AT_KILL_PREFERENCE = (Source.KERNEL_REPORT, Source.KERNEL_LOG, Source.KERNEL_SNAPSHOT, Source.RECONSTRUCTED, Source.LAST_SAMPLE, Source.AFTER_KILL)


@dataclass
class Victim:
    """The task the kernel chose and killed."""

    pid: int
    comm: str = ""
    uid: Optional[int] = None
    oom_score_adj: Optional[int] = None
    total_vm_bytes: Optional[int] = None
    anon_rss_bytes: Optional[int] = None  # the Killed line's anon-rss (a task's has the same names)
    file_rss_bytes: Optional[int] = None
    shmem_rss_bytes: Optional[int] = None
    pgtables_bytes: Optional[int] = None
    cmdline: Optional[str] = None
    #: where the RSS figures came from: "bpf" (oom:mark_victim) or "kernel_report" (Killed line)
    source: Source = Source.NONE
    #: the RSS as a whole, when only that is known: the victim's row of a tasks table that has no
    #: anon/file/shmem columns (kernels before 4.x) and no Killed line to split it
    rss_total_bytes: Optional[int] = None

    @property
    def rss_bytes(self) -> Optional[int]:
        parts = (self.anon_rss_bytes, self.file_rss_bytes, self.shmem_rss_bytes)
        if all(p is None for p in parts):
            return self.rss_total_bytes
        return sum(p or 0 for p in parts)


@dataclass
class Trigger:
    """The task whose allocation ran the OOM killer (current at oom:mark_victim)."""

    pid: Optional[int] = None  # thread-group id
    tid: Optional[int] = None
    comm: str = ""
    source: Source = Source.NONE


@dataclass
class CgroupUsage:
    """A cgroup below the one that hit its limit, and what it held (all of them share the limit)."""

    path: str
    usage_bytes: Optional[int] = None
    source: Source = Source.NONE  # last_sample (age_ms before the kill) or after_kill
    age_ms: Optional[float] = None


@dataclass
class CgroupInfo:
    """Which memory cgroup hit its limit (oom_memcg) and which one the victim was in (task_memcg).

    Paths are relative to the memory hierarchy's root, as the kernel prints them ("/a/b").
    """

    version: Optional[int] = None  # 1 or 2
    oom_memcg: Optional[str] = None
    task_memcg: Optional[str] = None
    constraint: Optional[str] = None  # CONSTRAINT_MEMCG, CONSTRAINT_NONE, ...
    #: how task_memcg was learnt: kernel_report, proc_read (/proc/<pid>/cgroup on the event),
    #: sampler_scan (the pid was in cgroup.procs at the last sample), fork_parent (the cgroup of
    #: the parent that forked it, from sched:sched_process_fork), or none.
    source: Source = Source.NONE
    #: when the limit that was hit is an ancestor's: the cgroups below oom_memcg that had tasks,
    #: largest first (they all shared the limit)
    sharing: List[CgroupUsage] = field(default_factory=list)


@dataclass
class CgroupState:
    """One reading of a memory cgroup's counters, from one source: each of ``at_kill_sources``, and
    ``at_kill``, the best of them (schema 7; before it ``at_kill`` had its own type with a part of
    these fields)."""

    source: Source = Source.NONE
    usage_bytes: Optional[int] = None
    limit_bytes: Optional[int] = None
    failcnt: Optional[int] = None
    #: the kernel's memory.stat keys and values, as printed: sizes in bytes, pg*/workingset_*
    #: keys are event counts.
    memory_stat: Dict[str, int] = field(default_factory=dict)
    kmem_usage_bytes: Optional[int] = None  # cgroup v1 only
    swap_usage_bytes: Optional[int] = None  # v1: memory+swap minus memory; v2: memory.swap.current
    swap_limit_bytes: Optional[int] = None
    memory_events: Dict[str, int] = field(default_factory=dict)  # cgroup v2 memory.events
    memory_high_bytes: Optional[int] = None  # cgroup v2 memory.high (throttling, not a kill limit)
    oom_group: Optional[bool] = None  # cgroup v2 memory.oom.group
    #: cgroup v2 memory.pressure (PSI): some_avg10, some_avg60, some_avg300 (percent),
    #: some_total_us, and the same for full_
    pressure: Dict[str, float] = field(default_factory=dict)
    #: how long before the kill this was read (negative: after it)
    age_ms: Optional[float] = None
    cgroup: Optional[str] = None  # which cgroup this reading is of


@dataclass
class TimelinePoint:
    """One point of a cgroup's history before the kill (sizes hierarchical, in bytes).

    reclaim_* are cumulative since record started, over the cgroup's processes (vmscan tracepoints);
    alloc_* and compact_* likewise, from the page allocator's retry tracepoints (oom:*)."""

    t_ms: float  # relative to the kill: negative before it
    usage_bytes: Optional[int] = None
    limit_bytes: Optional[int] = None
    anon_bytes: Optional[int] = None
    anon_thp_bytes: Optional[int] = None
    file_bytes: Optional[int] = None  # page cache without shmem
    file_dirty_bytes: Optional[int] = None
    file_writeback_bytes: Optional[int] = None
    shmem_bytes: Optional[int] = None
    slab_bytes: Optional[int] = None
    kernel_bytes: Optional[int] = None
    sock_bytes: Optional[int] = None
    swap_bytes: Optional[int] = None
    failcnt: Optional[int] = None  # cgroup v1
    max_events: Optional[int] = None  # cgroup v2 memory.events max
    psi_some_avg10: Optional[float] = None
    psi_full_avg10: Optional[float] = None
    reclaim_runs: Optional[int] = None
    reclaim_empty_runs: Optional[int] = None
    reclaim_pages: Optional[int] = None
    reclaim_ms: Optional[float] = None
    alloc_retry_checks: Optional[int] = None
    alloc_no_progress_max: Optional[int] = None
    compact_retries: Optional[int] = None


@dataclass
class Reclaim:
    """Reclaim run by processes (vmscan tracepoints: memcg and direct reclaim together) and the page
    allocator's retries for them (oom:reclaim_retry_zone, oom:compact_retry), cumulative since record
    started: the one type for these figures (layouts.ReclaimStats is the kernel's per-process record
    they are summed from; a timeline point's reclaim_* and alloc_*/compact_* columns are these).

    As ``Timeline.reclaim_at_kill``: read when the kill was handled. The timeline's last reading
    can come before the limit was first hit, and so before all of the reclaim that failed
    (measured in the test VMs: last reading 66 ms before the kill, no reclaim yet)."""

    runs: int = 0
    empty_runs: int = 0
    pages: int = 0
    ms: float = 0.0
    alloc_retry_checks: int = 0
    alloc_no_progress_max: int = 0
    compact_retries: int = 0
    #: when the counters were read, after the kill (other processes of the cgroup may have
    #: reclaimed since)
    read_ms_after_kill: Optional[float] = None


@dataclass
class Timeline:
    cgroup: str
    points: List[TimelinePoint] = field(default_factory=list)
    reclaim_at_kill: Optional[Reclaim] = None
    #: schema 6: points more than 10 minutes before the last one are the highest reading of each
    #: 2 minutes, and past 2 hours of each 15 minutes (record/timeline.py's TIERS); False: every
    #: point kept is a reading as it came (older captures: at most 600 of them)
    thinned_by_age: bool = False


@dataclass
class Task:
    """A process of the cgroup at the kill (from the kernel's tasks table, or /proc)."""

    pid: int
    comm: str = ""
    tgid: Optional[int] = None
    uid: Optional[int] = None
    total_vm_bytes: Optional[int] = None
    rss_bytes: Optional[int] = None
    #: named as the victim's (schema 7; rss_anon_bytes, rss_file_bytes, rss_shmem_bytes before)
    anon_rss_bytes: Optional[int] = None
    file_rss_bytes: Optional[int] = None
    shmem_rss_bytes: Optional[int] = None
    pgtables_bytes: Optional[int] = None
    swap_bytes: Optional[int] = None
    oom_score_adj: Optional[int] = None
    is_victim: bool = False
    cmdline: Optional[str] = None
    source: Source = Source.NONE


@dataclass
class Host:
    """Host context that changes how memory is charged and reclaimed."""

    hostname: str = ""
    kernel_release: str = ""
    cgroup_version: Optional[int] = None
    thp_enabled: Optional[str] = None  # the bracketed mode of transparent_hugepage/enabled
    thp_defrag: Optional[str] = None
    thp_shmem_enabled: Optional[str] = None
    mem_total_bytes: Optional[int] = None
    swap_total_bytes: Optional[int] = None
    swap_free_bytes: Optional[int] = None
    overcommit_memory: Optional[int] = None
    oom_dump_tasks: Optional[int] = None
    panic_on_oom: Optional[int] = None
    #: the page size of the host the kill happened on (what the kernel's page counts were
    #: multiplied by); None when unknown (a capture of schema 1, or imported from a log)
    page_size_bytes: Optional[int] = None


@dataclass
class KernelReportInfo:
    """What the kernel's OOM report said beyond the cgroup figures (kept for the reader)."""

    present: bool = False  # the full report (header, stats) was seen, not only "Killed process"
    killed_line_seen: bool = False
    gfp_mask: Optional[str] = None
    order: Optional[int] = None
    message: Optional[str] = None  # "Memory cgroup out of memory" / "Out of memory"
    group_kill: bool = False
    first_seq: Optional[int] = None
    last_seq: Optional[int] = None
    #: the report as the kernel printed it, one entry per line (untrusted text)
    lines: List[str] = field(default_factory=list)


@dataclass
class IncidentVictim:
    pid: int
    comm: str = ""
    kill_id: Optional[str] = None


@dataclass
class Incident:
    """Kills that are one event: a memory.oom.group kill takes every task of the cgroup at once."""

    id: str  # the kill_id of the first victim (the one the kernel chose)
    group_kill: bool = False
    group_cgroup: Optional[str] = None  # the cgroup with memory.oom.group set
    victims: List[IncidentVictim] = field(default_factory=list)


@dataclass
class Workload:
    """What the victim's cgroup is, in the words of the system that made it (containers.py).
    Every field may be unknown; ids come from the cgroup path, names from the node."""

    kind: str = "cgroup"  # kubernetes | docker | podman | container | systemd | cgroup
    pod_uid: Optional[str] = None
    pod: Optional[str] = None
    namespace: Optional[str] = None
    container: Optional[str] = None  # the container's name, when the node says
    container_id: Optional[str] = None
    runtime: Optional[str] = None  # containerd, cri-o, docker, podman
    qos: Optional[str] = None  # Kubernetes QoS class: Guaranteed, Burstable, BestEffort
    unit: Optional[str] = None  # systemd unit (.service / .scope)
    notes: List[str] = field(default_factory=list)

    def label(self) -> str:
        """One short name for a line or a metric label ("" for a plain cgroup)."""
        if self.kind == "kubernetes":
            pod = f"{self.namespace}/{self.pod}" if self.pod else f"pod {self.pod_uid}"
            return f"{pod} container {self.container or (self.container_id or '?')[:12]}"
        if self.kind in ("docker", "podman", "container"):
            return f"{self.runtime or self.kind} {self.container or (self.container_id or '?')[:12]}"
        if self.kind == "systemd":
            return self.unit or "?"
        return ""


@dataclass
class RuntimePoint:
    """One earlier reading of a runtime's heap (at most one a second, while its cgroup was at least
    half full: record reads the runtimes of those cgroups only)."""

    t_ms: float  # relative to the kill: negative before it
    heap_used_bytes: Optional[int] = None  # a JVM's
    heap_committed_bytes: Optional[int] = None
    heap_inuse_bytes: Optional[int] = None  # a Go program's: HeapInuse, what Go dashboards show
    heap_goal_bytes: Optional[int] = None  # a Go program's: the GC's goal (NextGC)


@dataclass
class AllocationSite:
    """Code that holds memory: a stack, innermost frame first, and the bytes it held. ``source``
    says how it was measured: ``go_heap``, a Go runtime's heap profile (runtime.MemProfile's in-use
    bytes as of its last completed GC, sampled every 512 KiB allocated and scaled as pprof does)."""

    frames: List[str] = field(default_factory=list)
    bytes: int = 0
    source: str = ""
    # page_faults (record/sites.py: sampled page faults of a cgroup near its limit, ranked by the
    # sampled pages still present at the last check before the kill; an estimate)
    pid: Optional[int] = None
    comm: str = ""
    faults_sampled: Optional[int] = None  # sampled faults of this stack (each one of ``period``)
    pages_sampled: Optional[int] = None  # distinct sampled pages
    pages_resident: Optional[int] = None  # of which still present and anonymous at the check
    #: frames that could not be named, and why (stripped, JIT without a perf map, no frame pointers)
    unsymbolized: List[str] = field(default_factory=list)


@dataclass
class AllocationSampling:
    """How the ``page_faults`` allocation sites were measured (record/sites.py)."""

    period: int = 0  # one fault in this many sampled
    page_size_bytes: int = 4096
    #: when sampling began and when the pages were last checked, before the kill (negative ms)
    sampled_from_ms: Optional[float] = None
    checked_ms: Optional[float] = None
    samples: int = 0
    #: resident samples not counted: their address range was mapped again after them (freed between)
    remapped_dropped: int = 0
    estimate: str = ""  # the estimate's arithmetic, in words
    notes: List[str] = field(default_factory=list)


@dataclass
class LimitHitter:
    """A task of the cgroup that stalled in memcg reclaim (vmscan:mm_vmscan_memcg_reclaim_begin/end
    run in the task being charged): who was charging when the cgroup hit its limit."""

    pid: int
    tid: int
    comm: str = ""
    stall_ms: float = 0.0  # in memcg reclaim, summed, since sampling began
    max_stall_ms: float = 0.0
    runs: int = 0
    last_ms: Optional[float] = None  # its last reclaim's end, before the kill (negative ms)
    frames: List[str] = field(default_factory=list)  # user stack at its last reclaim, innermost first
    kernel_frames: List[str] = field(default_factory=list)  # the kernel's, innermost first
    notes: List[str] = field(default_factory=list)


@dataclass
class RuntimeReading:
    """A process's runtime's own view of its memory, read from outside it (a JVM's hsperdata file,
    oomscope/runtimes/java.py; a Go program's runtime state in its memory, oomscope/runtimes/go.py),
    the last reading before the kill. Every figure None when the runtime could not be read
    (``why_not`` says why) or does not publish it; a JVM's figures are None for Go and the Go
    figures None for a JVM."""

    kind: str  # "java" or "go"
    pid: int
    comm: str = ""
    #: how long before the kill it was read (the JVM keeps the file current; GC moves it)
    read_ms_before_kill: Optional[float] = None
    why_not: Optional[str] = None
    heap_used_bytes: Optional[int] = None  # what heap dashboards (JMX, Micrometer) show
    heap_committed_bytes: Optional[int] = None  # reserved from the OS for the heap
    heap_max_bytes: Optional[int] = None  # -Xmx or MaxRAMPercentage of the limit
    young_used_bytes: Optional[int] = None
    old_used_bytes: Optional[int] = None
    metaspace_used_bytes: Optional[int] = None
    metaspace_committed_bytes: Optional[int] = None
    class_space_used_bytes: Optional[int] = None
    class_space_committed_bytes: Optional[int] = None
    threads: Optional[int] = None
    young_gc_count: Optional[int] = None
    full_gc_count: Optional[int] = None
    gc_time_ms: Optional[float] = None
    vm_version: Optional[str] = None  # a JVM's version; Go's ("go1.19.8", from the binary's build info)
    vm_args: Optional[str] = None  # untrusted text: the memory flags only (runtimes/hsperfdata.memory_flags)
    #: the heap before this reading, oldest first (the timeline of the runtime's own view)
    heap_history: List[RuntimePoint] = field(default_factory=list)
    # Go (runtime.MemStats as runtime.ReadMemStats would give it)
    heap_inuse_bytes: Optional[int] = None  # HeapInuse: bytes in in-use spans (Go dashboards' heap)
    heap_alloc_bytes: Optional[int] = None  # HeapAlloc: live and not yet swept objects
    heap_goal_bytes: Optional[int] = None  # NextGC: the GC's goal (GOGC, lowered by GOMEMLIMIT)
    heap_free_bytes: Optional[int] = None  # HeapIdle - HeapReleased: free spans not returned to the OS
    memory_limit_bytes: Optional[int] = None  # GOMEMLIMIT; None: none set
    gc_percent: Optional[int] = None  # GOGC; None: off (or not Go)
    #: the heap profile by allocation site, largest first (Go: runtime.mbuckets)
    allocation_sites: List[AllocationSite] = field(default_factory=list)
    allocation_sites_why_not: Optional[str] = None  # when there are none, or only some: why


@dataclass
class NotWritten:
    """Kills of this capture's workload that record counted but did not write, since the previous
    one it wrote: the workload's storm went beyond its budget (record/budget.py)."""

    count: int = 0
    first_wall: Optional[str] = None  # ISO 8601, UTC: the first and the last of them
    last_wall: Optional[str] = None
    budget: str = ""  # the budget, in words ("10 post-mortems in a row, then one every 60 s")


@dataclass
class KillPressure:
    """The memory pressure at a user-space kill (oomscope/killers.py): the target's cgroup and the
    host. PSI percentages as the kernel prints them (0-100); None: not read."""

    cgroup: Optional[str] = None
    cgroup_usage_bytes: Optional[int] = None
    cgroup_limit_bytes: Optional[int] = None
    limit_cgroup: Optional[str] = None  # whose limit: the nearest cgroup with one, at or above
    cgroup_high_bytes: Optional[int] = None  # cgroup v2 memory.high
    cgroup_psi: Dict[str, float] = field(default_factory=dict)  # some_avg10, full_avg10, ... (v2)
    host_psi: Dict[str, float] = field(default_factory=dict)  # /proc/pressure/memory
    mem_total_bytes: Optional[int] = None
    mem_available_bytes: Optional[int] = None
    swap_total_bytes: Optional[int] = None
    swap_free_bytes: Optional[int] = None
    #: where each figure came from, in words (the kernel snapshot at the SIGKILL, the last sample, ...)
    sources: List[str] = field(default_factory=list)

    @property
    def cgroup_ratio(self) -> Optional[float]:
        if self.cgroup_usage_bytes is None or not self.cgroup_limit_bytes:
            return None
        return self.cgroup_usage_bytes / self.cgroup_limit_bytes

    @property
    def available_ratio(self) -> Optional[float]:
        if self.mem_available_bytes is None or not self.mem_total_bytes:
            return None
        return self.mem_available_bytes / self.mem_total_bytes

    @property
    def swap_free_ratio(self) -> Optional[float]:
        if self.swap_total_bytes is None or self.swap_free_bytes is None:
            return None
        return self.swap_free_bytes / self.swap_total_bytes if self.swap_total_bytes else 0.0


@dataclass
class Killer:
    """Who killed: the kernel's OOM killer (``kind`` "kernel", every kernel kill and every capture
    older than this field), or a process (``userspace``: earlyoom, systemd-oomd, the kubelet, or
    any process that sent SIGKILL or SIGTERM under memory pressure)."""

    kind: str = "kernel"  # kernel | userspace
    comm: str = ""
    pid: Optional[int] = None
    exe: Optional[str] = None
    unit: Optional[str] = None  # the killer's systemd unit or container, from its cgroup
    signal: str = "SIGKILL"  # SIGKILL, SIGTERM, or "SIGTERM, then SIGKILL"
    cgroup: Optional[str] = None  # the killer's own cgroup
    #: the killer oomscope knows it as: earlyoom, systemd-oomd, oomd, kubelet (None: none it knows)
    known_as: Optional[str] = None
    recognised_by: str = ""  # how: its executable, its comm, ...
    rule: str = ""  # the killer's rule and thresholds, in words
    rule_met: str = ""  # what met the killer's own rule, in words
    #: the pressure rules (oomscope's: killers.PRESSURE_RULES) the kill met, in words
    pressure_met: List[str] = field(default_factory=list)
    pressure: Optional[KillPressure] = None
    notes: List[str] = field(default_factory=list)


@dataclass
class ThrottledTask:
    """A task of a throttled cgroup and its time in memcg reclaim during the episode (vmscan
    memcg reclaim tracepoints; the penalty sleep after it is in the cgroup's PSI, not here)."""

    pid: int
    comm: str = ""
    reclaim_ms: float = 0.0
    reclaim_runs: int = 0
    pages_reclaimed: int = 0


@dataclass
class ThrottleEpisode:
    """A memory.high throttling episode (record/throttle.py): the cgroup spent ``share`` of its
    time stalled on memory, with memory.events high rising, from ``start_wall`` to ``end_wall``."""

    cgroup: str = ""
    start_wall: Optional[str] = None  # ISO 8601, UTC
    end_wall: Optional[str] = None
    duration_s: float = 0.0
    memory_high_bytes: Optional[int] = None
    high_events: int = 0  # memory.events high, over the episode
    stall_s: float = 0.0  # memory.pressure some total over the episode: some task of the cgroup stalled
    full_stall_s: float = 0.0  # ... every task at once
    share: float = 0.0  # stall_s / duration_s
    threshold_share: float = 0.0  # record --throttle-share
    usage_peak_bytes: Optional[int] = None
    some_avg10_peak: Optional[float] = None
    full_avg10_peak: Optional[float] = None
    tasks: List[ThrottledTask] = field(default_factory=list)  # longest reclaim first


@dataclass
class Times:
    """When things happened. Monotonic clocks are CLOCK_MONOTONIC in ns (bpf_ktime_get_ns)."""

    kill_wall: Optional[str] = None  # ISO 8601, UTC (with kill_wall_zone "unknown": local, no offset)
    kill_monotonic_ns: Optional[int] = None
    kernel_report_usec: Optional[int] = None  # /dev/kmsg timestamp of the Killed line
    captured_wall: Optional[str] = None
    #: "" : kill_wall is UTC; "unknown": an imported log's local time, printed without its zone
    #: (syslog, dmesg -T): kill_wall is that time as printed, without an offset, at its precision
    kill_wall_zone: str = ""


@dataclass
class Capture:
    kill_id: str
    victim: Victim
    schema_version: int = SCHEMA_VERSION
    oomscope_version: str = ""
    times: Times = field(default_factory=Times)
    trigger: Trigger = field(default_factory=Trigger)
    cgroup: CgroupInfo = field(default_factory=CgroupInfo)
    #: the state of the oom_memcg at the kill: the best of ``at_kill_sources`` (capture/assemble.choose_at_kill)
    at_kill: CgroupState = field(default_factory=CgroupState)
    at_kill_sources: Dict[str, CgroupState] = field(default_factory=dict)
    tasks: List[Task] = field(default_factory=list)
    host: Host = field(default_factory=Host)
    kernel_report: KernelReportInfo = field(default_factory=KernelReportInfo)
    incident: Optional[Incident] = None
    #: a global OOM (the node ran out, no cgroup limit was hit): the host's memory from the
    #: report's Mem-Info, in bytes (active_anon, inactive_file, free, slab_reclaimable, shmem, ...,
    #: ram, swap_total, swap_free)
    host_memory_at_kill: Dict[str, int] = field(default_factory=dict)
    #: the minutes before the kill: the oom_memcg's history, then the task_memcg's when different
    timelines: List[Timeline] = field(default_factory=list)
    #: whether the recorder took kernel snapshots at SIGKILLs (schema 5): "on", "unavailable: <why>";
    #: "" when not recorded live (import, older schemas)
    kernel_snapshot_status: str = ""
    #: the victim's cgroup as Kubernetes, docker, podman or systemd name it
    workload: Workload = field(default_factory=Workload)
    #: plain-language remarks on what is missing or uncertain in this capture
    notes: List[str] = field(default_factory=list)
    #: the runtimes' own views (a JVM's heap) of the killed cgroup's processes, last read before
    #: the kill (schema 3; empty when none was read, and in imported captures)
    runtimes: List[RuntimeReading] = field(default_factory=list)
    #: kills of the same workload not written since the previous capture written (None: none)
    not_written: Optional[NotWritten] = None
    #: which code held the memory: the growth sites of the killed cgroup's processes, largest first
    #: (``page_faults``: sampled while the cgroup was near its limit; empty when it never was)
    allocation_sites: List[AllocationSite] = field(default_factory=list)
    allocation_sampling: Optional[AllocationSampling] = None
    #: the tasks charging when the cgroup hit its limit, longest stall first
    limit_hitters: List[LimitHitter] = field(default_factory=list)
    #: who killed: the kernel's OOM killer, or a user-space one (a capture without it: the kernel)
    killer: Killer = field(default_factory=Killer)
    #: "kill" (every capture older than this field), or "throttle": a memory.high throttling
    #: episode, nobody killed (``throttle`` says it; ``victim`` is the task that stalled longest)
    kind: str = "kill"
    throttle: Optional[ThrottleEpisode] = None

    def to_dict(self) -> Dict[str, Any]:
        """As ``dataclasses.asdict`` (tested equal), at a fifth of its cost: asdict deep-copies
        every leaf and looks up each dataclass's fields anew, ~1.3 ms of an import's kill."""
        return _plain(self)

    def to_json(self, indent: Optional[int] = 2, fast: bool = False) -> str:
        """``indent=None``: one line, by json's C encoder (an indent takes its pure-Python one, 3x the
        time: 0.12 against 0.04 ms for a full report's capture); import writes thousands. One line
        is encoded from the dataclasses themselves (_json_fields), not from a copy made by to_dict:
        the same text (tested on a storm's 4,446 captures), a third less time (issue 29); by an
        encoder made once (_one_line_encoder). ``fast``: by orjson (_fast_dumps), for import's
        thousands; record leaves it off, orjson's 3 MiB of anonymous memory not worth its few kills."""
        if indent is None:
            dumps = _fast_dumps() if fast else None
            if dumps is not None:
                try:
                    return dumps(self)
                except (TypeError, ValueError):  # an int beyond 64 bits, a lone surrogate: json's way
                    pass
            if _ONE_LINE is not None:
                return "".join(_ONE_LINE(self, 0)) + "\n"
            return json.dumps(self, default=_json_fields, sort_keys=False, ensure_ascii=False) + "\n"
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "Capture":
        if not isinstance(data, dict):
            raise CaptureError("a capture must be a JSON object")
        version = data.get("schema_version")
        if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
            raise CaptureError(
                f"unsupported capture schema_version {version!r} (this oomscope reads {SCHEMA_VERSION})"
            )
        try:
            cap = _build(cls, _upgrade(data, version), "capture")
        except RecursionError:
            raise CaptureError("the capture is nested too deeply to be one oomscope wrote") from None
        cap.notes.extend(unknown_if_absurd(cap))
        return cap

    @classmethod
    def from_json(cls, text: str) -> "Capture":
        try:
            data = json.loads(text)
        except RecursionError:  # deeply nested arrays or objects
            raise CaptureError("not valid JSON: nested too deeply") from None
        except ValueError as exc:  # includes an integer beyond Python's 4300 digits
            raise CaptureError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)


#: schema 7 named a task's RSS fields as the victim's
_TASK_RENAMED = {"rss_anon_bytes": "anon_rss_bytes", "rss_file_bytes": "file_rss_bytes",
                 "rss_shmem_bytes": "shmem_rss_bytes"}


def _upgrade(data: Dict[str, Any], version: int) -> Dict[str, Any]:
    """A capture of an older schema as the current one says it (a shallow copy where it changes).
    Before 7: a task's RSS fields had other names; ``at_kill`` had a part of a cgroup state's
    fields, so it loads as one as it is (the rest unknown or empty, as before). A capture keeps the
    ``schema_version`` it was read as (the report says it), so one read and written again holds an
    old number in 7's shape: this is idempotent on that (only the old names are renamed)."""
    if version < 7 and isinstance(data.get("tasks"), list):
        tasks = [{_TASK_RENAMED.get(k, k): v for k, v in t.items()} if isinstance(t, dict) else t for t in data["tasks"]]
        data = dict(data, tasks=tasks)
    return data


# --- a small typed loader: JSON dicts back into the dataclasses, with one-line errors ---------

#: No figure the kernel keeps comes near this (a u64 count of kB, in bytes, is below 2**74): a
#: larger number in a capture or a log was not printed by a kernel and is shown as unknown.
ABSURD = 2 ** 80


def _absurd(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() > 80
    if isinstance(value, float):
        return not math.isfinite(value) or abs(value) >= ABSURD
    return False


def _describe(value: Any) -> str:
    if isinstance(value, int):
        return f"a number of about {max(1, int(value.bit_length() * 0.30103))} digits"
    return f"the number {value!r}"


def unknown_if_absurd(obj: Any, where: str = "capture") -> List[str]:
    """Numbers no kernel could have printed (beyond ``ABSURD``, NaN, infinite) become unknown:
    an optional figure is set to None, a dict entry is dropped; returns a note for each. A required
    one (a pid) raises CaptureError: that capture cannot be told apart from another."""
    notes: List[str] = []
    _walk(obj, where, notes)
    return notes


#: values with nothing inside to walk (a number is judged by its holder, which can unset it)
_LEAVES = (str, int, float, bool, type(None))
_LEAF_SET = frozenset(_LEAVES)
_FIELD_NAMES: Dict[type, Tuple[str, ...]] = {}


def _walk(obj: Any, where: str, notes: List[str]) -> None:
    # Paths are formatted only for a note: this walk runs on every capture written or read
    # (an import writes thousands), and an f-string per field was most of its time. The common
    # values (a str, None, a bool, an int of at most 80 bits) are passed over without a call:
    # half of this walk's time in a storm's import (issue 29).
    tp = type(obj)
    if tp in _LEAF_SET:
        return
    names = _FIELD_NAMES.get(tp)
    if names is None and tp is not dict and tp is not list and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _field_names(tp)
    if names is not None:
        for name in names:
            value = getattr(obj, name)
            tv = type(value)
            if tv is str or value is None or tv is bool or (tv is int and value.bit_length() <= 80) or isinstance(value, str):
                continue  # (a Source is a str: nothing in it to walk)
            if _absurd(value):
                here = f"{where}.{name}"
                hint = _hints(tp).get(name)
                if typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint):
                    setattr(obj, name, None)
                    notes.append(f"{here} was {_describe(value)}, beyond any figure the kernel keeps: shown as unknown.")
                else:
                    raise CaptureError(f"{here}: {_describe(value)}, beyond any figure the kernel keeps")
            elif tv not in _LEAF_SET:
                _walk(value, f"{where}.{name}", notes)
    elif isinstance(obj, dict):
        bad = nested = False
        for v in obj.values():
            tv = type(v)
            if tv is str or v is None or tv is bool or (tv is int and v.bit_length() <= 80):
                continue
            if _absurd(v):
                bad = True
            elif tv not in _LEAF_SET:
                nested = True
        if bad:
            for k in [k for k, v in obj.items() if _absurd(v)]:
                notes.append(f"{where}.{terminal_safe(str(k))} was {_describe(obj.pop(k))}, beyond any figure the kernel keeps: left out (unknown).")
        if nested:
            for k, v in obj.items():
                if type(v) not in _LEAF_SET:
                    _walk(v, f"{where}.{terminal_safe(str(k))}", notes)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            tv = type(v)
            if tv is str or v is None or tv is bool or (tv is int and v.bit_length() <= 80):
                continue
            if _absurd(v):
                raise CaptureError(f"{where}[{i}]: {_describe(v)}, beyond any figure the kernel keeps")
            if tv not in _LEAF_SET:
                _walk(v, f"{where}[{i}]", notes)


def _field_names(tp: type) -> Tuple[str, ...]:
    names = _FIELD_NAMES.get(tp)
    if names is None:
        names = _FIELD_NAMES[tp] = tuple(f.name for f in dataclasses.fields(tp))
    return names


def _json_fields(obj: Any) -> Any:
    """For json.dumps: a dataclass as its own ``__dict__`` when that holds its fields in their
    order and nothing else (to_dict's dict, without the copy), else as to_dict makes it."""
    tp = type(obj)
    d = getattr(obj, "__dict__", None)
    names = _FIELD_NAMES.get(tp)
    if names is None and d is not None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _field_names(tp)
    if names is not None and d is not None and tuple(d) == names:
        return d
    return _plain(obj)


def _one_line_encoder() -> Any:
    """json's C encoder as ``json.dumps(obj, default=_json_fields, ensure_ascii=False)`` makes it,
    made once instead of for each capture (with its JSONEncoder, ~7 us of a storm kill's ~50 us
    of JSON: issue 29, eighth pass), without the check for cycles (a capture has none: a cycle
    would end in RecursionError instead of ValueError). None where json has no C encoder, or it
    does not take these arguments or give that text: to_json calls json.dumps then."""
    try:
        import json.encoder

        c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # (not in typeshed's json.encoder)
        encode_basestring = json.encoder.encode_basestring
        if c_make_encoder is None:
            return None
        enc = c_make_encoder(None, _json_fields, encode_basestring, None, ": ", ", ", False, False, True)
        probe: Any = {"a": [1, 2.5, None, True, "\u00e9\n\"", {}], "b": Times(kill_wall="x")}
        if "".join(enc(probe, 0)) != json.dumps(probe, default=_json_fields, ensure_ascii=False):
            return None
        return enc
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _fast_dumps() -> Any:
    """orjson (a dependency: pyproject.toml) as the one-line dumper: 2.5x faster than json's C
    encoder with the same hook for each dataclass (0.20 against 0.49 s for a storm's 4,446
    captures, one CPU: issue 29, tenth pass). Its
    text is compact (no space after ':' and ','); the value is json's (checked here on a probe, and
    on every capture of the storm and the fixtures: tests/unit/test_capture_json_line.py). Imported
    at the first capture written, so that a process that writes none never maps it. A float NaN
    or infinity would be null here (json writes NaN): an imported capture holds none (its numbers
    are the report's ints; unknown_if_absurd has run). None where it
    is not installed or gives another value: json then. What it refuses (an int beyond 64 bits, a
    string with a lone surrogate) raises, and the caller takes json's way for that capture."""
    dumps = None
    try:
        import orjson

        # at_kill_sources is keyed by Source (a str enum): its value, as json. Dataclasses through
        # _json_fields, as json's encoder takes them: orjson's own way writes every attribute in
        # __dict__, one set on an instance that is not a field too (0.14 s that way, 0.20 this)
        option = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS

        def dumps(obj: Any) -> str:
            return orjson.dumps(obj, default=_json_fields, option=option).decode() + "\n"

        probe: Any = {"a": [1, 2.5, None, True, "\u00e9\n\"\x00", {}, -(1 << 63)], Source.KERNEL_LOG: Times(kill_wall="x")}
        if json.loads(dumps(probe)) != json.loads(json.dumps(probe, default=_json_fields, ensure_ascii=False)):
            dumps = None
    except Exception:
        dumps = None
    return dumps


def _plain(obj: Any) -> Any:
    """Dataclasses as dicts, recursively; strings, numbers and enum members (immutable) as they are.
    A leaf is taken as it is without a call (a capture's memory.stat dicts are most of its values:
    a third of this copy's time in a storm's import, issue 29)."""
    tp = type(obj)
    if tp in _LEAF_SET or isinstance(obj, enum.Enum):
        return obj
    if tp is list:
        return [v if type(v) in _LEAF_SET else _plain(v) for v in obj]
    if tp is dict:
        return {k if type(k) is str else _plain(k): v if type(v) in _LEAF_SET else _plain(v) for k, v in obj.items()}
    names = _FIELD_NAMES.get(tp)
    if names is None and tp is not tuple and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _field_names(tp)
    if names is not None:
        out = {}
        for name in names:
            v = getattr(obj, name)
            out[name] = v if type(v) in _LEAF_SET else _plain(v)
        return out
    if tp is tuple:
        return tuple(_plain(v) for v in obj)
    return copy.deepcopy(obj)


_HINTS_CACHE: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise CaptureError(f"{where}: expected an object, got {type(value).__name__}")
        kwargs = {}
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CaptureError(f"{where}: missing required field {f.name!r}")
        return tp(**kwargs)
    if origin in (list, List):
        if not isinstance(value, list):
            raise CaptureError(f"{where}: expected a list")
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise CaptureError(f"{where}: expected an object")
        return {str(k): _build(args[1], v, f"{where}.{terminal_safe(str(k))}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CaptureError(f"{where}: expected a number")
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float: unknown_if_absurd makes it unknown
            return float("inf")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CaptureError(f"{where}: expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise CaptureError(f"{where}: expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise CaptureError(f"{where}: expected a string")
        return value
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # Source: one of its names
        try:
            return tp(value)
        except ValueError:
            raise CaptureError(f"{where}: unknown value {value!r}") from None
    raise CaptureError(f"{where}: unsupported type {tp!r}")  # pragma: no cover - schema bug


#: Capture.to_json's one-line encoder (_one_line_encoder)
_ONE_LINE = _one_line_encoder()
