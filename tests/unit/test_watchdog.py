"""record's watchdog (record/watchdog.py): a thread past its promised beat is said once, with
where it is stuck, noted on the kills recorded meanwhile, and said again when it recovers."""

import io
import threading

from oomscope.metrics import Metrics
from oomscope.record.announce import Announcer
from oomscope.record.watchdog import Heartbeat, Watchdog

S = 1_000_000_000


def _stuck_in_here(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(10)


def test_a_thread_past_its_promise_is_said_once_with_where_it_is_then_its_recovery():
    started, release = threading.Event(), threading.Event()
    t = threading.Thread(target=_stuck_in_here, args=(started, release), daemon=True)
    t.start()
    started.wait(5)
    beat = Heartbeat()
    wd = Watchdog(grace_ns=10 * S)
    beat.beat(100 * S, 1 * S)  # promised to be back at 101 s
    assert wd.check(105 * S, {"sampler": (t, beat)}) == []  # within the grace
    (ts,) = wd.check(112 * S, {"sampler": (t, beat)})
    assert ts.state == "stalled" and ts.since_ns == 101 * S
    assert "test_watchdog.py" in ts.where and "_stuck_in_here" in ts.where
    assert wd.check(130 * S, {"sampler": (t, beat)}) == []  # said once
    assert wd.stalled() == ["sampler"]
    # a kill recorded meanwhile says so; one before it does not
    assert "sampler thread" in wd.notes_for_kill(120 * S)[0] and wd.notes_for_kill(50 * S) == []
    beat.beat(131 * S)
    (back,) = wd.check(131 * S, {"sampler": (t, beat)})
    assert back.state == "running" and wd.stalled() == []
    assert wd.notes_for_kill(120 * S) and not wd.notes_for_kill(140 * S)  # the episode ended at 131 s
    release.set()
    t.join(5)


def test_a_dead_thread_is_said_and_a_thread_not_yet_started_is_not_stalled():
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    wd = Watchdog(grace_ns=10 * S)
    beat = Heartbeat()
    (ts,) = wd.check(5 * S, {"sampler": (t, beat)})
    assert ts.state == "dead"
    fresh = Heartbeat()  # due_ns 0: the thread has not begun (the first pass takes up to 32 s)
    assert wd.check(1000 * S, {"kmsg": (None, fresh)}) == []


def test_the_announcer_says_it_in_the_log_and_the_metric():
    started, release = threading.Event(), threading.Event()
    t = threading.Thread(target=_stuck_in_here, args=(started, release), daemon=True)
    t.start()
    started.wait(5)
    err = io.StringIO()
    m = Metrics()
    ann = Announcer(io.StringIO(), err, metrics=m)
    wd = Watchdog(grace_ns=1 * S)
    beat = Heartbeat()
    beat.beat(1 * S)
    ann.threads(wd.check(10 * S, {"sampler": (t, beat)}), 10 * S)
    line = err.getvalue()
    assert line.startswith("oomscope: warning: the sampler thread has made no progress for 9 s (at ") and "kills are still recorded" in line
    assert m.registry.get_sample_value("oomscope_thread_stalled", {"thread": "sampler"}) == 1
    assert m.registry.get_sample_value("oomscope_thread_stalled", {"thread": "kmsg"}) == 0
    beat.beat(11 * S)
    ann.threads(wd.check(11 * S, {"sampler": (t, beat)}), 11 * S)
    assert "making progress again" in err.getvalue().splitlines()[-1]
    assert m.registry.get_sample_value("oomscope_thread_stalled", {"thread": "sampler"}) == 0
    release.set()
    t.join(5)


def test_the_status_file_tells_doctor_how_the_recorder_is(tmp_path):
    from oomscope.doctor import recorder_check
    from oomscope.record.status import STATUS_FILE, read_status, status_document

    ok, line = read_status(status_document({"sampler": ("running", 5.0, ""), "kmsg": ("running", 5.0, "")}, 3, {}).encode())
    assert ok and "threads make progress" in line and "3 kills recorded" in line
    doc = status_document({"sampler": ("stalled", 42.0, "oomscope/runtimes/hsperfdata.py:118 in _gen_space_sums")}, 0, {})
    ok, line = read_status(doc.encode())
    assert not ok and "sampler stalled for 42 s at oomscope/runtimes/hsperfdata.py:118" in line
    ok, line = read_status(status_document({}, 0, {}, now_unix=1000.0).encode(), now_unix=1100.0)
    assert not ok and "100 s ago" in line
    for junk in (b"", b"[]", b'{"pid": "x"}', b"\xff" * 100, b'{"pid": 1, "updated_unix": 1, "threads": 7}'):
        ok, line = read_status(junk)
        assert not ok and line
    assert not recorder_check(str(tmp_path)).ok  # no recorder has written there
    (tmp_path / STATUS_FILE).write_text(status_document({"sampler": ("running", 1.0, "")}, 0, {}))
    assert recorder_check(str(tmp_path)).ok
