"""The memcg snapshot (bpf/memcg_snapshot.c): the layout detected from BTF facts recorded on the
three kernels of the matrix, and the state at the kill computed from snapshots captured on real
kills, against the kernel's own report of the same kill (tests/fixtures/README.md)."""

import json
import struct

import pytest

from oomscope.kernel import btf, memcg_layout
from oomscope.layouts import MemcgLevel, MemcgSnapshot
from oomscope.model import SCHEMA_VERSION, Capture, Source
from oomscope.record import snapshot
from oomscope.capture.assemble import assemble
from oomscope.capture.inputs import Evidence, Recording
from oomscope.units import within_target

from ..conftest import fixture_text
from .test_btf_types import BlobBuilder


class RecordedBtf:
    """Answers memcg_layout.detect's questions from a fixture recorded on a real kernel's BTF."""

    def __init__(self, calls):
        self.calls = calls

    def _get(self, name, *args):
        v = self.calls[name + ":" + ",".join(map(str, args))]
        if isinstance(v, dict) and "error" in v:
            raise btf.BtfError(v["error"])
        return tuple(v) if isinstance(v, list) else v

    def member_offset(self, s, p):
        return self._get("member_offset", s, p)

    def member_array(self, s, p):
        return self._get("member_array", s, p)

    def has_member(self, s, p):
        return self._get("has_member", s, p)

    def member_is_pointer(self, s, p):
        return self._get("member_is_pointer", s, p)

    def datasec_var_offset(self, s, v):
        return self._get("datasec_var_offset", s, v)


def _recorded(name):
    data = json.loads(fixture_text("snapshot", f"btf-memcg-{name}.json"))
    return RecordedBtf(data["calls"]), data["enums"]


def test_6_1_indexes_the_statistics_by_item_number():
    types, enums = _recorded("6.1")
    lay = memcg_layout.detect(types, enums, "")
    assert lay.slot_scheme == memcg_layout.SLOT_DIRECT and lay.nstat == enums["memcg_stat_item"]["MEMCG_NR_STAT"] == 50
    assert lay.slots[enums["node_stat_item"]["NR_ANON_MAPPED"]] == enums["node_stat_item"]["NR_ANON_MAPPED"]
    flags = dict(d for d in lay.defines)
    assert flags["VMSTATS_IS_PTR"] == 1 and "OFF_VS_LOCAL" not in flags and "OFF_PCPU_VMSTATS" not in flags


@pytest.mark.parametrize("name", ["6.12", "v1-6.18", "7.3"])
def test_later_kernels_keep_fewer_slots_found_through_the_index_table(name):
    types, enums = _recorded(name)
    # with the table's address (Debian's kernels list data symbols in kallsyms)
    lay = memcg_layout.detect(types, enums, "ffffffff8a000000 d mem_cgroup_stats_index\n")
    assert lay.slot_scheme == memcg_layout.SLOT_TABLE and lay.table_addr == 0xffffffff8a000000
    assert lay.nstat < lay.nr_stat_items
    assert ("INDEX_TABLE_LEN", lay.nr_stat_items) in lay.defines and lay.slots == {}
    # without it (this host's kernel: no CONFIG_KALLSYMS_ALL): learnt from the tracepoints
    lay = memcg_layout.detect(types, enums, "ffffffff81000000 T _stext\n")
    assert lay.slot_scheme == memcg_layout.SLOT_LEARNT and ("NR_STAT_ITEMS", lay.nr_stat_items) in lay.defines
    flags = dict(lay.defines)
    assert "OFF_VS_LOCAL" in flags and "OFF_PCPU_VMSTATS" in flags and flags["SNAP_NSTAT"] == lay.nstat


@pytest.mark.parametrize("name, cgroup_v1, where", [
    ("6.1", False, "memory.failcnt"), ("6.12", False, "memory.failcnt"),
    ("7.3", False, "memory_events[MEMCG_MAX]"),  # failcnt no longer counted on v2: the report prints this
    ("7.3", True, "memory.failcnt"), ("v1-6.18", True, "memory.failcnt")])
def test_the_failcnt_read_is_the_one_the_report_prints(name, cgroup_v1, where):
    types, enums = _recorded(name)
    flags = dict(memcg_layout.detect(types, enums, "", cgroup_v1=cgroup_v1).defines)
    memory = types.member_offset("mem_cgroup", "memory")[0]
    if where == "memory.failcnt":
        assert flags["OFF_FAILCNT"] == memory + types.member_offset("page_counter", "failcnt")[0]
    else:
        events, _size, _n = types.member_array("mem_cgroup", "memory_events")
        assert flags["OFF_FAILCNT"] == events + 8 * enums["memcg_memory_event"]["MEMCG_MAX"] == 976


