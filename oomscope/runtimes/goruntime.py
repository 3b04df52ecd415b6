"""Go's runtime state, as bytes: which Go built a binary, where its state lies, what it means. No I/O.

A Go program keeps what ``runtime.ReadMemStats`` and the heap profile report in a few global
variables of its runtime, found through the executable's symbols (``.symtab``) and read from
outside the process (oomscope/runtimes/go.py reads them; this module decodes them):

- ``runtime.gcController`` (``gcControllerState``, runtime/mgcpacer.go): the heap in use
  (``heapInUse``, what ``MemStats.HeapInuse`` returns), the objects allocated less those freed
  (``totalAlloc - totalFree``, ``HeapAlloc`` as of the last flush of each P's cache), the GC's goal
  (``heapGoal()``, ``MemStats.NextGC``) and ``GOMEMLIMIT`` (``memoryLimit``);
- ``runtime.memstats`` (``mstats``, runtime/mstats.go): the number of completed GC cycles;
- ``runtime.mbuckets`` (runtime/mprof.go): the heap profile, a list of ``bucket`` linked by
  ``allnext``, each followed by its stack of return PCs and its ``memRecord`` (allocations and
  frees, in objects and bytes, of the sampled allocations); ``runtime.MemProfileRate`` is the
  sampling rate and ``runtime.mProfCycle`` says which pending cycle ``MemProfile`` would fold in.

Struct layouts change between Go versions, so they come from a table per version, each offset
checked against the DWARF of a binary built by that Go (tests/unit/test_go_layout.py builds one
and reads its DWARF with Go's own debug/dwarf), and the sizes of the variables in ``.symtab`` are
checked against the table before anything is read: a binary whose sizes differ is "not read".
A version not in the table is said ("unknown Go version"), never guessed.

The table holds Go 1.19 and 1.21 to 1.27 on amd64: the versions that were built and checked here.
Debian 12 (this project's hosts and VMs) packages golang-1.19 alone; 1.21, 1.22 and 1.23 come from
bookworm-backports, 1.24 from Debian 13 (trixie), 1.25 to 1.27 from trixie-backports, each
fetched and unpacked without installing by tests/go-toolchains.sh (as tests/vm/run-matrix.sh fetches
its 7.x kernels; ./setup.sh test runs it). A prebuilt toolchain from go.dev (or GOTOOLCHAIN's
download) is the kind of download this project does not make. Each entry is checked against the
DWARF of a binary built by that Go (tests/unit/test_go_layout.py) and read end to end by
tests/system/test_go_runtime.py. No golang-1.20 is in those suites' lists nor in bookworm's
(read 2026-12-06): 1.20 is not checked, so not read.

What differs between them, and why no other version is guessed from these:

- offsets: Go 1.18's gcControllerState has ``trigger`` and ``heapGoal`` and none of ``memoryLimit``,
  ``heapInUse``, ``heapFree``, ``totalAlloc`` (HeapInuse came from mstats then). 1.19 has 424 bytes
  of it; by 1.21 ``consMarkController`` (a 64-byte PI controller) gave way to ``lastConsMark``
  (4 floats: 32 bytes), so every field from ``gcPercentHeapGoal`` on sits 32 bytes earlier (392
  bytes, unchanged through 1.27). mstats is 13512 bytes in 1.19 and 9040 in 1.21 (each with a
  ``gcPauseDist`` histogram, of other sizes), 7744 in 1.22 to 1.24 (without it), 8264 in 1.25,
  10440 in 1.26 and 1.27; ``numgc`` is at 7704 up to 1.24, 7680 from 1.25. Releases whose measured
  layouts agree are still entries of their own: each version is a claim checked against its own binary.
- the GC goal under a memory limit (runtime/mgcpacer.go, ``memoryLimitHeapGoal``): 1.19 keeps 1 MiB
  of headroom under the limit (``memoryLimitHeapGoalHeadroom``); from 1.21 on (the sources read
  here; 1.20's were not) the headroom is 3% of the goal (``memoryLimitHeapGoalHeadroomPercent``),
  at least 1 MiB (``memoryLimitMinHeapGoalHeadroom``); ``heapGoalInternal`` and
  ``memoryLimitHeapGoal`` are the same text in 1.21 to 1.24. The rest of ``heapGoalInternal`` (sweep
  distance, 64 KiB of runway past the trigger) is the same in all.
- the heap profile (runtime/mprof.go): a bucket's stack holds up to ``maxStack`` = 32 PCs in 1.19
  to 1.22; from 1.23 up to ``debug.profstackdepth`` PCs (GODEBUG profstackdepth, 128 by default), at
  most ``maxProfStackDepth`` = 1024, the bound used from 1.23. Each ``memRecordCycle`` counts
  allocations, frees and their bytes (4 words) up to 1.26; 1.27 counts objects only (2 words) and
  ``memProfileInternal`` reports them as objects of the bucket's ``size``, so their bytes are read as
  count x size. ``bucket`` (48 bytes), the three future cycles and ``mProfCycle`` (the cycle shifted
  left by one, the low bit "flushed") are the same in all, and so is what MemProfile folds in (the
  pending cycle; every cycle before the first GC).

The workload chose every byte decoded here (its binary, its memory): every count is bounded and
every figure checked for plausibility before it is believed.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

from ..errors import OomscopeError
from .elf import EM_X86_64, Elf, ReadAt

__all__ = ["GoRuntimeError", "GoLayout", "LAYOUTS", "GO_1_19_AMD64", "GO_1_21_AMD64", "GO_1_22_AMD64", "GO_1_23_AMD64",
           "GO_1_24_AMD64", "GO_1_25_AMD64",
           "GO_1_26_AMD64", "GO_1_27_AMD64", "GoHeap",
           "build_version", "layout_for", "decode_heap", "heap_goal", "scale_heap_sample", "BUILDINFO_MAGIC"]

BUILDINFO_MAGIC = b"\xff Go buildinf:"
#: the version string of a build info blob (go1.19.8 is 8 bytes; "devel go1.22-abcdef0 Tue ..." ~50)
MAX_VERSION = 128
#: no figure of a real heap is this large (1 PiB): a larger one is not a Go runtime's state
MAX_PLAUSIBLE_BYTES = 1 << 50
MAX_INT64 = (1 << 63) - 1


class GoRuntimeError(OomscopeError):
    """Bytes that are not (or no longer) a Go runtime's state, or a binary we do not read."""


