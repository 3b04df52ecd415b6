"""Go programs in record (record/runtimes.py), in the capture (model.RuntimeReading of kind "go") and
in the post-mortem (analysis/shown.py's row, report -f json): which processes are Go, how often
their heap profile is walked, what a capture keeps and what the page says."""

import json

from oomscope.analysis.result import analyse_kill
from oomscope.model import Capture, RuntimeReading
from oomscope.record.runtimes import PROFILE_COST_FACTOR, RuntimeReader, read_cgroup, runtime_reading
from oomscope.report.formats import render_json
from oomscope.report.render import render_html
from oomscope.runtimes.go import GoReading, GoSite
from oomscope.runtimes.goruntime import GoHeap
from oomscope.runtimes.java import JvmReading

from .helpers import capture_from_fixture

MIB = 1 << 20


def _heap(inuse=40 * MIB):
    return GoHeap(heap_inuse_bytes=inuse, heap_alloc_bytes=inuse - MIB, heap_live_bytes=inuse // 2,
                  heap_goal_bytes=2 * inuse, memory_limit_bytes=200 * MIB, gc_percent=100, heap_released_bytes=0,
                  heap_free_bytes=MIB, mapped_ready_bytes=inuse + 4 * MIB, gc_cycles=12)


SITES = (GoSite(("main.leakyCache", "main.main", "runtime.main"), 32 * MIB, 512),
         GoSite(("main.churn", "main.main"), MIB, 32))


def test_go_programs_are_found_by_their_build_info_once_each_within_a_budget():
    versions = {11: "go1.19.8", 12: None, 13: "", 14: "go1.19.8"}
    checked, reads = [], []

    def go_version(pid):
        checked.append(pid)
        return versions[pid]

    def read_go(pid, binary, profile=True):
        reads.append((pid, profile))
        return GoReading(pid, "go1.19.8", _heap(), SITES if profile else ())

    r = RuntimeReader(100, is_java=lambda pid: False, read_jvm=lambda pid: JvmReading(pid, None, "no"),
                      exe_is_java=lambda pid: False, go_version=go_version, read_go=read_go, go_checks_per_pass=3)
    r._binaries.get = lambda pid: None  # no executable to open here
    r.begin_pass()
    got = read_cgroup(r, [11, 12, 13, 14], 0.9, 1000, lambda: 1001)
    # three build infos a pass: 14 waits; a Go binary whose version could not be read ("") is Go
    assert [p for p, _, _ in got] == [11, 13] and checked == [11, 12, 13]
    r.begin_pass()
    got = read_cgroup(r, [11, 12, 13, 14], 0.9, 1100, lambda: 1101)
    assert [p for p, _, _ in got] == [11, 13, 14] and checked == [11, 12, 13, 14]  # decided once per pid
    r.forget_except([11])
    assert r._go == {11: True}


def test_the_heap_profile_is_walked_again_only_after_a_hundred_times_its_cost():
    walked = []

    def read_go(pid, binary, profile=True):
        walked.append(profile)
        return GoReading(pid, "go1.19.8", _heap(), SITES if profile else (), profile_rate=512 << 10)

    r = RuntimeReader(100, go_version=lambda pid: "go1.19.8", read_go=read_go, exe_is_java=lambda pid: False)
    r._binaries.get = lambda pid: None
    assert r.due([5], 0.9, 0) == [5]
    first = r.read(5, 0)
    assert walked == [True] and first.sites == SITES
    nxt = r._next_profile[5]
    assert nxt >= 100  # at least the interval; PROFILE_COST_FACTOR times the reading's cost
    second = r.read(5, nxt - 1)
    assert walked == [True, False]
    assert second.sites == SITES and second.profile_rate == 512 << 10  # the last profile, carried
    r.read(5, nxt)
    assert walked == [True, False, True]
    assert PROFILE_COST_FACTOR == 100


def test_a_go_reading_in_the_capture():
    reading = GoReading(7, "go1.19.8", _heap(), SITES, profile_rate=512 << 10)
    rr = runtime_reading(7, reading, 123.45, "leaklab")
    assert rr.kind == "go" and rr.vm_version == "go1.19.8" and rr.read_ms_before_kill == 123.5
    assert rr.heap_inuse_bytes == 40 * MIB and rr.heap_goal_bytes == 80 * MIB and rr.memory_limit_bytes == 200 * MIB
    assert rr.gc_percent == 100 and rr.heap_used_bytes is None  # never mistaken for a JVM's heap
    assert [(s.frames[0], s.bytes, s.source) for s in rr.allocation_sites] == [("main.leakyCache", 32 * MIB, "go_heap"),
                                                                               ("main.churn", MIB, "go_heap")]
    off = runtime_reading(8, GoReading(8, "go1.22.1", None, why_not="unknown Go version go1.22.1: not read"), 5)
    assert off.kind == "go" and off.heap_inuse_bytes is None and "unknown Go version" in off.why_not

    cap, _rep = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.runtimes = [rr, off]
    again = Capture.from_json(cap.to_json())
    assert again.runtimes[0] == rr and again.runtimes[1] == off
    assert again.runtimes[0].allocation_sites[0].frames == ["main.leakyCache", "main.main", "runtime.main"]


def test_a_capture_written_before_go_readings_still_loads():
    cap, _rep = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.runtimes = [RuntimeReading("java", 9, "java", 10.0, heap_used_bytes=5 * MIB)]
    data = json.loads(cap.to_json())
    for r in data["runtimes"]:
        for key in ("heap_inuse_bytes", "heap_alloc_bytes", "heap_goal_bytes", "memory_limit_bytes", "gc_percent",
                    "allocation_sites", "allocation_sites_why_not"):
            del r[key]
    old = Capture.from_dict(data)
    assert old.runtimes[0].heap_used_bytes == 5 * MIB and old.runtimes[0].allocation_sites == []


def _go_capture(why_not=None):
    cap, _rep = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    reading = (GoReading(cap.victim.pid, "go1.19.8", None, why_not=why_not) if why_not else
               GoReading(cap.victim.pid, "go1.19.8", _heap(), SITES))
    cap.runtimes = [runtime_reading(cap.victim.pid, reading, 74.0, "<b>leaklab</b>")]
    return cap


def test_the_go_heap_is_a_row_of_what_each_tool_showed():
    cap = _go_capture()
    result = analyse_kill(cap)
    fig = {f.key: f for f in result.shown.figures}
    assert fig["go_heap_inuse"].bytes == 40 * MIB and "74 ms before the kill" in fig["go_heap_inuse"].source
    assert result.shown.java == [] and "jvm_heap_used" not in fig  # a Go reading is never a JVM's
    html = render_html(cap, result)
    assert "go_memstats_heap_inuse_bytes" in html and "<b>leaklab</b>" not in html
    (go,) = json.loads(render_json(cap, result))["runtimes"]
    assert go["kind"] == "go" and go["heap_inuse_bytes"] == 40 * MIB
    top = go["allocation_sites"][0]
    assert (top["frames"], top["bytes"], top["source"]) == (["main.leakyCache", "main.main", "runtime.main"], 32 * MIB, "go_heap")


def test_a_go_program_not_read_is_said_in_go_terms():
    cap = _go_capture(why_not="stripped executable (no .symtab: built with -ldflags=-s): the runtime's state cannot be found")
    result = analyse_kill(cap)
    assert "go_heap_inuse" not in {f.key for f in result.shown.figures} and result.shown.java == []
    (note,) = [n for n in result.shown.notes if "stripped" in n]
    assert "Go runtime's own view could not be read" in note and "UsePerfData" not in note
