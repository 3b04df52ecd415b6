"""A Go program's own view of its memory, read from outside the process: its runtime's variables.

Hands-off, like the JVM's reader (java.py): the process is never attached to (no ptrace), stopped,
signalled or made to allocate. Two files of the process are read:

- its executable, ``/proc/<pid>/exe``: the workload's file, so opened the way java.py opens a
  planted file: O_PATH first (which opens nothing; the magic link leads to the file without
  walking the workload's paths), checked to be a regular file of at most MAX_EXE_BYTES, then
  reopened read-only through that descriptor (O_NOATIME when allowed, O_NONBLOCK, O_NOCTTY). Only
  its headers, build info and symbol table are read, each within elf.py's bounds;
- its memory, ``/proc/<pid>/mem``, with ``pread`` at the addresses its symbols give (plus the load
  bias of a position-independent executable, from its maps). Reading another process's memory
  this way needs the rights of ``ptrace`` but stops nothing. Every address read, and every pointer
  followed, is first checked to lie in one mapping of ``/proc/<pid>/maps`` that is the
  executable's own or anonymous (never a device's or a file's: reading a mapped device through
  /proc/<pid>/mem can reach its driver); every count is bounded (buckets, frames, bytes read), a
  loop in a list ends the walk, and each reading has a time budget.

Which Go versions are read, and how their state is decoded: goruntime.py. A binary without
``.symtab`` ("stripped": ``-ldflags=-s``) or built by a Go whose layouts oomscope does not know is
said so in the reading's ``why_not``; so is a program whose heap profile is off (MemProfileRate 0:
Go's linker turns it off in a program that never links ``runtime.MemProfile``, i.e. imports neither
runtime/pprof nor net/http/pprof).
"""

from __future__ import annotations

import bisect
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .elf import ET_DYN, PT_LOAD, Elf, ElfError, FunctionTable, read_elf, read_symbols
from .goruntime import (GoHeap, GoLayout, GoRuntimeError, bucket_header, build_version, check_sizes, decode_bucket,
                        decode_heap, layout_for, scale_heap_sample)

__all__ = ["GoBinary", "GoReading", "GoSite", "load_binary", "go_version", "read_go", "Binaries",
           "describe_binary", "MAX_EXE_BYTES", "MAX_BUCKETS", "MAX_SITES", "READ_BUDGET_S"]

#: an executable larger than this is not looked at (a 100 MiB Go program is large)
MAX_EXE_BYTES = 2 << 30
#: bytes of /proc/<pid>/maps read (a Go program's maps: a few KiB)
MAX_MAPS_BYTES = 1 << 20
#: heap-profile buckets walked per reading (a large Go server has a few thousand)
MAX_BUCKETS = 50_000
#: bytes read from the process's memory per reading (a bucket: 120 bytes with one frame in 1.27, 432 with
#: 1.19's 32 frames, up to 8.4 KiB with the 1,024 frames 1.24 on allow)
MAX_MEM_BYTES = 16 << 20
#: a reading gives up its profile past this time (the heap figures come first and are kept)
READ_BUDGET_S = 0.2
#: allocation sites kept per reading, largest first
MAX_SITES = 32
#: names of PCs remembered per binary
MAX_NAMED_PCS = 8192
BLOCK = 16 << 10

WANTED = ("runtime.gcController", "runtime.memstats", "runtime.mbuckets", "runtime.MemProfileRate",
          "runtime.mProfCycle", "runtime.mheap_")


@dataclass(frozen=True)
class GoSite:
    """One allocation site of the heap profile: its stack, innermost first, and what it holds
    (pprof's inuse_space and inuse_objects: the sample scaled by MemProfileRate)."""

    frames: Tuple[str, ...]
    bytes: int
    objects: int


@dataclass(frozen=True)
class GoReading:
    pid: int
    version: Optional[str]                 # "go1.19.8"; None: not known
    heap: Optional[GoHeap]
    sites: Tuple[GoSite, ...] = ()
    why_not: Optional[str] = None          # when heap is None: why
    sites_why_not: Optional[str] = None    # when the profile was not read (or only in part): why
    profile_rate: Optional[int] = None     # runtime.MemProfileRate


