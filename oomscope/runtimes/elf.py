"""ELF executables: headers, sections, segments and symbols, read within bounds. No I/O here.

Everything is read through ``read_at(offset, length) -> bytes`` (a file's ``pread``, or a slice of
bytes in the tests), so a large executable is never read whole: the headers, the section names, the
symbol table and its strings, each up to its own bound. The file belongs to a workload that may
have crafted it: every count, offset and size is checked against the file and a bound before it
drives a loop or a read, and an answer that cannot be had raises :class:`ElfError` (never an
IndexError, a struct.error or a MemoryError). The layouts are the System V ABI's (``elf.h``):

    ELF header:      e_ident (16 bytes: magic, class 1=32/2=64 bits, data 1=little/2=big endian),
                     e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
                     e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    section header:  sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, ...
    program header:  p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
    symbol:          st_name, st_info (type in the low 4 bits), st_other, st_shndx, st_value, st_size
"""

from __future__ import annotations

import bisect
import struct
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..errors import OomscopeError

__all__ = ["ElfError", "Elf", "Section", "Segment", "Symbol", "FunctionTable", "read_elf", "read_symbols",
           "MAX_SECTIONS", "MAX_SEGMENTS", "MAX_SYMTAB_BYTES", "MAX_STRTAB_BYTES", "MAX_NAME"]

ReadAt = Callable[[int, int], bytes]

MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
SHT_SYMTAB, SHT_NOBITS = 2, 8
SHF_COMPRESSED = 0x800
PT_LOAD = 1
STT_OBJECT, STT_FUNC = 1, 2

#: an executable has a few dozen sections (a Go 1.19 binary: 23) and about ten segments
MAX_SECTIONS = 1024
MAX_SEGMENTS = 128
#: the section names' table (a Go binary's: ~250 bytes)
MAX_SHSTRTAB = 64 * 1024
#: the symbol table: 350,000 64-bit symbols (a Go 1.19 "hello world" has 2,600; a 100 MiB Go
#: program ~150,000), parsed into three arrays of 8 bytes a function
MAX_SYMTAB_BYTES = 8 << 20
#: the symbols' names, read once while the table is parsed and then let go
MAX_STRTAB_BYTES = 16 << 20
#: a symbol's name is read up to this many bytes (Go's generic instantiations can be long)
MAX_NAME = 1024
#: the symbol table is parsed within this time, or not at all (MAX_SYMTAB_BYTES of functions: 0.14 s here)
PARSE_BUDGET_S = 1.0


class ElfError(OomscopeError):
    """A file that is not an ELF executable we can read, or whose tables run past their bounds."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class Elf:
    """An ELF file's headers. ``order`` is struct's byte order character, ``bits`` 32 or 64."""

    bits: int
    order: str
    type: int
    machine: int
    size: int  # the file's size
    sections: Tuple[Section, ...]
    segments: Tuple[Segment, ...]

    def section(self, name: str) -> Optional[Section]:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    @property
    def ptr_size(self) -> int:
        return self.bits // 8

    def file_offset(self, vaddr: int, length: int) -> Optional[int]:
        """Where ``length`` bytes at virtual address ``vaddr`` lie in the file (a PT_LOAD's file
        part), or None (in no segment, or in its zero-filled tail)."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr and vaddr + length <= seg.vaddr + seg.filesz:
                return seg.offset + (vaddr - seg.vaddr)
        return None

    def read_vaddr(self, read_at: ReadAt, vaddr: int, length: int) -> Optional[bytes]:
        off = self.file_offset(vaddr, length)
        if off is None or off + length > self.size:
            return None
        data = read_at(off, length)
        return data if len(data) == length else None


def _read_exact(read_at: ReadAt, size: int, offset: int, length: int, what: str) -> bytes:
    if offset < 0 or length < 0 or offset + length > size:
        raise ElfError(f"{what} at {offset} ({length} bytes) runs past the file's {size} bytes")
    data = read_at(offset, length)
    if len(data) != length:
        raise ElfError(f"{what}: the file is shorter than its headers say (truncated while read?)")
    return data


