"""How the running kernel lays out a memory cgroup's counters, read from its BTF (and kallsyms).

bpf/memcg_snapshot.c reads, at the victim's SIGKILL, the page counters and the statistics arrays
of the victim's memory cgroup and of every ancestor. It needs member offsets, the length of the
statistics arrays and, for each memory.stat key, the slot of the array that holds it. That changed
between kernels (docs/kernel-facts.md, "The memcg statistics in the kernel"):

- up to 6.9 ``memcg_vmstats.state[]`` has one slot per item (``MEMCG_NR_STAT`` of them: the
  ``node_stat_item`` numbers, then ``memcg_stat_item``): the slot is the item number;
- from 6.10 the array holds only the items memcg keeps (``MEMCG_VMSTAT_SIZE``, shorter), and the
  kernel finds the slot through the table ``mem_cgroup_stats_index[item]`` (mm/memcontrol.c,
  ``init_memcg_stats``): first ``int8_t`` holding slot + 1 (0: not kept), later ``u8`` holding the
  slot (``U8_MAX``: not kept). The table is a kernel static: its address comes from
  /proc/kallsyms and its bytes are read once, in the kernel, by the calibration program; a kernel
  built without ``CONFIG_KALLSYMS_ALL`` lists no data symbols, and there the slots are learnt from
  the memcg tracepoints instead (``learn`` in bpf/memcg_snapshot.c).

Detected from BTF (array length against ``MEMCG_NR_STAT``; embedded or pointer ``vmstats``;
``state_local`` present or not), never from a version number. Pure: BTF types, enums and kallsyms
text in, a ``MemcgLayout`` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .btf import BtfError, BtfTypes

SNAP_DEPTH = 8  # memory cgroups read per kill: the victim's and its ancestors (deeper: cut at the top)
PERCPU_SECTION = ".data..percpu"

SLOT_DIRECT = "direct"          # the slot is the item number
SLOT_TABLE_PLUS_ONE = "table+1"  # mem_cgroup_stats_index holds slot + 1, 0 = not kept
SLOT_TABLE = "table"             # mem_cgroup_stats_index holds the slot, 0xff = not kept
SLOT_LEARNT = "learnt"           # no table address: slots learnt from the memcg tracepoints


class LayoutError(Exception):
    """The kernel's memcg layout is not one this oomscope can read (why, in one line)."""


@dataclass(frozen=True)
class StatKey:
    """A memory.stat key the snapshot can give: which item, in which unit."""

    key: str
    item: str  # enumerator of node_stat_item or memcg_stat_item


