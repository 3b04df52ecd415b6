"""The JVM's performance counters (hsperfdata): bytes in, typed counters out. No I/O here.

A HotSpot JVM keeps its counters in a memory-mapped file, ``/tmp/hsperfdata_<user>/<pid>``
(unless started with ``-XX:-UsePerfData``); ``jstat`` reads the same file. Its layout is public in
the JDK (``src/hotspot/share/runtime/perfMemory.hpp``, ``perfData.hpp``):

    prologue: magic 0xcafec0c0 (always big-endian), byte_order (0 big, 1 little), major, minor,
              accessible, used, overflow, mod_time_stamp, entry_offset, num_entries
    entry:    entry_length, name_offset, vector_length, data_type ('J' a 64-bit long,
              'B' a byte vector: a string), flags, data_units, data_variability, data_offset

The file is written by the JVM while we read it: every offset and length is checked against the
buffer, and a file that does not parse gives :class:`HsperfdataError`, never a crash. Tested on
files captured from OpenJDK 17 and 25 (tests/fixtures/hsperfdata/).
"""

import re
import struct
import time
from dataclasses import dataclass
from typing import Dict, Optional, Union

from ..errors import OomscopeError

MAGIC = 0xCAFEC0C0
PROLOGUE = struct.Struct("4sBBBBiiqii")  # after the magic's 4 bytes, in the file's byte order
ENTRY = struct.Struct("iiiBBBBi")
# Every count in the file is the workload's to choose, so each is bounded before it drives a loop.
# A JVM's 32 KiB file holds about 1,000 entries (the fixtures: 1,046 and 1,154).
MAX_ENTRIES = 1 << 14
MAX_NAME = 256
#: a generation has at most 3 spaces (eden and two survivors; old has 1): more is not a JVM's file
MAX_SPACES = 8
#: parsing gives up past this (MAX_ENTRIES of the smallest entries parse in 8 ms here, a JVM's
#: real file in 0.16 ms: tests/unit/test_jvm_reader_hostile.py builds the former)
PARSE_BUDGET_S = 0.05


class HsperfdataError(OomscopeError):
    """A file that is not (or no longer) a JVM's hsperfdata."""


def parse_counters(data: bytes, budget_s: float = PARSE_BUDGET_S) -> Dict[str, Union[int, str]]:
    """Every counter of the file: name -> int (longs) or str (byte vectors, NUL-terminated).
    Gives up with :class:`HsperfdataError` after ``budget_s`` seconds (checked every 256 entries)."""
    if len(data) < 4 + PROLOGUE.size - 4:
        raise HsperfdataError("too short for an hsperfdata prologue")
    if struct.unpack_from(">I", data, 0)[0] != MAGIC:
        raise HsperfdataError("not an hsperfdata file (bad magic)")
    order = "<" if data[4] == 1 else ">"
    _magic, _bo, major, _minor, _acc, used, _ovf, _mod, entry_offset, num_entries = struct.unpack_from(order + PROLOGUE.format, data, 0)
    if major != 2:
        raise HsperfdataError(f"hsperfdata version {major} is not supported (2 is)")
    if not 0 <= num_entries <= MAX_ENTRIES:
        raise HsperfdataError(f"implausible entry count {num_entries}")
    end = min(len(data), used) if used > 0 else len(data)
    entry = struct.Struct(order + ENTRY.format)
    out: Dict[str, Union[int, str]] = {}
    pos = entry_offset
    give_up = time.monotonic() + budget_s
    for i in range(num_entries):
        if i & 255 == 255 and time.monotonic() > give_up:
            raise HsperfdataError(f"parsing {num_entries} entries took longer than {budget_s * 1000:.0f} ms")
        if pos < 0 or pos + entry.size > end:
            raise HsperfdataError(f"entry at {pos} runs past the file's used size {end}")
        length, name_off, vlen, dtype, _flags, _units, _var, data_off = entry.unpack_from(data, pos)
        if length < entry.size or pos + length > end:
            raise HsperfdataError(f"entry at {pos} has a bad length {length}")
        name_start = pos + name_off
        name_end = data.find(b"\0", name_start, min(pos + length, name_start + MAX_NAME))
        if name_off < entry.size or name_end < 0:
            raise HsperfdataError(f"entry at {pos} has no name")
        name = data[name_start:name_end].decode("ascii", "replace")
        value_at = pos + data_off
        if dtype == ord("J") and vlen == 0:
            if data_off < 0 or value_at + 8 > pos + length:
                raise HsperfdataError(f"counter {name!r} runs past its entry")
            out[name] = struct.unpack_from(order + "q", data, value_at)[0]
        elif dtype == ord("B") and vlen > 0:
            if data_off < 0 or value_at + vlen > pos + length:
                raise HsperfdataError(f"string {name!r} runs past its entry")
            raw = data[value_at:value_at + vlen].split(b"\0", 1)[0]
            out[name] = raw.decode("utf-8", "replace")
        pos += length
    return out


@dataclass(frozen=True)
class JvmMemory:
    """A JVM's view of its own memory, as ``jstat -gc`` and the heap dashboards (JMX's
    MemoryPoolMXBeans, Micrometer's ``jvm_memory_used_bytes``) show it. Bytes; None = not in the
    file (the collector or the JDK version does not publish it)."""

    heap_used_bytes: int
    heap_committed_bytes: int
    heap_max_bytes: Optional[int]
    young_used_bytes: int
    old_used_bytes: int
    metaspace_used_bytes: Optional[int]
    metaspace_committed_bytes: Optional[int]
    class_space_used_bytes: Optional[int]
    class_space_committed_bytes: Optional[int]
    threads_live: Optional[int]
    young_gc_count: Optional[int]
    full_gc_count: Optional[int]
    gc_time_ms: Optional[float]
    vm_name: Optional[str]
    vm_version: Optional[str]
    vm_args: Optional[str]


