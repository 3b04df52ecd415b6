import os
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.record.sampler import Sampler


def _cgroup(root, name, usage, limit, pids, version=2):
    """A fake cgroup directory with the files the sampler reads (v1 or v2 names)."""
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    procs = "".join(f"{p}\n" for p in pids)
    if version == 2:
        files = {"memory.stat": f"anon {usage}\nfile 0\n", "memory.current": f"{usage}\n", "memory.max": f"{limit}\n"}
    else:
        files = {"memory.stat": f"total_rss {usage}\ntotal_cache 0\n", "memory.usage_in_bytes": f"{usage}\n",
                 "memory.limit_in_bytes": f"{limit}\n", "cgroup.event_control": ""}
    files["cgroup.procs"] = procs
    for f, text in files.items():
        with open(os.path.join(d, f), "w") as fh:
            fh.write(text)


def _root(tmp_path):
    root = str(tmp_path)
    with open(os.path.join(root, "memory.max"), "w") as f:
        f.write("max\n")
    return root


def test_ring_picks_the_sample_before_the_kill_and_remembers_pids(tmp_path):
    root = _root(tmp_path)
    _cgroup(root, "job", 10 << 20, 100 << 20, [4242])
    s = Sampler(MemoryHierarchy(root, 2), far_interval_s=5, fast_interval_s=0.1, pid_retention_s=60)
    s.tick()
    # far from the limit: its next reading is seconds away (the pass's own return can be shorter:
    # discoveries fall due on the whole second, _on_grid)
    assert s._watched["/job"].next_ns - time.monotonic_ns() > 1e9
    t_between = time.monotonic_ns()
    _cgroup(root, "job", 95 << 20, 100 << 20, [4243])  # near the limit; 4242 has exited
    s._watched["/job"].peek_ns = 0  # the usage peek comes due ...
    s._next_discovery = 0
    s.tick()  # ... sees the cgroup filling up, and reads it fully at once
    assert s._watched["/job"].next_ns - time.monotonic_ns() <= 0.1e9  # near the limit: fast
    assert s.store.latest_before("/job", t_between).state.usage_bytes == 10 << 20
    assert s.store.latest_before("/job", time.monotonic_ns()).state.usage_bytes == 95 << 20
    assert s.store.latest_before("/job", 0) is None
    # a pid seen once is still known after it left cgroup.procs, within the retention
    assert s.store.cgroup_of_pid(4242) == "/job"
    s.store.pid_retention_ns = 0
    s.store._next_pid_prune = 0  # pruned once a second: make this pass the one
    time.sleep(0.001)
    _cgroup(root, "other", 1, 100 << 20, [7])
    s._next_discovery = 0
    s.tick()
    assert s.store.cgroup_of_pid(4242) is None and s.store.cgroup_of_pid(7) == "/other"


def test_limited_parent_and_the_path_to_it_are_watched(tmp_path):
    root = _root(tmp_path)
    _cgroup(root, "pod", 50 << 20, 100 << 20, [])
    os.makedirs(os.path.join(root, "pod", "mid"))
    for f, text in {"memory.max": "max\n", "memory.stat": "anon 1\n", "memory.current": "1\n", "cgroup.procs": ""}.items():
        with open(os.path.join(root, "pod", "mid", f), "w") as fh:
            fh.write(text)
    _cgroup(root, "pod/mid/app", 1, "max", [11])
    _cgroup(root, "idle", 1, "max", [])  # no limit, no tasks: not watched
    s = Sampler(MemoryHierarchy(root, 2))
    s.tick()
    assert set(s._watched) == {"/pod", "/pod/mid", "/pod/mid/app"}
    assert all(s.store.ino(c) for c in ("/pod", "/pod/mid", "/pod/mid/app"))


def test_timeline_keeps_one_point_per_spacing_and_ends_before_the_kill(tmp_path):
    root = _root(tmp_path)
    s = Sampler(MemoryHierarchy(root, 2), fast_interval_s=0.01, timeline_spacing_s=0.05, far_interval_s=0.01, idle_interval_s=0.01,
                mid_interval_s=0.01, idle_full_s=0.01)
    for i in range(10):
        _cgroup(root, "job", (10 + i) << 20, 100 << 20, [1])
        s._next_discovery = 0
        s.tick()
        time.sleep(0.03)
    kill = time.monotonic_ns()
    pts = s.store.timeline("/job", kill)
    assert 3 <= len(pts) <= 10
    assert all(p.t_ms <= 0 for p in pts)
    assert [p.anon_bytes for p in pts] == sorted(p.anon_bytes for p in pts)
    assert pts[-1].anon_bytes == 19 << 20  # the last sample before the kill is the last point


