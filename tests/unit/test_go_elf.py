"""The ELF reader and the Go binary's description (oomscope/runtimes/elf.py, goruntime.py's build
info, go.py's describe_binary), on Go programs built here from source (tests/unit/go_programs.py)
and on hostile variants of them: every answer within its deadline, the project's error or a
"not read" with its reason, never a crash."""

import os
import shutil
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from oomscope.errors import OomscopeError
from oomscope.runtimes import elf as elfmod
from oomscope.runtimes.elf import ElfError, read_elf, read_symbols
from oomscope.runtimes.go import WANTED, describe_binary
from oomscope.runtimes.goruntime import GO_1_19_AMD64, build_version

from .go_programs import build, go_version_of, nm
from .helpers import within


def _bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _at(data: bytes):
    return lambda offset, length: data[offset:offset + length]


@pytest.fixture(scope="module")
def lab():
    path = build("leaklab")
    return path, _bytes(path)


def _shdr_at(data: bytes, index: int) -> int:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, = struct.unpack_from("<H", data, 0x3A)
    return shoff + index * shentsize


def _section_index(data: bytes, name: str) -> int:
    e = read_elf(_at(data), len(data))
    return next(i for i, s in enumerate(e.sections) if s.name == name)


# --- a real binary -------------------------------------------------------------------------------

def test_the_version_is_what_go_version_says(lab):
    path, data = lab
    e = read_elf(_at(data), len(data))
    assert e.bits == 64 and e.order == "<" and e.machine == elfmod.EM_X86_64
    assert build_version(e, _at(data)) == go_version_of(path)


def test_the_runtimes_symbols_are_where_go_tool_nm_says(lab):
    path, data = lab
    e = read_elf(_at(data), len(data))
    syms = read_symbols(e, _at(data), WANTED)
    addresses = nm(path)
    for name in WANTED:
        assert syms.data[name].address == addresses[name], name
    assert syms.data["runtime.gcController"].size == GO_1_19_AMD64.gc_controller_size
    # a PC inside a function is named after it (the names read from the file on demand)
    start = addresses["main.leakyCache"]
    i = syms.functions.find(start + 5)
    assert syms.functions.name(i, _at(data), len(data)) == "main.leakyCache"
    assert syms.functions.find(0x10) is None


def test_the_binary_is_described_for_reading(lab):
    path, data = lab
    t = time.monotonic()
    b = describe_binary(_at(data), len(data))
    took = time.monotonic() - t
    assert b.why_not is None and b.layout is GO_1_19_AMD64 and b.version == go_version_of(path)
    assert took < 0.5  # 2,600 symbols: a few ms here


def test_a_stripped_binary_is_said():
    data = _bytes(build("leaklab", "-s -w"))
    b = describe_binary(_at(data), len(data))
    assert b.layout is None and "stripped" in b.why_not and b.version is not None


def test_a_program_that_is_not_go_is_said():
    path = shutil.which("true") or "/bin/true"
    data = _bytes(os.path.realpath(path))
    b = describe_binary(_at(data), len(data))
    assert b.version is None and b.why_not == "not a Go executable (no build info)"
    assert "not an ELF" in describe_binary(_at(b"#!/bin/sh\n"), 10).why_not


def test_an_unknown_go_version_is_said_not_guessed(lab):
    _path, data = lab
    at = data.index(b"\xff Go buildinf:") + 32  # Go 1.18+: a varint length, then the version
    length = data[at]
    for other in ("go1.99", "go1.20.1", "go1.2rc1", "devel go1.21-abcdef0"):  # 1.20: a release no entry checked
        fake = (other + " " * length)[:length] if len(other) <= length else other[:length]
        bad = data[:at + 1] + fake.encode() + data[at + 1 + length:]
        b = describe_binary(_at(bad), len(bad))
        assert b.layout is None and b.why_not.startswith(f"unknown Go version {fake}: not read"), b.why_not


