"""record/budget.py: one workload's storm gets a burst of post-mortems, then one per interval; the
kills beyond are counted and said on its next post-mortem (a fake clock: nothing sleeps)."""

import io
import json

from oomscope.model import CgroupInfo, NotWritten, Workload
from oomscope.record.announce import Announcer, kill_line
from oomscope.record.budget import Budget, workload_key
from oomscope.record.outputs import Written
from oomscope.report.render import render_html
from oomscope.report.view import build_view

from .helpers import capture_from_fixture


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _wall(i):
    return f"2026-11-25T07:00:{i:02d}.000+00:00"


def test_a_storm_gets_its_burst_then_one_per_interval_and_the_rest_is_counted():
    clock = Clock()
    budget = Budget(burst=3, every_s=10, clock=clock)
    got = [budget.admit("cgroup /a", _wall(i)) for i in range(10)]  # ten kills at once
    assert [a.write for a in got] == [True] * 3 + [False] * 7
    assert [a.starts_drop for a in got] == [False] * 3 + [True] + [False] * 6  # said once, not per kill
    assert all(a.not_written is None for a in got[:3])
    clock.t += 9.9
    assert not budget.admit("cgroup /a", _wall(20)).write  # not yet a token
    clock.t += 0.1
    kept = budget.admit("cgroup /a", _wall(30))
    assert kept.write
    assert kept.not_written == NotWritten(count=8, first_wall=_wall(3), last_wall=_wall(20),
                                          budget="3 post-mortems in a row, then one every 10 s")
    clock.t += 10
    again = budget.admit("cgroup /a", _wall(40))
    assert again.write and again.not_written is None  # the count is said once
    assert budget.pending() == []


def test_another_workload_is_written_while_one_storms():
    clock = Clock()
    budget = Budget(burst=2, every_s=60, clock=clock)
    for i in range(100):
        budget.admit("pod A", _wall(i % 60))
        clock.t += 1 / 60  # 60 kills a second
    assert budget.admit("pod B", _wall(59)).write
    [(key, nw)] = budget.pending()
    assert key == "pod A" and nw.count == 98


def test_the_bucket_refills_up_to_the_burst_only():
    clock = Clock()
    budget = Budget(burst=2, every_s=10, clock=clock)
    budget.admit("w", None)
    clock.t += 3600  # an hour of quiet: two tokens, not 360
    assert [budget.admit("w", None).write for _ in range(3)] == [True, True, False]


def test_no_limit_when_every_or_burst_is_zero():
    for b in (Budget(burst=10, every_s=0), Budget(burst=0, every_s=60)):
        assert all(b.admit("w", None).write for _ in range(1000))
        assert b.words() == "no limit"


def test_a_forgotten_workload_with_kills_unsaid_is_handed_back():
    budget = Budget(burst=1, every_s=60, clock=Clock(), max_workloads=2)
    budget.admit("a", _wall(0))
    budget.admit("a", _wall(1))  # not written
    budget.admit("b", _wall(2))
    budget.admit("c", _wall(3))  # "a" is forgotten
    [(key, nw)] = budget.forgotten
    assert key == "a" and nw.count == 1 and nw.first_wall == _wall(1)


def test_a_refilled_bucket_is_forgotten_and_every_answer_stays_the_same():
    """A bucket full again with no kill unsaid admits as a new one: forgotten (the soak's new pod
    per kill kept 4,096 buckets, ~1.3 MiB, filling for hours). The answers, and what is said, equal
    those of a budget that forgets nothing, over a mix of storms, returning and one-kill workloads."""
    import random

    rnd = random.Random(7)
    clock = Clock()
    forgetting = Budget(burst=3, every_s=10, clock=clock)
    keeping = Budget(burst=3, every_s=10, clock=clock, max_workloads=10**9)
    keeping._forget_beyond = lambda: None  # the reference: every bucket kept
    for i in range(20_000):
        clock.t += rnd.choice((0.0, 0.05, 0.5, 2.0, 7.0))
        key = rnd.choice([f"storm-{rnd.randrange(3)}", f"back-{rnd.randrange(40)}", f"new-{i}"])
        a, b = forgetting.admit(key, _wall(i % 60)), keeping.admit(key, _wall(i % 60))
        assert a == b, (i, key, a, b)
    assert forgetting.pending() == keeping.pending() and not forgetting.forgotten
    assert len(keeping._buckets) > 6000
    assert len(forgetting._buckets) < 200, len(forgetting._buckets)