def test_the_last_reading_before_the_kill_keeps_its_reclaim_figures(tmp_path):
    # The last reading is usually closer to the previous timeline point than the spacing, so it
    # is appended at the kill; it once came without reclaim figures (None: "not counted"), found
    # by a global OOM in the 6.12 VM. A process that has reclaimed shows its figures; one that has
    # not shows zeros.
    from oomscope.layouts import ReclaimStats
    root = _root(tmp_path)
    _cgroup(root, "job", 10 << 20, 100 << 20, [4242])
    _cgroup(root, "calm", 10 << 20, 100 << 20, [4343])
    reclaim = {}
    s = Sampler(MemoryHierarchy(root, 2), timeline_spacing_s=60, reclaim_reader=lambda: dict(reclaim))
    s.tick()
    reclaim[4242] = ReclaimStats(direct_runs=3, direct_pages=100, alloc_retry_checks=2)
    for w in s._watched.values():
        w.next_ns = 0
    time.sleep(0.06)  # a read of the map is reused for half the fast interval (50 ms)
    s.tick()  # within the spacing: in the ring, not in the timeline
    kill = time.monotonic_ns()
    (first, last) = s.store.timeline("/job", kill)
    assert first.reclaim_runs == 0 and first.alloc_retry_checks == 0
    assert last.reclaim_runs == 3 and last.reclaim_pages == 100 and last.alloc_retry_checks == 2
    (_, calm_last) = s.store.timeline("/calm", kill)
    assert calm_last.reclaim_runs == 0 and calm_last.alloc_retry_checks == 0
    # without reclaim counting the figures are unknown, not zero
    s2 = Sampler(MemoryHierarchy(root, 2), timeline_spacing_s=60)
    s2.tick()
    assert s2.store.timeline("/job", time.monotonic_ns())[-1].reclaim_runs is None


def test_vanishing_cgroup_is_not_an_error(tmp_path):
    root = str(tmp_path)
    s = Sampler(MemoryHierarchy(root, 2))
    _cgroup(root, "gone", 1, 100, [1])
    os.remove(os.path.join(root, "gone", "memory.stat"))
    s.tick()
    assert s.store.watched() == 0


def test_a_limit_written_after_the_cgroup_was_first_seen_is_picked_up(tmp_path, monkeypatch):
    import oomscope.record.readings as readings_mod

    root = _root(tmp_path)
    _cgroup(root, "late", 1 << 20, "max", [])  # made by a runtime that writes memory.max next
    s = Sampler(MemoryHierarchy(root, 2))
    s.tick()
    assert "/late" not in s._watched  # no limit, no tasks: nothing to watch yet
    _cgroup(root, "late", 1 << 20, 64 << 20, [])
    monkeypatch.setattr(readings_mod, "ANCESTOR_TTL_NS", 0)  # the cached "no limit" expires
    s._next_discovery = 0
    s.tick()
    assert "/late" in s._watched


def test_walk_lists_every_cgroup_whether_or_not_the_directory_is_a_leaf(tmp_path):
    root = _root(tmp_path)
    for name in ("a", "a/b", "a/b/c", "a/d", "e"):
        os.makedirs(os.path.join(root, name))
    got = sorted(MemoryHierarchy(root, 2).walk("/"))
    assert got == ["/", "/a", "/a/b", "/a/b/c", "/a/d", "/e"]
    assert sorted(MemoryHierarchy(root, 2).walk("/a")) == ["/a", "/a/b", "/a/b/c", "/a/d"]
    assert list(MemoryHierarchy(root, 2).walk("/e")) == ["/e"]
    assert list(MemoryHierarchy(root, 2).walk("/gone")) == []


def test_a_cgroup_without_a_limit_filling_the_host_is_read_fast(tmp_path):
    root = _root(tmp_path)
    _cgroup(root, "free", 95 << 20, "max", [99])
    s = Sampler(MemoryHierarchy(root, 2), host_memory_bytes=100 << 20)
    s.tick()
    w = s._watched["/free"]
    assert w.ratio == 0.95 and w.next_ns - time.monotonic_ns() <= 0.1e9
    _cgroup(root, "calm", 5 << 20, "max", [98])
    s._next_discovery = 0
    s.tick()
    assert s._watched["/calm"].next_ns - time.monotonic_ns() > 5e9  # 5% of the host: read every 10 s


