"""Builders shared by unit tests: real kernel reports (fixtures) turned into captures."""

import datetime as dt

from oomscope.kernel.oom_report import parse_reports
from oomscope.layouts import EV_MARK_VICTIM, OomEvent
from oomscope.capture.assemble import assemble
from oomscope.capture.inputs import Recording

from ..conftest import fixture_text

WALL = dt.datetime(2026, 11, 25, 7, 0, 0, tzinfo=dt.timezone.utc)


def event_for(report, **kw) -> OomEvent:
    k = report.killed
    base = dict(kind=EV_MARK_VICTIM, ts_ns=report.killed_usec * 1000 - 2_000_000, victim_pid=k.pid, victim_comm=k.comm,
                total_vm_kb=k.total_vm_kb, anon_rss_kb=k.anon_rss_kb, file_rss_kb=k.file_rss_kb, shmem_rss_kb=k.shmem_rss_kb,
                uid=k.uid, pgtables_kb=k.pgtables_kb, oom_score_adj=k.oom_score_adj, trigger_tgid=k.pid, trigger_tid=k.pid,
                trigger_comm=k.comm)
    base.update(kw)
    return OomEvent(**base)


def capture_from_fixture(name: str, version: int = 1, with_event: bool = True):
    (rep,) = parse_reports(fixture_text("kmsg", name))
    ev = event_for(rep) if with_event else None
    offset = int(WALL.timestamp()) * 1_000_000_000 - rep.killed_usec * 1000  # the kill happens at WALL
    return assemble(rep.killed.pid, ev, rep, Recording(cgroup_version=version, clock_offset_ns=offset), now_wall=WALL), rep


class Hang(AssertionError):
    """A call that did not return within its deadline."""


class within:
    """``with within(0.5): call()``: fails with :class:`Hang` when the call runs longer, even when it
    never returns (hypothesis's ``deadline`` is checked only after the call: it cannot see a hang).
    SIGALRM, so main thread only."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def ring(*_):
            raise Hang(f"no answer within {self.seconds} s")

        self._old = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        return False


def dmesg_storm(kills: int, noise: int) -> str:
    """A dmesg storm: ``kills`` times ``noise`` ordinary lines, the full report of
    logs/dmesg-v1-6.18.txt and a rate-limited kill's Killed line (pid 50000 + k), each line timed."""
    body = [line.split("] ", 1)[1] for line in fixture_text("logs", "dmesg-v1-6.18.txt").splitlines()]
    lines, t = [], 1000.0
    for k in range(kills):
        for i in range(noise):
            t += 0.000137
            lines.append(f"[{t:12.6f}] eth0: an ordinary message {k} {i}")
        for line in body:
            t += 0.000002
            lines.append(f"[{t:12.6f}] {line}")
        t += 0.01
        lines.append(f"[{t:12.6f}] Memory cgroup out of memory: Killed process {50000 + k} (worker) total-vm:76132kB, "
                     "anon-rss:65280kB, file-rss:5544kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:0")
    return "\n".join(lines) + "\n"
