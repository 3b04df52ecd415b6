"""record/runtimes.py and the store's runtime readings: which JVMs are read, how often, and which
reading a kill gets."""

from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.record.readings import Readings
from oomscope.record.runtimes import RuntimeReader, read_cgroup, runtime_reading
from oomscope.runtimes.hsperfdata import JvmMemory
from oomscope.runtimes.java import JvmReading

MIB = 1 << 20


def _mem(used=10 * MIB):
    return JvmMemory(heap_used_bytes=used, heap_committed_bytes=32 * MIB, heap_max_bytes=64 * MIB,
                     young_used_bytes=used // 2, old_used_bytes=used - used // 2, metaspace_used_bytes=5 * MIB,
                     metaspace_committed_bytes=6 * MIB, class_space_used_bytes=MIB, class_space_committed_bytes=MIB,
                     threads_live=12, young_gc_count=3, full_gc_count=0, gc_time_ms=4.5, vm_name="OpenJDK",
                     vm_version="17", vm_args="-Xmx64m")


def test_only_jvms_of_a_cgroup_near_its_limit_are_read_and_each_at_most_once_per_interval():
    checked = []
    reads = []

    def is_java(pid):
        checked.append(pid)
        return pid % 2 == 0

    def read_jvm(pid):
        reads.append(pid)
        return JvmReading(pid, _mem())

    r = RuntimeReader(100, max_per_cgroup=2, is_java=is_java, read_jvm=read_jvm, exe_is_java=lambda pid: False,
                      maps_checks_per_pass=10, go_version=lambda pid: None)
    assert read_cgroup(r, [2, 3, 4, 6], 0.3, 0, lambda: 1) == []  # far from the limit: not even looked at
    assert checked == []
    got = read_cgroup(r, [2, 3, 4, 6], 0.95, 1000, lambda: 1001)
    assert [p for p, _, _ in got] == [2, 4]  # at most 2 JVMs per cgroup; 3 is no JVM
    assert read_cgroup(r, [2, 3, 4, 6], 0.95, 1050, lambda: 1051) == []  # within the interval
    assert [p for p, _, _ in read_cgroup(r, [2, 3, 4, 6], 0.95, 1100, lambda: 1101)] == [2, 4]
    assert sorted(set(checked)) == [2, 3, 4, 6] and len(checked) == 4  # decided once per pid
    r.forget_except([4])
    assert r._java == {4: True}


def test_a_kill_gets_the_last_reading_before_it_of_each_process_below_the_cgroup():
    s = 10**9
    store = Readings(MemoryHierarchy.__new__(MemoryHierarchy), 10**10, 10, 1.0, 10**11, 1000)
    store.add_runtimes([(7, 1 * s, "/a/b", JvmReading(7, _mem(1 * MIB))), (8, 1 * s, "/other", JvmReading(8, _mem()))])
    store.add_runtimes([(7, int(1.5 * s), "/a/b", JvmReading(7, _mem(5 * MIB)))])  # within a second: not in the history
    store.add_runtimes([(7, 2 * s, "/a/b", JvmReading(7, _mem(2 * MIB)))])
    store.add_runtimes([(7, 3 * s, "/a/b", JvmReading(7, _mem(3 * MIB)))])  # after the kill
    got = store.runtimes_before("/a", int(2.5 * s))
    assert [(p, t, r.memory.heap_used_bytes) for p, t, r, _ in got] == [(7, 2 * s, 2 * MIB)]
    assert got[0][3] == [(1 * s, 1 * MIB, 32 * MIB)]  # the heap before that reading, one point a second
    rr = runtime_reading(7, got[0][2], (int(2.5 * s) - 2 * s) / 1e6, "java")
    assert rr.kind == "java" and rr.heap_used_bytes == 2 * MIB and rr.heap_max_bytes == 64 * MIB
    assert rr.threads == 12 and rr.why_not is None and rr.read_ms_before_kill == 500.0
    off = runtime_reading(9, JvmReading(9, None, "no hsperfdata file: -XX:-UsePerfData"), 12.34)
    assert off.heap_used_bytes is None and "UsePerfData" in off.why_not and off.read_ms_before_kill == 12.3


def test_only_a_few_processes_maps_are_read_per_pass():
    maps = []

    def is_java(pid):
        maps.append(pid)
        return pid == 5

    r = RuntimeReader(100, is_java=is_java, read_jvm=lambda pid: JvmReading(pid, _mem()),
                      exe_is_java=lambda pid: pid == 9, maps_checks_per_pass=2, go_version=lambda pid: None)
    r.begin_pass()
    assert r.due([1, 2, 3, 5, 9], 0.95, 0) == [9]  # the launcher named java: no maps read for it
    assert maps == [1, 2]  # the budget: 3 and 5 wait for a later pass
    r.begin_pass()
    assert r.due([1, 2, 3, 5, 9], 0.95, 1000) == [5, 9]
    assert maps == [1, 2, 3, 5]
