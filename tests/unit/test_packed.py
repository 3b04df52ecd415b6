"""The store's packed readings (record/packed.py): a reading unpacks equal to what was packed, from
memory.stat captured on real kernels (tests/fixtures/cgroupfs), and costs less memory."""

import os
import sys

from oomscope.kernel.cgroupfs import parse_memory_stat, parse_pressure
from oomscope.layouts import ReclaimStats
from oomscope.model import CgroupState, Source
from oomscope.record import packed
from oomscope.record.sampler import Sample

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "cgroupfs")


def _read(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


def _sample(stat_file, events_file=None, t=5):
    st = CgroupState(source=Source.LAST_SAMPLE, usage_bytes=123 << 20, limit_bytes=256 << 20, failcnt=3,
                     memory_stat=parse_memory_stat(_read(stat_file)), cgroup="/a/b",
                     memory_events=parse_memory_stat(_read(events_file)) if events_file else {},
                     pressure=parse_pressure("some avg10=1.25 avg60=0.50 avg300=0.00 total=1234\n"
                                             "full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n"))
    return Sample(t, st, (1, 2, 3), ReclaimStats(memcg_runs=4, memcg_ns=5_000_000))


def _deep_size(obj, seen=None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (tuple, list)):
        size += sum(_deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__dict__"):
        size += _deep_size(vars(obj), seen)
    elif hasattr(obj, "__slots__"):
        size += sum(_deep_size(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


def test_a_reading_of_each_kernel_unpacks_equal_and_in_order():
    for stat, events in (("v1-6.18-memory.stat", None), ("v2-6.1-memory.stat", "v2-6.1-memory.events"),
                         ("v2-7.3-memory.stat", "v2-7.3-memory.events")):
        s = _sample(stat, events)
        p = packed.PackedSample(s)
        back = p.unpack()
        assert back == s, stat
        assert list(back.state.memory_stat) == list(s.state.memory_stat)  # the kernel's order
        assert all(type(v) is int for v in back.state.memory_stat.values())
        assert all(type(v) is float for v in back.state.pressure.values())
        assert p.t_ns == 5 and p.pids == (1, 2, 3)


def test_each_unpack_is_a_new_reading():
    p = packed.PackedSample(_sample("v1-6.18-memory.stat"))
    a = p.unpack()
    a.state.memory_stat["rss"] = -1
    a.state.age_ms = 7.0
    b = p.unpack()
    assert b.state.memory_stat["rss"] != -1 and b.state.age_ms is None


def test_readings_with_the_same_keys_share_one_key_tuple_and_a_reading_costs_a_fifth():
    s1, s2 = _sample("v1-6.18-memory.stat", t=1), _sample("v1-6.18-memory.stat", t=2)
    p1, p2 = packed.PackedSample(s1), packed.PackedSample(s2)
    k1 = next(v for v in p1._rest[0].values if type(v) is packed._Dict).keys
    k2 = next(v for v in p2._rest[0].values if type(v) is packed._Dict).keys
    assert k1 is k2
    # the shared keys counted once for both: what a second reading costs
    shared = set()
    _deep_size(p1, shared)
    assert _deep_size(p2, shared) * 5 <= _deep_size(s2)


def test_values_an_array_cannot_hold_are_kept_as_they_are():
    st = CgroupState(source=Source.LAST_SAMPLE, memory_stat={"big": 1 << 70, "x": 1}, memory_events={"a": 1, "b": 2.5})
    s = Sample(1, st, ())
    assert packed.PackedSample(s).unpack() == s
