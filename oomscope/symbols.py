"""Code addresses of a live process turned into function names: ELF symbols, build-ids, debug links,
and the perf maps JITs write (/tmp/perf-<pid>.map).

Read while the process lives (its /proc/<pid>/maps and the files it maps), never attached to.
Every file is the workload's: the paths come from its maps and are opened below
``/proc/<pid>/root`` (its own filesystem) one component at a time without following links
(O_NOFOLLOW), the last one with O_PATH first (which opens nothing), then checked to be a regular
file with the very inode the maps name and within the size caps, and only then reopened for
reading through that descriptor. /proc/<pid>/map_files would be simpler but needs
CAP_SYS_ADMIN, which the service does not have.

Parsers are pure and bounded: ``parse_maps``, ``ElfSymbols.parse`` (ELF64 little-endian:
.symtab and .dynsym, PT_LOAD segments, .note.gnu.build-id, .gnu_debuglink; every count, offset
and size checked against the file and the caps below), ``parse_perf_map``. The ELF headers,
sections and segments are read by oomscope/runtimes/elf.py (the Go reader's, bounded); the symbol
tables are read here, .dynsym too (the Go reader wants .symtab only) and their names kept with
them (cached per file, looked up at every check).

What could not be named is said per frame (``Frame.why``): no mapping, an anonymous mapping with
no perf map (JIT code), a stripped file without a debug file, a file gone or unreadable; and per
stack: a stack that ends after a frame or two (code built without frame pointers: the kernel's
unwinder follows the frame-pointer chain only).
"""

from __future__ import annotations

import bisect
import collections
import os
import stat
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from .runtimes.elf import ElfError, read_elf

__all__ = ["Mapping", "parse_maps", "ElfSymbols", "ElfError", "parse_perf_map", "PerfMap", "Frame", "Symbolizer",
           "short_stack_note", "MAX_MAPS_BYTES", "MAX_ELF_BYTES", "MAX_SYMBOLS", "MAX_PERF_MAP_BYTES"]

#: bytes of /proc/<pid>/maps read (a process can have 65,530 mappings with long names)
MAX_MAPS_BYTES = 2 << 20
#: ELF files larger than this are not read (the symbols of a 1 GiB binary are not worth it)
MAX_ELF_BYTES = 1 << 30
#: sections read at most: a symbol table and its strings
MAX_SYMTAB_BYTES = 48 << 20
MAX_STRTAB_BYTES = 32 << 20
MAX_SECTIONS = 4096
MAX_SEGMENTS = 256
#: function symbols kept per file
MAX_SYMBOLS = 1_000_000
#: a perf map: bytes read, lines kept, length of a name
MAX_PERF_MAP_BYTES = 16 << 20
MAX_PERF_MAP_LINES = 200_000  # ~0.25 s to parse here; 500,000 took 0.6 s, and 1.6 s on the loaded machine
MAX_NAME = 512
#: files of processes remembered for naming after the process is gone (one entry per mapped file)
MAX_NAMED_FILES = 16384
#: files whose symbols are cached (per inode), and their symbols in all
CACHE_FILES = 64
CACHE_SYMBOLS = 4_000_000
#: where the unwinder is known to stop for a whole stack (process and thread entry points)
STACK_ROOTS = ("_start", "__libc_start_main", "__libc_start_call_main", "start_thread", "clone", "clone3",
               "thread_start", "runtime.goexit", "runtime.rt0_go")


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    dev: str  # "fd:01" as maps prints it
    inode: int
    path: str  # "" for anonymous memory; "[heap]", "[stack]", "[vdso]" ...; " (deleted)" kept


def parse_maps(text: str) -> List[Mapping]:
    """/proc/<pid>/maps lines, in order; malformed lines are skipped."""
    out = []
    for line in text.split("\n"):
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, _, hi = parts[0].partition("-")
            start, end = int(lo, 16), int(hi, 16)
            offset, inode = int(parts[2], 16), int(parts[4])
        except ValueError:
            continue
        if end <= start:
            continue
        out.append(Mapping(start, end, parts[1][:4], offset, parts[3][:16], inode, parts[5].strip() if len(parts) > 5 else ""))
    return out


# --- ELF ---

SHT_SYMTAB, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 2, 7, 8, 11
SHF_COMPRESSED = 0x800
STT_FUNC, STT_GNU_IFUNC = 2, 10
PT_LOAD = 1


