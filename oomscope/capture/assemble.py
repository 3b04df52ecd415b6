"""Builds a Capture from the parts of one kill, for record and import alike. Pure: every input is
passed in.

Two steps: ``place`` (capture/place.py) decides, once, where the kill happened; record then
gathers the evidence for those cgroups (record/evidence.py; an import has none), and
``build_capture`` puts event, report, placement and evidence together, one part at a time: the
victim, the trigger, the cgroup's state at the kill, the processes, the times, the kernel's report.
What the kernel's report says becomes the model's parts beside the step that uses it
(``state_from_report``, ``tasks_from_report``, ``host_memory_from_report``: in bytes, with the kill
host's page size).
Each cgroup figure keeps its provenance (kernel report, last sample, after the kill); ``at_kill``
is the best of them (``choose_at_kill``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable, Dict, List, Optional, Tuple

from .. import __version__
from ..kernel.cgroupfs import limit_or_none
from ..kernel.oom_report import OomReport
from ..layouts import OomEvent
from ..model import (
    Capture,
    CgroupState,
    KernelReportInfo,
    Source,
    Task,
    Times,
    Trigger,
    Victim,
    AT_KILL_PREFERENCE,
    unknown_if_absurd,
)
from ..units import fmt_bytes, within_target
from .inputs import PAGE_SIZE, Evidence, Recording
from .place import Placement, place


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
    kill_ns: Optional[int] = None,
) -> Capture:
    """The capture of one kill. The notes come in the order of the parts. ``kill_ns``: when it
    happened on CLOCK_MONOTONIC, where the caller knows better than the event's time, else the
    report's printk time (record's joiner: a Killed line's time less the clocks' learnt offset)."""
    notes: List[str] = []
    page_size = recording.host.page_size_bytes or PAGE_SIZE  # the kernel's page counts are the kill host's
    from_report = recording.report_source  # the provenance of what the kernel's report says

    victim = victim_of(pid, event, report, from_report, evidence, notes)
    trigger = trigger_of(event, report, from_report)
    cg = dataclasses.replace(placement.cgroup)
    notes.extend(placement.notes)
    if cg.oom_memcg is not None and cg.task_memcg is not None and cg.oom_memcg != cg.task_memcg:
        cg.sharing = sorted(evidence.sharing, key=lambda u: -(u.usage_bytes or 0))
    sources = states_at_kill(report, from_report, evidence)
    at_kill = choose_at_kill(sources, from_report, snapshot_torn=evidence.snapshot_torn)
    notes.extend(_at_kill_notes(at_kill, placement.is_global, from_report, evidence, sources))
    tasks = tasks_of(pid, victim, report, from_report, evidence, page_size, notes)
    if report is not None and report.tasks:
        _fill_victim_from_row(victim, next((t for t in tasks if t.is_victim), None))
    if kill_ns is None:
        kill_ns = event.ts_ns if event is not None else (report.killed_usec * 1000 if report and report.killed_usec else None)
    now_wall = now_wall or dt.datetime.now(dt.timezone.utc)
    wall, times = times_of(kill_ns, report, recording.clock_offset_ns, now_wall, notes)
    kr, host_memory = kernel_report_of(report, evidence, page_size, notes)
    if evidence.reaped_ns is not None and kill_ns is not None:
        notes.append(f"The oom_reaper finished reclaiming the victim's memory {(evidence.reaped_ns - kill_ns) / 1e6:.1f} ms after the kill.")

    capture = _capture(wall, pid, times, victim, trigger, cg, at_kill, sources, tasks, recording, kr, notes,
                       host_memory, evidence)
    # A log can print any number: one no kernel could have kept becomes unknown, with a note.
    capture.notes.extend(unknown_if_absurd(capture))
    return capture


def capture_from_report(pid: int, report: OomReport, recording: Recording, now_wall: dt.datetime) -> Capture:
    """``assemble(pid, None, report, recording, now_wall=now_wall)`` for a kill known from the
    kernel's report alone (import), without the copies build_capture makes of a placement and a
    reading it may share with record's other steps (here they are this kill's own), and without
    the absurd-number walk: the caller has shown every number of the report below 2**63
    (importer/kills.py ``bounded``), so that no figure made from one (kB x 1024, pages x a page
    size of at most 64 KiB, us x 1000) reaches model.ABSURD and the walk would change nothing.
    The same capture, field by field (tests/unit/test_import_fast.py compares the two on every
    log fixture, the storm and reports changed at random); ~40% of the general path's time, the
    largest per-kill cost of a storm's import (issue 29)."""
    notes: List[str] = []
    page_size = recording.host.page_size_bytes or PAGE_SIZE
    from_report = recording.report_source
    victim = victim_of(pid, None, report, from_report, _NO_EVIDENCE, notes)
    trigger = trigger_of(None, report, from_report)
    placement = place(report, None, None, None, recording.cgroup_version, None, from_report)
    cg = placement.cgroup  # (no evidence: sharing stays empty)
    notes.extend(placement.notes)
    st = state_from_report(report, from_report)
    if st is not None and from_report in AT_KILL_PREFERENCE and (st.memory_stat or st.usage_bytes is not None):
        sources = {from_report: st}  # choose_at_kill's pick (the only reading), without its replace
        at_kill = _copy(st)
        at_kill.memory_stat, at_kill.memory_events, at_kill.pressure = dict(st.memory_stat), dict(st.memory_events), dict(st.pressure)
    else:
        sources = states_at_kill(report, from_report, _NO_EVIDENCE)
        at_kill = choose_at_kill(sources)
    notes.extend(_at_kill_notes(at_kill, placement.is_global, from_report, _NO_EVIDENCE))
    tasks = tasks_of(pid, victim, report, from_report, _NO_EVIDENCE, page_size, notes)
    if report.tasks:
        _fill_victim_from_row(victim, next((t for t in tasks if t.is_victim), None))
    kill_ns = report.killed_usec * 1000 if report.killed_usec else None
    wall, times = times_of(kill_ns, report, recording.clock_offset_ns, now_wall, notes)
    kr, host_memory = kernel_report_of(report, _NO_EVIDENCE, page_size, notes)
    return _capture(wall, pid, times, victim, trigger, cg, at_kill, sources, tasks, recording, kr, notes,
                    host_memory, _NO_EVIDENCE)


