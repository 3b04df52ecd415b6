import json
import os
import time

import pytest

from oomscope.errors import OomscopeError
from oomscope.record.retention import Ledger, Retention, folder_bytes
from oomscope.safefs import MARKER, Dir


def _kill(d, name, age_s):
    f = d / name
    f.mkdir()
    for n in ("capture.json", "postmortem.html", MARKER):
        (f / n).write_text("{}")
    t = time.time() - age_s
    os.utime(f / "capture.json", (t, t))
    return f


def test_keep_newest_n_and_never_the_one_just_written(tmp_path):
    for i in range(5):
        _kill(tmp_path, f"k{i}", age_s=100 * i)  # k0 newest
    removed = Retention.parse("2").prune(str(tmp_path), keep={str(tmp_path / "k4")})
    assert sorted(removed) == ["k2", "k3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0", "k1", "k4"]


def test_keep_days_and_foreign_files_are_left(tmp_path):
    _kill(tmp_path, "new", 3600)
    old = _kill(tmp_path, "old", 9 * 86400)
    (old / "notes.txt").write_text("mine")
    (tmp_path / "unrelated").mkdir()
    assert Retention.parse("7d").prune(str(tmp_path)) == ["old"]
    assert (old / "notes.txt").exists() and not (old / "capture.json").exists()
    assert (tmp_path / "unrelated").exists() and (tmp_path / "new" / "capture.json").exists()


@pytest.mark.parametrize("bad", ["0", "-3", "x", "0d", ""])
def test_bad_keep_is_one_line(bad):
    with pytest.raises(OomscopeError, match="--keep"):
        Retention.parse(bad)


# --- storms: --keep and the disk budget share the output folder out by workload ---------------

def _workload_kill(d, name, pod, age_s, size=0):
    f = d / name
    f.mkdir()
    cap = {"workload": {"kind": "kubernetes", "pod_uid": pod}, "cgroup": {"oom_memcg": f"/kubepods/pod{pod}"},
           "pad": "x" * size}
    (f / "capture.json").write_text(json.dumps(cap))
    (f / MARKER).write_text("")
    t = time.time() - age_s
    os.utime(f / "capture.json", (t, t))
    return f


def test_one_workloads_storm_never_takes_anothers_last_post_mortems(tmp_path):
    for i in range(3):
        _workload_kill(tmp_path, f"b{i}", "B", age_s=3600 + i)  # B's three, older than all of A's
    for i in range(100):
        _workload_kill(tmp_path, f"a{i:03d}", "A", age_s=100 - i)  # A storms: a099 newest
    removed = Retention.parse("10").prune(str(tmp_path), keep={str(tmp_path / "a099")})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["a093", "a094", "a095", "a096", "a097", "a098", "a099", "b0", "b1", "b2"]
    assert len(removed) == 93


