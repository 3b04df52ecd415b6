"""The state at the kill from the in-kernel charge counters, and the minutes before the kill.

Real kills in sandbox cgroups, checked against the kernel's own report (KernelLog)."""

import collections
import os
import subprocess
import sys
import time

import pytest

from oomscope.probes import charge_tracking_support

from .conftest import TIME_SCALE, measured, run_in_cgroup, run_storm


SIZE_TOLERANCE = (0.02, 1 << 20)   # 2% or 1 MiB, whichever is larger (the target)
# Event counts (pgpgin, pgpgout, pgfault) are cumulative: the kernel prints its report in
# dump_header() *before* oom:mark_victim fires (mm/oom_kill.c), and printing to the console takes
# milliseconds during which the storm's other processes, on the other CPU, keep faulting and
# uncharging. Sizes move little in that time; counts only grow. Measured: up to ~3% (633 pages).
COUNT_TOLERANCE = (0.05, 1024)
# The LRU list sizes (active/inactive anon/file) move between lists in per-CPU batches and were
# measured up to 1.8 MiB (3%) apart from the report in a storm on this kernel; they are not used
# by the attribution. The keys the post-mortem's categories are built from must meet the target.
LRU_TOLERANCE = (0.05, 4 << 20)


def _needs_charge_tracking():
    why = charge_tracking_support()
    if why is not None:
        pytest.skip(f"charge tracking is not available on this kernel: {why}")


def _close(key, got, want):
    bare = key[len("total_"):] if key.startswith("total_") else key
    if bare.startswith("pg"):
        rel, floor = COUNT_TOLERANCE
    elif bare.startswith(("active_", "inactive_")):
        rel, floor = LRU_TOLERANCE
    else:
        rel, floor = SIZE_TOLERANCE
    return abs(got - want) <= max(rel * abs(want), floor)


@pytest.fixture
def rate_limit_window():
    yield
    time.sleep(5.5)


