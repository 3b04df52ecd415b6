"""The timeline's retention by age (record/timeline.py): recent points all kept, older ones thinned
to the highest usage of each bucket, nothing past 12 hours, and a bound per cgroup."""

import math

from oomscope.record.timeline import FIELDS, TIERS, TimelineRing

S = 1_000_000_000
KILL = 0


def _values(usage, anon=None):
    v = {f: None for f in FIELDS}
    v.update(usage_bytes=usage, limit_bytes=512 << 20, anon_bytes=usage if anon is None else anon, psi_some_avg10=1.25)
    return v


def _fill(ring, seconds, every_s, usage=lambda t: 100 << 20, end_ns=0):
    start = end_ns - seconds * S
    t = start
    while t <= end_ns:
        ring.add(t, _values(usage(t)))
        t += every_s * S


def test_a_reading_a_second_for_13_hours_keeps_every_recent_point_and_thins_the_older_ones():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    _fill(ring, 13 * 3600, 1)
    pts = ring.points(KILL)
    ages = [-p.t_ms / 1000 for p in pts]
    assert ages == sorted(ages, reverse=True), "oldest first"
    recent = [a for a in ages if a < 600]
    assert len(recent) == 600  # every second of the last 10 minutes
    mid = [a for a in ages if 600 <= a < 7200]
    old = [a for a in ages if a >= 7200]
    assert 54 <= len(mid) <= 56, len(mid)  # one per 2 minutes
    assert 39 <= len(old) <= 41, len(old)  # one per 15 minutes
    assert max(ages) <= 12 * 3600
    assert max(ages) > 11.5 * 3600  # the 12 hours are there, not less
    assert len(ring) == len(pts) <= 600 + 56 + 41


def test_an_idle_cgroup_read_every_30_s_holds_about_117_points_at_most():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    _fill(ring, 24 * 3600, 30)
    assert len(ring) <= 20 + 56 + 41
    assert len(ring) >= 20 + 54 + 39


def test_a_thinned_stretch_keeps_its_highest_reading_whole():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    spike_at = -3 * 3600 * S  # three hours before the end: in the 15-minute tier

    def spike(t):
        return (400 << 20) if t == spike_at else (100 << 20)

    _fill(ring, 6 * 3600, 10, usage=spike)
    pts = ring.points(KILL)
    top = max(pts, key=lambda p: p.usage_bytes)
    assert top.usage_bytes == 400 << 20
    assert top.t_ms == spike_at / 1e6  # its own time
    assert top.anon_bytes == 400 << 20  # the same reading's other values, not a mix
    assert top.psi_some_avg10 == 1.25 and top.slab_bytes is None


def test_points_after_until_are_left_out_and_times_are_relative_to_the_kill():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    _fill(ring, 100, 1, end_ns=50 * S)
    pts = ring.points(kill_ns=10 * S, until_ns=10 * S)
    # readings every second from -50 s to 50 s; the kill at 10 s
    assert pts[-1].t_ms == 0.0
    assert pts[0].t_ms == -60_000.0
    assert len(pts) == 61


def test_points_closer_than_the_spacing_are_not_kept_unless_forced():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    assert ring.add(0, _values(1))
    assert not ring.add(S // 2, _values(2))
    assert ring.add(S // 2 + 1, _values(3), force=True)
    assert [p.usage_bytes for p in ring.points(KILL)] == [1, 3]


def test_an_unknown_usage_never_wins_a_bucket_over_a_known_one():
    ring = TimelineRing(capacity=1, spacing_s=1.0, tiers=((1, 3600), (10 ** 6, None)))
    ring.add(0, _values(5 << 20))
    v = _values(None)
    ring.add(10 * S, v)  # pushes the first point into the hour-wide bucket
    ring.add(20 * S, _values(6 << 20))  # pushes the unknown one into the same bucket
    first = ring.points(KILL)[0]
    assert first.usage_bytes == 5 << 20
    assert not math.isnan(first.limit_bytes)


def test_the_default_tiers_are_the_ones_the_docstring_states():
    assert TIERS == ((600, 120), (2 * 3600, 900), (12 * 3600, None))


def test_a_point_older_than_the_last_is_refused_even_when_forced():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    assert ring.add(100 * S, _values(1))
    assert not ring.add(50 * S, _values(2), force=True)
    assert ring.add(101 * S, _values(3))
    assert [p.t_ms for p in ring.points(kill_ns=101 * S)] == [-1000.0, 0.0]


def test_an_idle_cgroup_read_exactly_every_30_s_holds_20_recent_points_not_21():
    ring = TimelineRing(capacity=600, spacing_s=1.0)
    _fill(ring, 14 * 3600, 30)
    # a point exactly 10 minutes old has moved on: the recent tier is the last 600 s, not 630
    assert len(ring._tiers[0]) == 20
    assert len(ring) <= 20 + 56 + 41


def _row_bytes(ring):
    return sum(len(t.v) * t.v.itemsize for t in ring._tiers if t is not None)


def _twins(seconds, every_s, usage):
    """The same readings twice: as given (anon = usage), and with anon made different at every
    reading (no two rows alike), which the thinning (by usage) does not look at."""
    same, apart = TimelineRing(capacity=600, spacing_s=1.0), TimelineRing(capacity=600, spacing_s=1.0)
    t = -seconds * S
    while t <= 0:
        same.add(t, _values(usage(t)))
        apart.add(t, _values(usage(t), anon=(t // S) % 1_000_000 * 4096))
        t += every_s * S
    return same, apart


def test_an_unchanged_reading_is_stored_once_and_every_point_is_still_given():
    idle, apart = _twins(24 * 3600, 30, lambda t: 100 << 20)
    assert len(idle) == len(apart) >= 20 + 54 + 39
    assert [(p.t_ms, p.usage_bytes) for p in idle.points(KILL)] == [(p.t_ms, p.usage_bytes) for p in apart.points(KILL)]
    assert all(p.anon_bytes == 100 << 20 and p.psi_some_avg10 == 1.25 and p.slab_bytes is None for p in idle.points(KILL))
    # one row in each of the three tiers for the idle cgroup, one per point when every reading differs
    assert _row_bytes(idle) == 3 * len(FIELDS) * 4
    assert _row_bytes(apart) == len(apart) * len(FIELDS) * 4


def test_runs_of_repeated_readings_are_thinned_as_if_each_were_stored():
    # runs of 1 to 9 equal readings, one a second for 13 hours: through every tier and its buckets
    def usage(t):
        s = t // S
        return (s // (s % 9 + 1)) % 5 * (1 << 20) + (1 << 20)

    runs, apart = _twins(13 * 3600, 1, usage)
    got = runs.points(KILL)
    assert [(p.t_ms, p.usage_bytes) for p in got] == [(p.t_ms, p.usage_bytes) for p in apart.points(KILL)]
    assert all(p.anon_bytes == p.usage_bytes for p in got)
    assert _row_bytes(runs) < _row_bytes(apart)
    for tier in runs._tiers:
        assert sum(tier.n) == len(tier) == len(list(tier.rows()))
