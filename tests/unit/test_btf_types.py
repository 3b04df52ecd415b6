"""BTF struct member offsets and raw tracepoint prototypes (oomscope/kernel/btf.py), which the
kernel snapshot (kernel/memcg_layout.py, bpf/memcg_snapshot.c) follows from a memcg pointer to its
cgroup id: on a synthetic blob whose layout is known, and on this kernel's BTF."""

import pathlib
import struct

import pytest

from oomscope.kernel import btf

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"


class BlobBuilder:
    """Types are numbered from 1 in the order they are added, as in the kernel's BTF."""

    def __init__(self):
        self.strings = b"\0"
        self.types = b""
        self.count = 0

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name, kind, vlen, size_or_type, trailer=b"", kind_flag=0):
        self.types += struct.pack("<III", self.s(name), (kind_flag << 31) | (kind << 24) | vlen, size_or_type) + trailer
        self.count += 1
        return self.count

    def int_(self, name, size):
        return self.add(name, btf.KIND_INT, 0, size, struct.pack("<I", size * 8))

    def ptr(self, to):
        return self.add("", btf.KIND_PTR, 0, to)

    def struct_(self, name, size, members, kind=btf.KIND_STRUCT, kind_flag=0):
        trailer = b"".join(struct.pack("<III", self.s(m), t, off) for m, t, off in members)
        return self.add(name, kind, len(members), size, trailer, kind_flag)

    def blob(self):
        hdr = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return hdr + self.types + self.strings


def _memcg_like_blob(kn_bitfield=False, state_vals=("int", "int")):
    b = BlobBuilder()
    u64 = b.int_("long long unsigned int", 8)
    i32 = b.int_("int", 4)
    ul = b.int_("long unsigned int", 8)
    ints = {"int": i32, "long int": b.int_("long int", 8), "short int": b.int_("short int", 2)}
    kn = b.struct_("kernfs_node", 128, [("flags", i32, 0), ("id", u64, 96 * 8)])
    kn_ptr = b.ptr(kn)
    # cgroup.kn sits inside an anonymous union at byte 248, itself at bit offset 8*8 inside it
    anon = b.struct_("", 16, [("pad", u64, 0), ("kn", kn_ptr, 8 * 8)], kind=btf.KIND_UNION)
    cgroup = b.struct_("cgroup", 512, [("self", u64, 0), ("", anon, 248 * 8)],
                       kind_flag=1 if kn_bitfield else 0)
    cgroup_ptr = b.ptr(cgroup)
    const_cgroup_ptr = b.add("", 10, 0, cgroup_ptr)  # const: followed to its type
    css = b.struct_("cgroup_subsys_state", 208, [("cgroup", const_cgroup_ptr, 16 * 8)])
    memcg = b.struct_("mem_cgroup", 4096, [("css", css, 64 * 8)])
    memcg_ptr = b.ptr(memcg)
    void_ptr = b.ptr(0)
    for tp, last in (("mod_memcg_state", ints[state_vals[0]]), ("mod_memcg_lruvec_state", ints[state_vals[1]]),
                     ("count_memcg_events", ul)):
        params = [(void_ptr), (memcg_ptr), (i32), (last)]
        proto = b.add("", btf.KIND_FUNC_PROTO, len(params), 0, b"".join(struct.pack("<II", 0, t) for t in params))
        b.add(f"btf_trace_{tp}", btf.KIND_TYPEDEF, 0, b.ptr(proto))
    return b.blob()


def test_member_offsets_follow_paths_anonymous_members_and_modifiers():
    types = btf.BtfTypes(_memcg_like_blob())
    assert types.member_offset("mem_cgroup", "css.cgroup") == (64 + 16, 8)
    assert types.member_offset("cgroup", "kn") == (248 + 8, 8)   # found inside the anonymous union
    assert types.member_offset("kernfs_node", "id") == (96, 8)
    assert types.raw_tracepoint_params("count_memcg_events") == ["struct mem_cgroup *", "int", "long unsigned int"]
    assert types.raw_tracepoint_params("no_such_tracepoint") is None


def test_7x_state_tracepoints_pass_a_long():
    # Debian's 7.3.4 (VM): btf_trace_mod_memcg_state and _lruvec_state take (struct mem_cgroup *,
    # int, long int); 6.13-6.18 an int (the host's 6.18). The tracefs formats captured from both
    # kernels say the same: `long val` at offset 24 against `int val` at offset 20. (The snapshot's
    # slot learning reads only the first two arguments, the same on both.)
    types = btf.BtfTypes(_memcg_like_blob(state_vals=("long int", "long int")))
    assert types.raw_tracepoint_params("mod_memcg_state") == ["struct mem_cgroup *", "int", "long int"]
    fields = {}
    for name, kernel in (("7.3-memcg-mod_memcg_state.format", "7.3"), ("6.18-memcg-mod_memcg_state.format", "6.18")):
        text = (FIXTURES / "tracefs" / name).read_text()
        fields[kernel] = [ln.split(";")[0].split(":", 1)[1] for ln in text.splitlines() if "field:" in ln and " val;" in ln]
    assert fields == {"7.3": ["long val"], "6.18": ["int val"]}


@pytest.mark.parametrize("struct_name,path", [("mem_cgroup", "css.nope"), ("nope", "x"), ("kernfs_node", "id.deeper")])
def test_a_missing_member_is_a_clear_error(struct_name, path):
    with pytest.raises(btf.BtfError):
        btf.BtfTypes(_memcg_like_blob()).member_offset(struct_name, path)


def test_truncated_type_records_are_an_error():
    blob = _memcg_like_blob()
    hdr = bytearray(blob[:24])
    struct.pack_into("<I", hdr, 12, struct.unpack_from("<I", blob, 12)[0] - 6)  # type_len cut mid-record
    with pytest.raises(btf.BtfError):
        btf.BtfTypes(bytes(hdr) + blob[24:])


def test_this_kernels_btf_gives_the_memcg_id_path():
    types = btf.kernel_types()
    if types is None:
        pytest.skip("this kernel has no /sys/kernel/btf/vmlinux")
    # these members exist in every kernel with BTF: a pointer, a pointer, a 64-bit id
    offsets = [types.member_offset(s, p) for s, p in (("mem_cgroup", "css.cgroup"), ("cgroup", "kn"), ("kernfs_node", "id"))]
    assert all(size == 8 for _off, size in offsets)
