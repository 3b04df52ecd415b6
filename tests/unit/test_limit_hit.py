"""Issue 26, point 1: every kill says which limit was hit, in the reader's terms (the container's,
the pod's, all pods' on the node, a QoS class's, a parent's, the workload's own, the host's), on the
page, in the index and in ``report -f json``'s ``limit_hit``; a limit the log does not print is
unknown, never "none"."""

import io
import json

import pytest

from oomscope.analysis.result import analyse_kill
from oomscope.importer import import_reports
from oomscope.model import Capture, CgroupInfo, Victim
from oomscope.report.formats import render_json, render_markdown
from oomscope.report.index import row_for
from oomscope.report.view import build_view

from ..conftest import fixture_text
from .helpers import capture_from_fixture

UID = "10d16a28_60ff_475f_a631_510d9792219f"
CID = "178ec18073cc6ac7be2de8d9869daf162a6349dd056b6535849112c53ec3102a"


def _imported(name):
    (imp,) = import_reports(io.StringIO(fixture_text("logs", name)), year=2026)
    return imp.capture


def test_an_aks_kill_at_kubepods_slice_is_said_as_all_pods_on_the_node_with_the_limit_unknown():
    cap = _imported("syslog-aks-group-kill-npd.txt")
    result = analyse_kill(cap)
    hit = result.limit_hit
    assert (hit.cgroup, hit.scope, hit.limit_bytes) == ("/kubepods.slice", "all_pods", None)
    said = " ".join(result.verdict.sentences)
    assert "all pods on the node" in said and "allocatable" in said
    assert "raising it changes nothing" in said
    facts = {kv.key: kv.value for kv in build_view(cap, result).facts}
    assert facts["Limit"].startswith("unknown")  # CONSTRAINT_MEMCG proves there was one
    assert "all pods on the node" in facts["Limit that was hit"]
    assert row_for(cap, result).limit == "unknown"
    out = json.loads(render_json(cap, result))
    assert out["limit_hit"] == {"cgroup": "/kubepods.slice", "scope": "all_pods", "limit_bytes": None}
    assert "all pods on the node" in render_markdown(cap, result)


def test_an_ecs_kill_names_the_task_limit_in_its_verdict():
    cap = _imported("messages-cgroup2-ecs-constraint-memcg.txt")
    result = analyse_kill(cap)
    assert result.limit_hit.scope == "parent" and result.limit_hit.cgroup.startswith("/ecstasks.slice/ecstasks-")
    assert result.verdict.sentences, "an empty verdict box"
    said = result.verdict.sentences[0]
    assert "the ECS task's (all its containers together" in said and "not in the log" in said
    assert "raising it changes nothing" in " ".join(result.verdict.sentences)
    assert result.verdict.kind == "limit"


def test_a_pod_level_limit_with_its_figures():
    cap = _imported("kmsg-4.x-kubepods.txt")
    result = analyse_kill(cap)
    assert (result.limit_hit.scope, result.limit_hit.limit_bytes) == ("pod", 20 << 20)
    assert result.verdict.sentences[0].startswith("The limit that was hit was the pod's (all its containers together")
    assert json.loads(render_json(cap, result))["limit_hit"]["scope"] == "pod"


def test_a_global_oom_is_the_hosts_and_a_sandbox_its_own():
    cap, _ = capture_from_fixture("v2-6.1-global.kmsg", version=2)
    assert analyse_kill(cap).limit_hit.scope == "host"
    assert json.loads(render_json(cap))["limit_hit"] == {"cgroup": None, "scope": "host", "limit_bytes": None}
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    hit = analyse_kill(cap).limit_hit
    assert hit.scope == "own" and hit.limit_bytes == cap.at_kill.limit_bytes


@pytest.mark.parametrize("oom,task,scope", [
    ("/kubepods.slice/kubepods-burstable.slice", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice/cri-containerd-{CID}.scope", "qos_class"),
    ("/kubepods/besteffort", f"/kubepods/besteffort/pod{UID.replace('_', '-')}/{CID}", "qos_class"),
    ("/kubepods", f"/kubepods/pod{UID.replace('_', '-')}/{CID}", "all_pods"),
    (f"/kubepods/burstable/pod{UID.replace('_', '-')}", f"/kubepods/burstable/pod{UID.replace('_', '-')}/{CID}", "pod"),
    (f"/kubepods.slice/kubepods-pod{UID}.slice/cri-containerd-{CID}.scope",
     f"/kubepods.slice/kubepods-pod{UID}.slice/cri-containerd-{CID}.scope", "container"),
    (f"/system.slice/docker-{CID}.scope", f"/system.slice/docker-{CID}.scope", "container"),
    (f"/docker/{CID}", f"/docker/{CID}", "container"),
    ("/system.slice", "/system.slice/nginx.service", "parent"),
    ("/system.slice/nginx.service", "/system.slice/nginx.service", "own"),
])
def test_each_shape_of_cgroup_gets_its_scope(oom, task, scope):
    cap = Capture(kill_id="k", victim=Victim(pid=1, comm="x"), cgroup=CgroupInfo(oom_memcg=oom, task_memcg=task, constraint="CONSTRAINT_MEMCG"))
    result = analyse_kill(cap)
    assert result.limit_hit.scope == scope
    name = result.limit_hit.name
    assert result.verdict.sentences and name in result.verdict.sentences[0]


def test_report_json_says_when_where_what_and_gives_evidence_as_numbers():
    # issue 26, point 9: the JSON lacked the kill's time, host, workload and schema, and gave
    # evidence as formatted strings ("limit 192.0 MiB")
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "reports", "java-heap", "capture.json")
    with open(path, encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    out = json.loads(render_json(cap))
    assert out["schema"] == cap.schema_version and out["time"] == cap.times.kill_wall
    assert out["host"]["hostname"] == cap.host.hostname and out["host"]["kernel_release"] == cap.host.kernel_release
    assert out["workload"]["kind"] == cap.workload.kind
    heap_max = next(x for x in out["advice"] if x["title"] == "Heap max too close to the limit")
    limit = next(e for e in heap_max["evidence"] if e["name"] == "limit")
    assert limit == {"name": "limit", "value": cap.at_kill.limit_bytes, "unit": "bytes", "text": "limit 192.0 MiB"}
    for x in out["advice"]:
        for e in x["evidence"]:
            assert e["unit"] in ("bytes", "count", "ratio", "minutes", "text", "note")
            assert e["unit"] not in ("bytes", "count", "ratio", "minutes") or e["value"] is None or isinstance(e["value"], (int, float))
    cap2 = _imported("syslog-aks-group-kill-npd.txt")
    out2 = json.loads(render_json(cap2))
    assert out2["workload"]["kind"] == "kubernetes" and out2["workload"]["qos"] == "Burstable"
    assert out2["host"]["hostname"] == "aks-nodepool1-31060421-vmss000002"