def _gen_space_sums(c: Dict[str, Union[int, str]], gen: int, field: str) -> int:
    total = 0
    spaces = c.get(f"sun.gc.generation.{gen}.spaces", 0)
    if not isinstance(spaces, int):
        spaces = 0
    if not 0 <= spaces <= MAX_SPACES:
        # a planted 2**62 here once drove range() and stopped the sampler for the whole host
        raise HsperfdataError(f"implausible space count {spaces} in generation {gen}")
    for s in range(spaces):
        v = c.get(f"sun.gc.generation.{gen}.space.{s}.{field}")
        if isinstance(v, int):
            total += v
    return total


def _int(c: Dict[str, Union[int, str]], key: str) -> Optional[int]:
    v = c.get(key)
    return v if isinstance(v, int) else None


def jvm_memory(counters: Dict[str, Union[int, str]]) -> JvmMemory:
    """The heap as jstat -gc counts it: used = eden + survivors + old (each generation's spaces);
    committed = the generations' capacities; max = their max capacities."""
    if "sun.gc.generation.0.spaces" not in counters:
        raise HsperfdataError("no heap counters (sun.gc.generation.*): not a HotSpot JVM, or -XX:-UsePerfData")
    young_used = _gen_space_sums(counters, 0, "used")
    old_used = _gen_space_sums(counters, 1, "used")
    committed = sum(_int(counters, f"sun.gc.generation.{g}.capacity") or 0 for g in (0, 1))
    maxes = [_int(counters, f"sun.gc.generation.{g}.maxCapacity") for g in (0, 1)]
    if not all(m is not None for m in maxes):
        heap_max = None
    elif counters.get("sun.gc.policy.name") == "GarbageFirst":
        # G1's regions can be young or old: it publishes the whole heap as each generation's
        # maximum (hotspot/share/gc/g1/g1MonitoringSupport.cpp), so the heap's max is one of them.
        heap_max = max(maxes)
    else:
        heap_max = sum(maxes)
    freq = _int(counters, "sun.os.hrt.frequency")
    ticks = [_int(counters, f"sun.gc.collector.{i}.time") for i in range(4)]
    gc_ms = (sum(t for t in ticks if t is not None) * 1000.0 / freq) if freq else None

    def text(key: str) -> Optional[str]:
        v = counters.get(key)
        return v if isinstance(v, str) else None

    return JvmMemory(
        heap_used_bytes=young_used + old_used,
        heap_committed_bytes=committed,
        heap_max_bytes=heap_max,
        young_used_bytes=young_used,
        old_used_bytes=old_used,
        metaspace_used_bytes=_int(counters, "sun.gc.metaspace.used"),
        metaspace_committed_bytes=_int(counters, "sun.gc.metaspace.capacity"),
        class_space_used_bytes=_int(counters, "sun.gc.compressedclassspace.used"),
        class_space_committed_bytes=_int(counters, "sun.gc.compressedclassspace.capacity"),
        threads_live=_int(counters, "java.threads.live"),
        young_gc_count=_int(counters, "sun.gc.collector.0.invocations"),
        full_gc_count=_int(counters, "sun.gc.collector.1.invocations"),
        gc_time_ms=gc_ms,
        vm_name=text("java.property.java.vm.name"),
        vm_version=text("java.property.java.vm.version"),
        vm_args=memory_flags(text("java.rt.vmArgs")),
    )


# The JVM's arguments carry JAVA_TOOL_OPTIONS, which lives only in its environment and may hold
# secrets (-Dsecret.password=...): only the flags the analysis reads are kept, each whole token
# matched with a value of digits and a unit, so that nothing else of the argument line can pass.
_SIZE = r"[0-9]+(?:\.[0-9]+)?[kKmMgGtT]?"
_MEMORY_FLAG = re.compile(
    r"-X(?:mx|ms|mn|ss)" + _SIZE
    + r"|-XX:[+-](?:AlwaysPreTouch|UseContainerSupport|UseTransparentHugePages|UseLargePages|UseCompressedOops"
      r"|UseCompressedClassPointers|UseG1GC|UseParallelGC|UseSerialGC|UseZGC|UseShenandoahGC|UseEpsilonGC"
      r"|ZGenerational|UseStringDeduplication|ExitOnOutOfMemoryError|CrashOnOutOfMemoryError|HeapDumpOnOutOfMemoryError)"
    + r"|-XX:(?:MaxRAMPercentage|InitialRAMPercentage|MinRAMPercentage|MaxRAM|MaxHeapSize|InitialHeapSize|MinHeapSize"
      r"|MaxNewSize|NewSize|MaxDirectMemorySize|MaxMetaspaceSize|MetaspaceSize|CompressedClassSpaceSize"
      r"|ReservedCodeCacheSize|InitialCodeCacheSize|ThreadStackSize|VMThreadStackSize|CompilerThreadStackSize"
      r"|MaxMetaspaceFreeRatio|MinMetaspaceFreeRatio|SoftMaxHeapSize|G1HeapRegionSize|ActiveProcessorCount"
      r"|ParallelGCThreads|ConcGCThreads|CICompilerCount)=" + _SIZE
    + r"|-XX:NativeMemoryTracking=(?:off|summary|detail)"
)
MAX_VM_ARGS = 64 * 1024  # a longer argument line is cut before it is split


def memory_flags(vm_args: Optional[str]) -> Optional[str]:
    """The memory and GC flags of a JVM's argument line, nothing else (None stays None)."""
    if vm_args is None:
        return None
    return " ".join(t for t in vm_args[:MAX_VM_ARGS].split() if _MEMORY_FLAG.fullmatch(t))
