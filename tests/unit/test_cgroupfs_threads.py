"""MemoryHierarchy's path cache is shared by the threads that read cgroupfs (the sampler, the kmsg
follower handling a kill, the metrics server) and pruned by the sampler at each full discovery
(issue 25): hammered from two threads, no read fails and every path is right."""

import sys
import threading
import time

from oomscope.kernel.cgroupfs import MemoryHierarchy


def test_the_path_cache_holds_under_two_threads_reading_and_one_pruning():
    hier = MemoryHierarchy(root="/sys/fs/cgroup", version=2)
    errors = []
    stop = time.monotonic() + 1.5
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows

    def reader(prefix):
        i = 0
        try:
            while time.monotonic() < stop:
                cg = f"/{prefix}/c{i % 20000}"
                if hier.fs_path(cg) != "/sys/fs/cgroup" + cg:
                    errors.append(f"wrong path for {cg}")
                    return
                i += 1
        except Exception as exc:  # any failure is the finding
            errors.append(f"reader: {exc!r}")

    def pruner():
        keep = {f"/a/c{i}" for i in range(0, 20000, 2)}
        try:
            while time.monotonic() < stop:
                hier.forget_paths_except(keep)
        except Exception as exc:
            errors.append(f"pruner: {exc!r}")

    threads = [threading.Thread(target=reader, args=("a",)), threading.Thread(target=reader, args=("b",)),
               threading.Thread(target=pruner)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    finally:
        sys.setswitchinterval(old)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(hier._paths) <= 16384  # still bounded
