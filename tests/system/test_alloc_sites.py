"""Growth sites and who hit the limit (issue 27), on a real kill: the lab's leak-native workload
(a C program with frame pointers: ``leak_slowly`` keeps what it allocates while ``churn_buffers``
maps, touches and unmaps three times as much) recorded by record, in a sandbox cgroup."""

import json
import os
import subprocess
import sys
import time

import pytest

from oomscope.lab import run_scenario

from .conftest import measured

from ..requires import require_tool

LIMIT = 64 << 20

pytestmark = pytest.mark.timeout(240)


def test_the_leak_is_named_first_not_the_churn(recorder, hier):
    require_tool("gcc", package="gcc")  # the lab builds its C workload (a failure under ./setup.sh test)
    rec = recorder()
    deadline = time.monotonic() + 120
    while "oomscope: sampling" not in rec.stderr():
        assert time.monotonic() < deadline, f"record's sampler never finished a pass: {rec.stderr()}"
        time.sleep(0.2)
    cgroup = f"/oomscope-test-{os.getpid()}-leak-native"
    run = run_scenario("leak-native", limit_bytes=LIMIT, hier=hier, cgroup=cgroup)
    assert run.killed, f"not killed ({run.returncode}): {run.stderr}"
    caps = rec.wait_for(lambda c: c["cgroup"]["oom_memcg"] == cgroup)
    path, cap = min(caps, key=lambda pc: pc[1]["times"]["kill_monotonic_ns"] or 0)
    sites = cap["allocation_sites"]
    assert sites, f"no allocation sites; record said: {rec.stderr()[-3000:]}"
    first = sites[0]
    assert first["source"] == "page_faults" and first["frames"][0] == "leak_slowly", sites[:3]
    assert first["bytes"] > 0 and first["pid"] == run.main_pid
    churn = [s for s in sites if s["frames"] and s["frames"][0] == "churn_buffers"]
    assert all(s["bytes"] <= first["bytes"] for s in churn), sites[:4]
    sampling = cap["allocation_sampling"]
    assert sampling["checked_ms"] <= 0 and sampling["sampled_from_ms"] < sampling["checked_ms"]
    # a sample stands for the kernel's period over the share of the time the hook was on (on part of each second)
    assert sampling["period"] >= 1
    assert abs(first["bytes"] - first["pages_resident"] * sampling["period"] * 4096) <= 0.03 * first["bytes"]
    # the churn faulted more (three times as much), and holds nothing
    if churn:
        assert churn[0]["faults_sampled"] > first["faults_sampled"]
    # the tasks charging at the limit (memcg reclaim, then the kill): the workload's own
    hitters = cap["limit_hitters"]
    assert all(h["pid"] == run.main_pid for h in hitters), hitters
    out = subprocess.run([sys.executable, "-m", "oomscope", "report", path, "-f", "json"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    report = json.loads(out)
    assert report["allocation_sites"][0]["frames"][0] == "leak_slowly"
    assert report["limit_hitters"] == hitters
    measured(f"leak-native: first site {first['frames'][:2]} {first['bytes'] >> 20} MiB held "
             f"({first['pages_resident']}/{first['pages_sampled']} sampled pages resident, period {sampling['period']}, "
             f"sampled from {sampling['sampled_from_ms']:.0f} ms, checked {sampling['checked_ms']:.0f} ms before the kill); "
             f"churn_buffers {churn[0]['bytes'] >> 20 if churn else '-'} MiB held of "
             f"{churn[0]['faults_sampled'] if churn else 0} sampled faults; limit hitters {[(h['comm'], h['stall_ms']) for h in hitters]}")


CHURN = ("import mmap, sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n"
         "    m = mmap.mmap(-1, 2 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
         "    for o in range(0, 2 << 20, 4096):\n        m[o] = 1\n    m.close()\n    time.sleep(0.005)\n")


def test_what_the_kernel_gathered_about_a_process_no_longer_watched_is_dropped(sandbox):
    """While a cgroup stays near its limit sampling stays attached, and the maps would keep every
    killed process's samples (site_counts full: new sites uncounted; every check reading them
    all). forget_pids drops a process's counts, pages and the stacks nothing else names."""
    from oomscope.probes import AllocSiteProbes

    _name, path = sandbox(limit=64 << 20)
    procs = [subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                               os.path.join(path, "cgroup.procs"), sys.executable, "-c", CHURN, "30"])
             for _ in range(2)]
    probes = AllocSiteProbes()
    try:
        gone, kept = procs[0].pid, procs[1].pid
        probes.watch({gone, kept})
        probes.attach(1)
        deadline = time.monotonic() + 60
        while True:
            read = probes.read()
            seen = {k[0] for k in read.counts}
            if {gone, kept} <= seen and {gone, kept} <= {p.tgid for p in read.pages}:
                break
            assert time.monotonic() < deadline, f"no samples of both processes: {seen}"
            time.sleep(0.2)
        probes.watch({kept})  # the first one is no longer watched (killed, in the sampler's use)
        read = probes.read()
        deleted = probes.forget_pids({gone}, read)
        after = probes.read()
        assert deleted > 0
        assert gone not in {k[0] for k in after.counts} and gone not in {p.tgid for p in after.pages}
        assert kept in {k[0] for k in after.counts} and kept in {p.tgid for p in after.pages}
        # the stacks the kept process's samples name are still there to be named
        ids = {k[1] for k in after.counts if k[0] == kept and k[1] >= 0}
        assert ids and probes.stacks(ids), "the kept process's stacks were dropped too"
        measured(f"forget_pids: {deleted} entries of a process no longer watched deleted; "
                 f"{sum(1 for k in after.counts if k[0] == kept)} sites of the other kept")
    finally:
        probes.close()
        for p in procs:
            p.kill()
            p.wait()


