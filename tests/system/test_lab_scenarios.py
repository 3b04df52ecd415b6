"""Each lab scenario is a real kill whose post-mortem names the right cause."""

import os
import time

import pytest

from oomscope.analysis.attribution import analyse
from oomscope.lab import run_scenario
from oomscope.model import Capture

LIMIT = 64 << 20


def _first_capture(rec, run):
    caps = rec.wait_for(lambda c: c["cgroup"]["oom_memcg"] == run.cgroup)
    path, _ = min(caps, key=lambda pc: pc[1]["times"]["kill_monotonic_ns"] or 0)
    with open(path) as f:
        return Capture.from_json(f.read()), path


def _run(recorder, hier, scenario):
    rec = recorder()
    # the sampler's first pass over every cgroup of a busy host can take many seconds: the lab
    # starts once it has ended, as `record --lab` does, so that the fill is on the timeline
    deadline = time.monotonic() + 120
    while "oomscope: sampling" not in rec.stderr():
        assert time.monotonic() < deadline, f"record's sampler never finished a pass: {rec.stderr()}"
        time.sleep(0.2)
    run = run_scenario(scenario, limit_bytes=LIMIT, hier=hier, cgroup=f"/oomscope-test-{os.getpid()}-{scenario}")
    assert run.killed, f"{scenario}: not killed ({run.returncode}): {run.stderr}"
    return _first_capture(rec, run)


def _parts(analysis):
    return {p.key: p.bytes for p in analysis.reconciliation}


def test_untouched_is_charged_only_when_touched(recorder, hier):
    cap, _ = _run(recorder, hier, "untouched")
    a = analyse(cap)
    # anon_thp where THP is "always" (Debian's 6.12 in the VMs): the touched region is huge pages
    assert a.top_categories[0] in ("anon", "anon_thp")
    # 4x the limit was mapped, and only what was touched (at most the limit) was resident
    assert cap.victim.total_vm_bytes >= 3 * LIMIT and cap.victim.anon_rss_bytes <= LIMIT
    last = cap.at_kill_sources.get("last_sample")
    assert last is None or last.age_ms >= 0


def test_thp_is_named(recorder, hier):
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        mode = f.read()
    if "[never]" in mode:
        pytest.skip("transparent huge pages are disabled on this kernel ([never])")
    cap, _ = _run(recorder, hier, "thp")
    a = analyse(cap)
    assert a.top_categories[0] == "anon_thp", (a.top_categories, a.details)
    thp = next(d for d in a.details if d.key in ("rss_huge", "anon_thp"))
    assert thp.bytes >= 0.5 * cap.at_kill.usage_bytes


def test_slab_from_open_files_is_kernel_memory(recorder, hier):
    cap, path = _run(recorder, hier, "slab")
    a = analyse(cap)
    expected = "kernel" if hier.version == 1 else "slab"  # v1's memory.stat has no slab: only kmem
    assert a.top_categories[0] == expected, [(c.key, c.bytes) for c in a.categories]
    parts = _parts(a)
    assert max(parts, key=parts.get) == "kernel"
    assert parts["kernel"] >= 0.4 * a.gap_bytes
    with open(os.path.join(os.path.dirname(path), "postmortem.html")) as f:
        assert "Kernel memory" in f.read()


def test_tmpfs_is_shmem_not_rss(recorder, hier):
    cap, _ = _run(recorder, hier, "tmpfs")
    a = analyse(cap)
    assert a.top_categories[0] == "shmem", [(c.key, c.bytes) for c in a.categories]
    parts = _parts(a)
    assert max(parts, key=parts.get) == "shmem"
    assert (cap.victim.shmem_rss_bytes or 0) < 1 << 20  # written, never mapped: not in RSS
