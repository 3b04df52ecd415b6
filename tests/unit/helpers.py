"""Builders shared by unit tests: real kernel reports (fixtures) turned into captures."""

import datetime as dt

from oomscope.kernel.kmsg import parse_reports
from oomscope.layouts import EV_MARK_VICTIM, OomEvent
from oomscope.record.assemble import Recording, assemble

from ..conftest import fixture_text

WALL = dt.datetime(2026, 11, 25, 7, 0, 0, tzinfo=dt.timezone.utc)


def event_for(report, **kw) -> OomEvent:
    k = report.killed
    base = dict(kind=EV_MARK_VICTIM, ts_ns=report.killed_usec * 1000 - 2_000_000, victim_pid=k.pid, victim_comm=k.comm,
                total_vm_kb=k.total_vm_kb, anon_rss_kb=k.anon_rss_kb, file_rss_kb=k.file_rss_kb, shmem_rss_kb=k.shmem_rss_kb,
                uid=k.uid, pgtables_kb=k.pgtables_kb, oom_score_adj=k.oom_score_adj, trigger_tgid=k.pid, trigger_tid=k.pid,
                trigger_comm=k.comm, trigger_cgroup_id=1, cpu=0)
    base.update(kw)
    return OomEvent(**base)


def capture_from_fixture(name: str, version: int = 1, with_event: bool = True):
    (rep,) = parse_reports(fixture_text("kmsg", name))
    ev = event_for(rep) if with_event else None
    offset = int(WALL.timestamp()) * 1_000_000_000 - rep.killed_usec * 1000  # the kill happens at WALL
    return assemble(rep.killed.pid, ev, rep, Recording(cgroup_version=version, clock_offset_ns=offset), now_wall=WALL), rep
