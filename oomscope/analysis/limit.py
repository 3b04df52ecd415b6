"""Which limit a kill hit, in the reader's terms (issue 26).

The kernel names the memory cgroup whose limit was reached (``oom_memcg``); the reader needs to
know what that cgroup *is*, because the fix depends on it: raising a container's limit changes
nothing when the limit hit was the pod's, all pods' on the node, or an ECS task's. From the path
alone (containers.level_of) and the victim's own cgroup, every kill, recorded or imported, gets a
scope:

- ``container``: the container's own cgroup (a runtime's scope, an id under a pod or /docker);
- ``pod``: a pod-level cgroup: all its containers together (the sum of their limits);
- ``all_pods``: ``kubepods.slice`` / ``kubepods``: every pod on the node together (its size is the
  node's allocatable memory, set by the kubelet);
- ``qos_class``: ``kubepods-burstable.slice`` and the like: all pods of one QoS class on the node;
- ``parent``: a cgroup above the victim's, outside Kubernetes (an ECS task, a slice);
- ``own``: the victim's own cgroup, not a container (a systemd unit, a lab's sandbox);
- ``host``: no cgroup limit (a global OOM: the host ran out);
- ``userspace``: no limit was hit: a user-space killer acted (capture.killer); the cgroup named is
  the nearest one with a limit, whose figures the capture holds;
- ``memory_high``: a throttling episode (capture kind "throttle"): memory.high, no kill;
- ``unknown``: a cgroup's limit was hit (CONSTRAINT_MEMCG) but the log does not say whose.

``limit_bytes`` is the limit of that cgroup where the capture has it (the report's
``memory: usage ..., limit ...`` line, or oomscope's readings), else None: unknown, never "none".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..containers import level_of
from ..model import Capture

__all__ = ["LimitHit", "SCOPES", "limit_hit_of"]

SCOPES = ("container", "pod", "all_pods", "qos_class", "parent", "own", "host", "userspace", "memory_high", "unknown")


@dataclass
class LimitHit:
    cgroup: Optional[str]
    scope: str  # one of SCOPES
    limit_bytes: Optional[int]
    #: whose limit, in the reader's terms: "the pod's (all its containers together ...)"
    name: str = ""
    #: what that means for the fix, in a sentence ("" when raising the limit named is the fix)
    consequence: str = ""


def _is_below(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip("/") + "/")


def _qos(cgroup: str) -> str:
    last = cgroup.rstrip("/").rsplit("/", 1)[-1].lower()
    return "Burstable" if "burstable" in last else "BestEffort" if "besteffort" in last else "one QoS class's"


def limit_hit_of(capture: Capture) -> LimitHit:
    cg = capture.cgroup
    if capture.kind == "throttle" and capture.throttle is not None:
        return LimitHit(cg.oom_memcg, "memory_high", capture.throttle.memory_high_bytes,
                        "memory.high (a throttling limit: the kernel slows the cgroup down, it does not kill)", "")
    if capture.killer.kind == "userspace":
        return LimitHit(cg.oom_memcg, "userspace", capture.at_kill.limit_bytes,
                        "none: a user-space killer acted before any limit was reached (the nearest cgroup with a limit)", "")
    if cg.constraint and cg.constraint != "CONSTRAINT_MEMCG":
        return LimitHit(None, "host", None, "no cgroup's: the host itself ran out of memory",
                        "Raising a container's limit would not have prevented it.")
    oom, task = cg.oom_memcg, cg.task_memcg
    limit = capture.at_kill.limit_bytes
    if not oom:
        return LimitHit(None, "unknown", None, "a memory cgroup's; which one is not in the capture", "")
    level = level_of(oom)
    below = bool(task) and _is_below(task, oom)
    if level == "all_pods":
        return LimitHit(oom, "all_pods", limit, "that of all pods on the node together (kubepods: the node's "
                        "allocatable memory, set by the kubelet)",
                        "The container's own limit was not reached; raising it changes nothing. The node's pods together "
                        "held more than the node allows them: fewer or smaller pods on it (limits that add up to no more "
                        "than its allocatable memory), or a larger node.")
    if level == "qos_class":
        return LimitHit(oom, "qos_class", limit, f"that of all {_qos(oom)} pods on the node together (their QoS "
                        "class's cgroup)",
                        "The container's own limit was not reached; raising it changes nothing. The pods of that class "
                        "together filled it: fewer of them on the node, or a larger node.")
    if level == "pod":
        return LimitHit(oom, "pod", limit, "the pod's (all its containers together: the sum of their limits)",
                        "What every container of the pod held counts against it, not only the killed one's memory."
                        if below else "")
    if level == "container" and not below:
        return LimitHit(oom, "container", limit, "the container's own", "")
    if below:
        name = ("the ECS task's (all its containers together: the task's memory)" if level == "task" else
                "a parent cgroup's, shared by every cgroup below it")
        return LimitHit(oom, "parent", limit, name,
                        f"This limit is {oom}'s, not that of the victim's own cgroup ({task}), which reached no limit of its "
                        "own: raising it changes nothing. "
                        f"What every cgroup below {oom} held counts against this limit.")
    if level == "task":  # the victim's cgroup unknown: an ECS task's processes run in its containers
        return LimitHit(oom, "parent", limit, "the ECS task's (all its containers together: the task's memory)", "")
    inc = capture.incident
    if not task and inc is not None and inc.group_kill and inc.group_cgroup == oom:
        # a member of a group kill: its own row names no cgroup, the group's does (the first victim's page)
        return LimitHit(oom, "own", limit, "that of the group's own cgroup (memory.oom.group: all its processes were killed)", "")
    return LimitHit(oom, "own", limit, "that of the victim's own cgroup" if task else
                    "this cgroup's own (whether the victim ran in it or below it is not in the capture)", "")
