"""What the kernel snapshot (bpf/memcg_snapshot.c, kernel/memcg_layout.py) needs from the
kernel's BTF (/sys/kernel/btf/vmlinux).

- Enum values: the stat items (``node_stat_item``, ``memcg_stat_item``) are numbers of enums whose
  values move between kernel versions (docs/kernel-facts.md): they are read from the running
  kernel's BTF, never hard-coded.
- Struct member offsets (``mem_cgroup.css.cgroup``, ``cgroup.kn``, ``kernfs_node.id``,
  ``mem_cgroup.memory``, ...): the program follows kernel pointers with these offsets, so it needs
  no kernel headers whose layout might differ.
- Raw tracepoint prototypes (the ``btf_trace_<name>`` typedefs): checked before the programs read
  their arguments by position.
- Array members (``memcg_vmstats.state[]``: their length is the layout, bpf/memcg_snapshot.c) and
  the offsets of per-CPU variables in their section (``runqueues``, ``this_cpu_off``: how the
  snapshot finds each CPU's per-CPU area without kallsyms).

Only that is parsed: the header, then each type record, skipping the kind-specific trailer by its
documented size (Documentation/bpf/btf.rst, include/uapi/linux/btf.h).
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import EnvironmentProblem

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# kind -> (bytes after the 12-byte btf_type that do not depend on vlen, bytes per vlen entry)
_KIND_TRAILER = {
    1: (4, 0),    # INT
    2: (0, 0),    # PTR
    3: (12, 0),   # ARRAY
    4: (0, 12),   # STRUCT
    5: (0, 12),   # UNION
    6: (0, 8),    # ENUM
    7: (0, 0),    # FWD
    8: (0, 0),    # TYPEDEF
    9: (0, 0),    # VOLATILE
    10: (0, 0),   # CONST
    11: (0, 0),   # RESTRICT
    12: (0, 0),   # FUNC
    13: (0, 8),   # FUNC_PROTO
    14: (4, 0),   # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),   # FLOAT
    17: (4, 0),   # DECL_TAG
    18: (0, 0),   # TYPE_TAG
    19: (0, 12),  # ENUM64
}
KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF = 1, 2, 4, 5, 6, 7, 8
KIND_ARRAY, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_ENUM64 = 3, 13, 14, 15, 16, 19
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type tag: followed to their type


class BtfError(EnvironmentProblem):
    """The kernel's BTF could not be read."""


def _name(strings: bytes, off: int) -> str:
    end = strings.find(b"\0", off)
    return strings[off:end if end >= 0 else len(strings)].decode("ascii", "replace")


def _sections(blob: bytes) -> Tuple[int, int, bytes]:
    """(start of the type records, their end, the string section) of a BTF blob."""
    if len(blob) < 24:
        raise BtfError("BTF data is truncated")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
    if magic != BTF_MAGIC:
        raise BtfError("not BTF data (bad magic)")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
    types_start = hdr_len + type_off
    strings = blob[hdr_len + str_off: hdr_len + str_off + str_len]
    if types_start + type_len > len(blob) or len(strings) != str_len:
        raise BtfError("BTF data is truncated")
    return types_start, types_start + type_len, strings


def parse_enums(blob: bytes, wanted: Iterable[str]) -> Dict[str, Dict[str, int]]:
    """{enum name: {enumerator: value}} for the named enums found in a BTF blob."""
    wanted = set(wanted)
    pos, end, strings = _sections(blob)
    out: Dict[str, Dict[str, int]] = {}
    while pos + 12 <= end:
        name_off, info, _size = struct.unpack_from("<III", blob, pos)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        pos += 12
        trailer = _KIND_TRAILER.get(kind)
        if trailer is None:
            raise BtfError(f"unknown BTF kind {kind}: newer than this parser")
        fixed, per = trailer
        if kind in (KIND_ENUM, KIND_ENUM64) and name_off:
            name = _name(strings, name_off)
            if name in wanted:
                values = {}
                for i in range(vlen):
                    if kind == KIND_ENUM:
                        e_name, val = struct.unpack_from("<Ii", blob, pos + 8 * i)
                    else:
                        e_name, lo, hi = struct.unpack_from("<III", blob, pos + 12 * i)
                        val = (hi << 32) | lo
                    values[_name(strings, e_name)] = val
                out[name] = values
                if wanted <= out.keys():
                    break
        pos += fixed + per * vlen
    return out


