from oomscope.analysis.advice import advise, trend_of
from oomscope.analysis.attribution import analyse
from oomscope.model import Capture, CgroupInfo, CgroupState, Host, Timeline, TimelinePoint, Victim

MIB = 1 << 20


def _capture(anon_series, stat, usage=100 * MIB, limit=100 * MIB, swap=0):
    pts = [TimelinePoint(t_ms=-1000.0 * (len(anon_series) - i) * 6, anon_bytes=a, usage_bytes=a, limit_bytes=limit)
           for i, a in enumerate(anon_series)]
    return Capture(kill_id="k", victim=Victim(pid=1, comm="app", anon_rss_bytes=stat.get("anon", 0)),
                   cgroup=CgroupInfo(version=2, oom_memcg="/app", task_memcg="/app", constraint="CONSTRAINT_MEMCG"),
                   at_kill=CgroupState(source="kernel_report", usage_bytes=usage, limit_bytes=limit, memory_stat=stat),
                   host=Host(cgroup_version=2, thp_enabled="always", swap_total_bytes=swap),
                   timelines=[Timeline("/app", pts)] if anon_series else [])


def test_a_steady_rise_is_a_leak_and_more_limit_only_delays_it():
    cap = _capture([10 * MIB + i * 18 * MIB for i in range(11)], {"anon": 200 * MIB}, usage=200 * MIB, limit=200 * MIB)
    t = trend_of(cap)
    assert t.kind == "leak" and 170 * MIB <= t.anon_rate_bytes_per_min <= 190 * MIB
    cases = {x.case: x for x in advise(cap, analyse(cap), t)}
    assert "delay_only" in cases and "more_limit" not in cases
    # 100 MiB at 180 MiB/min, within the 60 s fitted (issue 26: no projection beyond it); under 2 min said in seconds
    assert "buys about 33 s" in cases["delay_only"].text
    slow = _capture([10 * MIB + i * 9 * MIB for i in range(11)], {"anon": 100 * MIB})
    leak = next(x for x in advise(slow, analyse(slow)) if x.case == "delay_only")
    assert "buys about" not in leak.text  # 67 s ahead of a 60 s fit: not said


def test_a_plateau_gets_a_limit_from_the_observed_peak():
    cap = _capture([60 * MIB, 61 * MIB, 60 * MIB, 62 * MIB, 61 * MIB, 60 * MIB, 61 * MIB, 62 * MIB, 60 * MIB, 61 * MIB],
                   {"anon": 100 * MIB})
    assert trend_of(cap).kind == "plateau"
    (limit,) = [x for x in advise(cap, analyse(cap)) if x.case == "more_limit"]
    assert "A limit of 132 MiB" in limit.text  # 100 MiB at the kill + 32 MiB headroom


def test_tmpfs_and_dirty_cache_need_no_more_limit():
    stat = {"anon": 10 * MIB, "file": 90 * MIB, "shmem": 50 * MIB, "file_dirty": 30 * MIB}
    cap = _capture([], stat)
    adv = advise(cap, analyse(cap))
    titles = {x.title: x for x in adv}
    assert titles["tmpfs / shared memory held the charge"].case == "no_more_limit"
    stuck = titles["Page cache that reclaim could not free"]
    assert "30.0 MiB dirty" in stuck.text  # the page's one format (units.fmt_bytes)
    assert trend_of(cap).kind == "unknown"


def test_a_global_oom_gets_no_limit_advice():
    cap = _capture([], {"anon": 10 * MIB})
    cap.cgroup.constraint = "CONSTRAINT_NONE"
    (only,) = advise(cap, analyse(cap))
    assert only.case == "context" and "host" in only.title


