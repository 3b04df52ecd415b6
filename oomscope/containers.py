"""The names people know, from a cgroup path: Kubernetes pod and container, docker or podman
container, systemd unit.

The path gives ids (a pod's UID, a container's id, a unit's name); names come from the node:
kubelet's log folders ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/`` and the symlinks
``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`` (present on every
kubelet node whatever the runtime). Without them the ids are still given.

Shapes (cgroup v1 and v2, systemd and cgroupfs drivers):
  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
  /kubepods/burstable/pod<uid>/<id>          /kubepods/pod<uid>/<id> (Guaranteed QoS)
  .../crio-<id>.scope   .../docker-<id>.scope   /system.slice/docker-<id>.scope   /docker/<id>
  /machine.slice/libpod-<id>.scope (podman)    /system.slice/nginx.service    user@1000.service/app.slice/x.scope
"""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Tuple

from .model import CgroupInfo, Workload

_RE_POD = re.compile(r"^(?:kubepods-(?:burstable-|besteffort-)?)?pod"
                     r"(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$")
_RE_SCOPE = re.compile(r"^(?P<rt>cri-containerd|crio|docker|libpod|cri-o)-(?P<id>[0-9a-f]{12,64})\.scope$")
_RE_BARE_ID = re.compile(r"^[0-9a-f]{64}$")
_RE_CONMON = re.compile(r"^crio-conmon-(?P<id>[0-9a-f]{12,64})\.scope$")
_QOS = {"burstable": "Burstable", "besteffort": "BestEffort"}
_RUNTIME = {"cri-containerd": "containerd", "crio": "cri-o", "cri-o": "cri-o", "docker": "docker", "libpod": "podman"}


class NodeNames:
    """kubelet's log folders, read once per lookup miss (they change as pods come and go)."""

    def __init__(self, root: str = "/"):
        self.pods_dir = os.path.join(root, "var/log/pods")
        self.containers_dir = os.path.join(root, "var/log/containers")
        self._pods: Dict[str, Tuple[str, str]] = {}
        self._containers: Dict[str, str] = {}

    def pod(self, uid: str) -> Optional[Tuple[str, str]]:
        if uid not in self._pods:
            self._scan_pods()
        return self._pods.get(uid)

    def container(self, cid: str) -> Optional[str]:
        if cid not in self._containers:
            self._scan_containers()
        return self._containers.get(cid)

    def _scan_pods(self) -> None:
        try:
            names = os.listdir(self.pods_dir)
        except OSError:
            return
        for name in names:
            parts = name.split("_")
            if len(parts) >= 3:  # <namespace>_<pod>_<uid>; names cannot hold "_"
                self._pods[parts[-1]] = (parts[0], "_".join(parts[1:-1]))

    def _scan_containers(self) -> None:
        try:
            names = os.listdir(self.containers_dir)
        except OSError:
            return
        for name in names:
            m = re.match(r"^(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-(?P<id>[0-9a-f]{64})\.log$", name)
            if m:
                self._containers[m.group("id")] = m.group("container")


#: ECS's cgroup of one task (all its containers together): /ecstasks.slice/ecstasks-<task id>.slice
_RE_ECS_TASK = re.compile(r"^ecstasks-[0-9a-f]{32}\.slice$")


def level_of(cgroup: Optional[str]) -> Optional[str]:
    """What one cgroup stands for, by its path's last component: "all_pods" (kubepods: every pod
    of the node), "qos_class" (kubepods-burstable, kubepods/besteffort), "pod" (a pod-level
    cgroup: all its containers), "container" (a container's own: a runtime's scope, or an id
    under a pod or /docker), "task" (an ECS task: all its containers), else None."""
    parts = [p for p in (cgroup or "").split("/") if p]
    if not parts:
        return None
    last, low = parts[-1], parts[-1].lower()
    kube = any(p.lower() in ("kubepods", "kubepods.slice") for p in parts)
    if low in ("kubepods", "kubepods.slice"):
        return "all_pods"
    if kube and (low in _QOS or low.startswith("kubepods-") and low.endswith(".slice") and low[9:-6] in _QOS):
        return "qos_class"
    if kube and _RE_POD.match(last):
        return "pod"
    if _RE_SCOPE.match(last) or _RE_CONMON.match(last):
        return "container"
    if _RE_BARE_ID.match(last) and len(parts) > 1 and (_RE_POD.match(parts[-2]) or parts[-2] == "docker"):
        return "container"
    if _RE_ECS_TASK.match(last):
        return "task"
    return None


def workload_of(cgroup: Optional[str], names: Optional[NodeNames] = None) -> Workload:
    w = Workload()
    if not cgroup:
        return w
    parts = [p for p in cgroup.split("/") if p]
    for i, part in enumerate(parts):
        low = part.lower()
        if low in ("kubepods", "kubepods.slice"):
            w.kind = "kubernetes"
            w.qos = "Guaranteed"
        elif w.kind == "kubernetes" and (low in _QOS or low.startswith("kubepods-") and low[9:-6] in _QOS):
            w.qos = _QOS[low if low in _QOS else low[9:-6]]
        m = _RE_POD.match(part)
        if m and w.kind == "kubernetes":
            w.pod_uid = m.group("uid").replace("_", "-")
            continue
        m = _RE_SCOPE.match(part)
        if m:
            w.runtime = _RUNTIME[m.group("rt")]
            w.container_id = m.group("id")
            if w.kind != "kubernetes":
                w.kind = "podman" if w.runtime == "podman" else "docker" if w.runtime == "docker" else "container"
            continue
        m = _RE_CONMON.match(part)
        if m:
            w.container_id = m.group("id")
            w.notes.append("the cgroup is cri-o's conmon for the container, not the container itself")
            continue
        if _RE_BARE_ID.match(part) and (w.pod_uid or (i > 0 and parts[i - 1] == "docker")):
            w.container_id = part
            if w.kind == "cgroup":
                w.kind, w.runtime = "docker", "docker"
            continue
        if part.endswith((".service", ".scope")) and w.kind in ("cgroup", "systemd"):
            w.kind, w.unit = "systemd", part
    if w.kind == "kubernetes" and names is not None:
        if w.pod_uid:
            found = names.pod(w.pod_uid)
            if found:
                w.namespace, w.pod = found
        if w.container_id:
            w.container = names.container(w.container_id)
    return w


def workload_key(workload: Workload, cgroup: CgroupInfo) -> str:
    """The name a workload's kills are kept under (record/budget.py's storm budget, retention, and
    postmortem/series.py's series): what stays the same across its kills and restarts. A pod
    by its UID (its containers get a new id at each restart), a container by its id, a unit by
    its name, else the cgroup that hit its limit (the victim's on a global OOM)."""
    w = workload
    if w.kind == "kubernetes" and (w.pod_uid or w.pod):
        return f"pod {w.pod_uid or f'{w.namespace}/{w.pod}'}"
    if w.kind in ("docker", "podman", "container") and (w.container_id or w.container):
        return f"container {w.container_id or w.container}"
    if w.kind == "systemd" and w.unit:
        return f"unit {w.unit}"
    limited = cgroup.oom_memcg if cgroup.oom_memcg not in (None, "", "/") else None
    return f"cgroup {limited or cgroup.task_memcg or '?'}"
