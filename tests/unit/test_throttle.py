"""memory.high throttling episodes (issue 28): the detector, the capture, its verdict and page."""

import datetime as dt

from oomscope.analysis.result import analyse_kill
from oomscope.capture.throttle import build_throttle_capture
from oomscope.layouts import ReclaimStats
from oomscope.model import Capture, CgroupState, Host, Source, Task
from oomscope.record.announce import kill_line
from oomscope.record.outputs import Written
from oomscope.record.throttle import ThrottleDetector, ThrottleReading

S = 1_000_000_000
MIB = 1 << 20


def reading(t_s, high, some_s, usage=90 * MIB):
    return ThrottleReading(int(t_s * S), high, 100 * MIB, some_s * 1e6, some_s * 0.5e6, usage, 30.0, 10.0)


def run(det, points):
    ended, added = [], 0.0
    for p in points:
        e, a = det.feed("/app", reading(*p))
        ended += e
        added += a
    return ended, added


def test_an_episode_begins_with_high_events_and_stall_and_ends_after_quiet():
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    # 1 s apart: 4 s throttled at 30% of the time, then quiet (high stops rising, stall stops)
    pts = [(0, 0, 0.0), (1, 5, 0.3), (2, 10, 0.6), (3, 15, 0.9), (4, 20, 1.2)] + [(4 + i, 20, 1.2) for i in range(1, 8)]
    ended, added = run(det, pts)
    (ep,) = ended
    assert (ep.start_ns, ep.end_ns, ep.high_events) == (0, 4 * S, 20)
    assert abs(ep.some_stall_us - 1.2e6) < 1 and abs(ep.share - 0.3) < 1e-9 and abs(added - 1.2) < 1e-9
    assert ep.usage_peak_bytes == 90 * MIB and ep.some_avg10_peak == 30.0


def test_a_memory_high_lifted_before_the_last_reading_keeps_the_limit_that_throttled():
    """7.x VM run: the workload's last throttled second was read after memory.high went back to max
    (None): the episode said memory.high unknown."""
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    pts = [reading(0, 0, 0.0), reading(1, 5, 0.5), reading(2, 10, 1.0)]
    lifted = [ThrottleReading(int(t * S), 12, None, 1.3e6, 0.65e6, 10 * MIB) for t in range(3, 12)]
    ended = []
    for r in pts + lifted:
        ended += det.feed("/app", r)[0]
    (ep,) = ended
    assert ep.memory_high_bytes == 100 * MIB and ep.high_events == 12 and abs(ep.some_stall_us - 1.3e6) < 1


def test_the_stall_counts_from_the_reading_before_memory_high_was_set_and_a_parent_gets_no_episode():
    """VM runs: fed only once memory.high was set, the first reading after it was the baseline and the
    stall before it was lost (-25% on 6.12). A parent with no memory.high sees its child's events
    (memory.events is hierarchical) and starts no episode."""
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    before = ThrottleReading(0, 0, None, 0.0, 0.0, 66 * MIB)  # memory.high not yet set
    ended = det.feed("/app", before)[0]
    for r in [reading(1, 5, 0.9), reading(2, 10, 1.8), reading(3, 12, 2.4)] + [reading(t, 12, 2.4) for t in range(4, 12)]:
        ended += det.feed("/app", r)[0]
    (ep,) = ended
    assert abs(ep.some_stall_us - 2.4e6) < 1 and ep.start_ns == 0 and ep.memory_high_bytes == 100 * MIB
    parent = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    got = []
    for t in range(12):
        got += parent.feed("/", ThrottleReading(t * S, 5 * t, None, 0.5e6 * t, 0.25e6 * t, 80 * MIB))[0]
    assert got == [] and parent.active == []


def test_an_old_baseline_is_not_the_start_of_the_episode():
    """6.12 VM run: the reading before memory.high was set was 20 s old; the 4 s episode said 24.9 s."""
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    ended = det.feed("/app", ThrottleReading(0, 0, None, 0.0, 0.0, 30 * MIB))[0]
    for r in [reading(20, 5, 0.9), reading(21, 10, 1.8), reading(22, 12, 2.4)] + [reading(t, 12, 2.4) for t in range(23, 31)]:
        ended += det.feed("/app", r)[0]
    (ep,) = ended
    assert ep.start_ns == int(19.1 * S) and ep.end_ns == 22 * S and abs(ep.some_stall_us - 2.4e6) < 1


def test_a_late_reading_of_the_stalls_tail_is_not_the_end_of_the_episode():
    """6.12 VM run: the cgroup was read again 20 s after its last throttled reading (idle, read every
    10 s), with a little more stall: the ~4 s episode said 23.6 s. The tail ends no later than its stall after the last reading."""
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    ended, _ = run(det, [(0, 0, 0.0), (1, 5, 0.3), (2, 10, 0.6), (3, 15, 0.9), (23, 15, 0.95), (33, 15, 0.95)])
    (ep,) = ended
    assert ep.start_ns == 0 and ep.end_ns == int(3.05 * S) and abs(ep.some_stall_us - 0.95e6) < 1


def test_routine_reclaim_below_the_share_and_stall_without_high_events_are_no_episode():
    det = ThrottleDetector(share=0.10)
    assert run(det, [(i, i * 3, i * 0.05) for i in range(20)] + [(20 + i, 57, 0.95) for i in range(10)]) == ([], 0.0)
    det = ThrottleDetector(share=0.10)  # stall (host pressure, a swap-in) with no memory.high hit
    assert run(det, [(i, 0, i * 0.5) for i in range(20)]) == ([], 0.0)


