"""record's worker writes postmortem.html without fsyncs (postmortem/stage.py, issue 29): the
capture it is made from was written durably first (two fsyncs, as before), and the page can be made
again from it; a page a crash left empty is not linked by the index."""

import os

import pytest

from oomscope import safefs
from oomscope.capture.writer import write_capture
from oomscope.model import Capture
from oomscope.postmortem.index import OutputIndex
from oomscope.postmortem.stage import PostMortems

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures", "schema1-v2-6.1-anon.json")


def _counting_fsync(monkeypatch):
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_the_capture_is_fsynced_and_its_post_mortem_is_not(tmp_path, monkeypatch, capsys):
    calls = _counting_fsync(monkeypatch)
    with open(FIXTURE) as f:
        cap = Capture.from_json(f.read())
    path = write_capture(str(tmp_path), cap)
    assert len(calls) == 2  # capture.json and its folder, as before
    del calls[:]
    post = PostMortems(str(tmp_path), lambda c, a=None: "<html>page</html>", None, OutputIndex(str(tmp_path)), None)
    done = post.kill(1, path, cap)
    assert done.html_path and open(done.html_path).read() == "<html>page</html>"
    assert calls == []
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(safefs.TMP_PREFIX)]
    # written to a temporary name and renamed: a second render replaces it whole
    post.kill(2, path, cap)
    assert open(done.html_path).read() == "<html>page</html>" and calls == []


def test_a_sync_write_still_syncs_and_an_unsynced_one_refuses_what_a_synced_one_refuses(tmp_path, monkeypatch):
    calls = _counting_fsync(monkeypatch)
    with safefs.Dir(str(tmp_path)) as d:
        d.write("a", "x")
        assert len(calls) == 2
        d.write("b", "y", sync=False)
        assert len(calls) == 2 and (tmp_path / "b").read_text() == "y"
        os.symlink("/etc/passwd", tmp_path / "c")
        with pytest.raises(safefs.UnsafeOutput):
            d.write("c", "z", sync=False)


def test_an_empty_post_mortem_left_by_a_crash_is_not_linked(tmp_path):
    with open(FIXTURE) as f:
        cap = Capture.from_json(f.read())
    path = write_capture(str(tmp_path), cap)
    folder = os.path.basename(os.path.dirname(path))
    html = os.path.join(os.path.dirname(path), "postmortem.html")
    open(html, "w").close()
    assert folder in OutputIndex(str(tmp_path)).no_page
    with open(html, "w") as f:
        f.write("<html></html>")
    assert folder not in OutputIndex(str(tmp_path)).no_page
    assert folder not in OutputIndex(str(tmp_path), cache=True).no_page
