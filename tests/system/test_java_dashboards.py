"""The lab's Java kill (a real JVM whose direct buffers fill the cgroup while its heap stays small),
recorded by ``record``: the JVM's own view read before the kill, what every dashboard would have
shown computed from the kernel's own report, and the post-mortem's first section saying both."""

import os
import re
import shutil
import subprocess

import pytest

from oomscope.analysis.result import analyse_kill
from oomscope.lab import run_scenario
from oomscope.model import Capture
from oomscope.units import fmt_bytes

from ..requires import require_tool

LIMIT = 192 << 20


@pytest.fixture
def java():
    require_tool("java", package="openjdk-17-jdk-headless")


def test_java_offheap_kill_shows_the_heap_the_working_set_and_the_charge(java, recorder, kernel_log, hier):
    rec = recorder()
    run = run_scenario("java-offheap", limit_bytes=LIMIT, hier=hier, cgroup=f"/oomscope-test-{os.getpid()}-java-offheap",
                       timeout_s=120)
    assert run.killed, f"not killed ({run.returncode}): {run.stderr}"
    ((path, data),) = rec.wait_for(lambda c: c["victim"]["pid"] == run.main_pid, timeout=60)
    rep = kernel_log.report_for(run.main_pid)
    cap = Capture.from_dict(data)

    # the JVM's own view, read from its hsperfdata file before the kill
    (jvm,) = [r for r in cap.runtimes if r.pid == run.main_pid]
    assert jvm.kind == "java" and jvm.why_not is None, jvm
    assert jvm.read_ms_before_kill is not None and jvm.read_ms_before_kill >= 0
    assert 0 < jvm.heap_used_bytes <= jvm.heap_committed_bytes <= jvm.heap_max_bytes
    assert jvm.heap_max_bytes <= (LIMIT // 4) + (4 << 20)  # -Xmx a quarter of the limit
    assert jvm.metaspace_used_bytes and jvm.threads and jvm.threads > 1
    # and its heap over the filling: earlier readings, one a second at most, all before the last one
    assert jvm.heap_history, "no earlier heap readings"
    ts = [h.t_ms for h in jvm.heap_history]
    assert ts == sorted(ts) and ts[-1] < -jvm.read_ms_before_kill
    assert all(h.heap_used_bytes <= jvm.heap_max_bytes for h in jvm.heap_history)

    # every tool's figure is its formula applied to the kernel's own report, to the byte
    assert cap.at_kill.source == "kernel_report"
    usage = rep.memory.usage_kb * 1024
    stat = rep.memory_stat
    v1 = hier.version == 1
    inactive = stat["total_inactive_file" if v1 else "inactive_file"]
    result = analyse_kill(cap)
    fig = {f.key: f.bytes for f in result.shown.figures}
    assert fig["kernel_charge"] == usage
    assert fig["working_set"] == usage - inactive
    assert fig["docker_stats"] == usage - inactive
    assert fig["cadvisor_rss"] == stat["total_rss" if v1 else "anon"]
    assert fig["cadvisor_cache"] == stat["total_cache" if v1 else "file"]
    assert fig["victim_rss"] == (rep.killed.anon_rss_kb + rep.killed.file_rss_kb + rep.killed.shmem_rss_kb) * 1024
    assert fig["jvm_heap_used"] == jvm.heap_used_bytes
    # the heap was a small part of what the kernel charged: the kill a heap dashboard cannot explain
    assert jvm.heap_used_bytes < 0.5 * usage
    (split,) = result.shown.java
    assert split.outside_heap_bytes > 0.5 * split.rss_bytes

    # the post-mortem's dashboards section (after the verdict and what to change: issue 26) names
    # the heap, the working set and the kernel's charge
    with open(os.path.join(os.path.dirname(path), "postmortem.html")) as f:
        html = f.read()
    sections = re.findall(r"<section[^>]*>\s*<h2>(.*?)</h2>(.*?)</section>", html, re.S)
    (section,) = [body for title, body in sections if title.startswith("What your dashboards showed")]
    said = result.shown.sentences[0]
    # (since issue 26 the figure says when the JVM's counters were read, before "; the kernel killed at")
    assert said.startswith(f"Your dashboard, the heap dashboard (jvm_memory_used_bytes), showed {fmt_bytes(jvm.heap_used_bytes)}"), said
    assert f"; the kernel killed at {fmt_bytes(usage)}" in said, said
    for text in (fmt_bytes(jvm.heap_used_bytes), fmt_bytes(usage - inactive), fmt_bytes(usage), "Working set", "Heap used"):
        assert text in section, text
    assert "JVM heap used (pid" in html  # the heap's line on the timeline, beside the charge's
    print(f"\njava-offheap: heap used {jvm.heap_used_bytes} committed {jvm.heap_committed_bytes} max {jvm.heap_max_bytes} "
          f"read {jvm.read_ms_before_kill} ms before; victim RSS {fig['victim_rss']}; working set {fig['working_set']}; "
          f"charge {usage}; limit {cap.at_kill.limit_bytes}; {path}")


def test_java_heap_above_the_limit_is_told_to_size_the_heap_from_the_limit(java, recorder, hier):
    rec = recorder()
    run = run_scenario("java-heap", limit_bytes=LIMIT, hier=hier, cgroup=f"/oomscope-test-{os.getpid()}-java-heap",
                       timeout_s=120)
    assert run.killed, f"not killed ({run.returncode}): {run.stderr}"
    ((path, data),) = rec.wait_for(lambda c: c["victim"]["pid"] == run.main_pid, timeout=60)
    cap = Capture.from_dict(data)
    (jvm,) = [r for r in cap.runtimes if r.pid == run.main_pid]
    assert jvm.why_not is None and jvm.read_ms_before_kill >= 0
    assert jvm.heap_max_bytes >= LIMIT  # -Xmx twice the limit
    result = analyse_kill(cap)
    # this time the heap itself filled the cgroup: most of the charge was committed heap
    assert jvm.heap_committed_bytes >= 0.5 * cap.at_kill.usage_bytes, (jvm, cap.at_kill.usage_bytes)
    advice = next(a for a in result.advice if a.title == "Heap max too close to the limit")
    assert "-XX:MaxRAMPercentage" in advice.text and f"heap max {jvm.heap_max_bytes / 2**20:.1f} MiB" in " ".join(map(str, advice.evidence))  # Evidence says itself as the page does (issue 26)
    print(f"\njava-heap: heap used {jvm.heap_used_bytes} committed {jvm.heap_committed_bytes} max {jvm.heap_max_bytes}; "
          f"charge {cap.at_kill.usage_bytes}; {path}")


def test_a_jvm_without_perfdata_is_said_so_with_how_to_turn_it_on(java, recorder, sandbox):
    """The lab's off-heap JVM started with -XX:-UsePerfData in a sandbox cgroup: no hsperfdata
    file, so the capture says why its view is missing and the post-mortem how to turn it on."""
    from importlib import resources

    name, path = sandbox(suffix="-noperf", limit=LIMIT)
    rec = recorder()
    source = str(resources.files("oomscope").joinpath("workloads_java", "OomscopeLab.java"))
    res = subprocess.run(
        ["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -XX:-UsePerfData -Xmx48m -XX:MaxDirectMemorySize=768m "$3" offheap',
         "sh", os.path.join(path, "cgroup.procs"), shutil.which("java"), source],
        capture_output=True, timeout=120)
    assert res.returncode == -9, (res.returncode, res.stderr[-500:])
    ((cpath, data),) = rec.wait_for(lambda c: c["cgroup"]["oom_memcg"] == name and c["victim"]["comm"] == "java", timeout=60)
    cap = Capture.from_dict(data)
    (jvm,) = [r for r in cap.runtimes if r.pid == cap.victim.pid]
    assert jvm.heap_used_bytes is None and "UsePerfData" in jvm.why_not, jvm
    with open(os.path.join(os.path.dirname(cpath), "postmortem.html")) as f:
        html = f.read()
    section = html[html.index('id="dashboards"'):]
    section = section[:section.index("</section>")]
    assert "-XX:+UsePerfData" in section and "Working set" in section


def test_a_secret_in_java_tool_options_reaches_no_file_oomscope_writes(java, recorder, sandbox):
    """JAVA_TOOL_OPTIONS lives only in the JVM's environment, yet the JVM publishes it in its
    hsperfdata (java.rt.vmArgs): before issue 24 it was copied into capture.json, the post-mortem
    (0644) and the tickets. Only the memory flags are kept."""
    from importlib import resources

    name, path = sandbox(suffix="-secret", limit=LIMIT)
    rec = recorder()
    source = str(resources.files("oomscope").joinpath("workloads_java", "OomscopeLab.java"))
    env = dict(os.environ, JAVA_TOOL_OPTIONS="-Dsecret.password=hunter2-oomscope -XX:MaxRAMPercentage=25")
    res = subprocess.run(
        ["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -Xmx48m -XX:MaxDirectMemorySize=768m "$3" offheap',
         "sh", os.path.join(path, "cgroup.procs"), shutil.which("java"), source],
        capture_output=True, timeout=120, env=env)
    assert res.returncode == -9, (res.returncode, res.stderr[-500:])
    ((cpath, data),) = rec.wait_for(lambda c: c["cgroup"]["oom_memcg"] == name and c["victim"]["comm"] == "java", timeout=60)
    cap = Capture.from_dict(data)
    (jvm,) = [r for r in cap.runtimes if r.pid == cap.victim.pid]
    assert jvm.why_not is None, jvm
    # the memory flags of both the command line and the environment are kept, nothing else
    assert "-XX:MaxRAMPercentage=25" in jvm.vm_args and "-Xmx48m" in jvm.vm_args, jvm.vm_args
    folder = os.path.dirname(cpath)
    from oomscope.cli import app
    from typer.testing import CliRunner
    tickets = [CliRunner().invoke(app, ["report", cpath, "-f", fmt]).output for fmt in ("md", "jira", "json")]
    written = []
    for f in sorted(os.listdir(folder)):
        with open(os.path.join(folder, f), "rb") as fh:
            written.append((f, fh.read()))
    assert {"capture.json", "postmortem.html"} <= {f for f, _ in written}
    for what, text in written + [(f"ticket {i}", t.encode()) for i, t in enumerate(tickets)]:
        assert b"hunter2" not in text and b"secret.password" not in text, what