def test_a_global_oom_tells_what_the_page_allocator_retried():
    cap = _capture([10 * MIB] * 3, {"anon": 10 * MIB})
    cap.cgroup.constraint = "CONSTRAINT_NONE"
    last = cap.timelines[0].points[-1]
    last.alloc_retry_checks, last.alloc_no_progress_max, last.compact_retries = 120, 16, 3
    t = trend_of(cap)
    assert t.kind == "unknown" and t.alloc_retry_checks == 120  # too short for a trend, not for the counters
    host, retried = advise(cap, analyse(cap), t)
    assert host.title == "The host ran out, not a cgroup"
    assert retried.case == "context" and "120 times" in retried.text and "up to 16 rounds" in retried.text
    assert "compaction retries 3" in [str(e) for e in retried.evidence]


def test_reclaim_read_at_the_kill_wins_over_the_last_reading():
    # Measured on this host: the last reading, 2 ms before the kill, had 55 reclaim runs; read at
    # the kill there were 93, 37 of them empty: the failing rounds of the last moments.
    from oomscope.model import Capture, Reclaim

    cap = _capture([10 * MIB] * 3, {"anon": 10 * MIB})
    last = cap.timelines[0].points[-1]
    last.reclaim_runs, last.reclaim_empty_runs = 55, 0
    assert trend_of(cap).reclaim_runs == 55  # an older capture, without the figures at the kill
    cap.timelines[0].reclaim_at_kill = Reclaim(runs=93, empty_runs=37, pages=14336, ms=7.31, read_ms_after_kill=55.3)
    t = trend_of(cap)
    assert (t.reclaim_runs, t.reclaim_empty_runs) == (93, 37)
    (reclaim,) = [a for a in advise(cap, analyse(cap), t) if a.title == "Reclaim before the kill"]
    assert "93 times" in reclaim.text and "37 of those freed nothing" in reclaim.text
    again = Capture.from_json(cap.to_json())  # kept in the capture, read back
    assert again.timelines[0].reclaim_at_kill == cap.timelines[0].reclaim_at_kill



def test_without_a_timeline_no_limit_is_recommended_as_if_growth_had_stopped():
    cap = _capture([], {"anon": 100 * MIB})
    adv = advise(cap, analyse(cap))
    assert "more_limit" not in {x.case for x in adv}
    (why,) = [x for x in adv if x.title.startswith("A peak or a leak")]
    assert "MiB would have held" not in why.text and "steady rise is a leak" in why.text


def test_fix_the_items_above_only_when_there_are_items_above():
    flat = [60 * MIB, 61 * MIB, 60 * MIB, 62 * MIB, 61 * MIB, 60 * MIB, 61 * MIB, 62 * MIB, 60 * MIB, 61 * MIB]
    cap = _capture(flat, {"anon": 100 * MIB})
    (limit,) = [x for x in advise(cap, analyse(cap)) if x.case == "more_limit"]
    assert "items above" not in limit.text
    cap = _capture(flat, {"anon": 40 * MIB, "shmem": 60 * MIB, "file": 60 * MIB})
    adv = advise(cap, analyse(cap))
    (limit,) = [x for x in adv if x.case == "more_limit"]
    assert adv.index(limit) > 0 and "items above" in limit.text


def test_thp_on_a_madvise_host_is_not_told_to_switch_to_madvise():
    cap = _capture([], {"anon": 100 * MIB, "anon_thp": 90 * MIB})
    cap.host.thp_enabled = "madvise"
    (thp,) = [x for x in advise(cap, analyse(cap)) if x.title == "Transparent huge pages"]
    assert "to 'madvise'" not in thp.text and "asked for them" in thp.text


PLATEAU = [60 * MIB, 61 * MIB, 60 * MIB, 62 * MIB, 61 * MIB, 60 * MIB, 61 * MIB, 62 * MIB, 60 * MIB, 61 * MIB]
LEAK = [10 * MIB + i * 9 * MIB for i in range(11)]


