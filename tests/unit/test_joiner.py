import dataclasses

from oomscope.kernel.oom_report import parse_reports
from oomscope.layouts import SNAP_MARK_VICTIM, MemcgSnapshot
from oomscope.record.joiner import KillJoiner

from ..conftest import fixture_text
from .helpers import event_for

S = 1_000_000_000


def _report():
    (rep,) = parse_reports(fixture_text("kmsg", "v1-6.18-anon.kmsg"))
    return rep


def test_event_then_report_is_ready_at_once():
    rep = _report()
    j = KillJoiner()
    j.add_event(event_for(rep), now_ns=0)
    assert j.ready(now_ns=1) == []
    j.add_report(rep, now_ns=2)
    (k,) = j.ready(now_ns=3)
    assert k.event is not None and k.report is rep and j.pending == []


def test_report_first_then_event():
    rep = _report()
    j = KillJoiner()
    j.add_report(rep, now_ns=0)
    j.add_event(event_for(rep), now_ns=1)
    (k,) = j.ready(now_ns=2)
    assert k.event is not None and k.report is rep


def test_each_part_alone_waits_then_goes():
    rep = _report()
    j = KillJoiner()
    j.add_event(event_for(rep), now_ns=0)
    assert j.ready(now_ns=S) == []
    (k,) = j.ready(now_ns=2 * S)
    assert k.report is None
    j = KillJoiner()  # (the same kill's report read after it: test_a_report_read_after_its_kill_was_written...)
    j.add_report(rep, now_ns=10 * S)
    assert j.ready(now_ns=10 * S + 1) == []
    (k,) = j.ready(now_ns=11 * S)
    assert k.event is None and k.report is rep


def test_same_pid_far_apart_in_time_are_two_kills():
    """The first kill of the pid written (its report's wait over) before the second's event: two."""
    rep = _report()
    j = KillJoiner()
    j.add_report(rep, now_ns=0)
    (first,) = j.ready(now_ns=j.event_wait_ns)
    second = j.add_event(event_for(rep, ts_ns=rep.killed_usec * 1000 + 60 * S), now_ns=60 * S)
    assert first.event is None and second is not first and j.pending == [second] and second.report is None


def test_clocks_parted_the_first_kill_is_joined_and_teaches_the_offset():
    """The printk clock and CLOCK_MONOTONIC 40 s apart (NTP slewing one over weeks of uptime):
    an event and a Killed line of one pid waiting at once are one kill whatever their times say;
    the offset is learnt from it, and the next kills (a storm's, reports rate-limited to their
    Killed line) are joined by time, their times on the BPF clock."""
    reps = parse_reports(fixture_text("kmsg", "v1-6.18-storm.kmsg"))
    parted = 40 * S  # the BPF clock behind the printk clock
    j = KillJoiner()
    for i, r in enumerate(reps[:30]):
        ev = event_for(r, ts_ns=r.killed_usec * 1000 - 2_000_000 - parted)
        j.add_event(ev, now_ns=i)
        j.add_report(r, now_ns=i)
        (k,) = j.ready(now_ns=i)
        assert k.event is ev and k.report is r, i
        assert k.kill_ns == ev.ts_ns
    assert j.printk_offset_ns == parted + 2_000_000
    # a Killed line alone now says its time on the BPF clock
    late = reps[30]
    k = j.add_report(late, now_ns=31)
    assert k.kill_ns == late.killed_usec * 1000 - parted - 2_000_000


def test_storm_all_killed_lines_become_kills():
    reps = parse_reports(fixture_text("kmsg", "v1-6.18-storm.kmsg"))
    j = KillJoiner()
    for i, r in enumerate(reps):
        j.add_event(event_for(r), now_ns=i)
        j.add_report(r, now_ns=i)
    kills = j.ready(now_ns=len(reps))
    assert len(kills) == len(reps) == 105
    assert all(k.event is not None and k.report is not None for k in kills)