def kernel_enums(wanted: Iterable[str], path: str = VMLINUX_BTF) -> Optional[Dict[str, Dict[str, int]]]:
    """The running kernel's enums, or None when it has no BTF."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    return parse_enums(blob, wanted)


class BtfTypes:
    """Every type of a BTF blob, by id (0 is void), for member offsets and function prototypes."""

    def __init__(self, blob: bytes):
        self.blob = blob
        pos, end, self.strings = _sections(blob)
        # id -> (kind, name, info, size_or_type, position of the trailer)
        self.types: List[Tuple[int, str, int, int, int]] = [(0, "void", 0, 0, 0)]
        self._by_name: Dict[Tuple[int, str], int] = {}
        while pos + 12 <= end:
            name_off, info, size_or_type = struct.unpack_from("<III", blob, pos)
            kind = (info >> 24) & 0x1F
            trailer = _KIND_TRAILER.get(kind)
            if trailer is None:
                raise BtfError(f"unknown BTF kind {kind}: newer than this parser")
            name = _name(self.strings, name_off) if name_off else ""
            self.types.append((kind, name, info, size_or_type, pos + 12))
            if name and kind in (KIND_STRUCT, KIND_UNION, KIND_TYPEDEF):
                self._by_name.setdefault((kind, name), len(self.types) - 1)
            pos += 12 + trailer[0] + trailer[1] * (info & 0xFFFF)
        if pos != end:
            raise BtfError("BTF data is truncated")

    def _resolve(self, tid: int) -> int:
        for _ in range(64):
            if tid >= len(self.types):
                raise BtfError(f"BTF type {tid} is out of range")
            if self.types[tid][0] not in _MODIFIERS:
                return tid
            tid = self.types[tid][3]
        raise BtfError("BTF type chain too long")

    def _members(self, tid: int):
        _kind, _tname, info, _size, at = self.types[tid]
        for i in range(info & 0xFFFF):
            name_off, mtype, offset = struct.unpack_from("<III", self.blob, at + 12 * i)
            if info >> 31:  # kind_flag: the top 8 bits are a bitfield size
                bitfield, offset = offset >> 24, offset & 0xFFFFFF
            else:
                bitfield = 0
            yield (_name(self.strings, name_off) if name_off else ""), mtype, offset, bitfield

    def size_of(self, tid: int) -> int:
        kind, _tname, _info, size, _at = self.types[self._resolve(tid)]
        if kind == KIND_PTR:
            return 8
        if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
            return size
        raise BtfError(f"BTF type {tid} has no size")

    def _find_member(self, tid: int, name: str) -> Optional[Tuple[int, int]]:
        """(bit offset, type id) of a member, looking into anonymous struct/union members."""
        for mname, mtype, offset, bitfield in self._members(tid):
            if mname == name:
                if bitfield:
                    raise BtfError(f"member {name} is a bitfield")
                return offset, mtype
            inner = self._resolve(mtype)
            if not mname and self.types[inner][0] in (KIND_STRUCT, KIND_UNION):
                found = self._find_member(inner, name)
                if found is not None:
                    return offset + found[0], found[1]
        return None

    def member_offset(self, struct_name: str, path: str) -> Tuple[int, int]:
        """(byte offset, byte size) of ``path`` (dotted, members inlined in the struct) in a struct."""
        offset, tid = self._member(struct_name, path)
        return offset, self.size_of(tid)

    def _member(self, struct_name: str, path: str) -> Tuple[int, int]:
        """(byte offset, resolved type id) of ``path`` in a struct."""
        tid = self._by_name.get((KIND_STRUCT, struct_name))
        if tid is None:
            raise BtfError(f"the kernel's BTF has no struct {struct_name}")
        bits = 0
        for part in path.split("."):
            found = self._find_member(tid, part) if self.types[tid][0] in (KIND_STRUCT, KIND_UNION) else None
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            bits += found[0]
            tid = self._resolve(found[1])
        if bits % 8:
            raise BtfError(f"{struct_name}.{path} is not byte-aligned")
        return bits // 8, tid

    def member_array(self, struct_name: str, path: str) -> Tuple[int, int, int]:
        """(byte offset, element size, element count) of an array member."""
        offset, tid = self._member(struct_name, path)
        kind, _name, _info, _size, at = self.types[tid]
        if kind != KIND_ARRAY:
            raise BtfError(f"{struct_name}.{path} is not an array")
        elem, _index, nelems = struct.unpack_from("<III", self.blob, at)
        return offset, self.size_of(elem), nelems

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self._member(struct_name, path)
        except BtfError:
            return False
        return True

    def member_is_pointer(self, struct_name: str, path: str) -> bool:
        return self.types[self._member(struct_name, path)[1]][0] == KIND_PTR

    def datasec_var_offset(self, section: str, var: str) -> Optional[int]:
        """Offset of a variable in a data section (``.data..percpu``), or None when BTF lacks it."""
        for _kind, _name, info, _size, at in (t for t in self.types if t[0] == KIND_DATASEC and t[1] == section):
            for i in range(info & 0xFFFF):
                vtype, offset, _vsize = struct.unpack_from("<III", self.blob, at + 12 * i)
                if vtype < len(self.types) and self.types[vtype][0] == KIND_VAR and self.types[vtype][1] == var:
                    return offset
        return None

    def describe(self, tid: int) -> str:
        """A C-like spelling of a type: "struct mem_cgroup *", "int", "void *"."""
        kind, name, _info, ref, _at = self.types[tid]
        if tid == 0:
            return "void"
        if kind == KIND_PTR:
            return self.describe(ref) + " *"
        if kind in (KIND_STRUCT, KIND_FWD):
            return f"struct {name}"
        if kind == KIND_UNION:
            return f"union {name}"
        if kind in _MODIFIERS and kind != KIND_TYPEDEF:
            return self.describe(ref)
        return name or f"<kind {kind}>"

    def raw_tracepoint_params(self, tracepoint: str) -> Optional[List[str]]:
        """The arguments of a raw tracepoint, from its ``btf_trace_<name>`` typedef (a pointer to a
        function whose first argument is the tracepoint's data), or None when BTF has none."""
        tid = self._by_name.get((KIND_TYPEDEF, f"btf_trace_{tracepoint}"))
        if tid is None:
            return None
        ptr = self.types[tid][3]
        if self.types[ptr][0] != KIND_PTR or self.types[self.types[ptr][3]][0] != KIND_FUNC_PROTO:
            raise BtfError(f"btf_trace_{tracepoint} is not a function pointer")
        _kind, _tname, info, _ret, at = self.types[self.types[ptr][3]]
        params = [struct.unpack_from("<II", self.blob, at + 8 * i)[1] for i in range(info & 0xFFFF)]
        return [self.describe(p) for p in params[1:]]


def kernel_types(path: str = VMLINUX_BTF) -> Optional[BtfTypes]:
    """The running kernel's BTF types, or None when it has no BTF."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    return BtfTypes(blob)