def test_no_swap_is_said_only_where_swap_would_have_helped():
    cap = _capture(PLATEAU, {"anon": 10 * MIB, "file": 90 * MIB})  # page cache: swap changes nothing
    assert "No swap" not in {x.title for x in advise(cap, analyse(cap))}
    cap = _capture(PLATEAU, {"anon": 100 * MIB})  # a peak of anonymous memory: cold pages could go
    (swap,) = [x for x in advise(cap, analyse(cap)) if x.title == "No swap"]
    assert "anonymous memory could" in swap.text and "tmpfs" not in swap.text  # only what was there
    cap = _capture(PLATEAU, {"anon": 100 * MIB}, swap=None)  # not known: nothing said as if it were 0
    assert "No swap" not in {x.title for x in advise(cap, analyse(cap))}
    # a leak fills swap too (it only delays the kill); without a timeline the peak is not known
    for series in (LEAK, []):
        cap = _capture(series, {"anon": 100 * MIB})
        assert not {"No swap", "Swap: unknown"} & {x.title for x in advise(cap, analyse(cap))}


def test_thp_is_context_since_the_capture_cannot_show_untouched_bytes():
    # the capture has the huge pages, not how much of each the program used: no cause, no fix
    cap = _capture([], {"anon": 100 * MIB, "anon_thp": 90 * MIB})
    (thp,) = [x for x in advise(cap, analyse(cap)) if x.title == "Transparent huge pages"]
    assert thp.case == "context" and "not in the capture" in thp.text
    assert not [x for x in advise(cap, analyse(cap)) if x.case == "no_more_limit"]


def test_the_helper_is_named():
    from oomscope.model import Task

    cap = _capture([], {"anon": 100 * MIB})
    cap.victim.anon_rss_bytes = 40 * MIB
    cap.tasks = [Task(pid=1, comm="app", rss_bytes=40 * MIB), Task(pid=7, comm="log-shipper", rss_bytes=55 * MIB)]
    (others,) = [x for x in advise(cap, analyse(cap)) if x.title == "Other processes in the cgroup took a share"]
    assert "pid 7 (log-shipper" in others.text


def _timed_capture(points):
    """points: (seconds before the kill, anon bytes), oldest first."""
    pts = [TimelinePoint(t_ms=-1000.0 * s, anon_bytes=a, usage_bytes=a, limit_bytes=300 * MIB) for s, a in points]
    return Capture(kill_id="k", victim=Victim(pid=1, comm="app", anon_rss_bytes=300 * MIB),
                   cgroup=CgroupInfo(version=2, oom_memcg="/app", task_memcg="/app", constraint="CONSTRAINT_MEMCG"),
                   at_kill=CgroupState(source="kernel_report", usage_bytes=300 * MIB, limit_bytes=300 * MIB,
                                  memory_stat={"anon": 300 * MIB}),
                   host=Host(cgroup_version=2, thp_enabled="always", swap_total_bytes=0),
                   timelines=[Timeline("/app", pts)])


