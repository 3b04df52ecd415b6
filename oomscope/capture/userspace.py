"""A user-space kill as the capture's parts (pure): where it happened, the victim as an event, and
what the capture says of it. build_capture (assemble.py) does the rest, as for a kernel kill.

No cgroup limit was hit: the cgroup whose readings describe the kill is the nearest cgroup with a
memory limit at or above the victim's (how far it was from its limit is what the kernel would have
done), else the victim's own cgroup. ``oom_memcg`` holds that cgroup, and the capture says so.
"""

from __future__ import annotations

from typing import Optional

from ..layouts import EV_MARK_VICTIM, MemcgSnapshot, OomEvent, SignalEvent
from ..model import Capture, CgroupInfo, Killer, Source, Task, Trigger
from .place import Placement

#: the constraint a user-space kill is placed with (no kernel OOM constraint applies)
USERSPACE = "USERSPACE"


def place_user_kill(task_memcg: Optional[str], limited: Optional[str], cgroup_version: Optional[int],
                    source: Source = Source.PROC_READ) -> Placement:
    cg = CgroupInfo(version=cgroup_version, task_memcg=task_memcg, oom_memcg=limited or task_memcg,
                    constraint=USERSPACE, source=source if task_memcg else Source.NONE)
    notes = ["Killed from user space: no cgroup limit was hit. "
             + (f"The cgroup figures are those of {limited}, the nearest cgroup with a memory limit at or above the "
                "victim's: how far it was from that limit is what the kernel would have needed to kill."
                if limited else "No cgroup at or above the victim's has a memory limit: the cgroup figures are those of "
                                "the victim's own cgroup; only the host running out would have made the kernel kill.")]
    if task_memcg is None:
        notes.append("The victim's cgroup is unknown: the process was gone before oomscope could read it.")
    return Placement(cg, False, notes)


def _kb(v: Optional[int]) -> Optional[int]:
    return v // 1024 if v is not None else None


def victim_event(ev: SignalEvent, task: Optional[Task], snapshot: Optional[MemcgSnapshot]) -> OomEvent:
    """The signal as the event build_capture takes: the victim's memory as /proc showed it when the
    signal reached oomscope (None when it was gone), the memcg snapshot at the SIGKILL."""
    return OomEvent(
        kind=EV_MARK_VICTIM, ts_ns=ev.ts_ns, victim_pid=ev.target_pid, victim_comm=ev.target_comm or (task.comm if task else None),
        total_vm_kb=_kb(task.total_vm_bytes) if task else None,
        anon_rss_kb=_kb(task.anon_rss_bytes) if task and task.anon_rss_bytes is not None else None,
        file_rss_kb=_kb(task.file_rss_bytes) if task else None, shmem_rss_kb=_kb(task.shmem_rss_bytes) if task else None,
        uid=task.uid if task else None, pgtables_kb=_kb(task.pgtables_bytes) if task else None,
        oom_score_adj=task.oom_score_adj if task else None, trigger_tgid=0, trigger_tid=0, trigger_comm="",
        memcg_snapshot=snapshot,
    )


_MARK_VICTIM_NOTE = "This kernel's oom:mark_victim carries only the pid"
_NO_LOG_NOTE = "The kernel's log for this kill was not seen"


def finish_user_capture(capture: Capture, killer: Killer, victim_read: bool) -> None:
    """What differs in a user-space kill's capture: the killer, no trigger, no kernel report
    expected (its absence is no loss), and the victim's memory from /proc."""
    capture.killer = killer
    capture.trigger = Trigger()
    capture.notes = [n for n in capture.notes if not n.startswith((_MARK_VICTIM_NOTE, _NO_LOG_NOTE))]
    if capture.victim.source == Source.BPF:
        capture.victim.source = Source.AFTER_KILL
    if not victim_read:
        capture.notes.append("The victim's own memory is unknown: it had exited before oomscope read /proc.")
    else:
        capture.notes.append("The victim's memory is as /proc showed it when the signal reached oomscope "
                             "(after the signal, before it exited).")