class _Reader:
    """pread-style reads of a file (or bytes, for tests) that never go past its end or the caps."""

    def __init__(self, fd: Optional[int] = None, data: Optional[bytes] = None, size: int = 0):
        self.fd, self.data = fd, data
        self.size = len(data) if data is not None else size

    def read(self, offset: int, size: int, cap: int) -> bytes:
        if offset < 0 or size < 0 or size > cap or offset + size > self.size:
            raise ElfError(f"a part of {size} bytes at {offset} lies outside the file (or is over {cap})")
        if self.data is not None:
            return self.data[offset:offset + size]
        out = os.pread(self.fd, size, offset)
        if len(out) != size:
            raise ElfError("the file is shorter than it says")
        return out


class ElfSymbols:
    """The function symbols of one ELF file, its loadable segments, build-id and debug link."""

    def __init__(self):
        self.addrs = array("Q")
        self.sizes = array("Q")
        self.name_offs = array("Q")
        self.strtab = b""
        self.segments: List[Tuple[int, int, int]] = []  # (file offset, file size, vaddr) of PT_LOAD
        self.build_id: Optional[str] = None
        self.debuglink: Optional[str] = None
        self.has_symtab = False  # a full symbol table (.symtab), not only the dynamic one
        self.truncated = False

    @property
    def count(self) -> int:
        return len(self.addrs)

    @classmethod
    def parse(cls, data: Optional[bytes] = None, fd: Optional[int] = None, size: int = 0) -> "ElfSymbols":
        """The headers through oomscope/runtimes/elf.py's reader (bounded, hostile-input safe);
        the symbol tables (.symtab, else .dynsym), build-id and debug link here."""
        r = _Reader(fd, data, size)
        elf = read_elf(lambda off, n: r.read(off, n, MAX_SYMTAB_BYTES), r.size)
        if elf.bits != 64 or elf.order != "<":
            raise ElfError("not a 64-bit little-endian ELF file")
        self = cls()
        self.segments = [(g.offset, g.filesz, g.vaddr) for g in elf.segments if g.type == PT_LOAD]
        note = elf.section(".note.gnu.build-id")
        if note is not None and note.type == SHT_NOTE and note.size <= 4096:
            self.build_id = _build_id(r.read(note.offset, note.size, 4096))
        link = elf.section(".gnu_debuglink")
        if link is not None and 4 < link.size <= 4096 and link.type != SHT_NOBITS:
            name = _cstr(r.read(link.offset, link.size, 4096), 0)
            if name and b"/" not in name:
                self.debuglink = name.decode("utf-8", "replace")[:255]
        tables = {sec.type: sec for sec in elf.sections if sec.type in (SHT_SYMTAB, SHT_DYNSYM)}
        chosen = tables.get(SHT_SYMTAB) or tables.get(SHT_DYNSYM)
        self.has_symtab = SHT_SYMTAB in tables and tables[SHT_SYMTAB].size > 0
        if chosen is None or chosen.size == 0:
            return self
        if not 0 < chosen.link < len(elf.sections):
            raise ElfError("a symbol table without its strings")
        str_sec = elf.sections[chosen.link]
        if SHT_NOBITS in (chosen.type, str_sec.type) or (chosen.flags | str_sec.flags) & SHF_COMPRESSED:
            raise ElfError("the symbol table is not stored in the file")
        s_size = chosen.size - chosen.size % 24
        if s_size > MAX_SYMTAB_BYTES:
            s_size = MAX_SYMTAB_BYTES - MAX_SYMTAB_BYTES % 24
            self.truncated = True
        self.strtab = r.read(str_sec.offset, min(str_sec.size, MAX_STRTAB_BYTES), MAX_STRTAB_BYTES)
        raw = r.read(chosen.offset, s_size, MAX_SYMTAB_BYTES)
        entries = []
        for name_off, info, _other, shndx, value, sz in struct.iter_unpack("<IBBHQQ", raw):
            if shndx == 0 or value == 0 or (info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC):
                continue
            if name_off >= len(self.strtab):
                continue
            entries.append((value, sz, name_off))
            if len(entries) >= MAX_SYMBOLS:
                self.truncated = True
                break
        entries.sort()
        self.addrs = array("Q", (e[0] for e in entries))
        self.sizes = array("Q", (e[1] for e in entries))
        self.name_offs = array("Q", (e[2] for e in entries))
        return self

    def vaddr_of(self, file_offset: int) -> Optional[int]:
        """The link-time address of a file offset (through the PT_LOAD segment holding it)."""
        for off, size, vaddr in self.segments:
            if off <= file_offset < off + size:
                return file_offset - off + vaddr
        return None

    def lookup(self, vaddr: int) -> Optional[Tuple[str, int]]:
        """(function name, offset into it) for a link-time address, or None."""
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        start, size = self.addrs[i], self.sizes[i]
        if size and vaddr >= start + size:
            return None
        if not size and vaddr - start > 1 << 16:
            return None  # a symbol without a size: trusted only close by
        return _cstr(self.strtab, self.name_offs[i])[:MAX_NAME].decode("utf-8", "replace"), vaddr - start