def _capture(wall, pid: int, times, victim, trigger, cg, at_kill, sources, tasks, recording: Recording, kr, notes,
             host_memory, evidence: Evidence) -> Capture:
    """The capture of its parts (build_capture's and capture_from_report's last step)."""
    return Capture(
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


#: read only (capture_from_report): a kill with nothing but its report
_NO_EVIDENCE = Evidence()


def _copy(obj):
    """A shallow copy of a dataclass instance without dataclasses.replace's field walk and __init__
    (the classes copied have no __post_init__)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def victim_of(pid: int, event: Optional[OomEvent], report: Optional[OomReport], from_report: Source,
              evidence: Evidence, notes: List[str]) -> Victim:
    """The victim and its memory. The kernel's Killed line ranks first, as everywhere: on 7.3 it and
    oom:mark_victim read the mm's per-CPU RSS counters differently, 48-150 KiB apart either way
    (measured in the 7.3 VM: docs/kernel-facts.md).
    mark_victim's figures stand in when the report was not seen."""
    killed = report.killed if report is not None else None
    if killed is not None and killed.anon_rss_kb is not None:
        victim = _victim_from_killed(pid, killed, from_report)
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
            shmem_rss_bytes=_kb(event.shmem_rss_kb), pgtables_bytes=_kb(event.pgtables_kb), source=Source.BPF,
        )
    elif killed is not None:
        victim = _victim_from_killed(pid, killed, from_report)
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
    return victim


def _victim_from_killed(pid: int, killed, source: Source) -> Victim:
    return Victim(
        pid=pid, comm=killed.comm, uid=killed.uid, oom_score_adj=killed.oom_score_adj,
        total_vm_bytes=_kb(killed.total_vm_kb), anon_rss_bytes=_kb(killed.anon_rss_kb),
        file_rss_bytes=_kb(killed.file_rss_kb), shmem_rss_bytes=_kb(killed.shmem_rss_kb),
        pgtables_bytes=_kb(killed.pgtables_kb), source=source,
    )