def test_a_layout_whose_sizes_differ_is_not_read(lab):
    """A binary that claims Go 1.19 but whose gcController is not Go 1.19's size is not read."""
    _path, data = lab
    e = read_elf(_at(data), len(data))
    symtab = next(s for s in e.sections if s.type == elfmod.SHT_SYMTAB)
    strtab = e.sections[symtab.link]
    names = data[strtab.offset:strtab.offset + strtab.size]
    name_off = names.index(b"\0runtime.gcController\0") + 1
    bad = bytearray(data)
    for at in range(symtab.offset, symtab.offset + symtab.size, 24):
        if struct.unpack_from("<I", data, at)[0] == name_off:
            struct.pack_into("<Q", bad, at + 16, 432)
    b = describe_binary(_at(bytes(bad)), len(bad))
    assert b.layout is None and "a different layout, not read" in b.why_not


@pytest.mark.parametrize("built_by,claims", [("go1.19", "go1.22"), ("go1.19", "go1.24"), ("go1.24", "go1.19"),
                                              ("go1.22", "go1.19"), ("go1.24", "go1.25"), ("go1.25", "go1.26"),
                                              ("go1.27", "go1.24"), ("go1.21", "go1.22"), ("go1.23", "go1.21")])
def test_a_binary_claiming_another_go_whose_sizes_differ_is_not_read(built_by, claims):
    """A binary whose build info claims a Go of the table it was not built by: its variables'
    sizes in .symtab (gcController 424 and memstats 13512 bytes in 1.19; 392 and 9040 in 1.21, 7744 in
    1.22 to 1.24, 8264 in 1.25, 10440 in 1.26 and 1.27) are not the claimed layout's, so nothing is read.
    (1.22 to 1.24 share their sizes and offsets: one claiming another is read as it was built, but
    with the claimed bound on a bucket's frames, 32 in 1.22 and 1,024 after, each bucket still checked;
    1.26 and 1.27 share their sizes but not their memRecord: a 1.26 binary claiming 1.27 would have
    its profile's bytes misread, each still bounded and checked.)"""
    data = _bytes(build("leaklab", release=built_by))
    at = data.index(b"\xff Go buildinf:") + 32
    length = data[at]
    version = data[at + 1:at + 1 + length].decode()
    assert version.startswith(built_by + "."), version
    claimed = (claims + version[len(built_by):]).encode()
    assert len(claimed) == length
    bad = data[:at + 1] + claimed + data[at + 1 + length:]
    with within(1.0):
        b = describe_binary(_at(bad), len(bad))
    assert b.version == claimed.decode()
    assert b.layout is None and "a different layout, not read" in b.why_not, b.why_not


# --- hostile headers: bounded, within a deadline ---------------------------------------------------

@pytest.mark.parametrize("field,fmt,value", [
    (0x3C, "<H", 0xFFFF),          # e_shnum
    (0x38, "<H", 0xFFFF),          # e_phnum
    (0x28, "<Q", 1 << 62),         # e_shoff
    (0x20, "<Q", (1 << 64) - 8),   # e_phoff
    (0x3E, "<H", 0xFFFF),          # e_shstrndx
    (0x3A, "<H", 1),               # e_shentsize smaller than a section header
])
def test_a_hostile_header_gives_the_reason(lab, field, fmt, value):
    _path, data = lab
    bad = bytearray(data)
    struct.pack_into(fmt, bad, field, value)
    with within(1.0):
        b = describe_binary(_at(bytes(bad)), len(bad))
    assert b.layout is None or field == 0x3E  # a bad name table leaves the sections unnamed
    if b.layout is None:
        assert b.why_not


@pytest.mark.parametrize("what,offset_in_shdr,value", [
    ("size", 0x20, 1 << 60),
    ("offset", 0x18, 1 << 40),
    ("link", 0x28, 0xFFFF),
    ("size", 0x20, elfmod.MAX_SYMTAB_BYTES + 24),
])
def test_a_hostile_symbol_table_gives_the_reason(lab, what, offset_in_shdr, value):
    _path, data = lab
    at = _shdr_at(data, _section_index(data, ".symtab"))
    bad = bytearray(data)
    struct.pack_into("<Q" if offset_in_shdr != 0x28 else "<I", bad, at + offset_in_shdr, value)
    with within(1.0):
        b = describe_binary(_at(bytes(bad)), len(bad))
    assert b.layout is None and b.why_not.startswith("symbol table not read"), b.why_not