def test_storm_kills_get_their_state_from_the_counters(recorder, kernel_log, sandbox, tmp_path, rate_limit_window):
    _needs_charge_tracking()
    name, path = sandbox(limit=64 << 20)
    rec = recorder(own=True)  # stopped: record says at exit why kills had no reconstruction
    pids_dir = tmp_path / "pids"
    # the parent holds ~90% of the limit first, so that record attaches its counters before the storm
    res = run_storm(path, tmp_path / "storm.py", pids_dir, 6, warm_bytes=58 << 20, min_kills=32)
    assert res.returncode == 0, res.stderr
    ours = {int(p) for p in os.listdir(pids_dir)}
    time.sleep(1.0)
    reports = kernel_log.read()
    assert kernel_log.lost_records == 0, "the test's own kmsg reader lost records: it cannot check this storm"
    killed = {r.killed.pid for r in reports if r.killed and r.killed.pid in ours}
    full = {r.killed.pid: r for r in reports if r.killed and r.killed.pid in ours and r.has_header}
    assert len(killed) >= 30, f"only {len(killed)} kills: not a storm"
    assert len(full) < len(killed), "the kernel printed every report: the rate limit was not exercised"
    deadline = time.monotonic() + 20 * TIME_SCALE  # every kill written: slower under emulation
    while time.monotonic() < deadline:
        caps = {c["victim"]["pid"]: c for _, c in rec.captures() if c["victim"]["pid"] in ours}
        if killed <= set(caps):
            break
        time.sleep(0.2)
    assert killed <= set(caps), f"{len(killed - set(caps))} of {len(killed)} kills have no capture"

    # Kills without a report: the state at the kill comes from the counters.
    bare = [caps[p] for p in killed if p not in full]
    # the kernel snapshot (read at the SIGKILL) ranks above the reconstruction; this test checks the
    # reconstruction, kept beside it
    sources = collections.Counter(s for c in bare for s in c["at_kill_sources"])
    # (Their state at the kill is the kernel snapshot's: tests/system/test_kernel_snapshot.py.)
    # Under software emulation (the VMs: TIME_SCALE > 1) the sampler's two counter reads around each
    # memory.stat read end up more than the 256 KiB it accepts apart during a storm, so most kills
    # get no paired sample to reconstruct from (measured on 7.3 under TCG: 7 of 84 reconstructed,
    # record said "no paired sample before the kill"). There, what holds: some kills are
    # reconstructed, the others say why, and every reconstruction agrees with the report below.
    emulated = TIME_SCALE > 1
    if emulated:
        print(f"charge tracking storm under emulation: {sources['reconstructed']} of {len(bare)} rate-limited kills "
              "reconstructed (the sampler's paired reads are too slow here to pair the rest)")
        assert sources["reconstructed"] >= 1, dict(sources)
    elif sources["reconstructed"] != len(bare):
        tracking = collections.Counter(c["charge_tracking"] for c in bare)
        rec.stop()  # record says at exit why kills had no reconstruction
        raise AssertionError(f"state sources of rate-limited kills: {dict(sources)}; charge tracking at them: "
                             f"{dict(tracking)}; record said: {rec.stderr()[-1500:]}")
    assert all(c["charge_tracking"].startswith("on") for c in bare)

    # Kills with a report: the reconstruction, made without it, agrees with it.
    # The kernel's report is computed when the OOM is decided, and printed before the SIGKILL that
    # our snapshot is taken at. While a victim killed just before is still freeing its memory,
    # those two moments see different states (measured: a report's usage 27 MiB against a 64 MiB
    # limit; rss 10-25 MiB apart), and the report is no reference. Compared: the kills whose report
    # began at least SETTLED_US after the previous kill of the storm (the first one always does).
    SETTLED_US = 100_000
    kill_times = sorted(r.killed_usec for r in reports if r.killed and r.killed.pid in ours and r.killed_usec)
    def settled(rep):
        earlier = [t for t in kill_times if t < rep.first_usec]
        return not earlier or rep.first_usec - earlier[-1] >= SETTLED_US

    compared, moving, worst, worst_count = 0, 0, (0.0, ""), (0.0, "")
    for pid, rep in full.items():
        if not settled(rep):
            moving += 1
            continue
        rec_state = caps[pid]["at_kill_sources"].get("reconstructed")
        if rec_state is None and emulated:
            continue  # no paired sample under emulation (above)
        if rec_state is None:
            rec.stop()  # record says at exit why kills had no reconstruction
            raise AssertionError(f"pid {pid}: no reconstruction beside the kernel's report (charge tracking "
                                 f"{caps[pid]['charge_tracking']!r}); record said: {rec.stderr()[-1500:]}")
        assert caps[pid]["at_kill"]["source"] == "kernel_report"
        for key, want in rep.memory_stat.items():
            got = rec_state["memory_stat"][key]
            assert _close(key, got, want), f"pid {pid} {key}: reconstructed {got}, kernel {want}"
            if want and key.startswith(("pg", "total_pg")):
                worst_count = max(worst_count, (abs(got - want) / want, key))
            elif want and (abs(got - want) > (1 << 20)):
                worst = max(worst, (abs(got - want) / want, key))
        # usage is the limit (a memcg OOM means a charge failed there); the report, printed a little
        # later, shows it less what earlier victims were uncharging meanwhile
        usage = rep.memory.usage_kb * 1024
        assert abs(rec_state["usage_bytes"] - usage) <= 0.1 * usage, (rec_state["usage_bytes"], usage)
        compared += 1
    assert compared >= 1 or emulated  # under emulation, settled reports may all lack a pair (above)
    measured(f"charge tracking storm: {len(killed)} kills, {len(bare)} reconstructed without a report, "
                     f"{compared} reconstructions checked against the report ({moving} reports taken while an earlier victim "
                     f"was freeing left out), worst size key off by more than 1 MiB: {worst[1] or 'none'} {100 * worst[0]:.2f}%, "
                     f"worst count {worst_count[1]} off by {100 * worst_count[0]:.2f}%")


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
    rec = recorder()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    res = subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3" "$4"', "sh",
                          os.path.join(path, "cgroup.procs"), sys.executable, PHASES, str(scratch / "data")],
                         capture_output=True, timeout=90)
    assert res.returncode == -9, res.stderr
    pid = int(res.stdout.split()[0])
    ((_, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    (tl,) = [t for t in cap["timelines"] if t["cgroup"] == name]
    pts = tl["points"]
    assert len(pts) >= 4, pts
    assert all(p["t_ms"] <= 0 for p in pts)
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


def test_record_and_capture_say_whether_charge_tracking_could_run(recorder, kernel_log, sandbox):
    """Either way, record says so: here and in the 7.x VM (6.13+) it is available and attached near
    the limit; on the VMs' 6.1 and 6.12 it is unavailable, and the sampler alone fills the timeline."""
    name, path = sandbox(limit=96 << 20)
    rec = recorder()
    why = charge_tracking_support()
    if why is None:
        assert "charge tracking auto" in rec.stderr()
    else:
        assert "charge tracking unavailable" in rec.stderr() and "6.13" in rec.stderr()
    slow = ("import os, time\nprint(os.getpid(), flush=True)\na = []\n"
            "while True:\n    a.append(bytearray(2 << 20))\n    time.sleep(0.05)\n")
    res = run_in_cgroup(path, slow)
    assert res.returncode == -9
    pid = int(res.stdout.split()[0])
    ((_, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    (tl,) = [t for t in cap["timelines"] if t["cgroup"] == name]
    assert len(tl["points"]) >= 2 and tl["points"][-1]["anon_bytes"] > tl["points"][0]["anon_bytes"]
    if why is None:
        assert cap["charge_tracking"].startswith("on")  # attached once the cgroup passed 90%
        assert "reconstructed" in cap["at_kill_sources"]
    else:
        assert cap["charge_tracking"].startswith("unavailable")
        assert "reconstructed" not in cap["at_kill_sources"]
