"""What the dashboards and the runtime showed (analysis/shown.py) and its section of the
post-mortem, on captures built from real kernel reports."""

import json

from oomscope.analysis.result import analyse_kill
from oomscope.model import Capture, RuntimeReading
from oomscope.report.formats import render_json, render_markdown
from oomscope.report.render import render_html

from .helpers import capture_from_fixture

MIB = 1 << 20
HOSTILE = '<script>alert(1)</script>"&'


def _java_capture(version=2, name="v2-6.1-anon.kmsg"):
    cap, _ = capture_from_fixture(name, version)
    cap.victim.comm = HOSTILE
    for t in cap.tasks:
        if t.is_victim:
            t.comm = HOSTILE
    rss = cap.victim.rss_bytes
    cap.runtimes = [RuntimeReading(
        "java", cap.victim.pid, HOSTILE, 42.0, heap_used_bytes=6 * MIB, heap_committed_bytes=16 * MIB,
        heap_max_bytes=60 * MIB, young_used_bytes=2 * MIB, old_used_bytes=4 * MIB, metaspace_used_bytes=5 * MIB,
        metaspace_committed_bytes=6 * MIB, class_space_used_bytes=MIB, class_space_committed_bytes=MIB, threads=14,
        young_gc_count=3, full_gc_count=1, gc_time_ms=12.0, vm_version="17.0.13", vm_args=f"-Xmx60m -XX:MaxDirectMemorySize=256m {HOSTILE}")]
    return cap, rss


def test_the_dashboards_figures_are_the_formulas_on_the_kernels_report():
    cap, _ = _java_capture()
    stat, usage = cap.at_kill.memory_stat, cap.at_kill.usage_bytes
    fig = {f.key: f.bytes for f in analyse_kill(cap).shown.figures}
    assert fig["kernel_charge"] == usage
    assert fig["working_set"] == max(0, usage - stat["inactive_file"])
    assert fig["docker_stats"] == fig["working_set"]
    assert fig["cadvisor_rss"] == stat["anon"] and fig["cadvisor_cache"] == stat["file"]
    assert fig["jvm_heap_used"] == 6 * MIB


def test_a_java_victims_rss_is_split_into_heap_and_outside_it_with_advice():
    cap, rss = _java_capture()
    result = analyse_kill(cap)
    (j,) = result.shown.java
    assert j.is_victim and j.rss_bytes == rss
    assert j.outside_heap_bytes == rss - 16 * MIB
    assert sum(p.bytes for p in j.parts) == rss
    said = result.shown.sentences[0]
    assert said.startswith("Your dashboard, the heap dashboard (jvm_memory_used_bytes), showed 6.0 MiB (the JVM's own counters, "
                           "read 42 ms before the kill); the kernel killed at")
    assert "the JVM's own memory beyond the used heap" in said
    titles = [a.title for a in result.advice]
    assert "Heap max too close to the limit" in titles and "Memory outside the Java heap" in titles
    heap_advice = next(a for a in result.advice if a.title == "Heap max too close to the limit")
    assert "MaxRAMPercentage" in heap_advice.text
    outside = next(a for a in result.advice if a.title == "Memory outside the Java heap")
    assert "direct buffers up to 256.0 MiB (-XX:MaxDirectMemorySize), 4.0x the limit" in outside.text


def test_the_section_escapes_a_hostile_process_name_everywhere():
    cap, _ = _java_capture()
    html = render_html(cap)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    first = html.index('id="dashboards"')
    assert html.index("What to change") < first < html.index("The kill</h2>")  # what to change first (issue 26)
    section = html[first:html.index("</section>", first)]
    assert "Heap used" in section and "Working set" in section and "Kernel&#39;s charge" in section
    md = render_markdown(cap)
    assert "<script>" not in md and "\\<script\\>" in md
    data = json.loads(render_json(cap))
    assert {"name", "bytes", "formula"} <= set(data["dashboards"][0])
    assert data["runtimes"][0]["heap_used_bytes"] == 6 * MIB and data["runtimes"][0]["comm"] == HOSTILE


def test_a_jvm_without_perfdata_and_other_runtimes_are_said_plainly():
    cap, _ = _java_capture()
    cap.runtimes = [RuntimeReading("java", cap.victim.pid, "java", 3.0, why_not="no hsperfdata file: the JVM runs with -XX:-UsePerfData")]
    sh = analyse_kill(cap).shown
    assert sh.java == [] and "-XX:+UsePerfData" in sh.notes[0]
    assert sh.sentences[0].startswith("Your dashboard, kubectl top (the working set)")
    cap.runtimes = []
    cap.victim.comm, cap.victim.cmdline = "node", "node server.js"
    assert "did not read node's own view" in analyse_kill(cap).shown.notes[0] and "a Go program's" in analyse_kill(cap).shown.notes[0]


def test_imported_and_older_captures_get_the_section_from_the_reports_memory_stat():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg", 1)
    data = json.loads(cap.to_json())
    data["schema_version"] = 2
    del data["runtimes"]
    old = Capture.from_dict(data)
    assert old.runtimes == []
    fig = {f.key: f for f in analyse_kill(old).shown.figures}
    st = old.at_kill.memory_stat
    assert fig["working_set"].bytes == old.at_kill.usage_bytes - st["total_inactive_file"]
    assert fig["working_set"].formula == "memory.usage_in_bytes - total_inactive_file"
    assert fig["cadvisor_rss"].bytes == st["total_rss"]
    assert 'id="dashboards"' in render_html(old)


def test_the_jvms_heap_is_a_line_on_the_timeline_beside_the_charge():
    from oomscope.model import RuntimePoint, Timeline, TimelinePoint
    from oomscope.report.view import build_view

    cap, _ = _java_capture()
    limit = cap.at_kill.limit_bytes
    cap.timelines = [Timeline(cap.cgroup.oom_memcg, [TimelinePoint(t_ms=-1000.0 * (5 - i), usage_bytes=limit * (i + 1) // 6,
                                                                   limit_bytes=limit) for i in range(6)])]
    cap.runtimes[0].heap_history = [RuntimePoint(-3000.0, 5 * MIB, 16 * MIB), RuntimePoint(-2000.0, 6 * MIB, 16 * MIB)]
    v = build_view(cap)
    (heap,) = [s for s in v.timeline_charts[0].series if s.key == "jvm_heap"]
    assert heap.label.startswith(f"JVM heap used (pid {cap.victim.pid}")
    assert len(heap.points.split()) == 3  # two earlier readings and the last one


def test_the_headline_says_what_the_tool_would_have_shown_at_the_kill_and_what_a_scrape_last_saw():
    # issue 26: "kubectl top showed 64.0 MiB" above a table whose 15 s scrape last saw 0 B
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "reports", "anon", "capture.json")
    with open(path, encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    sh = analyse_kill(cap).shown
    assert sh.sentences[0].startswith("Your dashboard, kubectl top (the working set), would have shown 64.0 MiB at the kill")
    (scrape,) = [x for x in sh.sentences if "no scrape saw" in x]
    assert "every 15 s last scraped 0 to 15 s before the kill" in scrape and "between 0 B and 63.9 MiB" in scrape
    assert "14.1 s before the kill, was 0 B (the cgroup held nothing yet)" in scrape