def trigger_of(event: Optional[OomEvent], report: Optional[OomReport], from_report: Source) -> Trigger:
    """The task whose allocation invoked the OOM killer."""
    if event is not None:
        return Trigger(pid=event.trigger_tgid, tid=event.trigger_tid, comm=event.trigger_comm, source=Source.BPF)
    if report is not None and report.has_header:
        return Trigger(pid=report.trigger_pid, comm=report.trigger_comm or "", source=from_report)
    return Trigger()


def state_from_report(rep: OomReport, source: Source = Source.KERNEL_REPORT) -> Optional[CgroupState]:
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


#: cgroup v2's charge in memory.stat's terms: memory.current is anon + file + kernel + sock
#: (mm/memcontrol.c: memory_stat_format; zswap's compressed pages are kernel objects already).
_V2_CHARGE_KEYS = ("anon", "file", "kernel", "sock")


def stat_shortfall(state: CgroupState) -> Optional[int]:
    """How many bytes of the charge a cgroup v2 memory.stat leaves out (negative: counts more than
    the charge), or None where the keys or the usage are not there (cgroup v1, old kernels)."""
    stat = state.memory_stat
    if state.usage_bytes is None or not all(k in stat for k in ("anon", "file", "kernel")):
        return None
    return state.usage_bytes - sum(stat.get(k, 0) for k in _V2_CHARGE_KEYS)


def report_stat_misses_charge(sources: Dict[str, CgroupState], from_report: str) -> bool:
    """Whether the kernel's report printed memory.stat counters that do not add up to its own
    charge while the snapshot at the SIGKILL, of the same charge, adds up. The usage counter is
    exact; the statistics move on their own (per-CPU changes folded in at a flush, mm/memcontrol.c;
    an earlier victim's pages unmapped before they are freed and uncharged). Measured in a storm on
    7.3 (tests/fixtures/snapshot/v2-7.3-storm-report-misses-charge.json): the report's parts 83.7 MB of
    a 100.7 MB charge, its active_anon above the charge; the snapshot's parts equal to the charge to
    the byte. Settled reports add up within 0.15% (every v2 report in tests/fixtures/kmsg)."""
    rep, snap = sources.get(from_report), sources.get(Source.KERNEL_SNAPSHOT)
    if rep is None or snap is None or rep.usage_bytes is None or snap.usage_bytes is None:
        return False
    rep_short, snap_short = stat_shortfall(rep), stat_shortfall(snap)
    if rep_short is None or snap_short is None:
        return False
    usage = rep.usage_bytes
    return (abs(rep_short) > max(0.01 * usage, 1 << 20)  # beyond any settled report's slack
            and within_target(usage - snap_short, usage)
            and within_target(snap.usage_bytes, usage))


def choose_at_kill(sources: Dict[str, CgroupState], from_report: str = Source.KERNEL_REPORT,
                   snapshot_torn: bool = False) -> CgroupState:
    """The best available reading (model.AT_KILL_PREFERENCE) becomes ``at_kill`` (a copy: its dicts
    are its own); the others stay in ``at_kill_sources``. The kernel's report ranks first, except
    where its memory.stat misses its charge and the snapshot at the SIGKILL adds up (and was not
    read while a flush moved it: Evidence.snapshot_torn)."""
    order = AT_KILL_PREFERENCE
    if not snapshot_torn and report_stat_misses_charge(sources, from_report):
        order = (Source.KERNEL_SNAPSHOT,) + tuple(n for n in AT_KILL_PREFERENCE if n != Source.KERNEL_SNAPSHOT)
    for name in order:
        state = sources.get(name)
        if state is not None and (state.memory_stat or state.usage_bytes is not None):
            return dataclasses.replace(state, source=name, memory_stat=dict(state.memory_stat),
                                       memory_events=dict(state.memory_events), pressure=dict(state.pressure))
    return CgroupState()


def states_at_kill(report: Optional[OomReport], from_report: Source, evidence: Evidence) -> Dict[str, CgroupState]:
    """Every reading of the cgroup's state at the kill, by its source."""
    sources: Dict[str, CgroupState] = {}
    if report is not None:
        st = state_from_report(report, from_report)
        if st is not None:
            sources[from_report] = st
    if from_report not in sources and evidence.incident_state is not None:
        sources[from_report] = evidence.incident_state
    for st in (evidence.kernel_snapshot, evidence.last_sample, evidence.after_kill):
        if st is not None:
            sources[st.source] = st
    return sources


