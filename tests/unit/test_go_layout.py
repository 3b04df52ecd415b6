"""Go's runtime layouts (oomscope/runtimes/goruntime.py): each entry of the table against the DWARF
of a binary built by that Go (read by that Go's own debug/dwarf; the toolchains: go_programs.py),
the installed Go's too, and the arithmetic of the heap figures."""

import math
import os
import re
import struct
import subprocess

import pytest

from oomscope.runtimes.elf import read_elf
from oomscope.runtimes.goruntime import (GO_1_19_AMD64, GO_1_21_AMD64, GO_1_22_AMD64, GO_1_23_AMD64, GO_1_24_AMD64, GO_1_27_AMD64,
                                         LAYOUTS, MAX_INT64, GoRuntimeError, build_version, decode_bucket, decode_heap, heap_goal,
                                         layout_for, release_of, scale_heap_sample)

from .go_programs import build

# each of the table's fields: (struct as DWARF names it, field)
FIELDS = {
    "gc_percent": ("runtime.gcControllerState", "gcPercent"),
    "memory_limit": ("runtime.gcControllerState", "memoryLimit"),
    "gc_percent_heap_goal": ("runtime.gcControllerState", "gcPercentHeapGoal"),
    "sweep_dist_min_trigger": ("runtime.gcControllerState", "sweepDistMinTrigger"),
    "triggered": ("runtime.gcControllerState", "triggered"),
    "heap_live": ("runtime.gcControllerState", "heapLive"),
    "heap_marked": ("runtime.gcControllerState", "heapMarked"),
    "heap_in_use": ("runtime.gcControllerState", "heapInUse"),
    "heap_released": ("runtime.gcControllerState", "heapReleased"),
    "heap_free": ("runtime.gcControllerState", "heapFree"),
    "total_alloc": ("runtime.gcControllerState", "totalAlloc"),
    "total_free": ("runtime.gcControllerState", "totalFree"),
    "mapped_ready": ("runtime.gcControllerState", "mappedReady"),
    "numgc": ("runtime.mstats", "numgc"),
    "bucket_allnext": ("runtime.bucket", "allnext"),
    "bucket_typ": ("runtime.bucket", "typ"),
    "bucket_nstk": ("runtime.bucket", "nstk"),
    "bucket_alloc_size": ("runtime.bucket", "size"),
}
SIZES = {
    "gc_controller_size": "runtime.gcControllerState",
    "memstats_size": "runtime.mstats",
    "bucket_size": "runtime.bucket",
    "mem_record_size": "runtime.memRecord",
}


