"""Kills that are one incident: a memory.oom.group kill.

mm/oom_kill.c (oom_kill_process) prints the chosen victim's ``Killed process`` line, then
``Tasks in G are going to be killed due to memory.oom.group set``, then a ``Killed process`` line
for every task of G (the chosen victim again among them), all at the same moment and under the
one report. So the members arrive after the first victim's capture is written: each member is
linked to it, shares its report's state of the cgroup, and the first capture is rewritten to list
every victim.

One linker for record and import: ``link`` joins a member to its first victim's incident, and
``killed_again`` says the chosen victim's second Killed line. Record finds the first victim among
the kills it wrote just before (``GroupLinker.head_for``); import knows it from the report the
member's lines followed (kernel/oom_report.py, ``OomReport.group_head``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Deque, Optional

from ..kernel.cgroupfs import cgroup_within
from ..model import Capture, CgroupState, Incident, IncidentVictim

GROUP_WINDOW_NS = 5_000_000_000


@dataclass
class Head:
    capture: Capture
    capture_path: str
    html_path: Optional[str]
    t_ns: int
    state: Optional[CgroupState]  # the head's kernel-report state of the oom_memcg


class GroupLinker:
    def __init__(self) -> None:
        self._heads: Deque[Head] = collections.deque(maxlen=32)

    def note_written(self, head: Head) -> None:
        if head.capture.kernel_report.present:
            self._heads.append(head)

    def head_for(self, group_cgroup: str, t_ns: int) -> Optional[Head]:
        """The latest fully reported kill at or below the group's cgroup, just before ``t_ns``."""
        for head in reversed(self._heads):
            if t_ns - head.t_ns > GROUP_WINDOW_NS:
                break
            cg = head.capture.cgroup
            if (cg.task_memcg is not None and cgroup_within(cg.task_memcg, group_cgroup)) or cgroup_within(
                group_cgroup, cg.oom_memcg or "/"
            ):
                return head
        return None

    @staticmethod
    def link(head: Head, member: Capture, group_cgroup: Optional[str]) -> Incident:
        return link(head.capture, member, group_cgroup)


def group_incident(head: Capture, group_cgroup: Optional[str]) -> Incident:
    """The first victim's incident, made at its first member."""
    inc = head.incident
    if inc is None or not inc.group_kill:
        inc = Incident(id=head.kill_id, group_kill=True, group_cgroup=group_cgroup,
                       victims=[IncidentVictim(head.victim.pid, head.victim.comm, head.kill_id)])
        head.incident = inc
        head.kernel_report.group_kill = True
    return inc


def link(head: Capture, member: Capture, group_cgroup: Optional[str]) -> Incident:
    """A member of the head's group kill: every capture of the group shares one incident, which
    lists each victim once."""
    inc = group_incident(head, group_cgroup)
    if all(x.pid != member.victim.pid for x in inc.victims):
        inc.victims.append(IncidentVictim(member.victim.pid, member.victim.comm, member.kill_id))
    member.incident = inc
    return inc


def killed_again(head: Capture, group_cgroup: Optional[str], line: str) -> None:
    """The chosen victim killed a second time, as a member of its own group: one victim, whose
    capture says so and keeps the second Killed line."""
    group_incident(head, group_cgroup)
    note = (f"pid {head.victim.pid} was killed twice: first as the victim the kernel chose, then again as a member of the "
            f"memory.oom.group kill of {group_cgroup} (a second 'Killed process' line).")
    if note not in head.notes:
        head.notes.append(note)
    head.kernel_report.lines.append(line)