_TORN = (" The kernel's statistics were being flushed on another CPU during each of the snapshot's reads: its "
         "memory.stat figures may miss or count twice what one CPU had not flushed yet; its usage is exact.")


def _at_kill_notes(at_kill: CgroupState, is_global: bool, from_report: Source, evidence: Evidence,
                   sources: Optional[Dict[str, CgroupState]] = None) -> List[str]:
    if is_global:
        return ["A global OOM: the host ran out of memory, no cgroup limit was hit. The cgroup figures are those of the "
                "victim's own cgroup; the host's memory at the kill is in host_memory_at_kill."]
    if at_kill.source == from_report:
        return []
    if at_kill.source == Source.NONE:
        return ["No reading of the cgroup's memory exists for this kill."]
    rep = (sources or {}).get(from_report)
    if at_kill.source == Source.KERNEL_SNAPSHOT and rep is not None and rep.usage_bytes:
        short = stat_shortfall(rep) or 0
        return [f"The kernel's OOM report printed memory.stat counters that do not add up to its own charge: its anon, "
                f"file, kernel and sock add up to {fmt_bytes(rep.usage_bytes - short)} of the {fmt_bytes(rep.usage_bytes)} "
                "it charged (counters still moving: changes not yet flushed, or an earlier victim's memory being freed). "
                "The state at the kill is the kernel snapshot at the victim's SIGKILL, whose counters add up to the "
                "charge; the report's figures stay in at_kill_sources."]
    if at_kill.source == Source.KERNEL_SNAPSHOT:
        return ["The kernel's OOM report was not available; the cgroup's state at the kill was read in the kernel at the "
                "victim's SIGKILL (the memory cgroup's own counters, with the per-CPU changes not yet flushed)."
                + (_TORN if evidence.snapshot_torn else "")]
    return [f"The kernel's OOM report was not available; the cgroup's state comes from {at_kill.source.replace('_', ' ')}"
            + (f" ({at_kill.age_ms:.0f} ms before the kill)." if at_kill.age_ms is not None and at_kill.age_ms >= 0 else ".")
            + (f" No kernel snapshot at the SIGKILL: {evidence.snapshot_status.rstrip('.')}."
               if evidence.snapshot_status.startswith("unavailable") else "")]


def tasks_from_report(rep: OomReport, victim_pid: int, proc_info: Dict[int, Tuple[str, Optional[str]]],
                      page_size: int = PAGE_SIZE, source: Source = Source.KERNEL_REPORT) -> List[Task]:
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
            anon_rss_bytes=pages(v, "rss_anon"),
            file_rss_bytes=pages(v, "rss_file"),
            shmem_rss_bytes=pages(v, "rss_shmem"),
            pgtables_bytes=v.get("pgtables_bytes"),
            swap_bytes=pages(v, "swapents"),
            oom_score_adj=v.get("oom_score_adj"),
            is_victim=row.pid == victim_pid,
            cmdline=info[1] if info else None,
            source=source,
        ))
    return tasks


def tasks_of(pid: int, victim: Victim, report: Optional[OomReport], from_report: Source, evidence: Evidence,
             page_size: int, notes: List[str]) -> List[Task]:
    """The cgroup's processes: the kernel's tasks table, else the group's first victim's, else /proc's."""
    if report is not None and report.tasks:
        return tasks_from_report(report, pid, evidence.proc_info, page_size, from_report)
    if evidence.incident_tasks:
        return [dataclasses.replace(t, is_victim=t.pid == pid) for t in evidence.incident_tasks]
    tasks = list(evidence.live_tasks)
    if not any(t.pid == pid for t in tasks):
        tasks.insert(0, Task(
            pid=pid, comm=victim.comm, uid=victim.uid, total_vm_bytes=victim.total_vm_bytes,
            rss_bytes=victim.rss_bytes, anon_rss_bytes=victim.anon_rss_bytes, file_rss_bytes=victim.file_rss_bytes,
            shmem_rss_bytes=victim.shmem_rss_bytes, pgtables_bytes=victim.pgtables_bytes,
            oom_score_adj=victim.oom_score_adj, is_victim=True, cmdline=victim.cmdline, source=victim.source,
        ))
    for t in tasks:
        t.is_victim = t.pid == pid
    notes.append("The kernel's tasks table was not available: other processes are listed as /proc showed them after the kill.")
    return tasks