def _cstr(buf: bytes, off: int) -> bytes:
    if off >= len(buf):
        return b""
    end = buf.find(b"\0", off, off + 4096)
    return buf[off:end if end >= 0 else min(len(buf), off + 4096)]


def _build_id(note: bytes) -> Optional[str]:
    if len(note) < 12:
        return None
    namesz, descsz, ntype = struct.unpack_from("<III", note, 0)
    start = 12 + ((namesz + 3) & ~3)
    if ntype != 3 or note[12:12 + namesz].rstrip(b"\0") != b"GNU" or descsz > 64 or start + descsz > len(note):
        return None
    return note[start:start + descsz].hex()


# --- perf maps (JITs) ---

class PerfMap:
    def __init__(self, entries: List[Tuple[int, int, str]], truncated: bool = False):
        entries.sort()
        self.starts = array("Q", (e[0] for e in entries))
        self.sizes = array("Q", (e[1] for e in entries))
        self.names = [e[2] for e in entries]
        self.truncated = truncated

    def lookup(self, addr: int) -> Optional[Tuple[str, int]]:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.starts[i] + self.sizes[i]:
            return None
        return self.names[i], addr - self.starts[i]


def parse_perf_map(data: bytes) -> PerfMap:
    """``START SIZE name`` lines (hex, optional 0x), as JITs write them; whatever else is skipped.
    Bounded: at most MAX_PERF_MAP_BYTES read by the caller, MAX_PERF_MAP_LINES kept, names cut."""
    entries: List[Tuple[int, int, str]] = []
    truncated = len(data) >= MAX_PERF_MAP_BYTES
    for line in data[:MAX_PERF_MAP_BYTES].split(b"\n"):
        parts = line.split(None, 2)
        if len(parts) < 3 or len(parts[0]) > 18 or len(parts[1]) > 18:
            continue
        try:
            start, size = int(parts[0], 16), int(parts[1], 16)
        except ValueError:
            continue
        if size <= 0 or start <= 0 or start + size >= 1 << 64:
            continue
        entries.append((start, size, parts[2][:MAX_NAME].decode("utf-8", "replace").strip()))
        if len(entries) >= MAX_PERF_MAP_LINES:
            truncated = True
            break
    return PerfMap(entries, truncated)


# --- opening the workload's files ---

class _Refused(Exception):
    pass