def _dwarf(binary: str, release: str = "") -> dict:
    structs = sorted({s for s, _ in FIELDS.values()} | set(SIZES.values()) | {"runtime.memRecordCycle"})
    out = subprocess.run([build("dwarfdump", release=release), binary, *structs], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    layout, current = {}, None
    for line in out.splitlines():
        if not line.startswith(" "):
            name, size = line.split(" size=")
            current = layout.setdefault(name, {"": int(size)})
        else:
            field, offset = line.split()
            current[field] = int(offset)
    return layout


def _version_and_machine(binary: str):
    with open(binary, "rb") as f:
        data = f.read()
    e = read_elf(lambda o, n: data[o:o + n], len(data))
    return build_version(e, lambda o, n: data[o:o + n]), e.machine


def _check_against_dwarf(layout, binary: str, release: str = "") -> None:
    dwarf = _dwarf(binary, release)
    for attr, (struct_name, field) in FIELDS.items():
        assert getattr(layout, attr) == dwarf[struct_name][field], f"{layout.release} {attr}: {struct_name}.{field}"
    for attr, struct_name in SIZES.items():
        assert getattr(layout, attr) == dwarf[struct_name][""], f"{layout.release} {attr}"
    # memRecord is active then future[3], each a memRecordCycle of 4 words in this order (2 from 1.27)
    words = layout.mem_record_cycle_words
    assert dwarf["runtime.memRecord"]["future"] == dwarf["runtime.memRecordCycle"][""] == 8 * words
    cycle = {f: o for f, o in dwarf["runtime.memRecordCycle"].items() if f}
    assert cycle == dict(zip(("allocs", "frees", "alloc_bytes", "free_bytes")[:words], range(0, 8 * words, 8))), cycle
    assert layout.mem_record_size == 8 * words * (1 + layout.mem_record_futures)


def test_the_table_is_the_dwarf_of_the_installed_go():
    binary = build("leaklab")
    version, machine = _version_and_machine(binary)
    release = release_of(version)
    if (release, machine) not in LAYOUTS:
        with pytest.raises(GoRuntimeError, match=f"unknown Go version {version}: not read"):
            layout_for(version, machine)
        pytest.skip(f"the installed Go is {version}: the table has no layout to compare (it says so, above)")
    _check_against_dwarf(layout_for(version, machine), binary)


@pytest.mark.parametrize("release", sorted(r for r, _ in LAYOUTS))
def test_each_entry_is_the_dwarf_of_its_go(release):
    """Every entry of the table, against a binary its own Go built (all but 1.19: Debian's packages,
    fetched by tests/go-toolchains.sh)."""
    binary = build("leaklab", release=release)
    version, machine = _version_and_machine(binary)
    assert release_of(version) == release, version
    layout = layout_for(version, machine)
    assert layout.release == release
    _check_against_dwarf(layout, binary, release)


def test_the_table_holds_the_releases_the_set_up_fetches():
    """tests/go-toolchains.sh fetches every release of the table the host's Go is not (1.19)."""
    script = open(os.path.join(os.path.dirname(__file__), "..", "go-toolchains.sh")).read()
    (minors,) = re.findall(r'OOMSCOPE_GO_MINORS:-([0-9. ]+)\}', script)
    assert {f"go{m}" for m in minors.split()} | {"go1.19"} == {r for r, _ in LAYOUTS}


@pytest.mark.parametrize("version,release", [
    ("go1.19.8", "go1.19"), ("go1.19", "go1.19"), ("go1.21.0", "go1.21"), ("go1.20rc1", None),
    ("devel go1.22-abcdef0 Tue Jan 1", None), ("go1.19.8 X:boringcrypto", "go1.19"), ("gox", None), ("", None),
])
def test_release_of(version, release):
    assert release_of(version) == release


def test_only_known_layouts_are_read():
    assert layout_for("go1.19.8", GO_1_19_AMD64.machine) is GO_1_19_AMD64
    assert layout_for("go1.21.13", GO_1_19_AMD64.machine) is GO_1_21_AMD64
    assert layout_for("go1.22.12", GO_1_19_AMD64.machine) is GO_1_22_AMD64
    assert layout_for("go1.23.5", GO_1_19_AMD64.machine) is GO_1_23_AMD64
    assert layout_for("go1.24.4", GO_1_19_AMD64.machine) is GO_1_24_AMD64
    assert layout_for("go1.27.4", GO_1_19_AMD64.machine) is GO_1_27_AMD64
    # 1.20 (no Debian suite the set-up reads packages it), before 1.19 and after 1.27: said, not guessed
    for other in ("go1.18.10", "go1.20.14", "go1.20.0", "go1.28.0", "go1.30.1"):
        with pytest.raises(GoRuntimeError, match=f"unknown Go version {other}: not read"):
            layout_for(other, GO_1_19_AMD64.machine)
    with pytest.raises(GoRuntimeError, match="on ELF machine 183: not read"):
        layout_for("go1.19.8", 183)


# --- the heap's figures -------------------------------------------------------------------------

def _controller(L=GO_1_19_AMD64, **values) -> bytes:
    raw = bytearray(L.gc_controller_size)
    base = dict(gc_percent=100, memory_limit=MAX_INT64, gc_percent_heap_goal=40 << 20, sweep_dist_min_trigger=0,
                triggered=(1 << 64) - 1, heap_live=18 << 20, heap_marked=20 << 20, heap_in_use=30 << 20,
                heap_released=1 << 20, heap_free=2 << 20, total_alloc=100 << 20, total_free=75 << 20,
                mapped_ready=40 << 20)
    base.update(values)
    for name, v in base.items():
        fmt = "<i" if name == "gc_percent" else "<q" if name == "memory_limit" else "<Q"
        struct.pack_into(fmt, raw, getattr(L, name), v)
    return bytes(raw)


def test_the_heap_figures_without_a_memory_limit():
    h = decode_heap(GO_1_19_AMD64, _controller(), 7)
    assert h.heap_inuse_bytes == 30 << 20 and h.heap_alloc_bytes == 25 << 20 and h.heap_live_bytes == 18 << 20
    assert h.heap_goal_bytes == 40 << 20 and h.memory_limit_bytes is None and h.gc_percent == 100
    assert h.gc_cycles == 7


def test_the_memory_limit_lowers_the_goal():
    """GOMEMLIMIT=32MiB with 30 MiB mapped: the goal is the limit less the memory that is not heap
    objects (30 - 2 free - 25 allocated = 3 MiB), less 1 MiB of headroom: 28 MiB, under GOGC's 40."""
    h = decode_heap(GO_1_19_AMD64, _controller(memory_limit=32 << 20, mapped_ready=30 << 20, heap_marked=10 << 20), 1)
    assert h.memory_limit_bytes == 32 << 20
    assert h.heap_goal_bytes == (32 << 20) - (3 << 20) - (1 << 20)
    # never below the heap marked at the last GC
    h = decode_heap(GO_1_19_AMD64, _controller(memory_limit=32 << 20, mapped_ready=30 << 20, heap_marked=29 << 20), 1)
    assert h.heap_goal_bytes == 29 << 20
    # over the limit (40 MiB mapped): the 8 MiB over it come off the goal too: 32 - (13 + 8) - 1
    h = decode_heap(GO_1_19_AMD64, _controller(gc_percent=-1, gc_percent_heap_goal=(1 << 64) - 1,
                                               memory_limit=32 << 20, heap_marked=1 << 20), 1)
    assert h.gc_percent is None and h.heap_goal_bytes == 10 << 20
    # GOGC=off and no limit: no goal at all
    h = decode_heap(GO_1_19_AMD64, _controller(gc_percent=-1, gc_percent_heap_goal=(1 << 64) - 1), 1)
    assert h.heap_goal_bytes is None and h.memory_limit_bytes is None


def test_the_memory_limits_headroom_is_a_share_of_the_goal_after_1_19():
    """GOMEMLIMIT=200MiB, 100 MiB mapped of which 2 free and 90 in objects: 192 MiB before headroom.
    1.19 keeps 1 MiB of it; 1.22 on keep 3% of it (runtime/mgcpacer.go, memoryLimitHeapGoal:
    goal / 100 * 3 in integers), and never less than 1 MiB."""
    values = dict(memory_limit=200 << 20, mapped_ready=100 << 20, heap_free=2 << 20, total_alloc=190 << 20,
                  total_free=100 << 20, heap_in_use=95 << 20, gc_percent_heap_goal=400 << 20, heap_marked=50 << 20)
    assert decode_heap(GO_1_19_AMD64, _controller(GO_1_19_AMD64, **values), 1).heap_goal_bytes == (191 << 20)
    for L in sorted(set(LAYOUTS.values()) - {GO_1_19_AMD64}, key=lambda x: x.release):
        g = 192 << 20
        assert decode_heap(L, _controller(L, **values), 1).heap_goal_bytes == g - g // 100 * 3
    # a small goal: 18 MiB less 2 MiB that are not heap objects is 16 MiB, whose 3% is under 1 MiB: 1 MiB off
    small = dict(values, memory_limit=18 << 20, mapped_ready=12 << 20, heap_free=1 << 20, total_alloc=109 << 20,
                 heap_in_use=10 << 20, heap_marked=5 << 20)
    assert decode_heap(GO_1_22_AMD64, _controller(GO_1_22_AMD64, **small), 1).heap_goal_bytes == (15 << 20)
    assert GO_1_19_AMD64.memory_limit_headroom_percent == 0


def test_the_goal_keeps_its_runway_past_the_trigger():
    assert heap_goal(GO_1_19_AMD64, 10 << 20, 0, 10 << 20, MAX_INT64, 0, 0, 0, 0) == (10 << 20) + (64 << 10)
    assert heap_goal(GO_1_19_AMD64, 10 << 20, 12 << 20, (1 << 64) - 1, MAX_INT64, 0, 0, 0, 0) == 12 << 20


@pytest.mark.parametrize("values", [
    dict(heap_in_use=1 << 60), dict(total_free=200 << 20), dict(memory_limit=-5), dict(gc_percent=-7),
    dict(mapped_ready=1 << 10), dict(heap_live=(1 << 64) - 1),
])
@pytest.mark.parametrize("layout", sorted(LAYOUTS.values(), key=lambda x: x.release), ids=lambda L: L.release)
def test_planted_figures_are_refused(values, layout):
    with pytest.raises(GoRuntimeError, match="not a Go runtime's state"):
        decode_heap(layout, _controller(layout, **values), 1)


def test_a_sample_is_scaled_as_pprof_scales_it():
    # one 64 KiB object sampled at 512 KiB stands for 1 / (1 - e^-1/8) objects
    objects, nbytes = scale_heap_sample(1, 64 << 10, 512 << 10)
    scale = 1 / (1 - math.exp(-0.125))
    assert objects == int(scale) and nbytes == int((64 << 10) * scale)
    assert scale_heap_sample(3, 300, 1) == (3, 300)
    assert scale_heap_sample(0, 0, 512 << 10) == (0, 0)
    # a huge object is sampled for sure: counted as itself
    assert scale_heap_sample(1, 1 << 30, 512 << 10) == (1, 1 << 30)


def test_a_bucket_folds_in_the_pending_cycle_as_memprofile_does():
    L = GO_1_19_AMD64
    header = struct.pack("<6Q", 0, 0xC000001000, 1, 0, 65536, 2)
    cycles = [(5, 1, 500, 100), (2, 0, 200, 0), (7, 7, 700, 700), (1, 0, 100, 0)]
    body = struct.pack("<2Q", 0x401234, 0x401567) + b"".join(struct.pack("<4Q", *c) for c in cycles)
    b = decode_bucket(L, header, body, cycle_index=3)  # 3 % 3 = future[0]
    assert b.stack == (0x401234, 0x401567) and b.next_address == 0xC000001000
    assert (b.inuse_objects, b.inuse_bytes) == (4 + 2, 400 + 200)
    assert (b.all_cycles_objects, b.all_cycles_bytes) == (4 + 2 + 0 + 1, 400 + 200 + 0 + 100)
    with pytest.raises(GoRuntimeError):
        decode_bucket(L, struct.pack("<6Q", 0, 0, 2, 0, 0, 2), body, 0)  # a block-profile bucket
    with pytest.raises(GoRuntimeError):
        decode_bucket(L, struct.pack("<6Q", 0, 0, 1, 0, 0, 33), body, 0)  # more frames than maxStack
    frees_more = struct.pack("<2Q", 1, 2) + struct.pack("<4Q", 1, 5, 10, 50) + bytes(96)
    with pytest.raises(GoRuntimeError, match="frees more"):
        decode_bucket(L, header, frees_more, 0)


def test_a_go_1_27_bucket_counts_objects_of_its_size():
    """1.27's memRecordCycle is (allocs, frees): the bytes are the objects times bucket.size."""
    L = GO_1_27_AMD64
    header = struct.pack("<6Q", 0, 0, 1, 0, 65536, 1)
    cycles = [(5, 1), (2, 0), (7, 7), (1, 0)]
    body = struct.pack("<Q", 0x401234) + b"".join(struct.pack("<2Q", *c) for c in cycles)
    assert len(body) == 8 + L.mem_record_size
    b = decode_bucket(L, header, body, cycle_index=3)
    assert (b.inuse_objects, b.inuse_bytes) == (4 + 2, (4 + 2) * 65536)
    assert (b.all_cycles_objects, b.all_cycles_bytes) == (7, 7 * 65536)
    for size in (0, 1 << 60):
        with pytest.raises(GoRuntimeError, match="-byte objects: not a Go runtime's"):
            decode_bucket(L, struct.pack("<6Q", 0, 0, 1, 0, size, 1), body, 0)