# memory.stat keys by item (mm/memcontrol.c memory_stats[], mm/memcontrol-v1.c memcg1_stats[] and
# memcg1_stat_format; on v1 the same key with "total_" is the hierarchical value). Keys whose item
# the running kernel lacks are left out.
V2_KEYS: Tuple[StatKey, ...] = tuple(StatKey(k, i) for k, i in (
    ("anon", "NR_ANON_MAPPED"), ("file", "NR_FILE_PAGES"), ("kernel", "MEMCG_KMEM"),
    ("kernel_stack", "NR_KERNEL_STACK_KB"), ("pagetables", "NR_PAGETABLE"),
    ("sec_pagetables", "NR_SECONDARY_PAGETABLE"), ("percpu", "MEMCG_PERCPU_B"), ("sock", "MEMCG_SOCK"),
    ("vmalloc", "MEMCG_VMALLOC"), ("shmem", "NR_SHMEM"), ("zswap", "MEMCG_ZSWAP_B"), ("zswapped", "MEMCG_ZSWAPPED"),
    ("file_mapped", "NR_FILE_MAPPED"), ("file_dirty", "NR_FILE_DIRTY"), ("file_writeback", "NR_WRITEBACK"),
    ("swapcached", "NR_SWAPCACHE"), ("anon_thp", "NR_ANON_THPS"), ("file_thp", "NR_FILE_THPS"),
    ("shmem_thp", "NR_SHMEM_THPS"), ("inactive_anon", "NR_INACTIVE_ANON"), ("active_anon", "NR_ACTIVE_ANON"),
    ("inactive_file", "NR_INACTIVE_FILE"), ("active_file", "NR_ACTIVE_FILE"), ("unevictable", "NR_UNEVICTABLE"),
    ("slab_reclaimable", "NR_SLAB_RECLAIMABLE_B"), ("slab_unreclaimable", "NR_SLAB_UNRECLAIMABLE_B"),
    ("hugetlb", "NR_HUGETLB"),
    ("workingset_refault_anon", "WORKINGSET_REFAULT_ANON"), ("workingset_refault_file", "WORKINGSET_REFAULT_FILE"),
    ("workingset_activate_anon", "WORKINGSET_ACTIVATE_ANON"), ("workingset_activate_file", "WORKINGSET_ACTIVATE_FILE"),
    ("workingset_restore_anon", "WORKINGSET_RESTORE_ANON"), ("workingset_restore_file", "WORKINGSET_RESTORE_FILE"),
    ("workingset_nodereclaim", "WORKINGSET_NODERECLAIM"),
))
V1_KEYS: Tuple[StatKey, ...] = tuple(StatKey(k, i) for k, i in (
    ("cache", "NR_FILE_PAGES"), ("rss", "NR_ANON_MAPPED"), ("rss_huge", "NR_ANON_THPS"), ("shmem", "NR_SHMEM"),
    ("mapped_file", "NR_FILE_MAPPED"), ("dirty", "NR_FILE_DIRTY"), ("writeback", "NR_WRITEBACK"),
    ("workingset_refault_anon", "WORKINGSET_REFAULT_ANON"), ("workingset_refault_file", "WORKINGSET_REFAULT_FILE"),
    ("swap", "MEMCG_SWAP"), ("swapcached", "NR_SWAPCACHE"),
    ("inactive_anon", "NR_INACTIVE_ANON"), ("active_anon", "NR_ACTIVE_ANON"), ("inactive_file", "NR_INACTIVE_FILE"),
    ("active_file", "NR_ACTIVE_FILE"), ("unevictable", "NR_UNEVICTABLE"),
))
# Items the post-mortem needs most: learning stops once these have slots (the rest follow if seen).
CORE_ITEMS = ("NR_ANON_MAPPED", "NR_FILE_PAGES", "NR_SHMEM", "NR_FILE_MAPPED", "NR_INACTIVE_ANON",
              "NR_ACTIVE_ANON", "NR_INACTIVE_FILE", "NR_ACTIVE_FILE")


def unit_of(item: str, page_size: int) -> int:
    """Bytes per unit of an item, as memcg_page_state_unit() (mm/memcontrol.c) has it: _B items
    count bytes, _KB items kB, workingset/demotion items events, the rest pages."""
    if item.endswith("_B"):
        return 1
    if item.endswith("_KB"):
        return 1024
    if item.startswith(("WORKINGSET_", "PGDEMOTE_", "PGPROMOTE_")):
        return 1
    return page_size


def is_size_key(key: str) -> bool:
    """A memory.stat key that is an amount of memory (not an event count or a limit)."""
    base = key[len("total_"):] if key.startswith("total_") else key
    return not base.startswith(("pg", "workingset_", "thp_", "numa_", "zswpin", "zswpout", "zswpwb", "swpin", "swpout",
                                "hierarchical_")) and base not in ("oom_kill",)


@dataclass
class MemcgLayout:
    nstat: int                  # length of memcg_vmstats.state[]
    slot_scheme: str            # SLOT_*
    items: Dict[str, int]       # enumerator -> item number (node_stat_item, then memcg_stat_item)
    nr_stat_items: int          # MEMCG_NR_STAT: the length of mem_cgroup_stats_index
    has_local: bool             # memcg_vmstats.state_local (cgroup v1's local keys read from it)
    has_memsw: bool
    defines: List[Tuple[str, int]] = field(default_factory=list)
    table_addr: Optional[int] = None  # mem_cgroup_stats_index, from kallsyms
    #: item number -> slot, once known (direct: now; table: after calibration; learnt: as learnt)
    slots: Dict[int, int] = field(default_factory=dict)
    #: the raw tracepoint mark_victim's arguments (BTF), set by probes.py: the task -> snapshot there too
    mark_victim_params: Optional[List[str]] = None

    def cflags(self) -> List[str]:
        return [f"-D{name}={value}" for name, value in self.defines]

    def slots_from_table(self, table: Sequence[int]) -> None:
        """The slot of every item from the bytes of mem_cgroup_stats_index. Which of the two
        encodings: a u8 table marks items memcg does not keep with 0xff, an int8 one with 0 (and
        then holds slot + 1); the table always has such items (it is longer than the array)."""
        plus_one = 0xFF not in table
        self.slot_scheme = SLOT_TABLE_PLUS_ONE if plus_one else SLOT_TABLE
        self.slots = {}
        for item, v in enumerate(table[:self.nr_stat_items]):
            slot = v - 1 if plus_one else v
            if 0 <= slot < self.nstat and (v != 0xFF):
                self.slots[item] = slot


