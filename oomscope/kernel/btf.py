"""Enum values from the kernel's BTF (/sys/kernel/btf/vmlinux).

The memcg tracepoints (6.13+) carry stat items as numbers of the enums ``node_stat_item``,
``memcg_stat_item`` and ``vm_event_item``, whose values move between kernel versions
(KERNEL-NOTES.md): they are read from the running kernel's BTF, never hard-coded.

Only what that needs is parsed: the header, then each type record, skipping the kind-specific
trailer by its documented size (Documentation/bpf/btf.rst, include/uapi/linux/btf.h).
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, Optional

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
KIND_ENUM, KIND_ENUM64 = 6, 19


class BtfError(EnvironmentProblem):
    """The kernel's BTF could not be read."""


def _name(strings: bytes, off: int) -> str:
    end = strings.find(b"\0", off)
    return strings[off:end if end >= 0 else len(strings)].decode("ascii", "replace")


def parse_enums(blob: bytes, wanted: Iterable[str]) -> Dict[str, Dict[str, int]]:
    """{enum name: {enumerator: value}} for the named enums found in a BTF blob."""
    wanted = set(wanted)
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
    out: Dict[str, Dict[str, int]] = {}
    pos, end = types_start, types_start + type_len
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