def test_a_kernel_without_the_memory_controller_in_btf_is_a_clear_error():
    types, enums = _recorded("6.12")
    with pytest.raises(memcg_layout.LayoutError, match="memory_cgrp_id"):
        memcg_layout.detect(types, {k: v for k, v in enums.items() if k != "cgroup_subsys_id"}, "")


@pytest.mark.parametrize("table,scheme,slots", [
    # int8_t, slot + 1, 0 = not kept (mm/memcontrol.c init_memcg_stats, first version)
    ([3, 0, 1, 2, 0], memcg_layout.SLOT_TABLE_PLUS_ONE, {0: 2, 2: 0, 3: 1}),
    # u8, the slot, U8_MAX = not kept (later)
    ([2, 0xFF, 0, 1, 0xFF], memcg_layout.SLOT_TABLE, {0: 2, 2: 0, 3: 1}),
])
def test_both_encodings_of_the_index_table(table, scheme, slots):
    types, enums = _recorded("6.12")
    lay = memcg_layout.detect(types, enums, "ffffffff8a000000 d mem_cgroup_stats_index\n")
    lay.nr_stat_items = len(table)
    lay.slots_from_table(table)
    assert lay.slot_scheme == scheme and lay.slots == slots


def test_btf_arrays_and_percpu_variables_from_a_synthetic_blob():
    b = BlobBuilder()
    long_ = b.int_("long int", 8)
    u32 = b.int_("unsigned int", 4)
    arr = b.add("", btf.KIND_ARRAY, 0, 0, struct.pack("<III", long_, u32, 40))
    b.struct_("memcg_vmstats", 8 + 320, [("n", long_, 0), ("state", arr, 64)])
    var_a = b.add("runqueues", btf.KIND_VAR, 0, long_, struct.pack("<I", 1))
    var_b = b.add("this_cpu_off", btf.KIND_VAR, 0, long_, struct.pack("<I", 1))
    b.add(".data..percpu", btf.KIND_DATASEC, 2, 0, struct.pack("<III", var_a, 4096, 8) + struct.pack("<III", var_b, 104, 8))
    t = btf.BtfTypes(b.blob())
    assert t.member_array("memcg_vmstats", "state") == (8, 8, 40)
    with pytest.raises(btf.BtfError):
        t.member_array("memcg_vmstats", "n")
    assert t.datasec_var_offset(".data..percpu", "runqueues") == 4096
    assert t.datasec_var_offset(".data..percpu", "this_cpu_off") == 104
    assert t.datasec_var_offset(".data..percpu", "absent") is None
    assert t.has_member("memcg_vmstats", "state") and not t.has_member("memcg_vmstats", "state_local")


def _fixture(name):
    data = json.loads(fixture_text("snapshot", name))
    snap = data["snapshot"]
    levels = [MemcgLevel(**lv) for lv in snap.pop("levels")]
    return data, MemcgSnapshot(levels=levels, **snap)


SNAPSHOT_FIXTURES = ["v1-6.18-single.json", "v2-6.12-single.json"]


@pytest.mark.parametrize("name", SNAPSHOT_FIXTURES)
def test_a_real_snapshot_gives_the_reports_figures(name):
    data, snap = _fixture(name)
    index = snapshot.level_of(snap, data["oom_memcg_ino"])
    assert index is not None
    assert snapshot.level_at_limit(snap, data["page_size"]) == index  # the same level without the report
    st = snapshot.state_from_snapshot(snap, index, data["cgroup_version"], data["page_size"], data["oom_memcg"])
    rep = data["report"]
    assert st.source == Source.KERNEL_SNAPSHOT
    assert st.usage_bytes == rep["usage_kb"] * 1024 and st.limit_bytes == rep["limit_kb"] * 1024
    assert st.failcnt == rep["failcnt"]
    rows = snapshot.compare(st.memory_stat, rep["memory_stat"])
    assert len(rows) >= 15
    off = [r for r in rows if not within_target(r[1], r[2])]
    assert off == []
    anon = "total_rss" if data["cgroup_version"] == 1 else "anon"
    assert st.memory_stat[anon] == rep["memory_stat"][anon] > 32 << 20


def _synthetic(local=True):
    # the victim's cgroup (level 0) below its parent (level 1): pages, slots by item name
    def lv(cid, state, pending, unflushed, local_):
        return MemcgLevel(cgroup_id=cid, usage_pages=100, max_pages=128, failcnt=3, memsw_usage_pages=110,
                          memsw_max_pages=1 << 51, state={"NR_ANON_MAPPED": state}, local={"NR_ANON_MAPPED": local_} if local else {},
                          pending={"NR_ANON_MAPPED": pending}, unflushed={"NR_ANON_MAPPED": unflushed})
    return MemcgSnapshot(ts_ns=1, pid=7, levels=[lv(11, 50, 0, 6, 50), lv(12, 70, 4, -2, 20)])