def test_a_limit_hit_on_cgroup_v2_wakes_the_sampler_to_read_the_subtree(tmp_path):
    import threading

    root = _root(tmp_path)
    _cgroup(root, "pod", 60 << 20, 100 << 20, [])
    _cgroup(root, "pod/app", 60 << 20, "max", [5])
    _cgroup(root, "other", 1 << 20, 100 << 20, [6])
    for name in ("pod", "other"):
        with open(os.path.join(root, name, "memory.events"), "w") as f:
            f.write("max 0\n")
    s = Sampler(MemoryHierarchy(root, 2))
    try:
        s.tick()
        assert s.notify._inotify is not None and set(s.notify._cgroup_wd) == {"/pod", "/other"}  # limited ones only
        for w in s._watched.values():
            w.next_ns, w.read_ns = time.monotonic_ns() + 60_000_000_000, 0
        # what the kernel's cgroup_file_notify() amounts to: the file is modified
        with open(os.path.join(root, "pod", "memory.events"), "w") as f:
            f.write("max 1\n")
        t0 = time.monotonic()
        s._wait(5.0, threading.Event())
        assert time.monotonic() - t0 < 1.0  # woken, not timed out
        now = time.monotonic_ns()
        assert s._watched["/pod"].next_ns <= now and s._watched["/pod/app"].next_ns <= now
        assert s._watched["/other"].next_ns > now  # not below the cgroup that hit its limit
        s.tick()
        assert s._watched["/pod/app"].read_ns >= now
    finally:
        s.close()


def test_a_usage_threshold_on_cgroup_v1_wakes_the_sampler_to_read_the_subtree(tmp_path):
    import threading

    root = str(tmp_path)
    with open(os.path.join(root, "memory.limit_in_bytes"), "w") as f:
        f.write("9223372036854771712\n")
    _cgroup(root, "pod", 60 << 20, 100 << 20, [], version=1)
    _cgroup(root, "pod/app", 60 << 20, 9223372036854771712, [5], version=1)
    _cgroup(root, "other", 1 << 20, 200 << 20, [6], version=1)
    s = Sampler(MemoryHierarchy(root, 1))
    try:
        assert s.notify._inotify is None and s.notify._poll is not None
        s.tick()  # discovery, then the first readings tell the limits, then the thresholds
        assert set(s.notify._cgroup_efd) == {"/pod", "/other"}  # limited ones only
        # what was written to cgroup.event_control: "<eventfd> <usage fd> <bytes>", one per threshold
        efd = s.notify._cgroup_efd["/pod"][0]
        written = [ln.split() for ln in open(os.path.join(root, "pod", "cgroup.event_control")).read().splitlines()]
        assert [int(t) for _e, _u, t in written] == [int((100 << 20) * r) for r in (0.25, 0.5, 0.9, 0.99)]
        assert {int(e) for e, _u, _t in written} == {efd}
        for w in s._watched.values():
            w.next_ns, w.read_ns = time.monotonic_ns() + 60_000_000_000, 0
        os.eventfd_write(efd, 1)  # what the kernel does when the usage crosses a threshold
        t0 = time.monotonic()
        s._wait(5.0, threading.Event())
        assert time.monotonic() - t0 < 1.0  # woken, not timed out
        now = time.monotonic_ns()
        assert s._watched["/pod"].next_ns <= now and s._watched["/pod/app"].next_ns <= now
        assert s._watched["/other"].next_ns > now  # not below the cgroup that crossed
        s.tick()
        assert s._watched["/pod/app"].read_ns >= now and s.limit_hits == 2
        # a new limit: the old eventfd is closed (the kernel drops its thresholds) and new ones set
        with open(os.path.join(root, "pod", "memory.limit_in_bytes"), "w") as f:
            f.write(f"{200 << 20}\n")
        s._watched["/pod"].next_ns = 0
        s.tick()
        new_efd, limit = s.notify._cgroup_efd["/pod"]
        assert limit == 200 << 20 and f"{new_efd} " in open(os.path.join(root, "pod", "cgroup.event_control")).read()
        assert str(int((200 << 20) * 0.99)) in open(os.path.join(root, "pod", "cgroup.event_control")).read()
        # a cgroup that refuses thresholds is polled, and not retried at every pass
        os.remove(os.path.join(root, "other", "cgroup.event_control"))
        with open(os.path.join(root, "other", "memory.limit_in_bytes"), "w") as f:
            f.write(f"{300 << 20}\n")
        s._watched["/other"].next_ns = 0
        s.tick()
        assert s.notify._cgroup_efd["/other"] == (None, 300 << 20) and s.notify.errors == 1
    finally:
        s.close()
    assert not s.notify._cgroup_efd and not s.notify._efd_cgroup


