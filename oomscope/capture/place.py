"""Where a kill happened, decided once (``place``): the victim's cgroup, the cgroup that hit its
limit, and whether it was a global OOM. Every later step (record/evidence.py, capture/assemble.py)
reads the ``Placement``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from ..kernel.oom_report import OomReport
from ..model import CgroupInfo, Source


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
    report_source: Source = Source.KERNEL_REPORT,
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
        if cg.source == Source.NONE:
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
