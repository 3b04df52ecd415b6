"""Builds a Capture from the parts of one kill. Pure: every input is passed in.

Two steps: ``place`` decides, once, where the kill happened (the victim's cgroup, the cgroup that
hit its limit, global or not); the collector then gathers the evidence for those cgroups
(record/evidence.py), and ``build_capture`` puts event, report, placement and evidence together.
Each cgroup figure keeps its provenance (kernel report, last sample, after the kill); ``at_kill``
is the best of them (model.choose_at_kill).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .. import __version__
from ..kernel.cgroupfs import limit_or_none
from ..kernel.kmsg import OomReport
from ..model import (
    unknown_if_absurd,
    SOURCE_BPF,
    SOURCE_KERNEL_REPORT,
    SOURCE_KERNEL_SNAPSHOT,
    SOURCE_NONE,
    Capture,
    CgroupInfo,
    CgroupUsage,
    CgroupState,
    Host,
    KernelReportInfo,
    RuntimeReading,
    Source,
    Task,
    Timeline,
    Times,
    Trigger,
    Victim,
    choose_at_kill,
)
from ..layouts import OomEvent

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # of the machine running oomscope: only when the kill host's is unknown


@dataclass
class Recording:
    """What is the same for every kill a recorder (or an import) sees."""

    cgroup_version: Optional[int] = None
    host: Host = field(default_factory=Host)
    clock_offset_ns: int = 0  # wall clock minus CLOCK_MONOTONIC
    #: the provenance of every figure taken from the kernel's OOM report: kernel_report (read from
    #: /dev/kmsg as it was printed: record) or kernel_log (a log that kept it: import)
    report_source: Source = SOURCE_KERNEL_REPORT


@dataclass
class Evidence:
    """What was read about one kill besides its event and its report (record/evidence.py gathers
    it for the cgroups a Placement names). Readings only: no decision about the kill."""

    last_sample: Optional[CgroupState] = None
    #: the memcg's own counters read in the kernel at the SIGKILL (record/snapshot.py)
    kernel_snapshot: Optional[CgroupState] = None
    #: whether the recorder could take kernel snapshots: "on", or "unavailable: <why>" ("": not recorded live)
    snapshot_status: str = ""
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


@dataclass
class Placement:
    """Where the kill happened, decided once (``place``): every later step reads it."""

    cgroup: CgroupInfo
    #: the host ran out of memory, no cgroup limit was hit (cgroup.oom_memcg is then None)
    is_global: bool = False
    notes: List[str] = field(default_factory=list)

    @property
    def described(self) -> Optional[str]:
        """The cgroup whose readings describe the kill: the one that hit its limit, or on a global
        OOM the victim's own."""
        return self.cgroup.task_memcg if self.is_global else self.cgroup.oom_memcg


def place(
    report: Optional[OomReport],
    located: Optional[Tuple[str, str]] = None,
    incident_oom_memcg: Optional[str] = None,
    limited_ancestor: Optional[Callable[[str], Optional[str]]] = None,
    cgroup_version: Optional[int] = None,
    victim_parent_pid: Optional[int] = None,
    report_source: Source = SOURCE_KERNEL_REPORT,
) -> Placement:
    """The victim's cgroup, the cgroup that hit its limit and whether this was a global OOM.

    The kernel's report decides when it names them. Else ``located`` (task_memcg, how it was learnt:
    record/evidence.py) places the victim; a member of a memory.oom.group kill takes the first
    victim's oom_memcg; else ``limited_ancestor`` of the victim's cgroup is taken as the one that hit
    its limit."""
    notes: List[str] = []
    killed = report.killed if report is not None else None
    cg = CgroupInfo(version=cgroup_version)
    summary = report.summary if report is not None else None
    if summary is not None and (summary.oom_memcg or summary.task_memcg):
        cg.oom_memcg, cg.task_memcg = summary.oom_memcg, summary.task_memcg
        cg.constraint = summary.constraint
        cg.source = report_source
    elif report is not None and report.stats_cgroup:
        cg.oom_memcg = report.stats_cgroup
        cg.source = report_source
    if summary is not None and summary.constraint:
        cg.constraint = summary.constraint
    if cg.task_memcg is None and located is not None:
        cg.task_memcg, how = located
        if cg.source == SOURCE_NONE:
            cg.source = how
    if cg.oom_memcg is None and incident_oom_memcg:
        cg.oom_memcg = incident_oom_memcg
        cg.source = cg.source if cg.task_memcg else report_source
    if cg.constraint is None and killed is not None and killed.message.startswith("Memory cgroup"):
        cg.constraint = "CONSTRAINT_MEMCG"
    is_global = cg.constraint == "CONSTRAINT_NONE" or (killed is not None and killed.message == "Out of memory")
    if is_global:
        cg.oom_memcg = None  # no cgroup limit was hit: the node ran out
    else:
        if cg.oom_memcg is None and cg.task_memcg is not None and limited_ancestor is not None:
            cg.oom_memcg = limited_ancestor(cg.task_memcg)
            if cg.oom_memcg is not None:
                notes.append("The kernel's report for this kill was not seen (rate-limited or lost): oom_memcg is the nearest "
                             "cgroup with a memory limit above the victim's cgroup, as oomscope saw it.")
    if cg.task_memcg is None:
        notes.append("The victim's cgroup is unknown: no kernel report, and the process was gone before oomscope could see its cgroup"
                     + (f" (its parent, pid {victim_parent_pid}, was not found in any cgroup either)." if victim_parent_pid else
                        " (its fork was not seen, so its parent is unknown)."))
    return Placement(cg, is_global, notes)


