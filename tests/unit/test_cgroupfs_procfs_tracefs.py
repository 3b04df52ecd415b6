import os

import pytest

from oomscope.errors import CgroupError
from oomscope.kernel import cgroupfs, procfs, tracefs
from oomscope.kernel.cgroupfs import MemoryHierarchy


def test_memory_stat_v1_and_v2(fixture):
    v1 = cgroupfs.parse_memory_stat(fixture("cgroupfs", "v1-6.18-memory.stat"))
    assert "rss" in v1 and "total_rss" in v1 and v1["hierarchical_memory_limit"] == 67108864
    v2 = cgroupfs.parse_memory_stat(fixture("cgroupfs", "v2-6.1-memory.stat"))
    assert {"anon", "file", "kernel", "slab_reclaimable", "anon_thp"} <= set(v2)
    ev = cgroupfs.parse_flat_keyed(fixture("cgroupfs", "v2-6.1-memory.events"))
    assert ev["oom_kill"] == 1 and ev["max"] == 56


def test_limits():
    assert cgroupfs.parse_limit("max\n") is None
    assert cgroupfs.parse_limit("9223372036854771712\n") is None
    assert cgroupfs.parse_limit("67108864\n") == 67108864


def test_mounts(fixture):
    assert cgroupfs.parse_mounts_for_memory(fixture("cgroupfs", "v1-6.18-mounts.txt")) == ("/sys/fs/cgroup/memory", 1)
    assert cgroupfs.parse_mounts_for_memory(fixture("cgroupfs", "v2-6.1-mounts.txt")) == ("/sys/fs/cgroup", 2)


def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_read_state_v1(tmp_path, fixture):
    root = _tree(tmp_path, {
        "job/memory.stat": fixture("cgroupfs", "v1-6.18-memory.stat"),
        "job/memory.usage_in_bytes": "1000\n", "job/memory.limit_in_bytes": "67108864\n",
        "job/memory.failcnt": "3\n", "job/memory.kmem.usage_in_bytes": "200\n",
        "job/memory.memsw.usage_in_bytes": "1500\n", "job/memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "job/cgroup.procs": "12\n13\n",
    })
    h = MemoryHierarchy(root, 1)
    st = h.read_state("/job", "last_sample")
    assert (st.usage_bytes, st.limit_bytes, st.failcnt, st.kmem_usage_bytes, st.swap_usage_bytes, st.swap_limit_bytes) == (
        1000, 67108864, 3, 200, 500, None)
    assert h.procs("/job") == [12, 13]
    assert h.limited_ancestor("/job") == "/job"
    assert h.read_state("/gone", "last_sample") is None


def test_read_state_v2(tmp_path, fixture):
    root = _tree(tmp_path, {
        "pod/memory.max": "max\n",
        "pod/c/memory.stat": fixture("cgroupfs", "v2-6.1-memory.stat"),
        "pod/c/memory.current": "5000\n", "pod/c/memory.max": "max\n",
        "pod/c/memory.swap.current": "0\n", "pod/c/memory.swap.max": "0\n",
        "pod/c/memory.events": fixture("cgroupfs", "v2-6.1-memory.events"),
        "pod/c/memory.high": "max\n", "pod/c/memory.oom.group": "1\n",
        "pod/c/memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
        "memory.max": "max\n",
    })
    h = MemoryHierarchy(root, 2)
    st = h.read_state("/pod/c", "after_kill")
    assert st.usage_bytes == 5000 and st.limit_bytes is None and st.swap_limit_bytes == 0
    assert st.memory_events["oom_kill"] == 1
    assert st.memory_high_bytes is None and st.oom_group is True and st.pressure["full_total_us"] == 3
    assert h.limited_ancestor("/pod/c") is None
    (tmp_path / "pod" / "memory.max").write_text("1048576\n")
    assert h.limited_ancestor("/pod/c") == "/pod"


def test_paths_cannot_escape_the_hierarchy(tmp_path):
    h = MemoryHierarchy(str(tmp_path), 2)
    with pytest.raises(CgroupError):
        h.fs_path("/../../etc")
    assert h.cgroup_of(os.path.join(str(tmp_path), "a", "b")) == "/a/b"


def test_proc_cgroup():
    v1 = "12:memory:/job\n11:cpu,cpuacct:/\n0::/user.slice\n"
    assert procfs.memory_cgroup_from_proc(v1, 1) == "/job"
    assert procfs.memory_cgroup_from_proc(v1, 2) == "/user.slice"
    # an exited task reads as the root: unknown, not the root cgroup
    assert procfs.memory_cgroup_from_proc("12:memory:/\n0::/\n", 1) is None


