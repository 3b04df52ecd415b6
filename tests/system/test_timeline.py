"""The minutes before a kill in its capture's timeline: the sampler's readings of a cgroup that
fills with page cache, then anonymous memory until the limit's reclaim fails. A real kill in a
sandbox cgroup."""

import os
import subprocess
import sys
import time


PHASES = r"""
import os, sys, time
print(os.getpid(), flush=True)
# page cache first: a file written in the cgroup's scratch directory, read back
path = sys.argv[1]
with open(path, 'wb') as f:
    for _ in range(56):
        f.write(b'x' * (1 << 20))
        f.flush()
        time.sleep(0.05)
os.fsync(os.open(path, os.O_RDONLY))
time.sleep(2.5)
# then anonymous memory, until killed
a = []
while True:
    a.append(bytearray(2 << 20))
    time.sleep(0.05)
"""


def test_timeline_shows_page_cache_then_anon_then_reclaim(recorder, kernel_log, sandbox, tmp_path):
    name, path = sandbox(limit=96 << 20)
    made = time.monotonic()
    rec = recorder()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    started = time.monotonic()
    res = subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3" "$4"', "sh",
                          os.path.join(path, "cgroup.procs"), sys.executable, PHASES, str(scratch / "data")],
                         capture_output=True, timeout=90)
    assert res.returncode == -9, res.stderr
    pid = int(res.stdout.split()[0])
    ((_, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    (tl,) = [t for t in cap["timelines"] if t["cgroup"] == name]
    pts = tl["points"]
    # said on failure: how long the recorder had to find the sandbox, and how long the fill took
    timing = (f"sandbox made {started - made:.1f} s before the workload started, "
              f"which was killed {time.monotonic() - started:.1f} s later (capture read included)")
    assert len(pts) >= 4, (timing, pts)
    assert all(p["t_ms"] <= 0 for p in pts)
    # a recorded timeline says it is thinned with age (schema 6), so the page may say so; a
    # minute of it is all recent points, none thinned: oldest first, at least a second apart
    assert tl["thinned_by_age"] is True
    assert all(b["t_ms"] - a["t_ms"] >= 999 for a, b in zip(pts, pts[1:-1])), [p["t_ms"] for p in pts]
    mib = 1 << 20
    # when the written file first held 30 MiB (page cache; shmem where the test's /tmp is a
    # tmpfs, as in the VMs), and when anon first passed 30 MiB
    def cache(p):
        return (p["file_bytes"] or 0) + (p["shmem_bytes"] or 0)

    t_file = next((p["t_ms"] for p in pts if cache(p) >= 30 * mib), None)
    t_anon = next((p["t_ms"] for p in pts if (p["anon_bytes"] or 0) >= 30 * mib), None)
    assert t_file is not None and t_anon is not None, pts
    assert t_file < t_anon, (t_file, t_anon)
    at_cache = next(p for p in pts if p["t_ms"] == t_file)
    assert pts[-1]["anon_bytes"] > at_cache["anon_bytes"] + 20 * mib  # anon grew after the cache phase
    # The limit forced reclaim before the kill. Read at the kill, it is there whenever reclaim is
    # counted; the timeline's last reading may precede it (in the VMs /tmp is a tmpfs, so the
    # "cache" is shmem, nothing is reclaimable, and the limit is first hit in the last moments:
    # measured last reading 66 ms before the kill, no reclaim yet).
    last = pts[-1]
    on_disk = max(p["file_bytes"] or 0 for p in pts) >= 30 * mib
    at_kill = tl["reclaim_at_kill"]
    print(f"reclaim: at the last reading ({last['t_ms']} ms) {last['reclaim_runs']} runs, {last['reclaim_pages']} pages; "
          f"at the kill {at_kill}")
    if last["reclaim_runs"] is not None:
        assert at_kill is not None and at_kill["runs"] > 0 and at_kill["runs"] >= last["reclaim_runs"]
        assert at_kill["read_ms_after_kill"] >= 0
        if on_disk:  # clean page cache is there to reclaim, and the limit was hit long before the kill
            assert last["reclaim_runs"] > 0 and last["reclaim_pages"] > 0 and at_kill["pages"] > 0, last
    if on_disk:  # clean cache is reclaimed for anon
        assert last["file_bytes"] < max(p["file_bytes"] for p in pts), "page cache was not reclaimed as anon grew"