def state_from_report(rep: OomReport, source: Source = SOURCE_KERNEL_REPORT) -> Optional[CgroupState]:
    if rep.memory is None and not rep.memory_stat:
        return None
    st = CgroupState(source=source, cgroup=rep.stats_cgroup, memory_stat=dict(rep.memory_stat), age_ms=0.0)
    if rep.memory is not None:
        st.usage_bytes = rep.memory.usage_kb * 1024
        st.limit_bytes = limit_or_none(rep.memory.limit_kb * 1024)
        st.failcnt = rep.memory.failcnt
    if rep.kmem is not None:
        st.kmem_usage_bytes = rep.kmem.usage_kb * 1024
    if rep.swap is not None:  # cgroup v2 prints swap on its own
        st.swap_usage_bytes = rep.swap.usage_kb * 1024
        st.swap_limit_bytes = limit_or_none(rep.swap.limit_kb * 1024)
    elif rep.memsw is not None and rep.memory is not None:  # v1: memory+swap includes memory
        st.swap_usage_bytes = max(0, rep.memsw.usage_kb - rep.memory.usage_kb) * 1024
        memsw_limit = limit_or_none(rep.memsw.limit_kb * 1024)
        if memsw_limit is not None and st.limit_bytes is not None:
            st.swap_limit_bytes = max(0, memsw_limit - st.limit_bytes)
    return st


def host_memory_from_report(rep: OomReport, page_size: int = PAGE_SIZE) -> Dict[str, int]:
    """A global OOM's Mem-Info (pages, and kB for swap) in bytes, with the kill host's page size."""
    out: Dict[str, int] = {}
    for key, value in rep.mem_info.items():
        if key == "free_swap_kb":
            out["swap_free"] = value * 1024
        elif key == "total_swap_kb":
            out["swap_total"] = value * 1024
        elif key == "ram_pages":
            out["ram"] = value * page_size
        else:
            out[key] = value * page_size
    return out


def tasks_from_report(rep: OomReport, victim_pid: int, proc_info: Dict[int, Tuple[str, Optional[str]]],
                      page_size: int = PAGE_SIZE, source: Source = SOURCE_KERNEL_REPORT) -> List[Task]:
    def pages(row_values: Dict[str, int], key: str) -> Optional[int]:
        v = row_values.get(key)
        return v * page_size if v is not None else None

    tasks = []
    for row in rep.tasks:
        v = row.values
        info = proc_info.get(row.pid)
        tasks.append(Task(
            pid=row.pid,
            comm=row.name,
            tgid=v.get("tgid"),
            uid=v.get("uid"),
            total_vm_bytes=pages(v, "total_vm"),
            rss_bytes=pages(v, "rss"),
            rss_anon_bytes=pages(v, "rss_anon"),
            rss_file_bytes=pages(v, "rss_file"),
            rss_shmem_bytes=pages(v, "rss_shmem"),
            pgtables_bytes=v.get("pgtables_bytes"),
            swap_bytes=pages(v, "swapents"),
            oom_score_adj=v.get("oom_score_adj"),
            is_victim=row.pid == victim_pid,
            cmdline=info[1] if info else None,
            source=source,
        ))
    return tasks