def test_without_notifications_the_sampler_polls(tmp_path):
    root = _root(tmp_path)
    s = Sampler(MemoryHierarchy(root, 1), notify=False)
    assert s.notify._inotify is None and s.notify._poll is None
    t0 = time.monotonic()
    import threading
    s._wait(0.05, threading.Event())
    assert 0.04 <= time.monotonic() - t0 < 1.0


def test_reclaim_at_the_kill_counts_a_cgroup_no_longer_watched(tmp_path):
    # A global OOM's victim was the only task of a cgroup without a limit: once it is gone the
    # cgroup is not watched, but its pid is remembered, and so is what it reclaimed.
    from oomscope.layouts import ReclaimStats
    root = _root(tmp_path)
    _cgroup(root, "solo", 10 << 20, "max", [77])
    _cgroup(root, "solo/sub", 1 << 20, "max", [78])
    _cgroup(root, "else", 10 << 20, "max", [79])
    reclaim = {77: ReclaimStats(direct_runs=4, direct_pages=9, alloc_retry_checks=3, alloc_no_progress_max=2),
               78: ReclaimStats(memcg_runs=1, alloc_no_progress_max=5), 79: ReclaimStats(direct_runs=100)}
    s = Sampler(MemoryHierarchy(root, 2), reclaim_reader=lambda: dict(reclaim))
    s.tick()
    for name in ("solo/sub", "solo"):
        with open(os.path.join(root, name, "cgroup.procs"), "w") as f:
            f.write("")
    s._next_discovery = 0
    s.tick()
    assert "/solo" not in s._watched
    got, t_read = s.store.reclaim_of("/solo", time.monotonic_ns())
    assert t_read <= time.monotonic_ns()
    assert (got.direct_runs, got.memcg_runs, got.direct_pages, got.alloc_retry_checks, got.alloc_no_progress_max) == (4, 1, 9, 3, 5)
    assert s.store.reclaim_of("/nothing-here", 0)[0] == ReclaimStats()
    assert Sampler(MemoryHierarchy(root, 2)).store.reclaim_of("/solo", 0) is None  # not counted
    # one read serves every kill from before it; a kill after it reads again
    reads = []
    s.store.reclaim_reader = lambda: reads.append(1) or dict(reclaim)
    kill = time.monotonic_ns()
    s.store.reclaim_of("/solo", kill)
    s.store.reclaim_of("/solo", kill)
    assert len(reads) == 1
    s.store.reclaim_of("/solo", time.monotonic_ns() + 1)
    assert len(reads) == 2


def test_an_idle_cgroup_that_has_not_changed_is_read_fully_less_often(tmp_path):
    root = _root(tmp_path)
    _cgroup(root, "idle", 10 << 20, 100 << 20, [5])  # 10%: an idle reading every 10 s
    s = Sampler(MemoryHierarchy(root, 2), idle_interval_s=10, idle_full_s=30)
    s.tick()
    w = s._watched["/idle"]
    assert s.reads == 1 and w.full_usage == 10 << 20 and w.idle_due_ns == w.next_ns

    def due_again(shift_ns=0):
        # as if its planned idle reading had come: the last reading that much longer ago
        w.read_ns -= shift_ns
        w.next_ns = w.idle_due_ns = 0
        s._next_discovery = 1 << 62
        s.tick()

    _cgroup(root, "idle", (10 << 20) + 4096, 100 << 20, [5])  # a page more: unchanged
    due_again()
    assert (s.reads, s.skipped) == (1, 1) and w.idle_due_ns == w.next_ns > time.monotonic_ns()
    _cgroup(root, "idle", 12 << 20, 100 << 20, [5])  # 2% of its limit more: read
    due_again()
    assert (s.reads, s.skipped) == (2, 1) and w.full_usage == 12 << 20
    _cgroup(root, "idle", 12 << 20, 200 << 20, [5])  # its limit changed: read
    due_again()
    assert (s.reads, s.skipped) == (3, 1)
    due_again()
    assert (s.reads, s.skipped) == (3, 2)
    due_again(shift_ns=25_000_000_000)  # its last full reading 25 s ago: the next would be past 30 s
    assert (s.reads, s.skipped) == (4, 2)
    # made due by anything but its idle schedule (a notification, a filling ancestor): read
    w.next_ns = 0
    s.tick()
    assert (s.reads, s.skipped) == (5, 2)
    _cgroup(root, "idle", 60 << 20, 200 << 20, [5])  # 30% of its limit
    due_again()
    assert (s.reads, s.skipped) == (6, 2) and w.idle_due_ns == -1  # no longer idle: never skipped


