"""record's worker keeps its index rows beside index.html (postmortem/index.py INDEX_CACHE, issue 29):
started again after its idle exit, it reads only the captures that changed or came since, and the
index, series and pages it makes are those made from every capture; a cache that is damaged,
planted or of another version is not used."""

import datetime as dt
import json
import os

from oomscope.capture.writer import write_capture
from oomscope.model import Capture
from oomscope.postmortem.index import INDEX_CACHE, OutputIndex

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures")


def _folder(out, n=12):
    t0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    paths = []
    names = sorted(os.listdir(FIXTURES))
    for i in range(n):
        with open(os.path.join(FIXTURES, names[i % len(names)])) as f:
            cap = Capture.from_json(f.read())
        cap.kill_id = f"20261206T12{i:02d}00.000Z-pid{100 + i}"
        cap.victim.pid = 100 + i
        cap.times.kill_wall = (t0 + dt.timedelta(seconds=40 * i)).isoformat(timespec="milliseconds")
        paths.append(write_capture(str(out), cap))
    for p in paths[::3]:  # some with their post-mortem, the rest linked to their capture
        with open(os.path.join(os.path.dirname(p), "postmortem.html"), "w") as f:
            f.write("<html></html>")
    os.makedirs(out / "damaged")
    return paths


def _same(a, b):
    assert a.rows == b.rows
    assert a.no_page == b.no_page
    assert a.series.to_json() == b.series.to_json()
    assert a.render() == b.render()


def test_an_index_from_the_cache_is_the_index_from_every_capture(tmp_path):
    paths = _folder(tmp_path)
    first = OutputIndex(str(tmp_path), cache=True)
    assert first.cached == 0 and len(first.rows) == len(paths)
    first.write_cache()
    again = OutputIndex(str(tmp_path), cache=True)
    assert again.cached == len(paths), "no capture read again"
    _same(again, OutputIndex(str(tmp_path)))
    # one capture rewritten (a memory.oom.group's first victim), one new, one removed, a page written
    cap = Capture.from_json(open(paths[1]).read())
    cap.victim.comm = "rewritten"
    with open(paths[1], "w") as f:  # in place, within the clock's tick maybe: its size differs
        f.write(cap.to_json())
    os.unlink(paths[2])
    with open(os.path.join(os.path.dirname(paths[4]), "postmortem.html"), "w") as f:
        f.write("<html></html>")
    cap.kill_id, cap.victim.pid = "20261206T130000.000Z-pid999", 999
    write_capture(str(tmp_path), cap)
    later = OutputIndex(str(tmp_path), cache=True)
    assert later.cached == len(paths) - 2
    _same(later, OutputIndex(str(tmp_path)))
    assert "rewritten" in later.render()
    later.write_cache()
    assert OutputIndex(str(tmp_path), cache=True).cached == len(paths)  # the removed one out, the new one in
    # unchanged since: not written again (the worker leaves after every idle minute)
    before = os.stat(tmp_path / INDEX_CACHE).st_ino
    unchanged = OutputIndex(str(tmp_path), cache=True)
    unchanged.write_cache()
    assert os.stat(tmp_path / INDEX_CACHE).st_ino == before


def test_a_damaged_planted_or_other_versions_cache_is_not_used(tmp_path):
    _folder(tmp_path, 6)
    OutputIndex(str(tmp_path), cache=True).write_cache()
    with open(tmp_path / INDEX_CACHE) as f:
        good = json.load(f)
    plain = OutputIndex(str(tmp_path))
    folder = sorted(good["kills"])[0]
    bad_row = json.loads(json.dumps(good))
    bad_row["kills"][folder]["row"]["victim"] = 12345  # not a str
    extra = json.loads(json.dumps(good))
    extra["kills"][folder]["row"]["script"] = "<script>"  # a field the row has not
    bad_entry = json.loads(json.dumps(good))
    bad_entry["kills"][folder]["entry"] = {"folder": folder}
    for data, cached in ((bad_row, 5), (extra, 5), (bad_entry, 5), (dict(good, version=2), 0), ([1, 2], 0), ("x" * 100, 0)):
        with open(tmp_path / INDEX_CACHE, "w") as f:
            f.write(json.dumps(data) if not isinstance(data, str) else data)
        got = OutputIndex(str(tmp_path), cache=True)
        assert got.cached == cached
        _same(got, plain)
    os.unlink(tmp_path / INDEX_CACHE)
    os.symlink("/etc/passwd", tmp_path / INDEX_CACHE)  # never through a link
    got = OutputIndex(str(tmp_path), cache=True)
    assert got.cached == 0
    _same(got, plain)


def test_import_writes_no_cache_and_index_html_goes_without_it(tmp_path):
    _folder(tmp_path, 3)
    index = OutputIndex(str(tmp_path))
    index.write()
    index.write_cache()
    OutputIndex(str(tmp_path), cache=True).write()
    assert not os.path.exists(tmp_path / INDEX_CACHE)


def test_a_start_from_the_cache_has_only_the_missing_series_pages_written_again(tmp_path):
    """Each start read every capture, so every series' page was due at its first index: 50 series
    of 2000 kills, 1.6 s after every idle exit. From the cache, only a page that is not there."""
    _folder(tmp_path)
    first = OutputIndex(str(tmp_path), cache=True)
    ids = sorted(s.id for s in first.series.take_changed())
    assert len(ids) == 3, "every series of several kills is due at a start without the cache"
    os.makedirs(tmp_path / "series")
    for sid in ids[:2]:
        with open(tmp_path / "series" / f"{sid}.html", "w") as f:
            f.write("<html></html>")
    first.write_cache()
    again = OutputIndex(str(tmp_path), cache=True)
    assert [s.id for s in again.series.take_changed()] == [ids[2]]
    # a kill that joins a series makes its page due, as before
    with open(os.path.join(FIXTURES, sorted(os.listdir(FIXTURES))[0])) as f:
        cap = Capture.from_json(f.read())
    cap.kill_id, cap.victim.pid, cap.times.kill_wall = "20261206T125000.000Z-pid500", 500, "2026-12-06T12:09:00.000+00:00"
    again.add(write_capture(str(tmp_path), cap), cap)
    assert [s.id for s in again.series.take_changed()] == [ids[0]]
