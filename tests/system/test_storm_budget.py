"""A storm's share (record/budget.py, record/retention.py), with real kills: one workload storms
in its sandbox cgroup while another is killed once; the second's kill is written while the first
storms, every kill of the storm is either written or counted, and --keep takes from the storm."""

import os
import re
import threading
import time

import pytest

from .conftest import TIME_SCALE, measured, run_in_cgroup, run_storm

HOG_SAYING_PID = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True: a.append(bytearray(1 << 20))\n"


@pytest.fixture
def rate_limit_window():
    """After a storm, wait out the kernel's OOM report rate limit (10 per 5 s) for the next test."""
    yield
    time.sleep(5.5)


def test_a_storm_keeps_to_its_budget_and_another_workloads_kill_is_written(recorder, kernel_log, sandbox, tmp_path,
                                                                          rate_limit_window):
    parent, _ = sandbox(limit=512 << 20)
    a, a_path = sandbox("-a", limit=64 << 20, parent=parent)
    b, b_path = sandbox("-b", limit=64 << 20, parent=parent)
    rec = recorder("--cgroup", parent, "--workload-burst", "4", "--workload-every", "2", "--keep", "6")
    pids_dir = tmp_path / "pids"
    storm = []
    t = threading.Thread(target=lambda: storm.append(run_storm(a_path, tmp_path / "storm.py", pids_dir, 10, min_kills=40)))
    t.start()
    try:
        time.sleep(3 * TIME_SCALE)  # A storms; its burst is spent
        hog = run_in_cgroup(b_path, HOG_SAYING_PID)
        b_pid = int(hog.stdout.split()[0])
        rec.wait_for(lambda c: c["victim"]["pid"] == b_pid)  # its capture and its post-mortem
        assert t.is_alive(), "the storm ended before the other workload's kill was written: not tested"
    finally:
        t.join(timeout=120 * TIME_SCALE)
    assert storm and storm[0].returncode == 0, storm[0].stderr if storm else "the storm did not end"
    ours = {int(p) for p in os.listdir(pids_dir)}
    time.sleep(3.0)  # the last kills of the storm joined and announced
    assert rec.stop() == 0, rec.stderr()
    killed = {r.killed.pid for r in kernel_log.read() if r.killed and r.killed.pid in ours}
    assert kernel_log.lost_records == 0, "the test's own kmsg reader lost records: it cannot count this storm"
    assert len(killed) >= 30, f"only {len(killed)} kills: not a storm"

    # Every kill of the storm is written (a kill line) or counted: on the next written one, or in
    # the log when record stops.
    lines = [ln for ln in rec.stdout().splitlines() if re.search(r" pid=(\d+) ", ln) and int(re.search(r" pid=(\d+) ", ln)[1]) in ours]
    said_on_next = sum(int(m[1]) for ln in lines for m in [re.search(r" not_written=(\d+) ", ln)] if m)
    left = sum(int(n) for n in re.findall(rf"cgroup {re.escape(a)}: (\d+) kill\(s\) between", rec.stderr()))
    measured(f"storm budget: {len(killed)} kills of one workload, {len(lines)} written, {said_on_next} counted on "
             f"the next written one, {left} said when record stopped")
    assert len(lines) + said_on_next + left == len(killed), rec.stderr()[-2000:]
    assert 4 <= len(lines) <= 4 + 20 * TIME_SCALE / 2 + 2  # the burst, then one per 2 s
    assert said_on_next > 0 and "a storm beyond its budget" in rec.stderr()

    # The post-mortem after a run of kills not written says so.
    caps = rec.captures()
    counted = [(p, c) for p, c in caps if c["victim"]["pid"] in ours and c.get("not_written")]
    assert counted, "no capture of the storm left that carries a count (all pruned?)"
    with open(os.path.join(os.path.dirname(counted[-1][0]), "postmortem.html")) as f:
        assert f"{counted[-1][1]['not_written']['count']} more kill" in f.read()

    # --keep 6 took from the storm, never the other workload's post-mortem.
    assert any(c["victim"]["pid"] == b_pid for _, c in caps)
    assert len(caps) <= 6


def test_many_workloads_each_killed_once_are_held_to_max_disk(recorder, sandbox, tmp_path):
    """Six workloads (sandbox cgroups, nothing names them) each killed once, each far within
    --workload-disk: --max-disk holds all of their folders together, the oldest go, the newest stays."""
    from oomscope.record.retention import folder_bytes
    from oomscope.safefs import MARKER, Dir

    parent, _ = sandbox(limit=512 << 20)
    kids = [sandbox(f"-w{i}", limit=32 << 20, parent=parent) for i in range(6)]
    max_bytes = 150 << 10  # ~2 kill folders of this host (~69 KiB each on ext4)
    rec = recorder("--cgroup", parent, "--max-disk", "150K")
    pids = []
    for _cg, path in kids:
        hog = run_in_cgroup(path, HOG_SAYING_PID)
        pids.append(int(hog.stdout.split()[0]))
        rec.wait_for(lambda c: c["victim"]["pid"] == pids[-1])
    rec.wait_for_output(f" pid={pids[-1]} ")  # its line comes once its post-mortem is written
    out_dir = os.path.join(rec.out_dir, "kills")
    with Dir(out_dir) as out:
        folders = sorted((t, n) for n, t in out.kill_folders())
        sizes = {n: folder_bytes(out, n)[0] for _t, n in folders}
    caps = {c["victim"]["pid"]: p for p, c in rec.captures()}
    lines = [ln for ln in rec.stdout().splitlines() if any(f" pid={p} " in ln for p in pids)]
    measured(f"max-disk: 6 workloads killed once, {len(lines)} recorded, {len(folders)} folders left "
             f"({sum(sizes.values()) >> 10} KiB, budget {max_bytes >> 10} KiB)")
    assert len(lines) == 6, rec.stdout()  # each kill was recorded, then the oldest removed
    assert pids[-1] in caps and os.path.exists(os.path.join(os.path.dirname(caps[pids[-1]]), "postmortem.html"))
    assert pids[0] not in caps, "the oldest workload's kill is still on disk"
    assert 1 <= len(folders) < 6
    # What was on disk when the last kill was written, with its capture (its post-mortem comes after)
    newest = folders[-1][1]
    assert sum(s for n, s in sizes.items() if n != newest) <= max_bytes
    assert all(os.path.exists(os.path.join(out_dir, n, MARKER)) for _t, n in folders)
