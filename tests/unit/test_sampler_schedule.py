"""The sampler's schedule is a pure function of how full a cgroup is (record/sampler.Schedule), its
settings one object, and its clock injectable: a pass driven by a test's clock, nothing asleep
(issue 25)."""

import pytest

from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.record.sampler import GRID_NS, Sampler, SamplerSettings, Schedule

from .test_sampler import _cgroup, _root

S = Schedule.of(SamplerSettings())
MS = 1_000_000


def test_the_schedule_by_how_full_a_cgroup_is():
    # below a quarter, below half, below 90%, near the limit
    assert [S.band(r) for r in (0.0, 0.24, 0.25, 0.49, 0.5, 0.89, 0.9, 1.0)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [S.read_interval(r) for r in (0.1, 0.3, 0.6, 0.95)] == [10_000 * MS, 5_000 * MS, 1_000 * MS, 100 * MS]
    assert [S.peek_interval(r) for r in (0.1, 0.3, 0.6)] == [1_000 * MS, 250 * MS, 100 * MS]
    assert S.peek_interval(0.1, thresholds_notify=True) == 5_000 * MS  # v1 thresholds wake it at 25%
    assert S.peek_interval(0.6, thresholds_notify=True) == 100 * MS
    # a peek that saw it fill: into a fuller band, or up by more than a tenth of its limit
    assert S.filling(0.2, 0.26) and S.filling(0.55, 0.66) and not S.filling(0.55, 0.64) and not S.filling(0.5, 0.4)
    assert S.unchanged(10 << 20, 10 << 20, 100 << 20, 0.01, 16 << 20)
    assert not S.unchanged(12 << 20, 10 << 20, 100 << 20, 0.01, 16 << 20)  # moved 2% of its limit
    assert not S.unchanged(30 << 20, 30 << 20, 100 << 20, 0.01, 16 << 20)  # not idle: a quarter full
    tight = Schedule.of(SamplerSettings(near_limit_ratio=0.8, fast_interval_s=0.05))
    assert tight.band(0.85) == 3 and tight.read_interval(0.85) == 50 * MS


def test_settings_are_one_object_and_a_setting_by_name_changes_only_it(tmp_path):
    hier = MemoryHierarchy(_root(tmp_path), 2)
    s = Sampler(hier, settings=SamplerSettings(fast_interval_s=0.05), max_cgroups=7, notify=False)
    assert s.settings == SamplerSettings(fast_interval_s=0.05, max_cgroups=7, notify=False)
    assert s.sched.fast_ns == 50 * MS and s.max_walk == 28
    with pytest.raises(TypeError, match="no setting named fast_intervals"):
        Sampler(hier, fast_intervals=1)


def test_a_pass_runs_on_the_clock_it_is_given(tmp_path):
    root = _root(tmp_path)
    _cgroup(root, "full", 95 << 20, 100 << 20, [11])
    _cgroup(root, "idle", 5 << 20, 100 << 20, [12])
    now = [1000 * GRID_NS + 300 * MS]  # a test's CLOCK_MONOTONIC, moved by hand
    s = Sampler(MemoryHierarchy(root, 2), notify=False, clock=lambda: now[0])
    wait = s.tick()
    assert s.reads == 2 and s.store.latest_before("/full", now[0]).t_ns == now[0]
    full, idle = s._watched["/full"], s._watched["/idle"]
    assert full.next_ns == now[0] + 100 * MS  # near the limit: 100 ms, as it is
    assert idle.next_ns == (now[0] + 10_000 * MS) // GRID_NS * GRID_NS  # idle: 10 s, on the whole second
    assert wait == pytest.approx(0.1)  # the next pass: the full cgroup's reading
    now[0] += 100 * MS
    s.tick()
    assert s.reads == 3 and full.read_ns == now[0]  # only the full one was due
    now[0] += 40 * MS  # its next reading 60 ms away: beyond a pass's slack (half the fast interval)
    s.tick()
    assert s.reads == 3
    now[0] += 10 * MS  # within the slack: read in this pass, not a pass of its own 50 ms later
    s.tick()
    assert s.reads == 4 and full.next_ns == now[0] + 100 * MS


def test_a_cgroup_near_its_memory_high_is_read_as_often_as_one_near_its_limit(tmp_path):
    """Issue 28: memory.high throttles before the limit kills. A cgroup at 95 MiB of a 100 MiB
    memory.high, with no limit of its own (memory.max "max": paced by the host's RAM), was read every
    10 s: the 6.12 VM's throttle episode had no reading in its last 20 s."""
    import os

    root = _root(tmp_path)
    _cgroup(root, "throttled", 95 << 20, "max", [11])
    with open(os.path.join(root, "throttled", "memory.high"), "w") as f:
        f.write(f"{100 << 20}\n")
    _cgroup(root, "unthrottled", 95 << 20, "max", [12])
    now = [1000 * GRID_NS + 300 * MS]
    s = Sampler(MemoryHierarchy(root, 2), notify=False, clock=lambda: now[0])
    s.tick()
    throttled, unthrottled = s._watched["/throttled"], s._watched["/unthrottled"]
    assert throttled.next_ns == now[0] + 100 * MS  # near memory.high: 100 ms
    assert unthrottled.next_ns - now[0] >= 1000 * MS  # the host's RAM is its only bound: far from it
    assert throttled.limit == unthrottled.limit  # the limit (the host's RAM) is still the kill's bound