def test_a_containers_own_cgroup_tree_cannot_crowd_out_the_others_or_make_the_walk_unbounded(tmp_path):
    """Issue 24: a container with a delegated cgroup tree controls how many cgroups it makes and
    how deep. The walk stops after max_walk, shallowest first, and the rest are counted as
    dropped: every other container is still watched."""
    root = _root(tmp_path)
    for i in range(5):
        _cgroup(root, f"pods/ctr{i}", 10 << 20, 100 << 20, [1000 + i])
    # each makes a tree of its own, 3 levels deep, 240 cgroups with tasks: 1,200 in all
    for c in range(5):
        for i in range(6):
            for j in range(40):
                _cgroup(root, f"pods/ctr{c}/own/nest{i}/sub{j:02d}", 1 << 20, 100 << 20, [5000 + c * 240 + i * 40 + j])
    with open(os.path.join(root, "cgroup.stat"), "w") as f:
        f.write("nr_descendants 1241\nnr_dying_descendants 0\n")  # 1 + 5 + 5 + 30 + 1,200
    s = Sampler(MemoryHierarchy(root, 2), max_cgroups=50, pid_retention_s=60)
    assert s.max_walk == 200
    started = time.monotonic()
    s.tick()
    assert time.monotonic() - started < 5
    for i in range(5):
        assert f"/pods/ctr{i}" in s._watched, sorted(s._watched)[:10]
    assert len(s._watched) <= 50
    assert s.dropped_cgroups >= 1000  # said, in the log and the metrics (oomscope_lost{what="dropped_cgroups"})
    # shallowest first: nothing is walked more than one level above a cgroup walked before it
    # (a depth-first walk went down a container's own tree before its neighbours)
    depths = [c.count("/") for c in s.hier.walk("/")]
    assert all(later >= earlier - 1 for i, earlier in enumerate(depths) for later in depths[i + 1:i + 400]), depths[:60]


def test_descriptors_of_cgroups_read_on_the_way_to_a_limit_are_closed_once_they_are_gone(tmp_path):
    """Issue 24's soak: a pod's cgroup (no tasks of its own) is read only to find the limit above
    its containers; its kept limit file was closed by nothing once the pod was gone (700
    descriptors after half an hour of churn)."""
    import shutil

    root = _root(tmp_path)
    s = Sampler(MemoryHierarchy(root, 2), pid_retention_s=60, notify=False)
    s.hier.keep_files_open(1000)  # as the sampler thread does in run()
    try:
        s.tick()
        baseline = len(s.hier._kept)
        for round_ in range(5):
            for i in range(10):
                d = os.path.join(root, "kubepods", f"pod{round_}-{i}")
                os.makedirs(d)
                with open(os.path.join(d, "memory.max"), "w") as f:
                    f.write("max\n")  # a BestEffort pod: no limit up to the root
                _cgroup(root, f"kubepods/pod{round_}-{i}/ctr", 10 << 20, "max", [1000 + i])
            s._next_discovery = s._next_full_discovery = 0
            s.tick()
            for i in range(10):
                shutil.rmtree(os.path.join(root, "kubepods", f"pod{round_}-{i}"))
        s._next_discovery = s._next_full_discovery = 0
        s._walked = None
        s.tick()
        assert len(s.hier._kept) <= baseline + 2, sorted({k[0] for k in s.hier._kept})[:10]
        # and nothing else of theirs is kept: paths, limited ancestors
        assert not [c for c in s.hier._paths if c.startswith("/kubepods/pod")]
        assert not [c for c in s.store._limited_ancestor if c.startswith("/kubepods/pod")]
    finally:
        s.hier.close_files()
