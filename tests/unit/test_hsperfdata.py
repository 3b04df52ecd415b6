"""The JVM's counters parsed from hsperfdata files captured from real JVMs, checked against what
jstat -gc printed for the same JVM (tests/fixtures/hsperfdata/README in tests/fixtures/README.md)."""

import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from oomscope.errors import OomscopeError
from oomscope.runtimes.hsperfdata import HsperfdataError, jvm_memory, parse_counters

from .helpers import within

HERE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hsperfdata")


def _read(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return f.read()


def _jstat(name):
    with open(os.path.join(HERE, name)) as f:
        head, values = f.read().split("\n")[:2]
    return dict(zip(head.split(), (float(v) for v in values.split())))


@pytest.mark.parametrize("jdk", ["openjdk-17", "temurin-25"])
def test_heap_figures_equal_jstat(jdk):
    m = jvm_memory(parse_counters(_read(f"{jdk}.hsperfdata")))
    js = _jstat(f"{jdk}.jstat-gc.txt")
    kib = 1024
    # jstat prints KiB with one decimal: equal within its rounding (jstat read the file a moment
    # after the copy, and no GC ran between them: the same YGC count)
    assert m.young_gc_count == js["YGC"] and m.full_gc_count == js["FGC"]
    assert abs(m.old_used_bytes - js["OU"] * kib) <= 0.05 * kib + 64 * kib  # old: allocation may go on
    assert abs(m.young_used_bytes - (js["EU"] + js["S0U"] + js["S1U"]) * kib) <= 0.15 * kib
    assert abs(m.metaspace_used_bytes - js["MU"] * kib) <= 0.1 * kib + 8 * kib
    assert abs(m.class_space_used_bytes - js["CCSU"] * kib) <= 0.1 * kib + 1 * kib
    assert m.metaspace_committed_bytes == js["MC"] * kib
    # committed heap = the generations' capacities: EC + S0C + S1C + OC (G1 adds 8 bytes per space)
    assert abs(m.heap_committed_bytes - (js["EC"] + js["S0C"] + js["S1C"] + js["OC"]) * kib) <= 64
    # -Xmx32m: G1 publishes the whole heap as each generation's maximum
    assert abs(m.heap_max_bytes - (32 << 20)) <= 64
    assert m.vm_args == "-Xmx32m" and m.threads_live >= 1 and m.gc_time_ms > 0


def test_truncated_files_give_the_parsers_error():
    data = _read("openjdk-17.hsperfdata")
    used = struct.unpack_from("<i", data, 8)[0]  # the JVM's used size: the rest of the file is empty
    assert 0 < used < len(data)
    for cut in (0, 3, 20, 40, 200, 2000, used - 1):
        with pytest.raises(HsperfdataError):
            parse_counters(data[:cut])
    assert jvm_memory(parse_counters(data[:used])).heap_used_bytes > 0


def test_not_hsperfdata():
    with pytest.raises(HsperfdataError, match="magic"):
        parse_counters(b"\x7fELF" + bytes(100))


def test_hostile_entry_lengths_and_offsets():
    data = bytearray(_read("openjdk-17.hsperfdata"))
    entry_offset = struct.unpack_from("<i", data, 24)[0]
    for field_at, value in ((0, 0), (0, -8), (0, 1 << 30), (4, -100), (4, 1 << 20), (16, 1 << 30), (16, -4)):
        bad = bytearray(data)
        struct.pack_into("<i", bad, entry_offset + field_at, value)
        with pytest.raises(HsperfdataError):
            parse_counters(bytes(bad))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mutation_gives_counters_or_the_projects_error(d):
    data = bytearray(_read("temurin-25.hsperfdata"))
    for _ in range(d.draw(st.integers(1, 8))):
        at = d.draw(st.integers(0, len(data) - 1))
        data[at] = d.draw(st.integers(0, 255))
    cut = d.draw(st.integers(0, len(data)))
    try:
        with within(0.5):  # a hang is a failure too (a planted count once spun the sampler forever)
            counters = parse_counters(bytes(data[:cut]))
            jvm_memory(counters)
    except OomscopeError as e:  # the project's own error, with a message; anything else fails
        assert str(e)


LONGS = [n for n, v in parse_counters(_read("temurin-25.hsperfdata")).items() if isinstance(v, int)]
#: the counters the heap's arithmetic reads (jvm_memory): drawn as often as all the others
READ = [n for n in LONGS if n.startswith(("sun.gc.generation.", "sun.gc.collector.", "sun.gc.metaspace.",
                                          "sun.gc.compressedclassspace.", "sun.os.hrt.", "java.threads."))]


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_any_counter_set_to_any_64_bit_value_answers_within_its_deadline(d):
    """What a fuzzer found in 774 of 20,000 mutations before issue 24: a count from the file that
    drives a loop. Every long counter, any value, in the parser and the heap's arithmetic."""
    counters = parse_counters(_read("temurin-25.hsperfdata"))
    for _ in range(d.draw(st.integers(1, 4))):
        name = d.draw(st.one_of(st.sampled_from(READ), st.sampled_from(LONGS)))
        counters[name] = d.draw(st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                                          st.sampled_from([1 << 62, 1 << 31, -1, 0, 9, 1 << 20])))
    try:
        with within(0.5):
            jvm_memory(counters)
    except OomscopeError as e:
        assert str(e)
