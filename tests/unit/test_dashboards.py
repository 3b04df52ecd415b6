"""What each dashboard would have shown, from real kernels' OOM reports (tests/fixtures/kmsg)."""

import pytest

from oomscope.analysis.dashboards import last_scrapes, what_tools_showed
from oomscope.kernel.oom_report import parse_reports


def _figures(fixture, name, version):
    (r,) = [r for r in parse_reports(fixture("kmsg", name)) if r.has_header][:1]
    k = r.killed
    rss = [t.values["rss"] * 4096 for t in r.tasks]
    figs = what_tools_showed(r.memory.usage_kb * 1024, r.memory_stat, version,
                             victim_rss_bytes=(k.anon_rss_kb + k.file_rss_kb + k.shmem_rss_kb) * 1024,
                             tasks_rss_bytes=rss)
    return r, {f.key: f for f in figs}


@pytest.mark.parametrize("name,version,inactive,rss,cache", [
    ("v1-6.18-hostile-sidecar.kmsg", 1, "total_inactive_file", "total_rss", "total_cache"),
    ("v2-6.1-hostile-sidecar.kmsg", 2, "inactive_file", "anon", "file"),
])
def test_each_tool_is_its_formula_on_the_reports_state(fixture, name, version, inactive, rss, cache):
    r, f = _figures(fixture, name, version)
    usage = r.memory.usage_kb * 1024
    assert f["kernel_charge"].bytes == usage
    assert f["working_set"].bytes == usage - r.memory_stat[inactive]  # to the byte
    assert f["docker_stats"].bytes == f["working_set"].bytes
    assert f["cadvisor_rss"].bytes == r.memory_stat[rss] and f["cadvisor_cache"].bytes == r.memory_stat[cache]
    assert inactive in f["working_set"].formula and "handler.go" in f["working_set"].source
    # the sidecar's RSS is in the sum over the tasks, not in the victim's
    assert f["tasks_rss_sum"].bytes > f["victim_rss"].bytes
    assert len(r.tasks) >= 2 and str(len(r.tasks)) in f["tasks_rss_sum"].name


def test_unknowns_stay_unknown():
    f = {x.key: x for x in what_tools_showed(None, {"anon": 5}, 2, tasks_rss_bytes=[4096, None])}
    assert f["kernel_charge"].bytes is None and f["working_set"].bytes is None
    assert f["cadvisor_rss"].bytes == 5 and f["cadvisor_swap"].bytes is None
    assert f["tasks_rss_sum"].bytes is None  # one task's RSS unknown: no partial sum passed off as the sum


def test_working_set_is_never_negative():
    f = {x.key: x for x in what_tools_showed(10, {"inactive_file": 20}, 2)}
    assert f["working_set"].bytes == 0


def test_last_scrapes_worst_case_and_range():
    pts = [(-70_000, 100), (-61_000, 110), (-45_000, 200), (-15_500, 300), (-14_000, 350), (-1_000, 500), (0, 512)]
    s15, s60 = last_scrapes(pts)
    # the worst case is the oldest reading within the interval: never older than it (15.5 s for a
    # 15 s scrape), never a value outside the row's own range (300 of 350 to 512; issue 26)
    assert (s15.bytes, s15.age_ms, s15.low_bytes, s15.high_bytes) == (350, 14_000, 350, 512)
    assert (s60.bytes, s60.age_ms, s60.low_bytes) == (200, 45_000, 200)
    for s in (s15, s60):
        assert s.age_ms <= s.interval_s * 1000 and s.low_bytes <= s.bytes <= s.high_bytes
    (short,) = last_scrapes([(-2_000, 1), (0, 2)], (60,))
    assert short.bytes is None  # the timeline does not reach back a minute: unknown, not a guess


def test_docker_stats_shows_usage_itself_when_inactive_file_is_not_below_it():
    # docker CLI calculateMemUsageUnixNoCache: subtract only when inactive_file < usage; cAdvisor clamps to 0
    from oomscope.analysis.dashboards import what_tools_showed

    fig = {f.key: f.bytes for f in what_tools_showed(100, {"inactive_file": 150}, 2)}
    assert fig["docker_stats"] == 100 and fig["working_set"] == 0
    fig = {f.key: f.bytes for f in what_tools_showed(100, {"total_inactive_file": 30}, 1)}
    assert fig["docker_stats"] == 70 and fig["working_set"] == 70
