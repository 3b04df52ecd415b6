import os
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.record.sampler import Sampler


def _cgroup(root, name, usage, limit, pids):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    files = {"memory.stat": f"anon {usage}\nfile 0\n", "memory.current": f"{usage}\n", "memory.max": f"{limit}\n",
             "cgroup.procs": "".join(f"{p}\n" for p in pids)}
    for f, text in files.items():
        with open(os.path.join(d, f), "w") as fh:
            fh.write(text)


def test_ring_picks_the_sample_before_the_kill_and_remembers_pids(tmp_path):
    root = str(tmp_path)
    with open(os.path.join(root, "memory.max"), "w") as f:
        f.write("max\n")
    _cgroup(root, "job", 10 << 20, 100 << 20, [4242])
    s = Sampler(MemoryHierarchy(root, 2), interval_s=0.5, fast_interval_s=0.1, pid_retention_s=60)
    assert s.tick() == 0.5  # far from the limit: slow
    t_between = time.monotonic_ns()
    _cgroup(root, "job", 95 << 20, 100 << 20, [4243])  # near the limit; 4242 has exited
    assert s.tick() == 0.1  # near the limit: fast
    assert s.latest_before("/job", t_between).state.usage_bytes == 10 << 20
    assert s.latest_before("/job", time.monotonic_ns()).state.usage_bytes == 95 << 20
    assert s.latest_before("/job", 0) is None
    # a pid seen once is still known after it left cgroup.procs, within the retention
    assert s.cgroup_of_pid(4242) == "/job"
    s.pid_retention_ns = 0
    time.sleep(0.001)
    _cgroup(root, "other", 1, 100 << 20, [7])
    s.tick()
    assert s.cgroup_of_pid(4242) is None and s.cgroup_of_pid(7) == "/other"


def test_vanishing_cgroup_is_not_an_error(tmp_path):
    root = str(tmp_path)
    s = Sampler(MemoryHierarchy(root, 2))
    _cgroup(root, "gone", 1, 100, [1])
    os.remove(os.path.join(root, "gone", "memory.stat"))
    s.tick()
    assert s.watched() == 0
