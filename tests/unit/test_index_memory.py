"""record's post-mortem worker writes index.html and series.json at every kill (postmortem/index.py,
OutputIndex.write): each is written as it is made, a series and a template's piece at a time
(safefs.Dir.write of an iterable), never whole in memory. Made whole, their pieces and text were
~4.8 KiB of the worker's resident memory per kill folder, kept by the allocators between writes
(issue 24's soak: +7.7 KiB of RSS per folder; bench/worker_growth.py). The files are the same."""

import datetime as dt
import json
import os
import tracemalloc
import uuid

import pytest

from oomscope import safefs
from oomscope.capture.writer import write_capture
from oomscope.model import Capture
from oomscope.postmortem.index import OutputIndex
from oomscope.report.index import IndexRow
from oomscope.postmortem.series import SeriesKill

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures")


def _soak_rows(idx: OutputIndex, n: int) -> None:
    """n kills with the soak's names (a new Burstable pod each, 5 s apart), by their row and entry."""
    for i in range(n):
        pod = str(uuid.UUID(int=i + 1))
        cg = (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod.replace('-', '_')}.slice/"
              f"cri-containerd-{i:064x}.scope")
        t = 1765062000 + 5 * i
        when = dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")
        folder = f"20261206T{i:06d}.000Z-pid{100000 + i}"
        row = IndexRow(kill_id=folder, when=when, victim=f"{100000 + i} (python3)", cgroup=cg, usage="63.4 MiB",
                       limit="64.0 MiB", categories="anonymous (heap)", incident="", href=f"{folder}/postmortem.html",
                       host="node-1", workload=f"pod {pod[:8]}…, {i:012x}")
        entry = SeriesKill(folder="", kill_id=folder, key=f"pod {pod}", workload=f"pod {pod}", host="node-1",
                           clock="wall", t=float(t), when=when, pid=100000 + i, comm="python3",
                           usage_bytes=66 << 20, limit_bytes=64 << 20, mostly="anonymous (heap)")
        idx.add_parts(folder, row, entry)


def test_index_and_series_json_written_as_made_are_the_same_files(tmp_path):
    t0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    names = sorted(os.listdir(FIXTURES))
    for i in range(9):  # real captures, some of one series (40 s apart), some alone
        with open(os.path.join(FIXTURES, names[i % len(names)])) as f:
            cap = Capture.from_json(f.read())
        cap.kill_id = f"20261206T12{i:02d}00.000Z-pid{100 + i}"
        cap.victim.pid = 100 + i
        cap.times.kill_wall = (t0 + dt.timedelta(seconds=40 * i)).isoformat(timespec="milliseconds")
        write_capture(str(tmp_path), cap)
    idx = OutputIndex(str(tmp_path))
    _soak_rows(idx, 40)
    assert any(len(s.kills) > 1 for s in idx.series.series())
    idx.write()
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == idx.render()
    text = (tmp_path / "series.json").read_text()
    assert text == idx.series.to_json()
    assert text == json.dumps({"window_s": idx.series.window_s, "series": [s.to_dict() for s in idx.series.series()]},
                              ensure_ascii=True, separators=(",", ":"))


def test_writing_the_index_holds_little_per_kill(tmp_path):
    """The Python memory the writes take at their peak, per kill listed: the page and series.json
    made whole took ~3.7 KiB a kill here (2,000 kills; 3,807 bytes); written as made, what is left is the list
    of rows the page sorts (257 bytes)."""
    idx = OutputIndex(str(tmp_path))
    _soak_rows(idx, 2000)
    idx.write()  # templates compiled, series built
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        idx.write()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert os.path.getsize(tmp_path / "index.html") > 2000 * 300  # every kill is on the page
    assert peak / 2000 < 1024, f"{peak / 2000:.0f} bytes a kill at the writes' peak"


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    with safefs.Dir(str(tmp_path)) as d:
        d.write("index.html", "old")

        def pieces():
            yield "x" * (safefs.WRITE_CHUNK + 10)  # one piece written already
            raise RuntimeError("the template failed")

        with pytest.raises(RuntimeError):
            d.write("index.html", pieces())
        d.write("other.html", iter(["a", "é" * 3, ""]))
    assert sorted(os.listdir(tmp_path)) == ["index.html", "other.html"]  # no temporary file left
    assert (tmp_path / "index.html").read_text() == "old"
    assert (tmp_path / "other.html").read_text(encoding="utf-8") == "aééé"


def test_a_kill_s_row_and_series_entry_share_what_they_repeat(tmp_path):
    """What the worker keeps per kill folder while it runs: the kill id, time and workload once
    for its row and its series entry, and one string for what repeats from kill to kill (sizes,
    categories, host, command): 2,336 -> 1,947 bytes a folder of real captures (tracemalloc)."""
    t0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    with open(os.path.join(FIXTURES, "leak-go-v1-6.18.json")) as f:
        text = f.read()
    paths = []
    for i in range(3):  # three kills of one workload, each parsed apart (as the worker reads them)
        cap = Capture.from_json(text)
        cap.kill_id = f"20261206T12{i:02d}00.000Z-pid{100 + i}"
        cap.times.kill_wall = (t0 + dt.timedelta(seconds=40 * i)).isoformat(timespec="milliseconds")
        paths.append(write_capture(str(tmp_path), cap))
    for idx in (OutputIndex(str(tmp_path)), OutputIndex(str(tmp_path), cache=True)):
        for p in paths:  # as the worker adds each kill it rendered
            idx.add(p, Capture.from_json(open(p).read()))
        folders = [os.path.basename(os.path.dirname(p)) for p in paths]
        rows = [idx.rows[f] for f in folders]
        entries = [idx.series.entries[f] for f in folders]
        for folder, row, entry in zip(folders, rows, entries):
            assert row.kill_id == folder and entry.kill_id is row.kill_id
            assert entry.when is row.when and entry.folder is row.kill_id
        for name in ("usage", "limit", "categories", "host"):
            assert getattr(rows[0], name) == getattr(rows[2], name) and getattr(rows[0], name) is getattr(rows[2], name), name
        for name in ("host", "comm", "mostly", "clock"):
            assert getattr(entries[0], name) is getattr(entries[2], name), name


def test_the_shared_strings_are_a_bounded_table_of_our_own_not_sys_intern():
    """A workload names its command and host; interned strings are immortal on CPython 3.12.0-3.12.5,
    so the worker shares them through a table of its own, emptied when full."""
    from oomscope.postmortem import index as index_mod
    index_mod._SHARED.clear()
    names = [f"hostile-{i}" * 3 for i in range(index_mod._SHARED_MAX * 2 + 7)]
    for n in names:
        got = index_mod._shared("".join([n]))  # a fresh string object of the same text
        assert got == n
    assert len(index_mod._SHARED) <= index_mod._SHARED_MAX
    first = index_mod._shared("".join(["again"]))
    assert index_mod._shared("".join(["again"])) is first
