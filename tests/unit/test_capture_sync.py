"""record's captures are fsynced beside its loop (safefs.Syncer, issue 29): capture.json is under its
name and the post-mortem asked for at once, its two fsyncs (the file, then its folder) are taken by
the syncer's thread in order, and record says a kill (its line, the metrics, what run() returns)
only once they are done; an fsync's error is said."""

import errno
import io
import json
import os
import threading
import types

from oomscope import safefs
from oomscope.postmortem.finisher import Finished
from oomscope.postmortem.stage import InProcess, PostMortems
from oomscope.record.collector import Collector
from oomscope.record.outputs import Outputs

from .helpers import capture_from_fixture
from .test_outputs import FakeIndex


def _fsyncs(monkeypatch, gate=None, fail=None):
    """os.fsync counted with the thread that called it; ``gate``: each waits for it; ``fail``: an
    fd whose fsync raises EIO."""
    calls = []
    real = os.fsync

    def fsync(fd):
        if gate is not None:
            assert gate.wait(10)
        calls.append((fd, threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        if fail is not None and fail(fd):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_the_capture_is_in_place_and_asked_for_before_its_fsyncs_which_its_thread_takes(tmp_path, monkeypatch):
    gate = threading.Event()  # the disk "slow": no fsync returns until it is set
    calls = _fsyncs(monkeypatch, gate)
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    err = io.StringIO()
    fin = InProcess(PostMortems(str(tmp_path), lambda c, a=None: "<html>", lambda c: types.SimpleNamespace(top_categories=[]),
                                FakeIndex(), err))
    syncer = safefs.Syncer()
    out = Outputs(str(tmp_path), fin, None, err, syncer=syncer)
    written = [out.write(cap, kill_ns=i) for i in range(3)]  # returns with every fsync still waiting
    for w in written:
        with open(w.capture_path) as f:
            assert json.load(f)["victim"]["pid"] == cap.victim.pid
        assert out.synced(w) == (False, None)
    assert len(fin.results()) == 3  # the post-mortems did not wait for the disk
    gate.set()
    assert out.synced(written[-1], timeout_s=10) == (True, None)
    assert all(out.synced(w) == (True, None) for w in written)
    # the file, then its folder, kill after kill, all in the syncer's thread
    assert [(name, path) for _, name, path in calls] == [
        ("fsync", p) for w in written for p in (w.capture_path, os.path.dirname(w.capture_path))]
    syncer.close()
    assert not syncer._thread.is_alive()


def test_a_token_never_added_is_done_and_an_fsync_error_is_given_once(tmp_path, monkeypatch):
    _fsyncs(monkeypatch, fail=lambda fd: os.readlink(f"/proc/self/fd/{fd}").endswith("/bad"))
    syncer = safefs.Syncer()
    assert syncer.done("nothing") == (True, None)
    with safefs.Dir(str(tmp_path)) as d:
        d.write("good", "x", sync=False)
        d.write("bad", "y", sync=False)
        syncer.add(d, "bad", "b")
        syncer.add(d, "good", "g")
    assert syncer.done("g", 10) == (True, None)
    ok, error = syncer.done("b")
    assert ok and error is not None and error.errno == errno.EIO
    assert syncer.done("b") == (True, None)  # said once
    syncer.close()


class _Announce:
    def __init__(self):
        self.kills, self.errors = [], []

    def kill(self, capture, written, category, cause, series):
        self.kills.append(written.capture_path)

    def error(self, what, line):
        self.errors.append(line)


def test_record_says_a_kill_only_once_its_capture_is_synced_and_in_order(tmp_path):
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    synced = {"/o/a/capture.json": False, "/o/b/capture.json": False}
    errors = {"/o/b/capture.json": OSError(errno.EIO, "Input/output error")}
    outputs = types.SimpleNamespace(synced=lambda w, timeout_s=0.0: (synced[w.capture_path], errors.pop(w.capture_path, None)
                                                                     if synced[w.capture_path] else None))
    loop = types.SimpleNamespace(_held=[], outputs=outputs, announce=_Announce(), recorded=[], kills_recorded=0,
                                 _post_pending={1: (cap, types.SimpleNamespace(capture_path="/o/a/capture.json")),
                                                2: (cap, types.SimpleNamespace(capture_path="/o/b/capture.json"))})
    Collector._announce(loop, [Finished(1, "/o/a/postmortem.html"), Finished(2, "/o/b/postmortem.html")])
    assert loop.announce.kills == [] and loop.kills_recorded == 0 and len(loop._held) == 2
    synced["/o/a/capture.json"] = True
    Collector._announce(loop, [])
    assert loop.announce.kills == ["/o/a/capture.json"] and [d.job for d in loop._held] == [2]
    synced["/o/b/capture.json"] = True
    Collector._announce(loop, [])
    assert loop.announce.kills == ["/o/a/capture.json", "/o/b/capture.json"] and loop.kills_recorded == 2
    assert loop._held == [] and loop._post_pending == {}
    assert len(loop.announce.errors) == 1 and "may not be on disk" in loop.announce.errors[0]


def test_a_capture_a_crash_left_empty_is_left_out_of_the_index_with_why(tmp_path):
    # what a crash between the rename and its fsyncs may leave on ext4 (see safefs.Syncer)
    from oomscope.postmortem.index import OutputIndex

    with safefs.Dir(str(tmp_path)) as out, out.make_kill_folder("2026-12-07T03-00-00.000Z-pid-1") as f:
        f.write("capture.json", "", sync=False)
    [(folder, why)] = OutputIndex(str(tmp_path)).skipped
    assert folder == "2026-12-07T03-00-00.000Z-pid-1" and "not valid JSON" in why


def test_a_disk_slower_than_the_kills_holds_the_writer_back_not_more_descriptors(tmp_path, monkeypatch):
    """At most MAX_WAITING files wait for their fsyncs (two descriptors each): the next add waits
    for the syncer's thread instead of opening more."""
    gate = threading.Event()
    _fsyncs(monkeypatch, gate)
    monkeypatch.setattr(safefs.Syncer, "MAX_WAITING", 2)
    d = safefs.Dir(str(tmp_path))
    syncer = safefs.Syncer()
    for i in range(2):
        d.write(f"f{i}", "x", sync=False)
        syncer.add(d, f"f{i}", i)
    d.write("f2", "x", sync=False)
    third = threading.Thread(target=syncer.add, args=(d, "f2", 2))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third file was taken while two waited for their fsyncs"
    assert len(syncer._queue) == 2
    gate.set()
    third.join(10)
    assert not third.is_alive()
    assert syncer.done(2, timeout=10) == (True, None)
    syncer.close()
    d.close()
