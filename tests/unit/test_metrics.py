"""The Prometheus metrics' series: what each says, and that their number stays bounded."""

import math
import os

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from oomscope import metrics as metrics_mod
from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.metrics import MAX_LAST_KILLS, MAX_NEAR_LIMIT, Metrics
from oomscope.model import CgroupState
from oomscope.record.announce import Announcer
from oomscope.record.outputs import Written
from oomscope.record.readings import NearLimit, Readings
from oomscope.record.sampler import Sample

from .helpers import capture_from_fixture


def _series(m, name):
    text = generate_latest(m.registry).decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]


def _readings(tmp_path):
    with open(os.path.join(tmp_path, "memory.max"), "w") as f:
        f.write("max\n")
    return Readings(MemoryHierarchy(str(tmp_path), 2), ring_ns=10_000_000_000, timeline_points=10,
                    timeline_spacing_s=1.0, pid_retention_ns=60_000_000_000, max_pids=100)


def _sample(t_s, usage, limit):
    return Sample(int(t_s * 1e9), CgroupState(source="last_sample", usage_bytes=usage, limit_bytes=limit), ())


def test_near_limit_is_the_fullest_above_80_percent_with_their_rate(tmp_path):
    r = _readings(tmp_path)
    mib = 1 << 20
    r.set_watched({"/a": 1, "/b": 2, "/c": 3, "/free": 4})
    r.add_pass({"/a": _sample(0, 85 * mib, 100 * mib), "/b": _sample(0, 95 * mib, 100 * mib),
                "/c": _sample(0, 70 * mib, 100 * mib), "/free": _sample(0, 90 * mib, None)}, {}, {})
    r.add_pass({"/a": _sample(5, 90 * mib, 100 * mib), "/b": _sample(5, 95 * mib, 100 * mib)}, {}, {})
    a, b = sorted(r.near_limit(10), key=lambda n: n.cgroup)
    assert [n.cgroup for n in r.near_limit(10)] == ["/b", "/a"]  # fullest first; no limit, or below 80%: absent
    assert a.rate_bytes_per_s == mib and a.seconds_to_limit() == 10.0  # 10 MiB left at 1 MiB/s
    assert b.rate_bytes_per_s == 0 and math.isinf(b.seconds_to_limit())  # not growing: never
    assert [n.cgroup for n in r.near_limit(1)] == ["/b"]  # bounded
    r.add_pass({"/a": _sample(6, 50 * mib, 100 * mib)}, {}, {})  # dropped below 80%
    assert [n.cgroup for n in r.near_limit(10)] == ["/b"]
    r.set_watched({"/a": 1}, vanished=["/b", "/c", "/free"])  # vanished: gone at once
    assert r.near_limit(10) == []


def test_headroom_series_are_bounded_and_removed_when_a_cgroup_leaves():
    m = Metrics()
    rows = [NearLimit(f"/cg{i}", 90 + i % 10, 100, 1.0) for i in range(MAX_NEAR_LIMIT)]
    m.near_limit(rows)
    assert len(_series(m, "oomscope_cgroup_headroom_bytes")) == MAX_NEAR_LIMIT
    (h,) = [s for s in _series(m, "oomscope_cgroup_headroom_bytes") if s.labels["cgroup"] == "/cg3"]
    assert h.value == 7
    (t,) = [s for s in _series(m, "oomscope_cgroup_seconds_to_limit") if s.labels["cgroup"] == "/cg3"]
    assert t.value == 7
    m.near_limit(rows[:2])
    for name in ("oomscope_cgroup_headroom_bytes", "oomscope_cgroup_limit_bytes", "oomscope_cgroup_seconds_to_limit"):
        assert {s.labels["cgroup"] for s in _series(m, name)} == {"/cg0", "/cg1"}


def test_announcer_says_the_headroom_once_a_second_from_the_store():
    m = Metrics()
    asked = []

    def near_limit(n):
        asked.append(n)
        return [NearLimit("/x", 95, 100, None)]

    a = Announcer(open(os.devnull, "w"), open(os.devnull, "w"), metrics=m)
    for now in (1_000_000_000, 1_100_000_000, 2_000_000_000):
        a.health(now_ns=now, sampler_errors=0, events_lost=0, watched=1, losses={},
                 kmsg_error=None, near_limit=near_limit)
    assert asked == [MAX_NEAR_LIMIT, MAX_NEAR_LIMIT]
    (t,) = _series(m, "oomscope_cgroup_seconds_to_limit")
    assert math.isinf(t.value)


def test_last_kill_is_one_series_per_cgroup_with_the_postmortem(monkeypatch):
    cap, _rep = capture_from_fixture("v1-6.18-anon.kmsg")
    m = Metrics()
    a = Announcer(open(os.devnull, "w"), open(os.devnull, "w"), metrics=m)

    a.kill(cap, Written("/out/k1/capture.json", "/out/k1/postmortem.html"), "anon")
    a.kill(cap, Written("/out/k2/capture.json", "/out/k2/postmortem.html"), "anon")
    (s,) = _series(m, "oomscope_last_oom_kill_timestamp_seconds")  # the second kill replaced the first
    assert s.labels["postmortem"] == "/out/k2/postmortem.html" and s.labels["category"] == "anon"
    assert s.labels["cgroup"] == (cap.cgroup.task_memcg or cap.cgroup.oom_memcg)
    assert abs(s.value - metrics_mod._unix_time(cap.times.kill_wall)) < 1e-3 and s.value > 1.7e9
    (k,) = _series(m, "oomscope_oom_kills_total")
    assert k.value == 2
    monkeypatch.setattr(metrics_mod, "MAX_LAST_KILLS", 3)
    for i in range(5):
        cap.cgroup.task_memcg = f"/cg{i}"
        m.kill(cap, "anon", f"/out/cg{i}/postmortem.html")
    assert {s.labels["cgroup"] for s in _series(m, "oomscope_last_oom_kill_timestamp_seconds")} == {"/cg2", "/cg3", "/cg4"}
    assert MAX_LAST_KILLS == 200
