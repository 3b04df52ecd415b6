import struct

import pytest

from oomscope.kernel import btf
from oomscope.model import CgroupState
from oomscope import layouts
from oomscope.record import charges


def _blob(enums):
    """A minimal BTF blob: an INT type, then the given enums (name -> {enumerator: value})."""
    strings = b"\0"
    offs = {}

    def s(name):
        nonlocal strings
        if name not in offs:
            offs[name] = len(strings)
            strings += name.encode() + b"\0"
        return offs[name]

    types = struct.pack("<III", s("int"), 1 << 24, 4) + struct.pack("<I", 32)  # INT with its 4-byte trailer
    for name, values in enums.items():
        types += struct.pack("<III", s(name), (6 << 24) | len(values), 4)
        for k, v in values.items():
            types += struct.pack("<Ii", s(k), v)
    hdr = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_enums_are_read_by_name_past_other_kinds():
    blob = _blob({"other": {"A": 1}, "memcg_stat_item": {"MEMCG_SWAP": 51, "MEMCG_NR_STAT": 58}})
    got = btf.parse_enums(blob, ["memcg_stat_item", "missing"])
    assert got == {"memcg_stat_item": {"MEMCG_SWAP": 51, "MEMCG_NR_STAT": 58}}


@pytest.mark.parametrize("blob", [b"", b"\x00" * 30, _blob({"e": {"X": 1}})[:-5]])
def test_bad_btf_is_a_clear_error(blob):
    with pytest.raises(btf.BtfError):
        btf.parse_enums(blob, ["e"])


def test_this_kernels_btf_names_the_tracked_items():
    enums = btf.kernel_enums(("node_stat_item", "memcg_stat_item", "vm_event_item"))
    if enums is None:
        pytest.skip("this kernel has no /sys/kernel/btf/vmlinux")
    table = layouts.item_index_table(enums, enums["memcg_stat_item"].get("MEMCG_NR_STAT", 0))
    assert len(table) >= len(layouts.TRACKED) - 3  # a few items are newer than some kernels
    assert len(layouts.TRACKED) <= 32  # OOMSCOPE_TRACKED


def _counters(**by_name):
    vals = [0] * len(layouts.TRACKED)
    for name, v in by_name.items():
        vals[[t.enum_name for t in layouts.TRACKED].index(name)] = v
    return vals


def test_reconstruction_adds_the_deltas_local_and_hierarchical_v1():
    page = charges.PAGE_SIZE
    sample = CgroupState(source="last_sample", usage_bytes=50 * page, limit_bytes=100 * page,
                         memory_stat={"rss": 10 * page, "total_rss": 30 * page, "cache": 5 * page,
                                      "total_cache": 5 * page, "pgfault": 100, "total_pgfault": 300,
                                      "hierarchical_memory_limit": 100 * page})
    base = {1: _counters(NR_ANON_MAPPED=7), 2: _counters(NR_ANON_MAPPED=3)}
    at_kill = {1: _counters(NR_ANON_MAPPED=17, PGFAULT=50), 2: _counters(NR_ANON_MAPPED=13)}
    st = charges.reconstruct(1, sample, 1, [1, 2], base, at_kill, age_ms=80.0, hit_limit=False)
    assert st.memory_stat["rss"] == 20 * page          # its own delta only
    assert st.memory_stat["total_rss"] == 50 * page    # its subtree's deltas
    assert st.memory_stat["pgfault"] == 150 and st.memory_stat["total_pgfault"] == 350
    assert st.memory_stat["hierarchical_memory_limit"] == 100 * page
    assert "hierarchical_memory_limit" in st.keys_from_sample and "rss" not in st.keys_from_sample
    assert st.usage_bytes == 70 * page and st.base_age_ms == 80.0
    # a memcg OOM: the counter was at the limit
    assert charges.reconstruct(1, sample, 1, [1, 2], base, at_kill, 80.0, hit_limit=True).usage_bytes == 100 * page
    # a subtree the counters do not cover gives no reconstruction, not a wrong one
    assert charges.reconstruct(1, sample, 1, [1, 2, 3], base, at_kill, 80.0) is None


def test_watched_slots_go_to_the_fullest_whole_subtrees():
    chosen = charges.choose_watched([(0.95, "/a", [("/a", 1), ("/a/x", 2)]),
                                     (0.99, "/b", [("/b", 3)] + [(f"/b/{i}", 10 + i) for i in range(8)]),
                                     (0.91, "/c", [("/c", 4)])], slots=4)
    assert [i for _p, i in chosen] == [1, 2, 4]  # /b does not fit whole; partial sums would be wrong