def test_the_most_symbols_allowed_parse_within_the_budget(lab):
    """350,000 symbols (MAX_SYMTAB_BYTES of them), each a function: parsed within the budget or
    refused with the reason."""
    _path, data = lab
    e = read_elf(_at(data), len(data))
    count = elfmod.MAX_SYMTAB_BYTES // 24
    one = struct.pack("<IBBHQQ", 1, elfmod.STT_FUNC, 0, 1, 0x401000, 16)
    table = b"".join(struct.pack("<IBBHQQ", 1, elfmod.STT_FUNC, 0, 1, 0x401000 + 16 * (count - i), 16) for i in range(count))
    assert len(one) == 24
    strtab = b"\0main.f\0"
    symtab_index = _section_index(data, ".symtab")
    symtab = e.sections[symtab_index]
    bad = bytearray(data) + strtab + table
    at = _shdr_at(data, symtab_index)
    struct.pack_into("<QQ", bad, at + 0x18, len(data) + len(strtab), len(table))      # sh_offset, sh_size
    str_at = _shdr_at(data, symtab.link)
    struct.pack_into("<QQ", bad, str_at + 0x18, len(data), len(strtab))
    started = time.monotonic()
    with within(3.0):
        try:
            syms = read_symbols(read_elf(_at(bytes(bad)), len(bad)), _at(bytes(bad)), WANTED, budget_s=1.0)
            assert len(syms.functions) == count  # reversed on purpose: sorted here
        except ElfError as exc:
            assert "longer than" in str(exc)
    assert time.monotonic() - started < 2.5


def test_a_hostile_build_info_gives_the_reason(lab):
    _path, data = lab
    at = data.index(b"\xff Go buildinf:")
    for patch in (b"\xff" * 10,                      # a varint that never ends
                  b"\xff\xff\xff\xff\x0f",           # a length of 4 GiB
                  b"\x05\x00\x01\x02\x03\x04"):      # not text
        bad = bytearray(data)
        bad[at + 32:at + 32 + len(patch)] = patch
        with within(1.0):
            b = describe_binary(_at(bytes(bad)), len(bad))
        assert b.layout is None and b.why_not, patch
    # the pre-1.18 form: pointers to a Go string, here pointing anywhere
    for ptr in (0, 1 << 63, 0x401000):
        bad = bytearray(data)
        bad[at + 15] = 0
        struct.pack_into("<Q", bad, at + 16, ptr)
        with within(1.0):
            b = describe_binary(_at(bytes(bad)), len(bad))
        assert b.layout is None and b.why_not


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_any_mutation_of_the_headers_answers_within_its_deadline(d):
    """Mutated headers, section and program headers, build info and the start of the symbol table,
    and any truncation: a description (read or not, with its reason) within the deadline."""
    data = _FUZZ["data"]
    regions = _FUZZ["regions"]
    bad = bytearray(data)
    for _ in range(d.draw(st.integers(1, 8))):
        lo, hi = d.draw(st.sampled_from(regions))
        at = d.draw(st.integers(lo, hi - 1))
        if d.draw(st.booleans()):
            bad[at] = d.draw(st.integers(0, 255))
        else:
            width = d.draw(st.sampled_from([2, 4, 8]))
            value = d.draw(st.sampled_from([0, 1, 0xFF, 1 << (8 * width - 1), (1 << 8 * width) - 1, 24, 64]))
            bad[at:at + width] = value.to_bytes(width, "little")[:len(bad) - at]
    if d.draw(st.booleans()):
        bad = bad[:d.draw(st.integers(0, len(bad)))]
    blob = bytes(bad)
    try:
        with within(1.0):
            b = describe_binary(_at(blob), len(blob))
        assert b.layout is not None or b.why_not
    except OomscopeError as exc:
        assert str(exc)


_FUZZ = {}  # the binary and the regions mutated, set once by the module's fixture


@pytest.fixture(autouse=True, scope="module")
def _fuzz_base(lab):
    _path, data = lab
    e = read_elf(_at(data), len(data))
    shoff, = struct.unpack_from("<Q", data, 0x28)
    symtab = next(s for s in e.sections if s.type == elfmod.SHT_SYMTAB)
    info = e.section(".go.buildinfo")
    _FUZZ["data"] = data
    _FUZZ["regions"] = [(0, 0x40 + 56 * 8), (shoff, shoff + 64 * len(e.sections)), (info.offset, info.offset + 64),
                        (symtab.offset, symtab.offset + 24 * 64)]