def test_keep_takes_from_the_workload_with_most_then_keeps_each_ones_newest(tmp_path):
    for i in range(4):
        _workload_kill(tmp_path, f"a{i}", "A", age_s=10 * i)
    for i in range(2):
        _workload_kill(tmp_path, f"b{i}", "B", age_s=100 + 10 * i)
    _workload_kill(tmp_path, "c0", "C", age_s=1000)
    Retention.parse("3").prune(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a0", "b0", "c0"]  # each workload's newest
    Retention.parse("2").prune(str(tmp_path))  # more workloads than --keep: the count wins, oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a0", "b0"]


def test_a_workloads_disk_budget_removes_its_own_oldest_never_its_newest_nor_anothers(tmp_path):
    for i in range(3):
        _workload_kill(tmp_path, f"b{i}", "B", age_s=5000 + i, size=40000)
    for i in range(20):
        _workload_kill(tmp_path, f"a{i:02d}", "A", age_s=100 - i, size=40000)  # ~44 KB on disk each
    with Dir(str(tmp_path)) as out:
        ledger = Ledger.read(out)
        each = folder_bytes(out, "a00")[0]  # ~44 KB: the folder, its capture, its marker
    assert {f.workload for f in ledger.folders.values()} == {"pod A", "pod B"}
    removed = ledger.trim(str(tmp_path), "pod A", 5 * each)
    assert sorted(removed) == [f"a{i:02d}" for i in range(15)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{i:02d}" for i in range(15, 20)] + ["b0", "b1", "b2"]
    assert ledger.trim(str(tmp_path), "pod A", 1) == [f"a{i:02d}" for i in range(15, 19)]  # the newest stays
    assert (tmp_path / "a19" / "capture.json").exists()


def test_an_unreadable_capture_is_a_workload_of_its_own(tmp_path):
    _kill(tmp_path, "odd", 10)  # capture.json is "{}"
    (tmp_path / "odd" / "capture.json").write_text("not json")
    with Dir(str(tmp_path)) as out:
        assert Ledger.read(out).folders["odd"].workload == "?"


# --- record --max-disk: all workloads together ---------------------------------------------------

def test_many_workloads_each_within_its_budget_are_held_to_the_total(tmp_path):
    # A tenant whose many pods each die once (each its own workload, each far under
    # --workload-disk) filled the disk before --max-disk; now the total is held, and the
    # workloads that hold most lose their oldest first
    for i in range(30):
        _workload_kill(tmp_path, f"p{i:02d}", f"P{i}", age_s=1000 - i, size=40000)  # 30 pods, one kill each
    for i in range(6):
        _workload_kill(tmp_path, f"q{i}", "Q", age_s=5000 + i, size=40000)  # an older workload of six
    with Dir(str(tmp_path)) as out:
        ledger = Ledger.read(out)
        each = folder_bytes(out, "p00")[0]
        assert ledger.total_bytes(out) == 36 * each
    # a budget of 33 folders: Q, which holds most, gives up three of its oldest, not the pods' only ones
    removed = ledger.trim_total(str(tmp_path), 33 * each, keep={"p29"}, slack=0)
    assert sorted(removed) == ["q3", "q4", "q5"]
    # down to 20: Q down to its newest first; then every workload holds one, and the disk's limit
    # wins over their count: the oldest go (Q's newest, older than every pod's, first)
    removed = ledger.trim_total(str(tmp_path), 20 * each, keep={"p29"}, slack=0)
    assert removed == ["q2", "q1", "q0"] + [f"p{i:02d}" for i in range(10)]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"p{i:02d}" for i in range(10, 30)]
    with Dir(str(tmp_path)) as out:
        assert ledger.total_bytes(out) == 20 * each


def test_max_disk_never_removes_the_kill_just_written_and_keeps_its_sum_as_folders_come_and_go(tmp_path):
    _workload_kill(tmp_path, "a0", "A", age_s=3000, size=40000)
    with Dir(str(tmp_path)) as out:
        ledger = Ledger.read(out)
        each = folder_bytes(out, "a0")[0]
    for i in range(1, 6):
        f = _workload_kill(tmp_path, f"a{i}", "A", age_s=3000 - i, size=40000)
        (f / "postmortem.html").write_text("")  # rendered: measured for good
        ledger.add(f"a{i}", "pod A", time.time() - (3000 - i))
    assert ledger.trim_total(str(tmp_path), 1, keep={"a5"}, slack=0) == ["a0", "a1", "a2", "a3", "a4"]  # the newest is the one kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a5"]
    with Dir(str(tmp_path)) as out:
        assert ledger.total_bytes(out) == each
    assert ledger._unmeasured == set()  # a5 measured for good once rendered: no stat at every kill
    ledger.discard("a5")
    with Dir(str(tmp_path)) as out:
        assert ledger.total_bytes(out) == 0


def test_max_disk_once_reached_trims_below_it_so_that_the_next_kills_choose_nothing(tmp_path):
    for i in range(40):
        _workload_kill(tmp_path, f"p{i:02d}", f"P{i}", age_s=1000 - i, size=40000)
    with Dir(str(tmp_path)) as out:
        ledger = Ledger.read(out)
        each = folder_bytes(out, "p00")[0]
    removed = ledger.trim_total(str(tmp_path), 39 * each)  # one over: down to 5% below, 37.05
    assert removed == ["p00", "p01", "p02"]
    assert ledger.trim_total(str(tmp_path), 39 * each) == []  # within it again: nothing walked
    with Dir(str(tmp_path)) as out:
        assert ledger.total_bytes(out) == 37 * each


def test_a_folder_measured_before_its_post_mortem_is_measured_again(tmp_path):
    f = _workload_kill(tmp_path, "a0", "A", age_s=1, size=10)
    ledger = Ledger()
    ledger.add("a0", "pod A")
    with Dir(str(tmp_path)) as out:
        before = ledger.total_bytes(out)
        (f / "postmortem.html").write_text("x" * 100_000)
        after = ledger.total_bytes(out)
    assert after > before + 90_000
    assert ledger._unmeasured == set()


@pytest.mark.parametrize("text,want", [("1G", 1 << 30), ("0", None), ("off", None), ("500M", 500 << 20)])
def test_max_disk_option(text, want):
    from oomscope.record.main import parse_options, OPTIONS

    o = {k: None for k in OPTIONS}
    o.update(output="/tmp/x", duration=None, lab_limit="64M", log_format="text", workload_burst=10,
             workload_every=60.0, workload_disk="64M", max_disk=text, throttle_share=0.1)
    opts, _lab, _limit = parse_options(o)
    assert opts.max_disk_bytes == want
