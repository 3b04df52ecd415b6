import struct

import pytest

from oomscope.kernel import btf


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


def test_this_kernels_btf_names_the_stat_items_the_snapshot_reads():
    enums = btf.kernel_enums(("node_stat_item", "memcg_stat_item"))
    if enums is None:
        pytest.skip("this kernel has no /sys/kernel/btf/vmlinux")
    assert "NR_ANON_MAPPED" in enums["node_stat_item"] and "MEMCG_NR_STAT" in enums["memcg_stat_item"]