def test_the_fit_weighs_each_point_by_the_time_it_stands_for_not_by_count():
    # What the timeline's retention keeps of a 6-hour leak (record/timeline.py): one point per 15
    # minutes, then one per 2 minutes, then every second of the last 10 minutes, where a garbage
    # collector saws 40 MiB up and down around the rising line. Counted point by point, the 600
    # points of those 10 minutes outvote the hours (R² 0.53: a plateau); weighed by the time each
    # stands for, the 6 hours' steady rise is what the fit sees.

    def leak(s):
        return 50 * MIB + (6 * 3600 - s) * (200 * MIB) // (6 * 3600)

    older = [(s, leak(s)) for s in range(6 * 3600, 600, -1) if s % (900 if s > 7200 else 120) == 0]
    recent = [(s, leak(s) + 40 * MIB * (s % 60) // 30 - 40 * MIB) for s in range(600, 0, -1)]
    t = trend_of(_timed_capture(older + recent))
    assert t.kind == "leak", t.text
    assert t.r2 > 0.95
    assert 0.5 * MIB <= t.anon_rate_bytes_per_min <= 0.6 * MIB  # 200 MiB in 6 hours: 0.56 MiB/min
    # evenly spaced points weigh alike (the two ends half): close to an unweighted fit
    import numpy as np
    pts = [(600 - s, leak(600 - s) + (s % 7) * 4 * MIB) for s in range(0, 600, 5)]
    even = trend_of(_timed_capture(pts))
    r = np.corrcoef([-s for s, _ in pts], [a for _, a in pts])[0, 1]
    assert abs(even.r2 - r * r) < 0.01, (even.r2, r * r)


def test_a_leak_kept_by_the_retention_is_judged_by_its_fitted_rise_not_its_first_reading():
    # Fed through the real retention: the oldest point kept is the highest reading of its
    # 15-minute stretch (the top of the saw-tooth), the last one a raw reading. First against last
    # said 38 MiB of a 58 MiB rise, under a quarter of the last reading (a plateau); the fitted line says the rise.
    from oomscope.record.timeline import FIELDS, TimelineRing

    ring = TimelineRing()
    for s in range(6 * 3600, -1, -1):
        anon = 100 * MIB + (6 * 3600 - s) * (60 * MIB) // (6 * 3600) + 20 * MIB * (s % 300) // 300
        v = {f: None for f in FIELDS}
        v.update(usage_bytes=anon, limit_bytes=300 * MIB, anon_bytes=anon)
        ring.add(-s * 1_000_000_000, v)
    cap = _timed_capture([])
    cap.timelines[0].points = ring.points(0)
    t = trend_of(cap)
    assert t.kind == "leak", t.text
    assert 45 * MIB <= t.anon_end_bytes - t.anon_start_bytes <= 65 * MIB  # 58 MiB in the 5.8 h kept
    assert "rose steadily for 5.8 h: a straight line fitted to its readings" in t.text


def test_a_fitted_rise_is_said_as_fitted_never_beyond_the_limit_and_projected_only_within_its_span():
    # issue 26: thp "rose to 64.5 MiB" with a 64.0 MiB limit; "a limit 100 MiB higher buys about
    # 22 s" from a 14 s fill
    import os

    from oomscope.analysis.result import analyse_kill
    from oomscope.model import Capture

    path = os.path.join(os.path.dirname(__file__), "..", "..", "reports", "thp", "capture.json")
    with open(path, encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    result = analyse_kill(cap)
    t = result.trend
    assert t.kind == "leak" and t.anon_end_bytes <= cap.at_kill.limit_bytes
    assert "a straight line fitted to its readings" in t.text and "fitted values" in t.text
    assert "64.5 MiB" not in t.text
    leak = next(x for x in result.advice if x.case == "delay_only")
    assert "buys about" not in leak.text and "cannot be said from a 14 s timeline" in leak.text


def test_page_cache_stuck_under_writeback_is_said_even_as_a_small_part_of_the_charge():
    """reports/k8s-pagecache (recorded on 7.3 in a VM: a volume whose writes stall): 20.6 MiB of page
    cache of a 128 MiB charge (16%), all of it under writeback. Below the 20% at which page cache is
    looked at, the advice said nothing of it; what could not be written back is said from 10%."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "reports", "k8s-pagecache", "capture.json"), encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    advice = advise(cap, analyse(cap))
    stuck = [a for a in advice if a.title == "Page cache that reclaim could not free"]
    assert stuck and "under writeback" in stuck[0].text, [a.title for a in advice]
    # a leak is still named beside it: the anonymous memory rose
    assert stuck[0].case == "no_more_limit" and any(a.case == "delay_only" for a in advice)


def test_a_timeline_out_of_order_is_fitted_in_time_order():
    """A capture is input: its points out of order (a hand-edited or damaged file; found by the
    capture fuzzer) are fitted in time order, not with negative weights (numpy raised)."""
    import random

    cap = _capture([10 * MIB + i * 18 * MIB for i in range(11)], {"anon": 200 * MIB}, usage=200 * MIB, limit=200 * MIB)
    ordered = trend_of(cap)
    random.Random(7).shuffle(cap.timelines[0].points)
    shuffled = trend_of(cap)
    assert shuffled.kind == ordered.kind == "leak" and shuffled.anon_rate_bytes_per_min == ordered.anon_rate_bytes_per_min


def _numpy_fit(t, y, w):
    """analysis/advice.py's fit as it was with numpy (before issue 29's worker dropped it)."""
    import numpy as np

    t, y, w = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.int64), np.asarray(w, dtype=np.float64)
    if float(w.sum()) <= 0:
        return 0.0, 0.0, float(y[0]), float(y[-1])
    tm, ym = float(np.average(t, weights=w)), float(np.average(y, weights=w))
    (var_t, cov), (_, var_y) = np.cov(t, y, aweights=w)
    if var_t <= 0:
        return 0.0, 0.0, ym, ym
    slope = float(cov / var_t)
    r2 = float(cov * cov / (var_t * var_y)) if var_y > 0 else 0.0
    return slope, r2, ym + slope * (float(t[0]) - tm), ym + slope * (float(t[-1]) - tm)


def test_the_fit_without_numpy_gives_numpys_figures_on_every_capture_with_a_timeline(monkeypatch):
    # Every capture of the repository with a timeline (real kills: reports/, tests/fixtures/), and
    # this file's synthetic ones: the trend's kind, text and bytes equal to what numpy's fit gave,
    # its rate and R² within a few units of the last place (fsum against numpy's pairwise sums)
    import glob
    import os
    from oomscope.analysis import advice

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    caps = [Capture.from_json(open(p).read()) for p in sorted(glob.glob(os.path.join(root, "reports", "*", "capture.json")) +
                                                                glob.glob(os.path.join(root, "tests", "fixtures", "captures", "*.json")))]
    caps = [c for c in caps if c.timelines and c.timelines[0].points]
    caps += [_capture([10 * MIB + i * 18 * MIB for i in range(11)], {"anon": 200 * MIB}),
             _capture([50 * MIB] * 6 + [90 * MIB], {"anon": 90 * MIB}),
             _capture([50 * MIB + (i % 3) * MIB for i in range(12)], {"anon": 60 * MIB})]
    assert len(caps) >= 15
    kinds = set()
    for cap in caps:
        ours = trend_of(cap)
        with monkeypatch.context() as m:
            m.setattr(advice, "_weighted_fit", _numpy_fit)
            theirs = trend_of(cap)
        kinds.add(ours.kind)
        assert (ours.kind, ours.text, ours.anon_start_bytes, ours.anon_end_bytes, ours.minutes) == \
            (theirs.kind, theirs.text, theirs.anon_start_bytes, theirs.anon_end_bytes, theirs.minutes), cap.kill_id
        for a, b in ((ours.anon_rate_bytes_per_min, theirs.anon_rate_bytes_per_min), (ours.r2, theirs.r2)):
            assert (a is None and b is None) or abs(a - b) <= 1e-12 * max(abs(b), 1.0), (cap.kill_id, a, b)
    assert {"leak", "plateau", "spike"} <= kinds, kinds


def test_a_post_mortem_imports_no_numpy():
    # the post-mortem worker's memory and start (issue 29): analysis and page of a kill with a
    # timeline fitted, in a fresh interpreter, without numpy (nor pandas) loaded
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys\n"
            "from oomscope.model import Capture\n"
            "from oomscope.analysis.result import analyse_kill\n"
            "from oomscope.report.render import render_html\n"
            "cap = Capture.from_json(open(sys.argv[1]).read())\n"
            "a = analyse_kill(cap)\n"
            "assert a.trend.kind == 'leak', a.trend.kind\n"
            "assert 'rose steadily' in render_html(cap, a)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas')))\n")
    out = subprocess.run([sys.executable, "-c", code, os.path.join(root, "reports", "anon", "capture.json")], cwd=root,
                         env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