def _open_below_root(root_fd: int, path: str, inode: Optional[int], max_bytes: int) -> Tuple[int, int]:
    """(read descriptor, size) of ``path`` (absolute, in the process's filesystem) below root_fd:
    every component opened with O_NOFOLLOW, the file looked at with O_PATH first, checked to be
    a regular file (with ``inode`` when given) of at most max_bytes, then reopened for reading."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or len(parts) > 64:
        raise _Refused("not a plain absolute path")
    fds = []
    try:
        d = root_fd
        for comp in parts[:-1]:
            d = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
            fds.append(d)
        pfd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        fds.append(pfd)
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not a regular file")
        if inode is not None and st.st_ino != inode:
            raise _Refused("replaced since it was mapped")
        if st.st_size > max_bytes:
            raise _Refused(f"larger than {max_bytes >> 20} MiB")
        fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        return fd, st.st_size
    finally:
        for f in fds:
            os.close(f)


#: a Frame without a __dict__ (72 bytes, not ~200): the sampler keeps thousands while attached
_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True, **_SLOTS)
class Frame:
    addr: int
    function: Optional[str] = None
    module: Optional[str] = None  # the mapped file's name (basename), "[jit]", "[anon]"...
    offset: int = 0  # into the function when named, else into the module's file
    why: Optional[str] = None  # why it is not named

    def text(self) -> str:
        if self.function:
            return self.function
        if self.module:
            return f"{self.module}+{self.offset:#x}"
        return f"{self.addr:#x}"


def short_stack_note(frames: List[Frame]) -> Optional[str]:
    """A stack the unwinder gave up on early: code without frame pointers (the kernel follows the
    frame-pointer chain), or None when the stack looks whole."""
    if not frames or len(frames) >= 4:
        return None
    if any(f.function and f.function.split("@")[0] in STACK_ROOTS for f in frames):
        return None
    return (f"the stack ends after {len(frames)} frame{'s' if len(frames) > 1 else ''}: "
            f"{frames[-1].module or 'its code'} was likely built without frame pointers (-fno-omit-frame-pointer)")


class Symbolizer:
    """Names for the code addresses of live processes. Symbol tables are cached per file (its
    device and inode, size and mtime), at most CACHE_FILES files and CACHE_SYMBOLS symbols;
    ``begin(pid)`` reads the process's maps and perf map afresh."""

    def __init__(self, proc: str = "/proc", debug_roots: Tuple[str, ...] = ("/usr/lib/debug",)):
        self.proc = proc
        self.debug_roots = debug_roots
        self._elf: "collections.OrderedDict[tuple, Tuple[Optional[ElfSymbols], Optional[str]]]" = collections.OrderedDict()
        self._symbols = 0
        self._maps: Dict[int, Tuple[List[Mapping], List[int]]] = {}
        self._perf: Dict[int, Optional[PerfMap]] = {}
        # (pid, path, inode) -> the key of its file's symbols in _elf: a process gone (a victim
        # named after the kill) has no /proc/<pid>/root to open its files through any more
        self._named: Dict[Tuple[int, str, int], tuple] = {}

    def forget(self, keep_pids: Iterable[int] = ()) -> None:
        keep = set(keep_pids)
        self._maps = {p: v for p, v in self._maps.items() if p in keep}
        self._perf = {p: v for p, v in self._perf.items() if p in keep}
        self._named = {k: v for k, v in self._named.items() if k[0] in keep}

    def clear(self) -> None:
        self._named.clear()
        self._elf.clear()
        self._symbols = 0
        self._maps.clear()
        self._perf.clear()

    def begin(self, pid: int) -> bool:
        """Read the process's maps (and its perf map, if any) now; False when it is gone (then
        those of the last call stay)."""
        try:
            with open(f"{self.proc}/{pid}/maps", "rb") as f:
                text = f.read(MAX_MAPS_BYTES).decode("utf-8", "replace")
        except OSError:
            return False  # gone: the maps read at the last begin() are kept (a victim's, named after the kill)
        maps = parse_maps(text)
        self._maps[pid] = (maps, [m.start for m in maps])
        self._perf[pid] = self._read_perf_map(pid) if any(not m.path and "x" in m.perms for m in maps) else None
        return True

    def frames(self, pid: int, addrs: List[int]) -> List[Frame]:
        """Named frames, innermost first. Every frame but the innermost is a return address: it
        is looked up one byte earlier, in the call."""
        out = []
        for i, addr in enumerate(addrs):
            out.append(self._frame(pid, addr, addr - 1 if i else addr))
        return out

    def _frame(self, pid: int, addr: int, look: int) -> Frame:
        entry = self._maps.get(pid)
        if entry is None:
            return Frame(addr, why="the process was gone before its maps were read")
        maps, starts = entry
        i = bisect.bisect_right(starts, look) - 1
        if i < 0 or look >= maps[i].end:
            return Frame(addr, why="in no mapping (unmapped since)")
        m = maps[i]
        if not m.path or m.path.startswith("["):
            pm = self._perf.get(pid)
            hit = pm.lookup(look) if pm is not None else None
            if hit is not None:
                return Frame(addr, hit[0], "[jit]", hit[1])
            label = m.path or "[anon]"
            why = ("JIT or generated code without a perf map (/tmp/perf-PID.map)" if not m.path
                   else f"in {m.path}")
            return Frame(addr, None, label, look - m.start, why=why)
        name = os.path.basename(m.path.replace(" (deleted)", ""))
        file_off = look - m.start + m.offset
        if m.path.endswith(" (deleted)"):
            return Frame(addr, None, name, file_off, why="its file was deleted (replaced since it was mapped)")
        syms, why = self._elf_of(pid, m)
        if syms is None:
            return Frame(addr, None, name, file_off, why=why)
        vaddr = syms.vaddr_of(file_off)
        hit = syms.lookup(vaddr) if vaddr is not None else None
        if hit is None:
            if syms.count == 0:
                return Frame(addr, None, name, file_off, why=why or "stripped: no symbol table")
            return Frame(addr, None, name, file_off, why="no symbol covers it" + ("" if syms.has_symtab else
                                                                                   " (only the dynamic symbols: stripped)"))
        return Frame(addr, hit[0], name, hit[1])

    def _elf_of(self, pid: int, m: Mapping) -> Tuple[Optional[ElfSymbols], Optional[str]]:
        try:
            root = os.open(f"{self.proc}/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            known = self._named.get((pid, m.path, m.inode))
            if known is not None and known in self._elf:  # gone: the symbols read while it lived
                return self._elf[known]
            return None, f"its filesystem is not readable ({exc.strerror})"
        try:
            try:
                fd, size = _open_below_root(root, m.path, m.inode, MAX_ELF_BYTES)
            except _Refused as exc:
                return None, f"{m.path}: {exc}"
            except OSError as exc:
                return None, f"{m.path} not opened ({exc.strerror})"
            try:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if len(self._named) < MAX_NAMED_FILES:
                    self._named[(pid, m.path, m.inode)] = key
                if key in self._elf:
                    self._elf.move_to_end(key)
                    return self._elf[key]
                try:
                    syms: Optional[ElfSymbols] = ElfSymbols.parse(fd=fd, size=size)
                    why = None
                except (ElfError, struct.error, OSError) as exc:
                    syms, why = None, f"not readable as ELF ({exc})"
            finally:
                os.close(fd)
            if syms is not None and not syms.has_symtab:
                debug, note = self._debug_file(root, m.path, syms)
                if debug is not None:
                    syms = debug
                elif syms.count == 0:
                    why = f"stripped: no symbol table{note}"
                else:
                    why = note.lstrip("; ") or None
            self._remember(key, syms, why)
            return syms, why
        finally:
            os.close(root)

    def _debug_file(self, root: int, path: str, syms: ElfSymbols) -> Tuple[Optional[ElfSymbols], str]:
        """A separate debug file with the full symbol table: by build-id, then by debug link, in
        the process's filesystem, then the host's. (symbols or None, what was tried)."""
        candidates = []
        for droot in self.debug_roots:
            if syms.build_id and len(syms.build_id) > 2:
                candidates.append(f"{droot}/.build-id/{syms.build_id[:2]}/{syms.build_id[2:]}.debug")
            if syms.debuglink:
                candidates.append(f"{droot}{os.path.dirname(path)}/{syms.debuglink}")
        if syms.debuglink:
            candidates.append(f"{os.path.dirname(path)}/.debug/{syms.debuglink}")
        host_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for where in (root, host_root):
                for cand in candidates[:8]:
                    try:
                        fd, size = _open_below_root(where, cand, None, MAX_ELF_BYTES)
                    except (_Refused, OSError):
                        continue
                    try:
                        dbg = ElfSymbols.parse(fd=fd, size=size)
                    except (ElfError, struct.error, OSError):
                        continue
                    finally:
                        os.close(fd)
                    if dbg.count and (not syms.build_id or not dbg.build_id or dbg.build_id == syms.build_id):
                        dbg.segments = syms.segments  # the mapped file's: a debug file's segments hold no bytes
                        return dbg, ""
        finally:
            os.close(host_root)
        said = f"build-id {syms.build_id}" if syms.build_id else "no build-id"
        if syms.debuglink:
            said += f", debug link {syms.debuglink}"
        return None, f"; no debug file found ({said})"

    def _remember(self, key: tuple, syms: Optional[ElfSymbols], why: Optional[str]) -> None:
        self._elf[key] = (syms, why)
        self._symbols += syms.count if syms is not None else 0
        while len(self._elf) > CACHE_FILES or (self._symbols > CACHE_SYMBOLS and len(self._elf) > 1):
            _, (old, _w) = self._elf.popitem(last=False)
            self._symbols -= old.count if old is not None else 0

    def _read_perf_map(self, pid: int) -> Optional[PerfMap]:
        """/tmp/perf-<pid>.map in the process's filesystem, <pid> as the process knows itself."""
        try:
            with open(f"{self.proc}/{pid}/status", "rb") as f:
                status = f.read(65536)
            nspid = pid
            for line in status.split(b"\n"):
                if line.startswith(b"NSpid:"):
                    nspid = int(line.split()[-1])
            root = os.open(f"{self.proc}/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None
        try:
            fd, _size = _open_below_root(root, f"/tmp/perf-{nspid}.map", None, 1 << 62)
        except (_Refused, OSError):
            return None
        finally:
            os.close(root)
        try:
            return parse_perf_map(os.pread(fd, MAX_PERF_MAP_BYTES, 0))
        except OSError:
            return None
        finally:
            os.close(fd)