def read_elf(read_at: ReadAt, size: int) -> Elf:
    """The headers of the ELF file of ``size`` bytes read through ``read_at``."""
    ident = _read_exact(read_at, size, 0, 16, "the ELF header") if size >= 16 else b""
    if ident[:4] != MAGIC:
        raise ElfError("not an ELF file")
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
    bits = 32 if ident[4] == 1 else 64
    order = "<" if ident[5] == 1 else ">"
    word = "I" if bits == 32 else "Q"
    ehdr = struct.Struct(f"{order}HHI{word}{word}{word}IHHHHHH")
    raw = _read_exact(read_at, size, 16, ehdr.size, "the ELF header")
    (e_type, machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum,
     shstrndx) = ehdr.unpack(raw)

    shdr = struct.Struct(f"{order}II{word}{word}{word}{word}II{word}{word}")
    phdr = (struct.Struct(f"{order}IIIIIIII") if bits == 32 else struct.Struct(f"{order}IIQQQQQQ"))

    segments: List[Segment] = []
    if phnum:
        if phnum > MAX_SEGMENTS or phentsize < phdr.size:
            raise ElfError(f"implausible program headers ({phnum} of {phentsize} bytes)")
        table = _read_exact(read_at, size, phoff, phnum * phentsize, "the program headers")
        for i in range(phnum):
            f = phdr.unpack_from(table, i * phentsize)
            if bits == 32:
                p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz = f[0], f[1], f[2], f[3], f[4], f[5]
            else:
                p_type, p_offset, p_vaddr, p_filesz, p_memsz = f[0], f[2], f[3], f[5], f[6]
            segments.append(Segment(p_type, p_offset, p_vaddr, p_filesz, p_memsz))

    sections: List[Section] = []
    if shnum:
        if shnum > MAX_SECTIONS or shentsize < shdr.size:
            raise ElfError(f"implausible section headers ({shnum} of {shentsize} bytes)")
        table = _read_exact(read_at, size, shoff, shnum * shentsize, "the section headers")
        raw_sections = [shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
        names = b""
        if 0 < shstrndx < shnum:
            _n, _t, _f, _a, str_off, str_size, *_ = raw_sections[shstrndx]
            names = _read_exact(read_at, size, str_off, min(str_size, MAX_SHSTRTAB), "the section names")
        for sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, _info, _align, _entsize in raw_sections:
            end = names.find(b"\0", sh_name, sh_name + 256) if sh_name < len(names) else -1
            name = names[sh_name:end].decode("ascii", "replace") if end >= 0 else ""
            sections.append(Section(name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link))
    return Elf(bits, order, e_type, machine, size, tuple(sections), tuple(segments))


@dataclass(frozen=True)
class Symbol:
    address: int
    size: int


@dataclass
class FunctionTable:
    """The functions of .symtab by address: for each, its start, end and where its name lies in
    the file (read on demand: a program's names are megabytes, a profile needs a few hundred)."""

    starts: array = field(default_factory=lambda: array("Q"))
    ends: array = field(default_factory=lambda: array("Q"))
    name_offsets: array = field(default_factory=lambda: array("Q"))  # file offsets of the names

    def __len__(self) -> int:
        return len(self.starts)

    def find(self, pc: int) -> Optional[int]:
        """The index of the function holding ``pc``, or None."""
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.ends[i]:
            return i
        return None

    def name(self, index: int, read_at: ReadAt, size: int) -> Optional[str]:
        off = self.name_offsets[index]
        if off >= size:
            return None
        raw = read_at(off, min(MAX_NAME, size - off))
        end = raw.find(b"\0")
        if end < 0:
            return None
        return raw[:end].decode("utf-8", "replace")


@dataclass
class Symbols:
    """What .symtab holds of interest: the wanted data symbols by name and every function."""

    data: Dict[str, Symbol]
    functions: FunctionTable


def read_symbols(elf: Elf, read_at: ReadAt, wanted: Iterable[str], budget_s: float = PARSE_BUDGET_S) -> Optional[Symbols]:
    """The wanted symbols (the first of each name) and the function table, from .symtab; None when
    the file has no .symtab (stripped: ``-s``, ``strip``)."""
    symtab = next((s for s in elf.sections if s.type == SHT_SYMTAB), None)
    if symtab is None:
        return None
    if not 0 < symtab.link < len(elf.sections):
        raise ElfError(f"the symbol table's string table is section {symtab.link}, not one of {len(elf.sections)}")
    strtab = elf.sections[symtab.link]
    if symtab.type == SHT_NOBITS or strtab.type == SHT_NOBITS or (symtab.flags | strtab.flags) & SHF_COMPRESSED:
        raise ElfError("the symbol table is not stored in the file")
    if symtab.size > MAX_SYMTAB_BYTES or strtab.size > MAX_STRTAB_BYTES:
        raise ElfError(f"a symbol table of {symtab.size} bytes (names: {strtab.size}) is beyond the bounds "
                       f"({MAX_SYMTAB_BYTES} and {MAX_STRTAB_BYTES})")
    names = _read_exact(read_at, elf.size, strtab.offset, strtab.size, "the symbols' names")
    # each wanted name's offset in the string table: a symbol is wanted when its st_name is one
    want: Dict[int, str] = {}
    for name in wanted:
        at = names.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            want[at + 1] = name
    entry = struct.Struct(elf.order + ("IIIBBH" if elf.bits == 32 else "IBBHQQ"))
    raw = _read_exact(read_at, elf.size, symtab.offset, symtab.size - symtab.size % entry.size, "the symbol table")
    del names  # the names are read again, one at a time, when a function is named
    data: Dict[str, Symbol] = {}
    starts, ends, name_offs = array("Q"), array("Q"), array("Q")
    give_up = time.monotonic() + budget_s
    for i, sym in enumerate(entry.iter_unpack(raw)):
        if i & 4095 == 4095 and time.monotonic() > give_up:
            raise ElfError(f"reading the symbol table took longer than {budget_s * 1000:.0f} ms")
        if elf.bits == 32:
            st_name, value, size, info, _other, _shndx = sym
        else:
            st_name, info, _other, _shndx, value, size = sym
        kind = info & 0xF
        if kind == STT_FUNC:
            if size and st_name < strtab.size:
                starts.append(value)
                ends.append(min(value + size, (1 << 64) - 1))
                name_offs.append(strtab.offset + st_name)
        elif st_name in want and want[st_name] not in data:
            data[want[st_name]] = Symbol(value, size)
    del raw
    order: Iterable[int] = range(len(starts))
    if any(starts[i] > starts[i + 1] for i in range(len(starts) - 1)):
        order = sorted(order, key=starts.__getitem__)  # Go's linker writes them in order already
    table = FunctionTable()
    last_end = 0
    for i in order:
        if starts[i] < last_end:
            continue  # overlapping (aliases, or crafted): the first one keeps the range
        table.starts.append(starts[i])
        table.ends.append(ends[i])
        table.name_offsets.append(name_offs[i])
        last_end = ends[i]
    return Symbols(data, table)
