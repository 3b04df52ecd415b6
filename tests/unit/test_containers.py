"""Names from real cgroup path shapes (kubelet with the systemd and cgroupfs drivers, containerd,
cri-o, docker, podman, systemd units)."""

import os

import pytest

from oomscope.containers import NodeNames, workload_of

CID = "663f6287c450aea2f849b82a30d1409059497b5de62846a286e55971d61e2650"
UID = "9eb0e64e-6e1a-43e4-b372-2603a3cc2941"


@pytest.mark.parametrize("path,kind,qos,runtime", [
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
     "kubernetes", "Burstable", "containerd"),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/docker-{CID}.scope", "kubernetes", "Guaranteed", "docker"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
     "kubernetes", "BestEffort", "cri-o"),
    (f"/kubepods/burstable/pod{UID}/{CID}", "kubernetes", "Burstable", None),
    (f"/kubepods/pod{UID}/{CID}", "kubernetes", "Guaranteed", None),
])
def test_kubernetes_shapes(path, kind, qos, runtime):
    w = workload_of(path)
    assert (w.kind, w.qos, w.pod_uid, w.container_id) == (kind, qos, UID, CID)
    assert w.runtime == runtime


def test_pod_level_cgroup_has_no_container():
    w = workload_of(f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice")
    assert w.kind == "kubernetes" and w.pod_uid == UID and w.container_id is None


@pytest.mark.parametrize("path,kind,label", [
    (f"/system.slice/docker-{CID}.scope", "docker", "docker 663f6287c450"),
    (f"/docker/{CID}", "docker", "docker 663f6287c450"),
    (f"/machine.slice/libpod-{CID}.scope", "podman", "podman 663f6287c450"),
    ("/system.slice/nginx.service", "systemd", "nginx.service"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope", "systemd", "app-firefox-1234.scope"),
    ("/oomscope-lab-anon-1-ab", "cgroup", ""),
    ("/", "cgroup", ""),
])
def test_other_shapes(path, kind, label):
    w = workload_of(path)
    assert w.kind == kind and w.label() == label


def test_crio_conmon_is_said_to_be_conmon():
    w = workload_of(f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-conmon-{CID}.scope")
    assert w.container_id == CID and "conmon" in w.notes[0]


def test_names_from_kubelets_log_folders(tmp_path):
    os.makedirs(tmp_path / "var/log/pods" / f"shop_checkout-7d9f_{UID}" / "app")
    os.makedirs(tmp_path / "var/log/containers")
    (tmp_path / "var/log/containers" / f"checkout-7d9f_shop_app-{CID}.log").touch()
    w = workload_of(f"/kubepods/burstable/pod{UID}/{CID}", NodeNames(str(tmp_path)))
    assert (w.namespace, w.pod, w.container) == ("shop", "checkout-7d9f", "app")
    assert w.label() == "shop/checkout-7d9f container app"
    # without the folders: the ids, never an error
    assert workload_of(f"/kubepods/burstable/pod{UID}/{CID}", NodeNames(str(tmp_path / "none"))).label() == f"pod {UID} container 663f6287c450"