def _fill_victim_from_row(victim: Victim, row: Optional[Task]) -> None:
    """What the victim's own line lacks, from its row of the kernel's tasks table (the Killed line
    lost, or cut from the log, with the table there; a 3.10 Killed line has no oom_score_adj, its
    table has it)."""
    if row is None:
        return
    if victim.rss_bytes is None:
        if row.anon_rss_bytes is not None or row.file_rss_bytes is not None or row.shmem_rss_bytes is not None:
            victim.anon_rss_bytes, victim.file_rss_bytes, victim.shmem_rss_bytes = row.anon_rss_bytes, row.file_rss_bytes, row.shmem_rss_bytes
        else:
            victim.rss_total_bytes = row.rss_bytes
        if victim.rss_bytes is not None and victim.source == Source.NONE:
            victim.source = row.source
    for attr in ("oom_score_adj", "uid", "total_vm_bytes", "pgtables_bytes"):
        if getattr(victim, attr) is None and getattr(row, attr) is not None:
            setattr(victim, attr, getattr(row, attr))
    if not victim.comm:
        victim.comm = row.comm


def times_of(kill_ns: Optional[int], report: Optional[OomReport], clock_offset_ns: int, now_wall: dt.datetime,
             notes: List[str]) -> Tuple[dt.datetime, Times]:
    """The kill's wall time (from the monotonic clock and the recording's offset) and its Times."""
    wall = now_wall
    if kill_ns is not None:
        try:
            wall = dt.datetime.fromtimestamp((kill_ns + clock_offset_ns) / 1e9, dt.timezone.utc)
        except (OverflowError, ValueError, OSError):  # a log's date no calendar holds
            notes.append("The kill's date from the log is out of range: the time shown is when it was read.")
    return wall, Times(
        kill_wall=wall.isoformat(timespec="milliseconds"),
        kill_monotonic_ns=kill_ns,
        kernel_report_usec=report.killed_usec if report is not None else None,
        captured_wall=now_wall.isoformat(timespec="milliseconds"),
    )


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


def kernel_report_of(report: Optional[OomReport], evidence: Evidence, page_size: int,
                     notes: List[str]) -> Tuple[KernelReportInfo, Dict[str, int]]:
    """What the kernel's report was (its lines, whole or in part) and the host's memory it printed."""
    if report is None:
        notes.append("The kernel's log for this kill was not seen (the /dev/kmsg reader fell behind or the log wrapped).")
        return KernelReportInfo(), {}
    killed = report.killed
    kr = KernelReportInfo(
        present=report.has_header, killed_line_seen=killed is not None and killed.seen, gfp_mask=report.gfp_mask,
        order=report.order, message=killed.message if killed else None,
        group_kill=report.group_kill_cgroup is not None or evidence.duplicates > 0,
        first_seq=report.first_seq, last_seq=report.last_seq, lines=list(report.lines),
    )
    host_memory = host_memory_from_report(report, page_size) if report.mem_info else {}
    if not report.has_header and report.group_kill_cgroup is not None:
        notes.append(f"Killed with every task of {report.group_kill_cgroup} (memory.oom.group): the kernel printed one report "
                     "for the whole group, under the first victim; the cgroup's state here is that report's.")
    elif not report.has_header and not report.has_body:
        notes.append("The kernel printed only the 'Killed process' line for this kill: its full report was rate-limited "
                     "(oom_rs in mm/oom_kill.c: 10 reports per 5 s).")
    elif not report.has_header:
        notes.append("The first lines of the kernel's report for this kill (from 'invoked oom-killer') were not seen; "
                     "the rest of it, used here, was.")
    if killed is not None and not killed.seen:
        notes.append("The 'Killed process' line of this kill was not seen: the oom_reaper's line names the victim, "
                     "and its row of the tasks table gives its memory.")
    return kr, host_memory