def test_maps_are_read_in_small_batches_with_every_entry():
    """Every (key, value) of a BPF hash and LRU map read in batches of a few rows equals the map
    read one key at a time, across many batches and with a batch smaller than a bucket; and a
    read holds rows for what the map has, not for its max_entries: bcc's items_lookup_batch()
    allocated arrays for all 32,768 rows of sampled_pages at every call (~1.3 MiB, several times
    a second while sampling; they grew the sampling thread's arena in the soak, bench/README.md)."""
    import tracemalloc

    from oomscope.probes import AllocSiteProbes, _batch_items

    probes = AllocSiteProbes()
    try:
        watched, pages = probes.bpf["watched_tgids"], probes.bpf["sampled_pages"]
        for i in range(1, 3001):
            watched[watched.Key(100_000 + i)] = watched.Leaf(i % 7 + 2)
        for i in range(5):
            k = pages.Key()
            k.tgid, k.page = 4242, 0x7F0000000000 + i * 4096
            pages[k] = pages.Leaf()
        one_by_one = {k.value: v.value for k, v in watched.items()}
        for rows in (1, 7, 256):
            batched = {int(k): int(v) for k, v in _batch_items(watched, rows)}
            assert batched == one_by_one, f"rows={rows}: {len(batched)} of {len(one_by_one)} entries"
        assert len(one_by_one) == 3000
        tracemalloc.start()
        try:
            got = _batch_items(pages)
            _size, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sorted(k.page for k, _v in got) == [0x7F0000000000 + i * 4096 for i in range(5)]
        whole = int(pages.max_entries) * (ctypes_size(pages.Key) + ctypes_size(pages.Leaf))
        assert peak < 128 << 10 < whole, f"a read of 5 rows held {peak} bytes at its peak (the whole map's rows: {whole})"
        measured(f"map batches: 3000 entries equal in batches of 1, 7 and 256 rows; 5 of sampled_pages' "
                 f"{int(pages.max_entries)} rows read with a peak of {peak >> 10} KiB (its whole rows: {whole >> 10} KiB)")
    finally:
        probes.close()


def ctypes_size(t) -> int:
    import ctypes

    return ctypes.sizeof(t)