def test_the_exact_view_adds_what_no_flush_has_folded_in_along_the_path():
    snap = _synthetic()
    # victim's cgroup: flushed 50 + its own unflushed 6
    assert snapshot.memory_stat(snap, 0, 2, 4096)["anon"] == 56 * 4096
    assert snapshot.memory_stat(snap, 0, 2, 4096, snapshot.FLUSHED)["anon"] == 50 * 4096
    # parent: 70 + its pending 4 + its unflushed -2 + the child's unflushed 6
    assert snapshot.memory_stat(snap, 1, 2, 4096)["anon"] == 78 * 4096
    # cgroup v1: local keys from state_local plus the cgroup's own unflushed part, total_ hierarchical
    v1 = snapshot.memory_stat(snap, 1, 1, 4096)
    assert v1["rss"] == 18 * 4096 and v1["total_rss"] == 78 * 4096
    # unknown slots are left out, never shown as 0
    assert "cache" not in v1 and "file" not in snapshot.memory_stat(snap, 0, 2, 4096)


def test_level_at_limit_picks_the_fullest_limited_cgroup_and_v1_swap_comes_from_memsw():
    snap = _synthetic()
    snap.levels[1].max_pages = 1 << 51  # the parent is unlimited
    assert snapshot.level_at_limit(snap, 4096) == 0
    st = snapshot.state_from_snapshot(snap, 0, 1, 4096, "/a")
    assert st.swap_usage_bytes == 10 * 4096 and st.swap_limit_bytes is None and st.limit_bytes == 128 * 4096
    assert snapshot.level_of(snap, 12) == 1 and snapshot.level_of(snap, 99) is None


def test_the_snapshot_ranks_after_the_report_and_before_everything_else():
    from .helpers import event_for
    from oomscope.kernel.oom_report import parse_reports

    rep = parse_reports(fixture_text("kmsg", "v2-6.1-anon.kmsg"))[0]
    snap_state = snapshot.state_from_snapshot(_synthetic(), 0, 2, 4096, "/x")
    ev = Evidence(kernel_snapshot=snap_state)
    with_report = assemble(rep.killed.pid, event_for(rep), rep, Recording(cgroup_version=2), ev)
    assert with_report.at_kill.source == Source.KERNEL_REPORT
    assert set(with_report.at_kill_sources) == {"kernel_report", "kernel_snapshot"}  # kept beside the report
    without = assemble(rep.killed.pid, event_for(rep), None, Recording(cgroup_version=2), ev,
                       located=("/x", Source.PROC_READ), limited_ancestor=lambda c: c)
    assert without.at_kill.source == Source.KERNEL_SNAPSHOT
    assert any("SIGKILL" in n for n in without.notes)
    back = Capture.from_json(without.to_json())
    assert back.at_kill_sources["kernel_snapshot"].memory_stat == snap_state.memory_stat
    assert back.schema_version == SCHEMA_VERSION == 7


def test_a_recorder_without_the_snapshot_says_why_in_the_capture():
    from .helpers import event_for
    from oomscope.kernel.oom_report import parse_reports
    from oomscope.model import CgroupState

    rep = parse_reports(fixture_text("kmsg", "v2-6.1-anon.kmsg"))[0]
    sample = CgroupState(source=Source.LAST_SAMPLE, usage_bytes=1 << 20, age_ms=40.0, cgroup="/x")
    ev = Evidence(last_sample=sample, snapshot_status="unavailable: the kernel has no BTF")
    cap = assemble(rep.killed.pid, event_for(rep), None, Recording(cgroup_version=2), ev,
                   located=("/x", Source.PROC_READ), limited_ancestor=lambda c: c)
    assert cap.at_kill.source == Source.LAST_SAMPLE and cap.kernel_snapshot_status.startswith("unavailable")
    assert any("last sample (40 ms before the kill). No kernel snapshot at the SIGKILL: unavailable: the kernel has no BTF." in n
               for n in cap.notes), cap.notes
    assert Capture.from_json(cap.to_json()).kernel_snapshot_status == "unavailable: the kernel has no BTF"


def test_size_keys_are_told_from_counts():
    assert memcg_layout.is_size_key("total_rss") and memcg_layout.is_size_key("anon_thp")
    assert not memcg_layout.is_size_key("pgfault") and not memcg_layout.is_size_key("total_workingset_refault_file")
    assert not memcg_layout.is_size_key("hierarchical_memory_limit") and not memcg_layout.is_size_key("swpout_zero")
    assert memcg_layout.unit_of("NR_SLAB_RECLAIMABLE_B", 4096) == 1 and memcg_layout.unit_of("NR_KERNEL_STACK_KB", 4096) == 1024
    assert memcg_layout.unit_of("NR_ANON_MAPPED", 4096) == 4096 and memcg_layout.unit_of("WORKINGSET_REFAULT_FILE", 4096) == 1