def test_finished_kills_remembered_stay_few_and_a_repeat_within_the_minute_is_still_known():
    """Every kill on the host is remembered for a group kill's repeat of its victim (within a
    minute). Before, up to 10,000 were kept (~1 MiB, filling for hours in a soak); now beyond
    RECENT_KEPT the older than a minute are dropped, at most once a second."""
    import dataclasses

    from oomscope.record.joiner import RECENT_KEPT

    rep = _report()
    j = KillJoiner()
    t = 10**12
    for i in range(5 * RECENT_KEPT):  # a kill every 2 s for ~2.8 hours
        t += 2 * S
        j.add_event(event_for(rep, victim_pid=100_000 + i, ts_ns=t), now_ns=t)
        assert len(j.ready(now_ns=t, flush=True)) == 1
    assert len(j._recent) <= RECENT_KEPT + 1, len(j._recent)
    # the last victim's repeat in a group kill's headerless report, seconds later: no new kill
    last = 100_000 + 5 * RECENT_KEPT - 1
    repeat = dataclasses.replace(rep, has_header=False, killed=dataclasses.replace(rep.killed, pid=last),
                                 killed_usec=(t + 3 * S) // 1000)
    assert j.add_report(repeat, now_ns=t + 3 * S) is None and j.pending == []


def test_an_event_read_after_its_kill_was_written_is_not_a_second_kill():
    """A Killed line waits event_wait_ns for its event, then is written without it. The event read
    later (a storm's perf buffer read late) was a second capture of the same kill: now counted as
    late (record's loss ``late_events``) and dropped; the same pid killed far apart is still a kill."""
    rep = _report()
    j = KillJoiner()
    j.add_report(rep, now_ns=0)
    (k,) = j.ready(now_ns=j.event_wait_ns)
    assert k.event is None
    assert j.add_event(event_for(rep), now_ns=j.event_wait_ns + 1) is None
    assert j.pending == [] and j.late_events == 1
    later = j.add_event(event_for(rep, ts_ns=rep.killed_usec * 1000 + 60 * S), now_ns=60 * S)
    assert later is not None and j.pending == [later] and j.late_events == 1


def test_a_report_read_after_its_kill_was_written_from_its_event_is_not_a_second_kill():
    """An event waits report_wait_ns for its Killed line, then is written without it. Its report
    read later (kmsg behind in a storm) made a second capture of the same kill: now counted as late
    (record's loss ``late_reports``) and dropped, matched by the kernel's times and, with no offset
    learnt, by when it came; a kill record did not write is no loss; the same pid killed a minute
    later is a kill."""
    rep = _report()
    j = KillJoiner()
    j.add_event(event_for(rep), now_ns=0)
    (k,) = j.ready(now_ns=j.report_wait_ns)
    assert k.report is None
    assert j.add_report(rep, now_ns=j.report_wait_ns + 5 * S) is None
    assert j.pending == [] and j.late_reports == 1
    later = dataclasses.replace(rep, killed_usec=rep.killed_usec + 60 * S // 1000)
    again = j.add_report(later, now_ns=60 * S)
    assert again is not None and j.pending == [again] and j.late_reports == 1

    j = KillJoiner()  # the clocks 40 s apart, no offset learnt: matched by when it came
    j.add_event(event_for(rep, ts_ns=rep.killed_usec * 1000 - 40 * S), now_ns=0)
    j.ready(now_ns=j.report_wait_ns)
    assert j.add_report(rep, now_ns=j.report_wait_ns + S) is None and j.late_reports == 1

    j = KillJoiner()  # outside --cgroup or beyond the storm budget: dropped, not a loss
    j.add_event(event_for(rep), now_ns=0)
    j.ready(now_ns=j.report_wait_ns)
    j.not_written(rep.killed.pid)
    assert j.add_report(rep, now_ns=j.report_wait_ns + S) is None and j.pending == [] and j.late_reports == 0


def test_a_late_report_is_matched_by_the_kernels_times_once_learnt_and_counted_once():
    """With the clocks' offset learnt, a report of the pid a minute after the written kill (by the
    kernel's times) is a new kill even when it arrives at once; a late report is counted once and
    a group kill's repeat of that victim after it is dropped, not counted again; a later kill of
    the pid that finishes with its report clears the entry; a victim marked without a SIGKILL
    (no Killed line of its own) is no loss when a group kill's line names it."""
    rep = _report()
    j = KillJoiner()
    j.add_event(event_for(rep, victim_pid=99), now_ns=0)  # another kill, both parts: the offset is learnt
    j.add_report(dataclasses.replace(rep, killed=dataclasses.replace(rep.killed, pid=99)), now_ns=1)
    j.ready(now_ns=2)
    assert j._offsets
    j.add_event(event_for(rep), now_ns=S)
    j.ready(now_ns=S + j.report_wait_ns)
    minute_later = dataclasses.replace(rep, killed_usec=rep.killed_usec + 60 * S // 1000)
    new = j.add_report(minute_later, now_ns=S + j.report_wait_ns + 1)
    assert new is not None and j.late_reports == 0

    j = KillJoiner()
    j.add_event(event_for(rep), now_ns=0)
    j.ready(now_ns=j.report_wait_ns)
    assert j.add_report(rep, now_ns=j.report_wait_ns + 1) is None and j.late_reports == 1
    repeat = dataclasses.replace(rep, has_header=False)
    assert j.add_report(repeat, now_ns=j.report_wait_ns + 2) is None and j.late_reports == 1 and j.pending == []

    j = KillJoiner()  # the entry of an event-only kill is cleared by the pid's next kill with a report
    j.add_event(event_for(rep), now_ns=0)
    j.ready(now_ns=j.report_wait_ns)
    later = dataclasses.replace(rep, killed_usec=rep.killed_usec + 30 * S // 1000)
    j.add_event(event_for(later), now_ns=30 * S)
    j.add_report(later, now_ns=30 * S + 1)
    assert len(j.ready(now_ns=30 * S + 2)) == 1
    assert j.add_report(dataclasses.replace(later, has_header=False), now_ns=31 * S) is None and j.late_reports == 0

    j = KillJoiner()  # marked without a SIGKILL: no Killed line is owed
    j.add_event(event_for(rep, memcg_snapshot=MemcgSnapshot(ts_ns=0, pid=rep.killed.pid, levels=[], kind=SNAP_MARK_VICTIM)),
                now_ns=0)
    j.ready(now_ns=j.report_wait_ns)
    assert j.add_report(repeat, now_ns=j.report_wait_ns + 1) is None and j.late_reports == 0


def test_an_event_of_a_pid_whose_kill_had_its_event_is_a_new_kill():
    """A task is marked a victim once (TIF_MEMDIE): a second event of the same pid within the
    window, after a kill written with its event, is a pid reused and killed, not a late event."""
    rep = _report()
    j = KillJoiner()
    j.add_event(event_for(rep), now_ns=0)
    j.add_report(rep, now_ns=1)
    (k,) = j.ready(now_ns=2)
    again = j.add_event(event_for(rep, ts_ns=rep.killed_usec * 1000 + 3 * S), now_ns=3 * S)
    assert again is not None and j.pending == [again] and j.late_events == 0


def test_the_kills_snapshot_is_its_events_else_the_one_taken_by_pid():
    rep = _report()
    j = KillJoiner()
    k = j.add_report(rep, now_ns=0)
    by_pid = MemcgSnapshot(ts_ns=1, pid=rep.killed.pid, levels=[])
    assert k.snapshot is None
    k.memcg_snapshot = by_pid
    assert k.snapshot is by_pid
    ev = event_for(rep)
    j.add_event(ev, now_ns=1)
    assert k.event is ev and k.snapshot is by_pid  # an event without one
    ev.memcg_snapshot = MemcgSnapshot(ts_ns=2, pid=rep.killed.pid, levels=[])
    assert k.snapshot is ev.memcg_snapshot


def test_a_snapshot_taken_by_pid_is_kept_only_from_the_kills_moment():
    """record/collector.py: a kill without its event takes the snapshot the program kept by pid,
    if taken before its Killed line was read, and not more than SNAPSHOT_BY_PID_NS before."""
    from types import SimpleNamespace

    from oomscope.record.collector import SNAPSHOT_BY_PID_NS, Collector

    kept = {}
    rec = SimpleNamespace(memcg_snap=SimpleNamespace(take=lambda pid: kept.pop(pid, None)))
    read_ns = 500 * S
    for ts, taken in ((read_ns - 3_000_000, True), (read_ns, True), (read_ns - SNAPSHOT_BY_PID_NS + 1, True),
                      (read_ns + 2_000_000, False),  # after the line was read: another SIGKILL (a pid reused)
                      (read_ns + S // 2, False), (read_ns - SNAPSHOT_BY_PID_NS, False)):
        kept[7] = MemcgSnapshot(ts_ns=ts, pid=7, levels=[])
        got = Collector._snapshot_by_pid(rec, 7, read_ns)
        assert (got is not None) == taken, ts - read_ns
        assert 7 not in kept  # taken from the kernel's table either way: the table holds 256
    assert Collector._snapshot_by_pid(rec, 8, read_ns) is None


def _parted(rep, parted, **kw):
    """An event of this report's kill with the BPF clock ``parted`` behind the printk clock."""
    return event_for(rep, ts_ns=rep.killed_usec * 1000 - 2_000_000 - parted, **kw)


def test_a_group_kills_victim_named_again_across_the_first_offset_learnt_is_one_kill():
    """Clocks 40 s apart, no offset learnt yet: the chosen victim's Killed line waits for its
    event; a member's event and Killed line join and teach the offset; the victim's line named
    again by the group kill is still its duplicate (the waiting line was moved to the new
    offset), and the victim's event joins it: one kill each."""
    import dataclasses

    rep = _report()
    parted = 40 * S
    j = KillJoiner()
    victim = j.add_report(rep, now_ns=0)
    member_rep = dataclasses.replace(rep, has_header=False, killed=dataclasses.replace(rep.killed, pid=rep.killed.pid + 1),
                                     killed_usec=rep.killed_usec + 300)
    j.add_event(_parted(member_rep, parted, victim_pid=member_rep.killed.pid), now_ns=1)
    j.add_report(member_rep, now_ns=2)
    assert j.printk_offset_ns == parted + 2_000_000
    again = dataclasses.replace(rep, has_header=False, killed_usec=rep.killed_usec + 600)
    assert j.add_report(again, now_ns=3) is None and victim.duplicates == 1
    ev = _parted(rep, parted)
    assert j.add_event(ev, now_ns=4) is victim and victim.event is ev
    assert sorted(k.pid for k in j.ready(now_ns=5)) == [rep.killed.pid, member_rep.killed.pid]


def test_a_late_event_is_known_by_when_it_came_whatever_the_clocks_say():
    rep = _report()
    j = KillJoiner()
    j.add_report(rep, now_ns=0)
    (k,) = j.ready(now_ns=j.event_wait_ns)
    assert j.add_event(_parted(rep, 40 * S), now_ns=j.event_wait_ns + S) is None and j.late_events == 1


def test_the_offset_is_learnt_from_killed_lines_seen_and_one_wrong_pair_does_not_move_it():
    """A Killed line the parser completed from the oom_reaper's line (2 s after the kill since
    5.18: not the kill's time) teaches nothing; a pair off by a pid reused is outvoted."""
    import dataclasses

    reps = parse_reports(fixture_text("kmsg", "v1-6.18-storm.kmsg"))
    j = KillJoiner()
    for i, r in enumerate(reps[:3]):
        j.add_event(event_for(r), now_ns=i)
        j.add_report(r, now_ns=i)
    assert j.printk_offset_ns == 2_000_000
    reaped = dataclasses.replace(reps[3], killed=dataclasses.replace(reps[3].killed, seen=False))
    j.add_event(event_for(reps[3], ts_ns=reps[3].killed_usec * 1000 - 2 * S), now_ns=4)
    j.add_report(reaped, now_ns=4)
    assert j.printk_offset_ns == 2_000_000
    j.add_event(event_for(reps[4], ts_ns=reps[4].killed_usec * 1000 - 5 * S), now_ns=5)  # a wrong pair
    j.add_report(reps[4], now_ns=5)
    assert j.printk_offset_ns == 2_000_000


def test_a_late_event_of_a_kill_outside_the_scope_is_dropped_and_no_loss():
    """record --cgroup: a kill outside the scope is never written (collector.py: not_written; so
    is one beyond the storm budget); its late event is no second kill, and no loss to alert on."""
    rep = _report()
    j = KillJoiner()
    j.add_report(rep, now_ns=0)
    (k,) = j.ready(now_ns=j.event_wait_ns)
    j.not_written(k.pid)
    assert j.add_event(event_for(rep), now_ns=j.event_wait_ns + 1) is None
    assert j.pending == [] and j.late_events == 0