def test_a_short_burst_is_not_reported_and_a_reset_cgroup_ends_its_episode():
    det = ThrottleDetector(share=0.10, min_s=2.0, quiet_s=5.0)
    assert run(det, [(0, 0, 0.0), (1, 5, 0.5)] + [(1 + i, 5, 0.5) for i in range(1, 8)])[0] == []
    det = ThrottleDetector(share=0.10, min_s=2.0)
    ended, _ = run(det, [(0, 0, 0.0), (1, 5, 0.5), (2, 10, 1.0), (3, 15, 1.5), (4, 0, 0.0)])  # counters restarted
    assert len(ended) == 1 and ended[0].end_ns == 3 * S


def test_flush_and_a_long_episode_are_cut():
    det = ThrottleDetector(share=0.10, max_s=10.0)
    ended, _ = run(det, [(i, i, i * 0.5) for i in range(13)])
    assert len(ended) == 1 and ended[0].duration_s == 10.0
    assert len(det.flush()) == 1  # the rest, 2 s, reported at the end of record


def _capture():
    det = ThrottleDetector()
    ended, _ = run(det, [(0, 0, 0.0), (1, 5, 0.4), (2, 10, 0.8), (3, 15, 1.2)] + [(3 + i, 15, 1.2) for i in range(1, 7)])
    (ep,) = ended
    state = CgroupState(source=Source.LAST_SAMPLE, usage_bytes=99 * MIB, limit_bytes=None, memory_high_bytes=100 * MIB,
                        memory_stat={"anon": 90 * MIB, "file": 9 * MIB}, cgroup="/app")
    tasks = [Task(pid=7, comm="<b>srv</b>", rss_bytes=90 * MIB), Task(pid=8, comm="helper", rss_bytes=MIB)]
    reclaim = {7: ReclaimStats(memcg_runs=40, memcg_ns=700_000_000, memcg_pages=9000), 8: ReclaimStats()}
    return build_throttle_capture(ep, 0.10, 2, Host(page_size_bytes=4096), 1_700_000_000 * S, state, [], tasks, reclaim,
                                  dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc))


def test_the_throttle_capture_round_trips_and_names_the_stalled_task():
    cap = _capture()
    assert cap.kind == "throttle" and "-throttle-" in cap.kill_id and cap.victim.pid == 7
    t = cap.throttle
    assert (t.duration_s, t.high_events, t.stall_s, t.share) == (3.0, 15, 1.2, 0.4)
    assert [(x.pid, x.reclaim_ms, x.reclaim_runs) for x in t.tasks] == [(7, 700.0, 40)]
    assert Capture.from_json(cap.to_json()).throttle == t
    old = cap.to_dict()
    del old["kind"], old["throttle"]
    assert Capture.from_dict(old).kind == "kill"


def test_the_verdict_page_and_log_line_say_throttled_not_killed():
    cap = _capture()
    result = analyse_kill(cap)
    said = " ".join(result.verdict.sentences)
    assert result.verdict.kind == "throttle" and said.startswith("Throttled, not killed: /app was over its memory.high (100.0 MiB)")
    assert "pid 7 (<b>srv</b>) 0.70 s in 40 runs" in said and "stalled on memory 1.2 s" in said
    assert result.limit_hit.scope == "memory_high"
    from oomscope.report.render import render_html

    html = render_html(cap, result)
    assert "Throttled, not killed" in html and "<b>srv</b>" not in html and "&lt;b&gt;srv&lt;/b&gt;" in html
    line = kill_line(cap, Written("/o/x/capture.json", html_path="/o/x/postmortem.html"), "anon", "json", cause="c")
    assert '"event": "memory_high_throttling"' in line and '"kind": "throttle_episode"' in line
    text = kill_line(cap, Written("/o/x/capture.json"), "anon", "text", cause="c")
    assert " throttled memcg=/app duration=3.0s stalled=1.2s (40%)" in text


def test_the_index_lists_kills_user_space_kills_and_throttle_episodes_apart():
    from oomscope.model import Killer, Victim
    from oomscope.report.index import render_index, row_for

    kernel = Capture(kill_id="k1", victim=Victim(pid=1, comm="kernel-victim"))
    user = Capture(kill_id="u1", victim=Victim(pid=2, comm="user-victim"),
                   killer=Killer(kind="userspace", comm="earlyoom", pid=9, known_as="earlyoom", signal="SIGTERM"))
    rows = [row_for(c) for c in (kernel, user, _capture())]
    assert [r.kind for r in rows] == ["kernel", "userspace", "throttle"]
    html = render_index(rows)
    main, rest = html.split("<h2>Killed from user space (1)</h2>")
    user_part, throttle_part = rest.split("<h2>Throttled at memory.high (1)</h2>")
    assert "kernel-victim" in main and "user-victim" not in main and "srv" not in main
    assert "user-victim" in user_part and "earlyoom (pid 9), SIGTERM" in user_part
    assert "3 s, stalled 40%" in throttle_part


def test_the_page_headline_says_throttled_or_who_killed():
    from oomscope.model import Killer
    from oomscope.report.view import build_view

    assert build_view(_capture()).headline == "/app was throttled at memory.high for 3 s"
    cap = _capture()
    cap.kind, cap.throttle = "kill", None
    cap.killer = Killer(kind="userspace", comm="earlyoom", pid=9, known_as="earlyoom")
    assert build_view(cap).headline == "pid 7 (<b>srv</b>) was killed from user space by earlyoom in /app"
