"""record's own health lines: a limit notification that could not be set up is said, once, safely."""

import io

from oomscope.record.announce import Announcer


def test_notification_failures_are_said_once_and_escaped():
    err = io.StringIO()
    a = Announcer(io.StringIO(), err)
    kw = dict(now_ns=1, sampler_errors=0, events_lost=0, watched=3, losses={}, kmsg_error=None)
    a.health(**kw)
    assert err.getvalue() == ""
    a.health(**kw, notify_errors=1, notify_error="/a\x1b[2Jb: Read-only file system")
    a.health(**kw, notify_errors=1, notify_error="/a\x1b[2Jb: Read-only file system")
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "polling only" in lines[0] and "Read-only file system" in lines[0]
    assert "\x1b" not in lines[0]