@dataclass
class GoBinary:
    """What is kept of a Go executable between readings (once per file, not per reading)."""

    key: Tuple[int, int, int, int]         # st_dev, st_ino, st_size, st_mtime_ns
    version: Optional[str]
    elf: Optional[Elf] = None
    layout: Optional[GoLayout] = None
    symbols: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # name -> (address, size)
    functions: Optional[FunctionTable] = None
    why_not: Optional[str] = None          # when it cannot be read: why
    names: Dict[int, Optional[str]] = field(default_factory=dict)  # function index -> name


class _NotRegular(Exception):
    pass


def _open_exe(pid: int, proc: str) -> Tuple[int, os.stat_result]:
    """A read-only descriptor on the process's executable, after an O_PATH look at it."""
    path_fd = os.open(f"{proc}/{pid}/exe", os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_EXE_BYTES:
            raise _NotRegular(f"the executable is not a regular file of at most {MAX_EXE_BYTES >> 20} MiB")
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(f"/proc/self/fd/{path_fd}", flags | os.O_NOATIME)
        except PermissionError:  # O_NOATIME needs the file's owner or CAP_FOWNER
            fd = os.open(f"/proc/self/fd/{path_fd}", flags)
    finally:
        os.close(path_fd)
    return fd, st


def _key(st: os.stat_result) -> Tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def go_version(pid: int, proc: str = "/proc") -> Optional[str]:
    """The Go version that built the process's executable ("go1.19.8"), "" for a Go executable
    whose version cannot be read, None when it is not a Go program (or is gone). Reads the ELF
    headers and the build info: a few KiB, about 0.1 ms."""
    try:
        fd, st = _open_exe(pid, proc)
    except (OSError, _NotRegular):
        return None
    try:
        read_at = _reader(fd)
        elf = read_elf(read_at, st.st_size)
        try:
            return build_version(elf, read_at)
        except GoRuntimeError:
            return ""
    except (OSError, ElfError):
        return None
    finally:
        os.close(fd)


def _reader(fd: int):
    return lambda offset, length: os.pread(fd, length, offset)


def load_binary(pid: int, proc: str = "/proc") -> GoBinary:
    """The executable of ``pid`` as a :class:`GoBinary` (its ``why_not`` says when it is not read)."""
    try:
        fd, st = _open_exe(pid, proc)
    except _NotRegular as exc:
        return GoBinary((0, 0, 0, 0), None, why_not=str(exc))
    try:
        return describe_binary(_reader(fd), st.st_size, _key(st))
    finally:
        os.close(fd)


def describe_binary(read_at, size: int, key: Tuple[int, int, int, int] = (0, 0, 0, 0)) -> GoBinary:
    """What can be read of a Go executable of ``size`` bytes read through ``read_at`` (pure: the
    tests give it bytes): its version, layout and symbols, or why it is not read."""
    try:
        elf = read_elf(read_at, size)
        version = build_version(elf, read_at)
    except (ElfError, GoRuntimeError) as exc:
        return GoBinary(key, None, why_not=f"not a readable Go executable: {exc}")
    if version is None:
        return GoBinary(key, None, elf, why_not="not a Go executable (no build info)")
    try:
        layout = layout_for(version, elf.machine)
    except GoRuntimeError as exc:
        return GoBinary(key, version, elf, why_not=str(exc))
    if elf.bits != 64 or elf.order != "<":
        return GoBinary(key, version, elf, why_not="not a 64-bit little-endian executable: not read")
    try:
        syms = read_symbols(elf, read_at, WANTED)
    except ElfError as exc:
        return GoBinary(key, version, elf, why_not=f"symbol table not read: {exc}")
    if syms is None:
        return GoBinary(key, version, elf, why_not="stripped executable (no .symtab: built with -ldflags=-s): "
                                                  "the runtime's state cannot be found")
    missing = [n for n in ("runtime.gcController", "runtime.memstats") if n not in syms.data]
    if missing:
        return GoBinary(key, version, elf, why_not=f"no {', '.join(missing)} in the symbol table: not read")
    try:
        check_sizes(layout, syms.data["runtime.gcController"].size, syms.data["runtime.memstats"].size)
    except GoRuntimeError as exc:
        return GoBinary(key, version, elf, why_not=str(exc))
    return GoBinary(key, version, elf, layout, {n: (s.address, s.size) for n, s in syms.data.items()}, syms.functions)


class Binaries:
    """Go executables already read, by file (at most ``size``, the least recently used dropped):
    the symbol table is read once per executable, not per reading or per process."""

    def __init__(self, size: int = 8):
        self.size = size
        self._by_key: Dict[Tuple[int, int, int, int], GoBinary] = {}

    def get(self, pid: int, proc: str = "/proc") -> GoBinary:
        try:
            fd, st = _open_exe(pid, proc)
        except _NotRegular as exc:
            return GoBinary((0, 0, 0, 0), None, why_not=str(exc))
        except OSError as exc:
            return GoBinary((0, 0, 0, 0), None, why_not=f"process gone or unreadable ({exc.strerror or exc.__class__.__name__})")
        try:
            key = _key(st)
            binary = self._by_key.pop(key, None)
            if binary is None:
                binary = describe_binary(_reader(fd), st.st_size, key)
            self._by_key[key] = binary
            while len(self._by_key) > self.size:
                del self._by_key[next(iter(self._by_key))]
            return binary
        except OSError as exc:
            return GoBinary(_key(st), None, why_not=f"executable not read ({exc.strerror or exc.__class__.__name__})")
        finally:
            os.close(fd)


# --- the process's memory ------------------------------------------------------------------------

@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


def parse_maps(text: bytes) -> List[Mapping]:
    """The lines of /proc/<pid>/maps (a cut last line is dropped), sorted by address."""
    out = []
    for line in text.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, _, hi = parts[0].partition(b"-")
            out.append(Mapping(int(lo, 16), int(hi, 16), parts[1].decode("ascii", "replace"), int(parts[2], 16),
                               int(parts[4]), parts[5].decode("utf-8", "replace") if len(parts) > 5 else ""))
        except ValueError:
            continue
    out.sort(key=lambda m: m.start)
    return out


class _Unreadable(Exception):
    """An address outside what may be read, a read past the budget, or the process gone."""


class ProcessMemory:
    """Reads of a process's memory, each checked against its maps and counted against a budget."""

    def __init__(self, fd: int, mappings: List[Mapping], exe_inode: int, max_bytes: int = MAX_MEM_BYTES):
        self.fd = fd
        # only the executable's own mappings and anonymous memory: never a device's or a file's
        ok = [m for m in mappings if "r" in m.perms
              and (m.inode == exe_inode or (m.inode == 0 and (m.path == "" or m.path == "[heap]")))]
        self.starts = [m.start for m in ok]
        self.ends = [m.end for m in ok]
        self.max_bytes = max_bytes
        self.read_bytes = 0
        self._blocks: Dict[Tuple[int, int], bytes] = {}

    def mapped(self, addr: int, length: int) -> Optional[Tuple[int, int]]:
        """The readable mapping holding [addr, addr+length), or None."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr + length <= self.ends[i]:
            return self.starts[i], self.ends[i]
        return None

    def read(self, addr: int, length: int) -> bytes:
        where = self.mapped(addr, length)
        if where is None:
            raise _Unreadable(f"address {addr:#x} is in no mapping of the process that may be read")
        block = addr - addr % BLOCK
        if addr + length <= block + BLOCK:  # small reads come from one cached block of the mapping
            key = (block, where[0])
            base = max(block, where[0])
            data = self._blocks.get(key)
            if data is None:
                data = self._pread(base, min(block + BLOCK, where[1]) - base)
                if len(self._blocks) >= 256:
                    self._blocks.clear()
                self._blocks[key] = data
            return data[addr - base:addr - base + length]
        return self._pread(addr, length)

    def _pread(self, addr: int, length: int) -> bytes:
        self.read_bytes += length
        if self.read_bytes > self.max_bytes:
            raise _Unreadable(f"more than {self.max_bytes >> 20} MiB read from the process")
        try:
            data = os.pread(self.fd, length, addr)
        except OSError as exc:
            raise _Unreadable(f"memory at {addr:#x} not readable ({exc.strerror})") from None
        if len(data) != length:
            raise _Unreadable(f"memory at {addr:#x} read short")
        return data


def _read_maps(pid: int, proc: str) -> List[Mapping]:
    with open(f"{proc}/{pid}/maps", "rb") as f:
        data = f.read(MAX_MAPS_BYTES)
    if len(data) == MAX_MAPS_BYTES:
        data = data[:data.rfind(b"\n") + 1]
    return parse_maps(data)


def _bias(binary: GoBinary, mappings: List[Mapping], exe_inode: int) -> int:
    """Where a position-independent executable was loaded: its first mapping less the first
    PT_LOAD's address (0 for an ordinary executable, Go's default on linux/amd64)."""
    elf = binary.elf
    if elf is None or elf.type != ET_DYN:
        return 0
    first = min((s.vaddr - s.offset for s in elf.segments if s.type == PT_LOAD), default=0)
    for m in mappings:
        if m.inode == exe_inode and m.offset == 0:
            return m.start - (first & ~0xFFF)
    raise _Unreadable("the executable's mapping was not found in the process's maps")


def read_go(pid: int, binary: Optional[GoBinary] = None, proc: str = "/proc", profile: bool = True,
            budget_s: float = READ_BUDGET_S, max_buckets: int = MAX_BUCKETS) -> GoReading:
    """The Go runtime's view of its heap for ``pid``, or why it could not be read. ``binary``: its
    executable as read before (:class:`Binaries`); ``profile``: also walk the heap profile."""
    give_up = time.monotonic() + budget_s
    if binary is None:
        try:
            binary = load_binary(pid, proc)
        except OSError as exc:
            return GoReading(pid, None, None, why_not=f"process gone or unreadable ({exc.strerror or exc.__class__.__name__})")
    if binary.layout is None or binary.why_not is not None:
        return GoReading(pid, binary.version, None, why_not=binary.why_not or "not read")
    layout = binary.layout
    try:
        exe = os.stat(f"{proc}/{pid}/exe")
        exe_inode = exe.st_ino
        if (exe.st_dev, exe_inode) != binary.key[:2]:
            return GoReading(pid, binary.version, None, why_not="the process's executable changed: read again")
        mappings = _read_maps(pid, proc)
        fd = os.open(f"{proc}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return GoReading(pid, binary.version, None, why_not=f"process gone or unreadable ({exc.strerror or exc.__class__.__name__})")
    try:
        mem = ProcessMemory(fd, mappings, exe_inode)
        try:
            bias = _bias(binary, mappings, exe_inode)
            controller = mem.read(binary.symbols["runtime.gcController"][0] + bias, layout.gc_controller_size)
            numgc_raw = mem.read(binary.symbols["runtime.memstats"][0] + bias + layout.numgc, 4)
            heap = decode_heap(layout, controller, int.from_bytes(numgc_raw, "little"))
        except (_Unreadable, GoRuntimeError) as exc:
            return GoReading(pid, binary.version, None, why_not=f"the runtime's state not read: {exc}")
        if not profile:
            return GoReading(pid, binary.version, heap, sites_why_not="the heap profile is read less often")
        sites, rate, why = _profile(binary, mem, bias, give_up, max_buckets)
        if sites:
            sites = _named(binary, sites, pid, proc, bias)
        return GoReading(pid, binary.version, heap, tuple(sites), sites_why_not=why, profile_rate=rate)
    finally:
        os.close(fd)


def _profile(binary: GoBinary, mem: ProcessMemory, bias: int, give_up: float,
             max_buckets: int) -> Tuple[List[Tuple[Tuple[int, ...], int, int]], Optional[int], Optional[str]]:
    """(stacks with their in-use bytes and objects, largest first; MemProfileRate; why the profile
    is missing or partial, else None)."""
    layout = binary.layout
    assert layout is not None
    syms = binary.symbols
    if "runtime.mbuckets" not in syms or "runtime.MemProfileRate" not in syms:
        return [], None, "no heap profile in this program (runtime.mbuckets not linked)"
    try:
        rate = int.from_bytes(mem.read(syms["runtime.MemProfileRate"][0] + bias, 8), "little", signed=True)
        cycle = 0
        if "runtime.mProfCycle" in syms:
            cycle = int.from_bytes(mem.read(syms["runtime.mProfCycle"][0] + bias, 4), "little") >> 1
        head = int.from_bytes(mem.read(syms["runtime.mbuckets"][0] + bias, 8), "little")
    except _Unreadable as exc:
        return [], None, f"heap profile not read: {exc}"
    if rate <= 0:
        return [], rate, ("the program does not sample its allocations (MemProfileRate 0: it links neither "
                          "runtime/pprof nor net/http/pprof, or turned profiling off)")
    by_stack: Dict[Tuple[int, ...], List[int]] = {}  # stack -> [objects, bytes, all-cycle objects, all-cycle bytes]
    touched = False
    seen = set()
    why: Optional[str] = None
    addr, n = head, 0
    while addr:
        if addr in seen:
            why = "a loop in the heap profile's list (not a Go runtime's): read up to it"
            break
        if n >= max_buckets:
            why = f"more than {max_buckets} heap-profile buckets: the first {max_buckets} read"
            break
        if n & 63 == 63 and time.monotonic() > give_up:
            why = f"the heap profile took longer than the reading's budget: {n} buckets read"
            break
        if addr % 8:
            why = "a misaligned pointer in the heap profile's list (not a Go runtime's): read up to it"
            break
        seen.add(addr)
        n += 1
        try:
            header = mem.read(addr, layout.bucket_size)
            _next, _typ, nstk = bucket_header(layout, header)
            if not 0 < nstk <= layout.max_stack:
                raise GoRuntimeError(f"a heap-profile bucket with {nstk} frames: not a Go runtime's")
            body = mem.read(addr + layout.bucket_size, nstk * 8 + layout.mem_record_size)
            b = decode_bucket(layout, header, body, cycle)
        except (_Unreadable, GoRuntimeError) as exc:
            why = f"heap profile read in part: {exc}"
            break
        touched = touched or b.touched
        acc = by_stack.setdefault(b.stack, [0, 0, 0, 0])
        acc[0] += b.inuse_objects
        acc[1] += b.inuse_bytes
        acc[2] += b.all_cycles_objects
        acc[3] += b.all_cycles_bytes
        addr = b.next_address
    # before the first GC, MemProfile reports every cycle's allocations (runtime/mprof.go, MemProfile)
    pick = (0, 1) if touched else (2, 3)
    sites = []
    for stack, acc in by_stack.items():
        objects, nbytes = scale_heap_sample(acc[pick[0]], acc[pick[1]], rate)
        if nbytes > 0:
            sites.append((stack, nbytes, objects))
    sites.sort(key=lambda s: -s[1])
    return sites, rate, why


def _named(binary: GoBinary, sites, pid: int, proc: str, bias: int = 0) -> List[GoSite]:
    """The largest MAX_SITES sites with their frames named (a function's name is read from the
    executable once and remembered, up to MAX_NAMED_PCS names a binary). A PC is a return address:
    the call is the byte before it; ``bias`` is where a position-independent executable was loaded."""
    table = binary.functions
    top = sites[:MAX_SITES]
    fd = -1
    try:
        for stack, _b, _o in top:
            for pc in stack:
                i = table.find(pc - bias - 1) if table is not None else None
                if i is not None and i not in binary.names and fd < 0:
                    fd, st = _open_exe(pid, proc)
                    if _key(st) != binary.key:
                        raise _NotRegular("the executable changed")
                if i is not None and i not in binary.names:
                    if len(binary.names) >= MAX_NAMED_PCS:
                        binary.names.clear()
                    binary.names[i] = table.name(i, _reader(fd), binary.key[2])
    except (OSError, _NotRegular):
        pass  # named as far as could be: the rest by address
    finally:
        if fd >= 0:
            os.close(fd)
    merged: Dict[Tuple[str, ...], List[int]] = {}
    for stack, nbytes, objects in top:
        frames = []
        for pc in stack:
            i = table.find(pc - bias - 1) if table is not None else None
            name = binary.names.get(i) if i is not None else None
            frames.append(name if name else f"{pc:#x}")
        acc = merged.setdefault(_hide_runtime(tuple(frames)), [0, 0])
        acc[0] += nbytes
        acc[1] += objects
    out = [GoSite(frames, nbytes, objects) for frames, (nbytes, objects) in merged.items()]
    out.sort(key=lambda s: -s.bytes)
    return out


def _hide_runtime(frames: Tuple[str, ...]) -> Tuple[str, ...]:
    """The stack without its innermost frames in the runtime, as pprof shows a heap profile
    (runtime/pprof/protomem.go, writeHeapProto's hideRuntime: frames named runtime.* or
    internal/runtime/* are dropped up to the first other one; a stack all in the runtime is kept
    whole). Go 1.26 records them (mProf_Malloc's callers(3, ...): runtime.mallocgc, runtime.makeslice
    first), earlier releases skipped them when recording. Stacks that differ only there are one site."""
    for i, name in enumerate(frames):
        if not name.startswith(("runtime.", "internal/runtime/")):
            return frames[i:]
    return frames