def _kb(v: Optional[int]) -> Optional[int]:
    return v * 1024 if v is not None else None


def make_kill_id(wall: dt.datetime, pid: int) -> str:
    return wall.strftime("%Y%m%dT%H%M%S.") + f"{wall.microsecond // 1000:03d}Z-pid{pid}"


def assemble(
    pid: int,
    event: Optional[OomEvent],
    report: Optional[OomReport],
    recording: Recording,
    evidence: Optional[Evidence] = None,
    located: Optional[Tuple[str, str]] = None,
    limited_ancestor: Optional[Callable[[str], Optional[str]]] = None,
    now_wall: Optional[dt.datetime] = None,
) -> Capture:
    """``place`` then ``build_capture``, for callers that gather no evidence between the two
    (import, tests)."""
    placement = place(report, located, None, limited_ancestor, recording.cgroup_version,
                      event.victim_parent_pid if event is not None else None, recording.report_source)
    return build_capture(pid, event, report, placement, evidence or Evidence(), recording, now_wall)


def build_capture(
    pid: int,
    event: Optional[OomEvent],
    report: Optional[OomReport],
    placement: Placement,
    evidence: Evidence,
    recording: Recording,
    now_wall: Optional[dt.datetime] = None,
) -> Capture:
    notes: List[str] = []
    killed = report.killed if report is not None else None
    page_size = recording.host.page_size_bytes or PAGE_SIZE  # the kernel's page counts are the kill host's
    from_report = recording.report_source  # the provenance of what the kernel's report says

    # --- the victim ---
    # The kernel's Killed line ranks first, as everywhere: on 7.3 it and oom:mark_victim read the
    # mm's per-CPU RSS counters differently, 48-150 KiB apart either way (measured in the 7.3 VM:
    # docs/kernel-facts.md). mark_victim's figures stand in when the report was not seen.
    if killed is not None and killed.anon_rss_kb is not None:
        victim = Victim(
            pid=pid, comm=killed.comm, uid=killed.uid, oom_score_adj=killed.oom_score_adj,
            total_vm_bytes=_kb(killed.total_vm_kb), anon_rss_bytes=_kb(killed.anon_rss_kb),
            file_rss_bytes=_kb(killed.file_rss_kb), shmem_rss_bytes=_kb(killed.shmem_rss_kb),
            pgtables_bytes=_kb(killed.pgtables_kb), source=from_report,
        )
        if event is not None:
            victim.comm = event.victim_comm or victim.comm
            victim.uid = victim.uid if victim.uid is not None else event.uid
            victim.oom_score_adj = victim.oom_score_adj if victim.oom_score_adj is not None else event.oom_score_adj
            victim.pgtables_bytes = victim.pgtables_bytes if victim.pgtables_bytes is not None else _kb(event.pgtables_kb)
    elif event is not None and event.anon_rss_kb is not None:
        victim = Victim(
            pid=pid, comm=event.victim_comm or (killed.comm if killed else ""), uid=event.uid,
            oom_score_adj=event.oom_score_adj, total_vm_bytes=_kb(event.total_vm_kb),
            anon_rss_bytes=_kb(event.anon_rss_kb), file_rss_bytes=_kb(event.file_rss_kb),
            shmem_rss_bytes=_kb(event.shmem_rss_kb), pgtables_bytes=_kb(event.pgtables_kb), source=SOURCE_BPF,
        )
    elif killed is not None:
        victim = Victim(
            pid=pid, comm=killed.comm, uid=killed.uid, oom_score_adj=killed.oom_score_adj,
            total_vm_bytes=_kb(killed.total_vm_kb), anon_rss_bytes=_kb(killed.anon_rss_kb),
            file_rss_bytes=_kb(killed.file_rss_kb), shmem_rss_bytes=_kb(killed.shmem_rss_kb),
            pgtables_bytes=_kb(killed.pgtables_kb), source=from_report,
        )
        if event is not None and event.victim_comm:
            victim.comm = event.victim_comm
    else:
        victim = Victim(pid=pid, comm=(event.victim_comm or "") if event else "")
        notes.append("This kernel's oom:mark_victim carries only the pid and the kernel's report was not seen: the victim's memory is unknown.")
    info = evidence.proc_info.get(pid)
    if info is not None:
        victim.cmdline = info[1]
        if not victim.comm:
            victim.comm = info[0]

    # --- the trigger ---
    if event is not None:
        trigger = Trigger(pid=event.trigger_tgid, tid=event.trigger_tid, comm=event.trigger_comm, source=SOURCE_BPF)
    elif report is not None and report.has_header:
        trigger = Trigger(pid=report.trigger_pid, comm=report.trigger_comm or "", source=from_report)
    else:
        trigger = Trigger()

    # --- which cgroup: decided by place() ---
    cg = dataclasses.replace(placement.cgroup)
    is_global = placement.is_global
    notes.extend(placement.notes)
    if cg.oom_memcg is not None and cg.task_memcg is not None and cg.oom_memcg != cg.task_memcg:
        cg.sharing = sorted(evidence.sharing, key=lambda u: -(u.usage_bytes or 0))

    # --- the state at the kill ---
    sources: Dict[str, CgroupState] = {}
    if report is not None:
        st = state_from_report(report, from_report)
        if st is not None:
            sources[from_report] = st
    if from_report not in sources and evidence.incident_state is not None:
        sources[from_report] = evidence.incident_state
    if evidence.kernel_snapshot is not None:
        sources[evidence.kernel_snapshot.source] = evidence.kernel_snapshot
    if evidence.last_sample is not None:
        sources[evidence.last_sample.source] = evidence.last_sample
    if evidence.after_kill is not None:
        sources[evidence.after_kill.source] = evidence.after_kill
    at_kill = choose_at_kill(sources)
    if is_global:
        notes.append("A global OOM: the host ran out of memory, no cgroup limit was hit. The cgroup figures are those of the "
                     "victim's own cgroup; the host's memory at the kill is in host_memory_at_kill.")
    elif at_kill.source != from_report:
        if at_kill.source == SOURCE_NONE:
            notes.append("No reading of the cgroup's memory exists for this kill.")
        elif at_kill.source == SOURCE_KERNEL_SNAPSHOT:
            notes.append("The kernel's OOM report was not available; the cgroup's state at the kill was read in the kernel at the "
                         "victim's SIGKILL (the memory cgroup's own counters, with the per-CPU changes not yet flushed).")
        else:
            notes.append(f"The kernel's OOM report was not available; the cgroup's state comes from {at_kill.source.replace('_', ' ')}"
                         + (f" ({at_kill.age_ms:.0f} ms before the kill)." if at_kill.age_ms is not None and at_kill.age_ms >= 0 else ".")
                         + (f" No kernel snapshot at the SIGKILL: {evidence.snapshot_status.rstrip('.')}."
                            if evidence.snapshot_status.startswith("unavailable") else ""))

    # --- the processes ---
    if report is not None and report.tasks:
        tasks = tasks_from_report(report, pid, evidence.proc_info, page_size, from_report)
    elif evidence.incident_tasks:
        tasks = [dataclasses.replace(t, is_victim=t.pid == pid) for t in evidence.incident_tasks]
    else:
        tasks = list(evidence.live_tasks)
        if not any(t.pid == pid for t in tasks):
            tasks.insert(0, Task(
                pid=pid, comm=victim.comm, uid=victim.uid, total_vm_bytes=victim.total_vm_bytes,
                rss_bytes=victim.rss_bytes, rss_anon_bytes=victim.anon_rss_bytes, rss_file_bytes=victim.file_rss_bytes,
                rss_shmem_bytes=victim.shmem_rss_bytes, pgtables_bytes=victim.pgtables_bytes,
                oom_score_adj=victim.oom_score_adj, is_victim=True, cmdline=victim.cmdline, source=victim.source,
            ))
        for t in tasks:
            t.is_victim = t.pid == pid
        if report is None or not report.tasks:
            notes.append("The kernel's tasks table was not available: other processes are listed as /proc showed them after the kill.")

    # --- what the victim's own line lacks, from its row of the kernel's tasks table ---
    # (the Killed line lost, or cut from the log, with the table there; a 3.10 Killed line has no
    # oom_score_adj, its table has it)
    row = next((t for t in tasks if t.is_victim), None) if report is not None and report.tasks else None
    if row is not None:
        if victim.rss_bytes is None:
            if row.rss_anon_bytes is not None or row.rss_file_bytes is not None or row.rss_shmem_bytes is not None:
                victim.anon_rss_bytes, victim.file_rss_bytes, victim.shmem_rss_bytes = row.rss_anon_bytes, row.rss_file_bytes, row.rss_shmem_bytes
            else:
                victim.rss_total_bytes = row.rss_bytes
            if victim.rss_bytes is not None and victim.source == SOURCE_NONE:
                victim.source = row.source
        for attr in ("oom_score_adj", "uid", "total_vm_bytes", "pgtables_bytes"):
            if getattr(victim, attr) is None and getattr(row, attr) is not None:
                setattr(victim, attr, getattr(row, attr))
        if not victim.comm:
            victim.comm = row.comm

    # --- times ---
    kill_ns = event.ts_ns if event is not None else (report.killed_usec * 1000 if report and report.killed_usec else None)
    now_wall = now_wall or dt.datetime.now(dt.timezone.utc)
    wall = now_wall
    if kill_ns is not None:
        try:
            wall = dt.datetime.fromtimestamp((kill_ns + recording.clock_offset_ns) / 1e9, dt.timezone.utc)
        except (OverflowError, ValueError, OSError):  # a log's date no calendar holds
            notes.append("The kill's date from the log is out of range: the time shown is when it was read.")
    times = Times(
        kill_wall=wall.isoformat(timespec="milliseconds"),
        kill_monotonic_ns=kill_ns,
        kernel_report_usec=report.killed_usec if report is not None else None,
        captured_wall=now_wall.isoformat(timespec="milliseconds"),
    )

    kr = KernelReportInfo()
    host_memory: Dict[str, int] = {}
    if report is not None:
        kr = KernelReportInfo(
            present=report.has_header, killed_line_seen=killed is not None and bool(killed.message), gfp_mask=report.gfp_mask,
            order=report.order, message=killed.message if killed else None,
            group_kill=report.group_kill_cgroup is not None or evidence.duplicates > 0,
            first_seq=report.first_seq, last_seq=report.last_seq, lines=list(report.lines),
        )
        if report.mem_info:
            host_memory = host_memory_from_report(report, page_size)
        if not report.has_header and report.group_kill_cgroup is not None:
            notes.append(f"Killed with every task of {report.group_kill_cgroup} (memory.oom.group): the kernel printed one report "
                         "for the whole group, under the first victim; the cgroup's state here is that report's.")
        elif not report.has_header and not report.has_body:
            notes.append("The kernel printed only the 'Killed process' line for this kill: its full report was rate-limited "
                         "(oom_rs in mm/oom_kill.c: 10 reports per 5 s).")
        elif not report.has_header:
            notes.append("The first lines of the kernel's report for this kill (from 'invoked oom-killer') were not seen; "
                         "the rest of it, used here, was.")
        if killed is not None and not killed.message:
            notes.append("The 'Killed process' line of this kill was not seen: the oom_reaper's line names the victim, "
                         "and its row of the tasks table gives its memory.")
    else:
        notes.append("The kernel's log for this kill was not seen (the /dev/kmsg reader fell behind or the log wrapped).")
    if evidence.reaped_ns is not None and kill_ns is not None:
        notes.append(f"The oom_reaper finished reclaiming the victim's memory {(evidence.reaped_ns - kill_ns) / 1e6:.1f} ms after the kill.")

    capture = Capture(
        kill_id=make_kill_id(wall, pid),
        oomscope_version=__version__,
        times=times,
        victim=victim,
        trigger=trigger,
        cgroup=cg,
        at_kill=at_kill,
        at_kill_sources=sources,
        tasks=tasks,
        host=recording.host,
        kernel_report=kr,
        notes=notes,
        host_memory_at_kill=host_memory,
        timelines=list(evidence.timelines),
        kernel_snapshot_status=evidence.snapshot_status,
        runtimes=list(evidence.runtimes),
    )
    # A log can print any number: one no kernel could have kept becomes unknown, with a note.
    capture.notes.extend(unknown_if_absurd(capture))
    return capture