def _off(types: BtfTypes, struct_name: str, path: str, size: int = 8) -> int:
    offset, got = types.member_offset(struct_name, path)
    if got != size:
        raise LayoutError(f"{struct_name}.{path} is {got} bytes, not the {size} this oomscope reads")
    return offset


def kallsyms_address(kallsyms: str, name: str) -> Optional[int]:
    """A symbol's address from /proc/kallsyms text (None when absent or hidden as zero)."""
    for line in kallsyms.split("\n"):
        parts = line.split()
        if len(parts) >= 3 and parts[2] == name:
            addr = int(parts[0], 16)
            return addr or None
    return None


def detect(types: BtfTypes, enums: Dict[str, Dict[str, int]], kallsyms: str = "", cgroup_v1: bool = False) -> MemcgLayout:
    """The layout of the running kernel's memcg statistics (LayoutError: why it cannot be read).
    ``cgroup_v1``: the memory controller is mounted as cgroup v1 (where failcnt is counted)."""
    try:
        return _detect(types, enums, kallsyms, cgroup_v1)
    except BtfError as exc:
        raise LayoutError(f"the kernel's BTF: {exc}") from None


def _failcnt_offset(types: BtfTypes, enums: Dict[str, Dict[str, int]], memory_off: int, cgroup_v1: bool) -> int:
    """Where in a mem_cgroup the report's failcnt is. Kernels whose page_counter has
    track_failcnt (7.3 here; the 6.18 host too) count failures only for cgroup v1's counters, and
    the v2 report prints the memory.events max count in its place: on 7.3 a kill's report said
    failcnt 22 while memory.failcnt stayed 0 (the VM suite, 2026-11-28; mm/memcontrol.c,
    mem_cgroup_print_oom_meminfo)."""
    if cgroup_v1 or not types.has_member("page_counter", "track_failcnt"):
        return memory_off + _off(types, "page_counter", "failcnt")
    events_off, esize, count = types.member_array("mem_cgroup", "memory_events")
    max_event = enums.get("memcg_memory_event", {}).get("MEMCG_MAX")
    if esize != 8 or max_event is None or max_event >= count:
        raise LayoutError("mem_cgroup.memory_events has no MEMCG_MAX count (the v2 report's failcnt)")
    return events_off + 8 * max_event