def _uvarint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(len(data), pos + 10)):
        b = data[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise GoRuntimeError("a bad length in the build info")


def build_version(elf: Elf, read_at: ReadAt) -> Optional[str]:
    """The Go version that built the executable (``go version -m``: "go1.19.8"), from its build info
    (the ``.go.buildinfo`` section, cmd/link/internal/ld/data.go and debug/buildinfo/buildinfo.go):
    a 32-byte header, the magic then the pointer size and flags; since Go 1.18 (flag 2) the version
    follows as a varint-prefixed string, before it the header held the address of a Go string.
    None: not a Go executable (no build info)."""
    sec = elf.section(".go.buildinfo")
    if sec is None or sec.size < 32 or sec.offset + 32 > elf.size:
        return None
    head = read_at(sec.offset, min(sec.size, 32 + 10 + MAX_VERSION, elf.size - sec.offset))
    if len(head) < 32 or head[:14] != BUILDINFO_MAGIC:
        return None
    ptr_size, flags = head[14], head[15]
    if flags & 2:
        length, at = _uvarint(head, 32)
        if length == 0 or length > MAX_VERSION or at + length > len(head):
            raise GoRuntimeError("the build info's version string is not plausible")
        raw = head[at:at + length]
    else:
        if ptr_size not in (4, 8):
            raise GoRuntimeError(f"the build info's pointer size is {ptr_size}")
        order = ">" if flags & 1 else "<"
        fmt = order + ("I" if ptr_size == 4 else "Q")
        (addr,) = struct.unpack_from(fmt, head, 16)
        header = elf.read_vaddr(read_at, addr, 2 * ptr_size)
        if header is None:
            raise GoRuntimeError("the build info's version is not in the file")
        data_addr, length = struct.unpack(order + ("II" if ptr_size == 4 else "QQ"), header)
        if length == 0 or length > MAX_VERSION:
            raise GoRuntimeError("the build info's version string is not plausible")
        raw = elf.read_vaddr(read_at, data_addr, length)
        if raw is None:
            raise GoRuntimeError("the build info's version is not in the file")
    text = raw.decode("utf-8", "replace")
    if not text.isprintable():
        raise GoRuntimeError("the build info's version string is not text")
    return text


@dataclass(frozen=True)
class GoLayout:
    """Where a Go version keeps what is read, on one architecture: byte offsets in its structs."""

    release: str           # "go1.19"
    machine: int           # ELF e_machine (EM_X86_64)
    # the sizes of the variables, as .symtab gives them: a binary whose sizes differ is not read
    gc_controller_size: int
    memstats_size: int
    # gcControllerState (runtime/mgcpacer.go)
    gc_percent: int        # atomic.Int32: GOGC, -1 = off
    memory_limit: int      # atomic.Int64: GOMEMLIMIT, math.MaxInt64 = none
    gc_percent_heap_goal: int
    sweep_dist_min_trigger: int
    triggered: int
    heap_live: int
    heap_marked: int
    heap_in_use: int       # sysMemStat: MemStats.HeapInuse
    heap_released: int
    heap_free: int
    total_alloc: int
    total_free: int
    mapped_ready: int
    # mstats (runtime/mstats.go)
    numgc: int             # uint32
    # bucket and memRecord (runtime/mprof.go)
    bucket_size: int       # the header; the stack follows it, then the memRecord
    bucket_allnext: int
    bucket_typ: int
    bucket_nstk: int
    mem_profile_type: int  # bucketType memProfile
    max_stack: int         # maxStack: a bucket's stack has at most this many PCs
    mem_record_size: int   # active, then future[3], each memRecordCycle of mem_record_cycle_words words
    mem_record_futures: int
    bucket_alloc_size: int = 32    # bucket.size: the bytes of each allocation the bucket counts
    #: 4: allocs, frees, alloc_bytes, free_bytes; 2 (1.27): allocs, frees, bytes = count x bucket.size
    mem_record_cycle_words: int = 4
    # runtime/mgcpacer.go, heapGoalInternal and memoryLimitHeapGoal
    min_runway: int = 64 << 10
    memory_limit_headroom: int = 1 << 20       # the least headroom under the limit (all: 1 MiB)
    memory_limit_headroom_percent: int = 0     # the headroom's share of the goal (1.21 on: 3%)


#: Go 1.19 on amd64. Every offset read from the DWARF of a binary Debian's golang-go 1.19.8 built
#: (tests/unit/test_go_layout.py checks them again against the Go installed). The structs:
#: runtime/mgcpacer.go (gcControllerState), runtime/mstats.go (mstats), runtime/mprof.go (bucket,
#: memRecord, memRecordCycle; maxStack = 32; memProfile = 1, the first bucketType).
GO_1_19_AMD64 = GoLayout(
    release="go1.19", machine=EM_X86_64, gc_controller_size=424, memstats_size=13512,
    gc_percent=0, memory_limit=8, gc_percent_heap_goal=104, sweep_dist_min_trigger=112, triggered=120,
    heap_live=136, heap_marked=184, heap_in_use=304, heap_released=312, heap_free=320, total_alloc=328,
    total_free=336, mapped_ready=344, numgc=7704,
    bucket_size=48, bucket_allnext=8, bucket_typ=16, bucket_nstk=40, mem_profile_type=1, max_stack=32,
    mem_record_size=128, mem_record_futures=3,
)

#: Go 1.22 on amd64, from the DWARF of a binary Debian's golang-1.22-go 1.22.12 (bookworm-backports)
#: built: gcControllerState 32 bytes shorter (lastConsMark for consMarkController), mstats without
#: gcPauseDist; memoryLimitHeapGoal's headroom 3% of the goal, at least 1 MiB (runtime/mgcpacer.go).
GO_1_22_AMD64 = GoLayout(
    release="go1.22", machine=EM_X86_64, gc_controller_size=392, memstats_size=7744,
    gc_percent=0, memory_limit=8, gc_percent_heap_goal=72, sweep_dist_min_trigger=80, triggered=88,
    heap_live=104, heap_marked=152, heap_in_use=272, heap_released=280, heap_free=288, total_alloc=296,
    total_free=304, mapped_ready=312, numgc=7704,
    bucket_size=48, bucket_allnext=8, bucket_typ=16, bucket_nstk=40, mem_profile_type=1, max_stack=32,
    mem_record_size=128, mem_record_futures=3, memory_limit_headroom_percent=3,
)

#: Go 1.21 on amd64, from the DWARF of a binary Debian's golang-1.21-go 1.21.13 (bookworm-backports)
#: built: gcController, numgc and the heap profile as in 1.22, but mstats of 9040 bytes (it still
#: holds gcPauseDist, the one field of mstats 1.22 dropped: runtime/mstats.go); the headroom under
#: a memory limit is 1.22's (runtime/mgcpacer.go of 1.21: memoryLimitHeapGoal, the same text).
GO_1_21_AMD64 = replace(GO_1_22_AMD64, release="go1.21", memstats_size=9040)

#: Go 1.23 on amd64 (golang-1.23-go 1.23.5, bookworm-backports): the offsets and sizes of 1.22
#: (checked again against that binary, not assumed); a bucket's stack up to debug.profstackdepth
#: PCs, at most maxProfStackDepth = 1024 (runtime/mprof.go, new in 1.23).
GO_1_23_AMD64 = replace(GO_1_22_AMD64, release="go1.23", max_stack=1024)

#: Go 1.24 on amd64, from the DWARF of a binary Debian's golang-1.24-go 1.24.4 (trixie) built: as 1.23.
GO_1_24_AMD64 = replace(GO_1_23_AMD64, release="go1.24")

#: Go 1.25 on amd64 (Debian's golang-1.25-go 1.25.12, trixie-backports): gcController and the heap
#: profile as in 1.24; mstats grew to 8264 bytes and numgc moved to 7704 - 24 = 7680.
GO_1_25_AMD64 = replace(GO_1_24_AMD64, release="go1.25", memstats_size=8264, numgc=7680)

#: Go 1.26 on amd64 (golang-1.26-go 1.26.11, trixie-backports): as 1.25 but mstats of 10440 bytes.
GO_1_26_AMD64 = replace(GO_1_25_AMD64, release="go1.26", memstats_size=10440)

#: Go 1.27 on amd64 (golang-1.27-go 1.27.4, trixie-backports): as 1.26, but a memRecordCycle counts
#: objects only (allocs, frees: 16 bytes, memRecord 64): a bucket's bytes are its objects times
#: bucket.size (runtime/mprof.go, memRecordCycle and memProfileInternal's ObjectSize).
GO_1_27_AMD64 = replace(GO_1_26_AMD64, release="go1.27", mem_record_size=64, mem_record_cycle_words=2)

LAYOUTS: Dict[Tuple[str, int], GoLayout] = {(L.release, L.machine): L for L in (
    GO_1_19_AMD64, GO_1_21_AMD64, GO_1_22_AMD64, GO_1_23_AMD64, GO_1_24_AMD64, GO_1_25_AMD64, GO_1_26_AMD64, GO_1_27_AMD64)}

_RELEASE = re.compile(r"go(1\.[0-9]+)(?:\.[0-9]+)?")


def release_of(version: str) -> Optional[str]:
    """"go1.19.8" -> "go1.19"; None for a development build or a release candidate ("go1.20rc1",
    "devel go1.21-..."), whose layouts are not those of any release."""
    first = version.split(" ", 1)[0]
    m = _RELEASE.fullmatch(first)
    return f"go{m.group(1)}" if m else None


def layout_for(version: str, machine: int) -> GoLayout:
    """The layout to read a binary of ``version`` for ``machine``, or :class:`GoRuntimeError`
    saying why it is not read."""
    release = release_of(version)
    layout = LAYOUTS.get((release or "", machine))
    if layout is None:
        supported = ", ".join(sorted(r for r, _ in LAYOUTS))
        if release is not None and machine != EM_X86_64:
            raise GoRuntimeError(f"Go {version} on ELF machine {machine}: not read (oomscope reads {supported} on amd64)")
        raise GoRuntimeError(f"unknown Go version {version}: not read (oomscope knows the layouts of {supported})")
    return layout


def check_sizes(layout: GoLayout, gc_controller_size: int, memstats_size: int) -> None:
    """The variables' sizes in .symtab are the layout's, or the binary is not read."""
    if gc_controller_size != layout.gc_controller_size or memstats_size != layout.memstats_size:
        raise GoRuntimeError(
            f"runtime.gcController is {gc_controller_size} bytes and runtime.memstats {memstats_size} "
            f"({layout.gc_controller_size} and {layout.memstats_size} in {layout.release}): a different layout, not read")


@dataclass(frozen=True)
class GoHeap:
    """What ``runtime.ReadMemStats`` would say of the heap, read from outside. Bytes."""

    heap_inuse_bytes: int          # MemStats.HeapInuse: bytes in in-use spans
    heap_alloc_bytes: int          # MemStats.HeapAlloc as of the last flush of the Ps' caches
    heap_live_bytes: int           # what the GC's pacer counts (marked at the last GC + allocated since)
    heap_goal_bytes: Optional[int]  # MemStats.NextGC: the GC's goal; None: none (GOGC=off, no GOMEMLIMIT)
    memory_limit_bytes: Optional[int]  # GOMEMLIMIT (debug.SetMemoryLimit); None: none set
    gc_percent: Optional[int]      # GOGC; None: off
    heap_released_bytes: int       # MemStats.HeapReleased
    heap_free_bytes: int           # free spans not returned to the OS (HeapIdle - HeapReleased)
    mapped_ready_bytes: int        # all the runtime's memory not returned to the OS
    gc_cycles: int                 # MemStats.NumGC


def _u64(raw: bytes, off: int) -> int:
    return struct.unpack_from("<Q", raw, off)[0]


def heap_goal(layout: GoLayout, gc_percent_goal: int, sweep_dist_min_trigger: int, triggered: int,
              memory_limit: int, heap_free: int, heap_alloc: int, mapped_ready: int, heap_marked: int) -> int:
    """The GC's goal as ``gcControllerState.heapGoalInternal`` computes it (runtime/mgcpacer.go of
    1.19 to 1.27): the GOGC goal, or the memory limit's when smaller (``memoryLimitHeapGoal``:
    the limit less the memory that is not heap objects, less what the runtime's memory is over it,
    less the headroom: 1 MiB in 1.19, 3% of that goal but at least 1 MiB from 1.21; never under
    the heap marked at the last GC); else the GOGC goal moved up to keep a minimum
    sweep distance and 64 KiB of runway past the trigger."""
    goal = gc_percent_goal
    limit_goal = None
    if heap_free + heap_alloc <= mapped_ready:  # else a torn read of counters updated apart: skipped
        non_heap = mapped_ready - heap_free - heap_alloc
        overage = mapped_ready - memory_limit if mapped_ready > memory_limit else 0
        if non_heap + overage >= memory_limit:
            limit_goal = heap_marked
        else:
            g = memory_limit - (non_heap + overage)
            headroom = max(g // 100 * layout.memory_limit_headroom_percent, layout.memory_limit_headroom)
            g = headroom if g < headroom or g - headroom < headroom else g - headroom
            limit_goal = max(g, heap_marked)
    if limit_goal is not None and limit_goal < goal:
        return limit_goal
    goal = max(goal, sweep_dist_min_trigger)
    if triggered != (1 << 64) - 1 and goal < triggered + layout.min_runway:
        goal = triggered + layout.min_runway
    return goal


def decode_heap(layout: GoLayout, controller: bytes, numgc: int) -> GoHeap:
    """``controller``: the bytes of runtime.gcController; ``numgc``: memstats.numgc."""
    if len(controller) < layout.gc_controller_size:
        raise GoRuntimeError("runtime.gcController was read short")
    c = controller
    (gc_percent,) = struct.unpack_from("<i", c, layout.gc_percent)
    (memory_limit,) = struct.unpack_from("<q", c, layout.memory_limit)
    in_use, released, free = _u64(c, layout.heap_in_use), _u64(c, layout.heap_released), _u64(c, layout.heap_free)
    total_alloc, total_free, mapped = _u64(c, layout.total_alloc), _u64(c, layout.total_free), _u64(c, layout.mapped_ready)
    live, marked = _u64(c, layout.heap_live), _u64(c, layout.heap_marked)
    pct_goal, sweep_trigger, triggered = (_u64(c, layout.gc_percent_heap_goal), _u64(c, layout.sweep_dist_min_trigger),
                                          _u64(c, layout.triggered))
    for name, v in (("heapInUse", in_use), ("heapReleased", released), ("heapFree", free), ("mappedReady", mapped),
                    ("totalAlloc", total_alloc), ("heapLive", live), ("heapMarked", marked)):
        if v > MAX_PLAUSIBLE_BYTES:
            raise GoRuntimeError(f"gcController.{name} is {v}: not a Go runtime's state")
    heap_alloc = total_alloc - total_free
    if total_free > total_alloc or in_use > mapped + free + released or memory_limit < 0 or gc_percent < -1:
        raise GoRuntimeError("gcController's counters contradict each other: not a Go runtime's state")
    goal = heap_goal(layout, pct_goal, sweep_trigger, triggered, memory_limit, free, heap_alloc, mapped, marked)
    return GoHeap(
        heap_inuse_bytes=in_use, heap_alloc_bytes=heap_alloc, heap_live_bytes=live,
        heap_goal_bytes=goal if goal <= MAX_PLAUSIBLE_BYTES else None,
        memory_limit_bytes=None if memory_limit == MAX_INT64 else memory_limit,
        gc_percent=None if gc_percent < 0 else gc_percent,
        heap_released_bytes=released, heap_free_bytes=free, mapped_ready_bytes=mapped, gc_cycles=numgc,
    )


def scale_heap_sample(count: int, size: int, rate: int) -> Tuple[int, int]:
    """The objects and bytes a sample stands for, as pprof estimates them (runtime/pprof/protomem.go,
    scaleHeapSample): an allocation of s bytes is sampled with probability 1 - exp(-s/rate)."""
    if count <= 0 or size <= 0:
        return 0, 0
    if rate <= 1:
        return count, size
    scale = 1 / (1 - math.exp(-(size / count) / rate))
    return int(count * scale), int(size * scale)


@dataclass(frozen=True)
class BucketRecord:
    """One heap-profile bucket as read: its stack (return PCs, innermost first) and what its
    sampled allocations still hold (active + the pending cycle MemProfile would fold in)."""

    next_address: int
    stack: Tuple[int, ...]
    inuse_objects: int
    inuse_bytes: int
    touched: bool  # the active record has any allocation or free (MemProfile's "clear" test)
    all_cycles_objects: int  # every cycle folded in: what MemProfile reports before the first GC
    all_cycles_bytes: int


def bucket_header(layout: GoLayout, raw: bytes) -> Tuple[int, int, int]:
    """(allnext, typ, nstk) of a bucket's header bytes."""
    return (_u64(raw, layout.bucket_allnext), _u64(raw, layout.bucket_typ), _u64(raw, layout.bucket_nstk))


def decode_bucket(layout: GoLayout, header: bytes, body: bytes, cycle_index: int) -> BucketRecord:
    """``body``: the nstk PCs then the memRecord. Raises on a bucket no runtime would write."""
    allnext, typ, nstk = bucket_header(layout, header)
    if typ != layout.mem_profile_type or not 0 < nstk <= layout.max_stack:
        raise GoRuntimeError(f"a heap-profile bucket of type {typ} with {nstk} frames: not a Go runtime's")
    if len(body) < nstk * 8 + layout.mem_record_size:
        raise GoRuntimeError("a heap-profile bucket was read short")
    stack = struct.unpack_from(f"<{nstk}Q", body, 0)
    words = layout.mem_record_cycle_words
    cycles = [struct.unpack_from(f"<{words}Q", body, nstk * 8 + 8 * words * i) for i in range(1 + layout.mem_record_futures)]
    if words == 2:  # objects only: each of bucket.size bytes
        size = _u64(header, layout.bucket_alloc_size)
        if not 0 < size <= MAX_PLAUSIBLE_BYTES:
            raise GoRuntimeError(f"a heap-profile bucket of {size}-byte objects: not a Go runtime's")
        cycles = [(a, f, a * size, f * size) for a, f in cycles]
    active, pending = cycles[0], cycles[1 + cycle_index % layout.mem_record_futures]

    def inuse(parts) -> Tuple[int, int]:
        allocs, frees, alloc_bytes, free_bytes = (sum(p[k] for p in parts) for k in range(4))
        if frees > allocs or free_bytes > alloc_bytes or alloc_bytes > MAX_PLAUSIBLE_BYTES * 16:
            raise GoRuntimeError("a heap-profile bucket frees more than it allocated: not a Go runtime's")
        return allocs - frees, alloc_bytes - free_bytes

    objects, nbytes = inuse([active, pending])
    all_objects, all_bytes = inuse(cycles)
    return BucketRecord(allnext, tuple(stack), objects, nbytes, bool(active[0] or active[1]), all_objects, all_bytes)
