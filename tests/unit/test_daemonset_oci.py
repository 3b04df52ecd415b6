"""The DaemonSet manifest as a runc spec (tests/system/daemonset_oci.py), checked without running it."""

import copy
import os

import pytest
import yaml

from tests.system import daemonset_oci

MANIFEST = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "kubernetes", "daemonset.yaml")
IMAGE = {"Entrypoint": ["/usr/local/bin/oomscope"], "Cmd": ["record", "--metrics-addr", "127.0.0.1:9847"],
         "Env": ["PATH=/usr/bin:/bin", "OOMSCOPE_HEADERS_DIR=/opt/oomscope/kernel-headers"]}


def _ds():
    with open(MANIFEST) as f:
        return yaml.safe_load(f)


def _spec(ds, tmp_path):
    host_paths = {}
    for v in ds["spec"]["template"]["spec"]["volumes"]:
        p = v["hostPath"]["path"]
        if not os.path.exists(p):
            host_paths[p] = str(tmp_path)
    return daemonset_oci.spec(ds, IMAGE, "/rootfs", pod_ip="192.0.2.7", netns="/run/netns/x", host_paths=host_paths,
                              cgroups_path="/oomscope-test-x", devices=())


def test_the_spec_is_the_manifests_container(tmp_path):
    ds = _ds()
    s = _spec(ds, tmp_path)
    c = daemonset_oci.container(ds)
    assert s["process"]["args"][0] == "/usr/local/bin/oomscope"  # the image's entrypoint, the manifest's args
    assert s["process"]["args"][1:] == [a.replace("$(POD_IP)", "192.0.2.7") for a in c["args"]]
    assert "POD_IP=192.0.2.7" in s["process"]["env"] and "OOMSCOPE_HEADERS_DIR=/opt/oomscope/kernel-headers" in s["process"]["env"]
    caps = s["process"]["capabilities"]
    assert set(caps["bounding"]) == {f"CAP_{x}" for x in c["securityContext"]["capabilities"]["add"]} == set(caps["effective"])
    assert caps["ambient"] == [] and caps["inheritable"] == []
    assert s["process"]["noNewPrivileges"] is True and s["root"]["readonly"] is True
    assert {"type": "pid"} not in s["linux"]["namespaces"]  # hostPID
    binds = {m["destination"]: m["options"] for m in s["mounts"] if m["type"] == "bind"}
    assert set(binds) == {m["mountPath"] for m in c["volumeMounts"]}
    assert "ro" in binds["/sys/fs/cgroup"] and "rw" in binds["/var/lib/oomscope"]
    assert s["linux"]["resources"]["memory"]["limit"] == 512 << 20
    # not privileged: the device cgroup denies /dev/kmsg (c 1:11) unless a device plugin grants it
    rules = s["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"} and not any(r.get("major") == 1 and r.get("minor") == 11 for r in rules)


def test_a_mount_or_capability_taken_out_of_the_manifest_is_out_of_the_spec(tmp_path):
    ds = _ds()
    c = daemonset_oci.container(ds)
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/sys/kernel/tracing"]
    c["securityContext"]["capabilities"]["add"].remove("SYSLOG")
    s = _spec(ds, tmp_path)
    assert "/sys/kernel/tracing" not in {m["destination"] for m in s["mounts"]}
    assert "CAP_SYSLOG" not in s["process"]["capabilities"]["bounding"]
    bad = copy.deepcopy(_ds())
    daemonset_oci.container(bad)["securityContext"]["privileged"] = True
    with pytest.raises(ValueError):
        _spec(bad, tmp_path)


def test_kubernetes_expansion():
    env = {"POD_IP": "10.0.0.1"}
    assert daemonset_oci.expand("$(POD_IP):9847", env) == "10.0.0.1:9847"
    assert daemonset_oci.expand("$(NOPE)", env) == "$(NOPE)" and daemonset_oci.expand("$$(POD_IP)", env) == "$(POD_IP)"