def test_workload_key_is_what_stays_the_same_across_a_storm():
    cg = CgroupInfo(oom_memcg="/kubepods/pod1/c1", task_memcg="/kubepods/pod1/c1")
    k8s = Workload(kind="kubernetes", pod_uid="uid-1", container_id="c1")
    assert workload_key(k8s, cg) == workload_key(Workload(kind="kubernetes", pod_uid="uid-1", container_id="c2"), cg)
    assert workload_key(Workload(kind="docker", container_id="abc"), cg) == "container abc"
    assert workload_key(Workload(kind="systemd", unit="x.service"), cg) == "unit x.service"
    assert workload_key(Workload(), CgroupInfo(oom_memcg="/lim", task_memcg="/lim/child")) == "cgroup /lim"
    # a global OOM (no cgroup limit hit): the victim's own cgroup, not one bucket for the host
    assert workload_key(Workload(), CgroupInfo(oom_memcg="/", task_memcg="/a")) == "cgroup /a"
    assert workload_key(Workload(), CgroupInfo()) == "cgroup ?"


def _capture_with_not_written():
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.not_written = NotWritten(count=12, first_wall="2026-11-25T07:00:01.250+00:00",
                                 last_wall="2026-11-25T07:00:59.900+00:00",
                                 budget="10 post-mortems in a row, then one every 60 s")
    return cap


def test_the_next_post_mortem_says_how_many_were_not_written():
    cap = _capture_with_not_written()
    sentence = build_view(cap).not_written
    assert sentence.startswith("12 more kills of ")
    assert "between 2026-11-25 07:00:01 UTC and 2026-11-25 07:00:59 UTC" in sentence
    assert "exceeded the budget of 10 post-mortems in a row, then one every 60 s" in sentence
    html = render_html(cap)
    assert 'id="not-written"' in html and "12 more kills of " in html
    cap.not_written = None
    assert build_view(cap).not_written == "" and 'id="not-written"' not in render_html(cap)


def test_the_capture_keeps_the_count_and_the_kill_line_says_it():
    cap = _capture_with_not_written()
    again = type(cap).from_json(cap.to_json())
    assert again.not_written == cap.not_written
    w = Written("/out/k/capture.json")
    assert json.loads(kill_line(cap, w, "anon", "json"))["not_written"]["count"] == 12
    assert " not_written=12 " in kill_line(cap, w, "anon", "text")


def test_the_log_says_a_storm_once_and_what_was_left_unsaid():
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    err = io.StringIO()
    ann = Announcer(io.StringIO(), err)
    ann.not_written(cap, "cgroup /a", True, "10 post-mortems in a row, then one every 60 s")
    ann.not_written(cap, "cgroup /a", False, "10 post-mortems in a row, then one every 60 s")
    assert err.getvalue().count("counted, not written") == 1
    ann.not_written_left("cgroup /a", NotWritten(5, _wall(1), _wall(2), "b"))
    assert "cgroup /a: 5 kill(s) between" in err.getvalue()


def test_kills_not_written_are_counted_in_the_metrics():
    from oomscope.metrics import Metrics

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    m = Metrics()
    ann = Announcer(io.StringIO(), io.StringIO(), metrics=m)
    for i in range(3):
        ann.not_written(cap, "cgroup /a", i == 0, "b")
    assert m.registry.get_sample_value("oomscope_kills_not_written_total", {"reason": "rate"}) == 3
    kills = [s for metric in m.registry.collect() if metric.name == "oomscope_oom_kills" for s in metric.samples
             if s.name == "oomscope_oom_kills_total"]
    assert [(s.labels["category"], s.value) for s in kills] == [("not_written", 3)]
    assert m.registry.get_sample_value("oomscope_last_oom_kill_timestamp_seconds", {}) is None