def _detect(types: BtfTypes, enums: Dict[str, Dict[str, int]], kallsyms: str, cgroup_v1: bool) -> MemcgLayout:
    node = enums.get("node_stat_item", {})
    memcg = enums.get("memcg_stat_item", {})
    memory_id = enums.get("cgroup_subsys_id", {}).get("memory_cgrp_id")
    if "MEMCG_NR_STAT" not in memcg or memory_id is None:
        raise LayoutError("the kernel's BTF has no memcg_stat_item or memory_cgrp_id (no memory controller?)")
    nr_stat = memcg["MEMCG_NR_STAT"]
    items = {k: v for k, v in {**node, **memcg}.items() if not k.startswith(("NR_VM_", "MEMCG_NR_"))}

    d: List[Tuple[str, int]] = []
    subsys_off, elem, count = types.member_array("css_set", "subsys")
    if elem != 8 or memory_id >= count:
        raise LayoutError("css_set.subsys is not an array of pointers holding the memory controller")
    d.append(("OFF_CSS_SET_MEMCG", subsys_off + 8 * memory_id))
    if types.member_offset("mem_cgroup", "css")[0] != 0:
        raise LayoutError("mem_cgroup.css is not the first member (container_of would need an offset)")
    d += [("OFF_TASK_PID", _off(types, "task_struct", "pid", 4)),
          ("OFF_TASK_CGROUPS", _off(types, "task_struct", "cgroups")),
          ("OFF_CSS_PARENT", _off(types, "cgroup_subsys_state", "parent")),
          ("OFF_MEMCG_CGROUP", _off(types, "mem_cgroup", "css.cgroup")),
          ("OFF_CGROUP_KN", _off(types, "cgroup", "kn")),
          ("OFF_KN_ID", _off(types, "kernfs_node", "id")),
          ("OFF_MEMORY", types.member_offset("mem_cgroup", "memory")[0]),
          ("OFF_PC_USAGE", _off(types, "page_counter", "usage")),
          ("OFF_PC_MAX", _off(types, "page_counter", "max"))]
    d.append(("OFF_FAILCNT", _failcnt_offset(types, enums, types.member_offset("mem_cgroup", "memory")[0], cgroup_v1)))
    has_memsw = types.has_member("mem_cgroup", "memsw")
    if has_memsw:
        d.append(("OFF_MEMSW", types.member_offset("mem_cgroup", "memsw")[0]))

    # the statistics: embedded (older) or behind a pointer
    vs_off = types.member_offset("mem_cgroup", "vmstats")[0]
    d += [("OFF_VMSTATS", vs_off), ("VMSTATS_IS_PTR", int(types.member_is_pointer("mem_cgroup", "vmstats")))]
    state_off, esize, nstat = types.member_array("memcg_vmstats", "state")
    pend_off, pesize, pn = types.member_array("memcg_vmstats", "state_pending")
    if esize != 8 or pesize != 8 or pn != nstat:
        raise LayoutError("memcg_vmstats.state/state_pending are not arrays of longs of one length")
    d += [("OFF_VS_STATE", state_off), ("OFF_VS_PENDING", pend_off), ("SNAP_NSTAT", nstat)]
    has_local = types.has_member("memcg_vmstats", "state_local")
    if has_local:
        d.append(("OFF_VS_LOCAL", types.member_array("memcg_vmstats", "state_local")[0]))
    d.append(("OFF_PCPU", _off(types, "mem_cgroup", "vmstats_percpu")))
    pstate, _e, pn1 = types.member_array("memcg_vmstats_percpu", "state")
    pprev, _e, pn2 = types.member_array("memcg_vmstats_percpu", "state_prev")
    if pn1 != nstat or pn2 != nstat:
        raise LayoutError("memcg_vmstats_percpu.state/state_prev differ in length from memcg_vmstats.state")
    d += [("OFF_PCPU_STATE", pstate), ("OFF_PCPU_PREV", pprev)]
    if types.has_member("memcg_vmstats_percpu", "vmstats"):  # a check that the per-CPU address is right
        d.append(("OFF_PCPU_VMSTATS", _off(types, "memcg_vmstats_percpu", "vmstats")))

    # each CPU's per-CPU area: current->se.cfs_rq->rq is &runqueues of this CPU, and this_cpu_off
    # (at a known distance in the same section) holds __per_cpu_offset[cpu]
    rq = types.datasec_var_offset(PERCPU_SECTION, "runqueues")
    this_off = types.datasec_var_offset(PERCPU_SECTION, "this_cpu_off")
    if rq is None or this_off is None:
        raise LayoutError("the kernel's BTF lists no per-CPU runqueues/this_cpu_off (needed to find per-CPU data)")
    d += [("OFF_TASK_SE_CFS_RQ", _off(types, "task_struct", "se.cfs_rq")),
          ("OFF_CFS_RQ_RQ", _off(types, "cfs_rq", "rq")),
          ("RQ_TO_THIS_CPU_OFF", this_off - rq),
          ("SNAP_DEPTH", SNAP_DEPTH)]

    layout = MemcgLayout(nstat=nstat, slot_scheme=SLOT_DIRECT, items=items, nr_stat_items=nr_stat,
                         has_local=has_local, has_memsw=has_memsw, defines=d)
    if nstat == nr_stat:
        layout.slots = {v: v for v in items.values() if v < nstat}
    elif nstat < nr_stat:
        layout.table_addr = kallsyms_address(kallsyms, "mem_cgroup_stats_index")
        if layout.table_addr is not None:
            layout.slot_scheme = SLOT_TABLE
            d += [("INDEX_TABLE_ADDR", f"{layout.table_addr:#x}ULL"), ("INDEX_TABLE_LEN", nr_stat)]  # a kernel address: unsigned 64-bit
        else:
            layout.slot_scheme = SLOT_LEARNT
            d.append(("NR_STAT_ITEMS", nr_stat))
    else:
        raise LayoutError(f"memcg_vmstats.state has {nstat} slots, more than MEMCG_NR_STAT ({nr_stat})")
    return layout
