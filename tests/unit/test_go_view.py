"""A Go program's own view in the post-mortem (issue 27), on a real recording: its heap over time
beside the kernel's timeline, the dashboards' sentence from go_memstats_heap_inuse_bytes, and its
RSS split into the heap in use and the rest. The capture is `oomscope record --lab leak-go` on the
host (6.18, cgroup v1; tests/fixtures/README.md)."""

import json
import os

from oomscope.analysis.result import analyse_kill
from oomscope.model import Capture
from oomscope.record.readings import Readings
from oomscope.report.formats import render_json, render_markdown
from oomscope.report.render import render_html
from oomscope.report.view import build_view
from oomscope.runtimes.go import GoReading
from oomscope.runtimes.goruntime import GoHeap

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures", "leak-go-v1-6.18.json")
MIB = 1 << 20


def _capture() -> Capture:
    with open(FIXTURE) as f:
        return Capture.from_json(f.read())


def test_the_recording_holds_the_go_heap_over_time():
    cap = _capture()
    (go,) = [r for r in cap.runtimes if r.kind == "go"]
    assert go.pid == cap.victim.pid and go.heap_inuse_bytes and go.heap_free_bytes is not None
    hist = go.heap_history
    assert len(hist) >= 3 and all(h.heap_inuse_bytes and h.heap_used_bytes is None for h in hist)
    assert [h.t_ms for h in hist] == sorted(h.t_ms for h in hist) and hist[-1].t_ms < -go.read_ms_before_kill
    # a leak: the heap in use grew over the readings, to its last
    assert hist[0].heap_inuse_bytes < hist[-1].heap_inuse_bytes <= go.heap_inuse_bytes * 1.2


def test_the_timeline_draws_the_go_heap_beside_the_kernels_view():
    cap = _capture()
    (go,) = [r for r in cap.runtimes if r.kind == "go"]
    charts = build_view(cap).timeline_charts
    line = next(s for c in charts for s in c.series if s.key == "jvm_heap")
    assert line.label.startswith(f"Go heap in use (pid {go.pid}")
    drawn = [h for h in go.heap_history if h.t_ms >= min(p.t_ms for p in cap.timelines[0].points)]
    assert len(line.points.split()) == len(drawn) + 1  # its earlier readings and its last


def test_the_dashboards_sentence_starts_from_the_go_heap_and_accounts_for_the_difference():
    cap = _capture()
    sh = analyse_kill(cap).shown
    (go,) = [r for r in cap.runtimes if r.kind == "go"]
    assert sh.dashboard_name.startswith("the Go heap dashboard (go_memstats_heap_inuse_bytes)")
    assert sh.dashboard_bytes == go.heap_inuse_bytes
    first = sh.sentences[0]
    assert first.startswith("Your dashboard, the Go heap dashboard") and "the Go runtime's own figures, read" in first
    assert "the Go program's own memory beyond its heap in use" in first
    # the parts add up to the charge less the heap in use (the categories add up to the charge)
    assert sum(p.bytes for p in sh.difference) == cap.at_kill.usage_bytes - go.heap_inuse_bytes
    assert sh.figures[1].key == "go_heap_inuse"
    assert sh.java == []  # never a JVM's


def test_the_go_rss_split_adds_up_to_its_rss():
    cap = _capture()
    sh = analyse_kill(cap).shown
    (split,) = sh.go
    victim = next(t for t in cap.tasks if t.pid == cap.victim.pid)
    assert split.is_victim and split.rss_bytes == victim.rss_bytes
    parts = {p.key: p.bytes for p in split.parts}
    assert set(parts) == {"heap", "go_free", "mapped_files", "native"}
    assert sum(parts.values()) == victim.rss_bytes and min(parts.values()) >= 0
    assert parts["mapped_files"] == victim.file_rss_bytes + victim.shmem_rss_bytes
    assert parts["heap"] == min(split.reading.heap_inuse_bytes, victim.rss_bytes - parts["mapped_files"])
    assert split.outside_heap_bytes == victim.rss_bytes - parts["heap"]


def test_the_page_markdown_and_json_show_the_go_view():
    cap = _capture()
    result = analyse_kill(cap)
    html = render_html(cap, result)
    assert "The Go runtime&#39;s own view: pid" in html and "Go heap in use (HeapInuse)" in html
    md = render_markdown(cap, result)
    assert "*The Go runtime's own view: pid" in md and "Free heap spans kept" in md
    out = json.loads(render_json(cap, result))
    (go,) = [r for r in out["runtimes"] if r["kind"] == "go"]  # once, with its split
    assert [p["key"] for p in go["rss_split"]] == ["heap", "go_free", "mapped_files", "native"]
    assert go["outside_heap_bytes"] == go["rss_bytes"] - go["rss_split"][0]["bytes"]
    assert go["heap_history"][0]["heap_inuse_bytes"] > 0


def _heap(inuse):
    return GoHeap(heap_inuse_bytes=inuse, heap_alloc_bytes=inuse, heap_live_bytes=inuse, heap_goal_bytes=2 * inuse,
                  memory_limit_bytes=None, gc_percent=100, heap_released_bytes=0, heap_free_bytes=0,
                  mapped_ready_bytes=inuse, gc_cycles=1)


def test_record_keeps_a_go_programs_heap_history_one_point_a_spacing():
    store = Readings(hier=None, ring_ns=10 ** 10, timeline_points=600, timeline_spacing_s=1.0,
                     pid_retention_ns=10 ** 11, max_pids=100)
    t0 = 10 ** 12
    for i in range(6):  # every 0.5 s: one point a second is kept
        store.add_runtimes([(42, t0 + i * 500_000_000, "/a", GoReading(42, "go1.19.8", _heap((i + 1) * MIB)))])
    store.add_runtimes([(42, t0 + 3_500_000_000, "/a", GoReading(42, "go1.19.8", None, why_not="gone"))])
    (pid, when, reading, hist) = store.runtimes_before("/a", t0 + 10 ** 10)[0]
    assert pid == 42 and reading.heap is None  # the last reading, whatever it was
    assert [(t - t0, used, goal) for t, used, goal in hist] == [(0, MIB, 2 * MIB), (10 ** 9, 3 * MIB, 6 * MIB),
                                                               (2 * 10 ** 9, 5 * MIB, 10 * MIB)]
