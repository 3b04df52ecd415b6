"""analysis/verdict.py and analysis/result.py: the verdict decided in analysis, one result for
every renderer."""

import json

from oomscope.analysis.result import analyse_kill
from oomscope.report.formats import render_json, render_markdown
from oomscope.report.render import render_html
from oomscope.report.view import build_view

from .helpers import capture_from_fixture


def test_a_memcg_kill_has_a_limit_verdict_with_its_figures():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    v = analyse_kill(cap).verdict
    # the sidecar held 20% of the charge: the verdict names it (issue 15), after the largest category
    assert v.kind == "limit" and v.limit_cgroup == cap.cgroup.oom_memcg and v.categories == ["anon", "other_processes"]
    (others,) = [s for s in v.sentences if s.startswith("Other processes of the cgroup held")]
    helper = next(t for t in cap.tasks if t.pid != cap.victim.pid)
    assert f"pid {helper.pid} ({helper.comm}" in others
    assert v.usage_bytes == cap.at_kill.usage_bytes and v.limit_bytes == cap.at_kill.limit_bytes
    assert v.sentences[0].startswith(f"The limit that was hit was that of the victim's own cgroup: the memory cgroup "
                                     f"{cap.cgroup.oom_memcg} reached")


def test_a_global_oom_has_a_host_verdict():
    cap, _ = capture_from_fixture("v2-6.1-global.kmsg", version=2)
    v = analyse_kill(cap).verdict
    assert v.kind == "host" and v.limit_cgroup is None and v.constraint == "CONSTRAINT_NONE"


def test_every_renderer_uses_the_result_it_is_given():
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    result = analyse_kill(cap)
    result.verdict.sentences = ["A verdict only this result has."]
    assert build_view(cap, result).verdict == ["A verdict only this result has."]
    assert "A verdict only this result has." in render_html(cap, result)
    assert "A verdict only this result has." in render_markdown(cap, result)
    out = json.loads(render_json(cap, result))
    assert out["verdict"]["text"] == ["A verdict only this result has."] and out["verdict"]["kind"] == "limit"


def test_a_jvms_verdict_names_its_split_and_what_to_change_comes_first():
    # issue 26: java-offheap's box said "anonymous memory (heap, stacks)", which reads as the Java
    # heap; 7.5 MiB of heap was in use, 170.7 MiB was native and -XX:MaxDirectMemorySize=768m was
    # 4x the limit, two screens down
    import os

    from oomscope.model import Capture

    path = os.path.join(os.path.dirname(__file__), "..", "..", "reports", "java-offheap", "capture.json")
    with open(path, encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    result = analyse_kill(cap)
    said = " ".join(result.verdict.sentences)
    assert "anonymous memory (heap, stacks)" not in said
    assert "the Java heap held 10.6 MiB (7.5 MiB in use" in said
    assert "170.7 MiB was native memory outside the heap" in said
    assert "-XX:MaxDirectMemorySize allowed direct buffers up to 768.0 MiB, 4.0x the limit" in said
    html = render_html(cap, result)
    assert html.index("<h2>What to change</h2>") < html.index("What your dashboards showed")
    assert html.index('class="verdict"') < html.index("<h2>What to change</h2>")