def test_status_and_host_parsers():
    st = procfs.parse_status("Name:\tside car\nTgid:\t5\nUid:\t0\t0\t0\t0\nVmRSS:\t  2048 kB\nRssAnon:\t1024 kB\n")
    t = procfs.task_from_status(5, st, "after_kill")
    assert (t.comm, t.tgid, t.uid, t.rss_bytes, t.anon_rss_bytes, t.file_rss_bytes) == ("side car", 5, 0, 2 << 20, 1 << 20, None)
    assert procfs.bracketed_mode("always [madvise] never\n") == "madvise"
    mi = procfs.parse_meminfo("MemTotal:  1024 kB\nHugePages_Total:  0\n")
    assert mi == {"MemTotal": 1 << 20, "HugePages_Total": 0}


def test_tracefs_format(fixture, tmp_path):
    fields = tracefs.parse_format(fixture("tracefs", "6.18-oom-mark_victim.format"))
    assert [f.name for f in fields] == ["pid", "comm", "total_vm", "anon_rss", "file_rss", "shmem_rss", "uid", "pgtables", "oom_score_adj"]
    assert fields[1].ctype == "__data_loc char[]"
    old = tracefs.parse_format(fixture("tracefs", "pid-only-oom-mark_victim.format"))
    assert [f.name for f in old] == ["pid"]


def test_cflags_follow_the_format(fixture, tmp_path):
    from oomscope.probes import cflags_for_kernel

    d = tmp_path / "events" / "oom" / "mark_victim"
    d.mkdir(parents=True)
    (d / "format").write_text(fixture("tracefs", "pid-only-oom-mark_victim.format"))
    assert cflags_for_kernel(str(tmp_path)) == []
    (d / "format").write_text(fixture("tracefs", "6.18-oom-mark_victim.format"))
    assert cflags_for_kernel(str(tmp_path)) == ["-DMV_COMM_DATA_LOC", "-DMV_HAS_RSS", "-DMV_HAS_UID", "-DMV_HAS_PGTABLES", "-DMV_HAS_SCORE_ADJ"]


def test_pressure():
    p = cgroupfs.parse_pressure("some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n")
    assert p == {"some_avg10": 1.5, "some_avg60": 0.2, "some_avg300": 0.0, "some_total_us": 12345.0,
                 "full_avg10": 0.0, "full_avg60": 0.0, "full_avg300": 0.0, "full_total_us": 7.0}


def test_kept_files_are_reread_by_their_thread_only_and_let_go(tmp_path):
    import threading

    cg = tmp_path / "a"
    cg.mkdir()
    usage = cg / "memory.usage_in_bytes"
    usage.write_text("100\n")
    (cg / "cgroup.procs").write_text("7\n")
    h = MemoryHierarchy(str(tmp_path), 1)
    h.keep_files_open(1)
    assert h.usage("/a") == 100 and list(h._kept) == [("/a", "memory.usage_in_bytes")]
    with open(usage, "r+") as f:  # the same file, new content: a pread at 0 sees it
        f.write("200\n")
    assert h.usage("/a") == 200
    assert h.procs("/a") == [7] and len(h._kept) == 1, "cgroup.procs is never kept (v1 keeps a pid list per open file)"
    (cg / "memory.limit_in_bytes").write_text("4096\n")
    assert h.limit("/a") == 4096 and len(h._kept) == 1, "beyond the budget, files are opened and closed"
    other = []
    t = threading.Thread(target=lambda: other.append(h.limit("/a")))
    t.start()
    t.join()
    assert other == [4096] and len(h._kept) == 1
    h.forget_files("/a")
    assert h._kept == {}
    assert h.usage("/a") == 200
    h.close_files()
    assert h._kept is None and h.usage("/a") == 200


def test_past_three_fifths_of_the_budget_only_usage_and_limit_are_kept(tmp_path):
    cg = tmp_path / "a"
    cg.mkdir()
    for name in ("memory.stat", "memory.failcnt", "memory.kmem.usage_in_bytes", "memory.memsw.usage_in_bytes",
                 "memory.usage_in_bytes", "memory.limit_in_bytes"):
        (cg / name).write_text("4096\n")
    h = MemoryHierarchy(str(tmp_path), 1)
    h.keep_files_open(5)
    for name in ("memory.stat", "memory.failcnt", "memory.kmem.usage_in_bytes", "memory.memsw.usage_in_bytes"):
        assert h._read("/a", name) == "4096\n"
    assert len(h._kept) == 3 and ("/a", "memory.memsw.usage_in_bytes") not in h._kept
    assert h.usage("/a") == 4096 and h.limit("/a") == 4096
    assert len(h._kept) == 5 and ("/a", "memory.usage_in_bytes") in h._kept and ("/a", "memory.limit_in_bytes") in h._kept
    h.close_files()
