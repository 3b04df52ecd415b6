"""record/evidence.py and capture/assemble.py: one kill's evidence from a fake store of readings,
placed once; record/announce.py's account of what was lost."""

from oomscope.kernel.oom_report import parse_reports
from oomscope.model import CgroupState, TimelinePoint
from oomscope.record.announce import Losses
from oomscope.capture.assemble import build_capture
from oomscope.capture.inputs import Recording
from oomscope.capture.place import place
from oomscope.record.evidence import EvidenceGatherer
from oomscope.record.joiner import PendingKill
from oomscope.record.sampler import Sample

from ..conftest import fixture_text
from .helpers import WALL, event_for


class FakeStore:
    def __init__(self, samples, pids):
        self.samples = samples  # cgroup -> Sample
        self.pids = pids  # pid -> cgroup
        self.asked = []

    def latest_before(self, cgroup, t_ns):
        self.asked.append(("latest_before", cgroup))
        return self.samples.get(cgroup)

    def timeline(self, cgroup, kill_ns):
        self.asked.append(("timeline", cgroup))
        return [TimelinePoint(t_ms=-100.0, usage_bytes=1)] if cgroup in self.samples else []

    def reclaim_of(self, cgroup, not_before_ns):
        return None

    def below(self, cgroup, t_ns):
        return []

    def cgroup_of_pid(self, pid):
        return self.pids.get(pid)

    def proc_info(self, pid):
        return None

    def ino(self, cgroup):
        return None

    def cgroup_of_ino(self, ino):
        return None

    def runtimes_before(self, cgroup, t_ns):
        return []


class FakeLive:
    def __init__(self):
        self.read = []

    def cgroup_of(self, pid):
        return None

    def cmdline(self, pid):
        return None

    def state_after_kill(self, cgroup):
        self.read.append(cgroup)
        return None

    def tasks(self, cgroup):
        return []

    def cgroup_of_ino(self, ino):
        return {777: "/pods/new-pod/ctr"}.get(ino)


def test_rate_limited_kill_is_placed_once_and_its_evidence_read_for_that_cgroup():
    reps = parse_reports(fixture_text("kmsg", "v1-6.18-storm.kmsg"))
    bare = next(r for r in reps if not r.has_header)
    ev = event_for(bare)
    sample = Sample(t_ns=ev.ts_ns - 40_000_000, pids=(),
                    state=CgroupState(source="last_sample", usage_bytes=100, limit_bytes=200, memory_stat={"rss": 90}))
    store = FakeStore({"/storm": sample}, {bare.killed.pid: "/storm/worker"})
    live = FakeLive()
    gatherer = EvidenceGatherer(store, live, cgroup_version=1)
    kill = PendingKill(pid=bare.killed.pid, first_seen_ns=ev.ts_ns, event=ev, report=bare)

    located = gatherer.locate(kill)
    assert located == ("/storm/worker", "sampler_scan")
    ancestors = []
    placement = place(bare, located, None, lambda cg: ancestors.append(cg) or "/storm", 1)
    assert ancestors == ["/storm/worker"]
    assert placement.described == "/storm" and not placement.is_global

    evidence = gatherer.gather(kill, placement, ev.ts_ns)
    assert ("latest_before", "/storm") in store.asked and live.read == ["/storm"]
    assert [t.cgroup for t in evidence.timelines] == ["/storm"]
    assert evidence.last_sample.age_ms == 40.0

    cap = build_capture(kill.pid, ev, bare, placement, evidence, Recording(cgroup_version=1), WALL)
    assert cap.cgroup.oom_memcg == "/storm" and cap.cgroup.task_memcg == "/storm/worker"
    assert cap.cgroup.source == "sampler_scan" and cap.at_kill.source == "last_sample"


def test_a_global_oom_is_described_by_the_victims_own_cgroup():
    (rep,) = parse_reports(fixture_text("kmsg", "v2-6.1-global.kmsg"))
    placement = place(rep, None, None, lambda cg: "/never-asked", 2)
    assert placement.is_global and placement.cgroup.oom_memcg is None
    assert placement.described == placement.cgroup.task_memcg is not None


def test_losses_are_said_once_and_noted_in_the_captures_of_the_kills_they_may_have_touched():
    s = 1_000_000_000
    losses = Losses(reach_ns=2 * s)
    assert losses.update({"bpf_events": 0}, None, 100 * s) == []
    said = losses.update({"bpf_events": 3, "kmsg_records": 0}, None, 101 * s)
    assert len(said) == 1 and said[0].startswith("3 BPF events lost")
    assert losses.update({"bpf_events": 3}, None, 102 * s) == []  # said once
    for kill_s in (98.5, 100.5, 101):  # from 2 s before the previous drain up to this one
        notes = losses.notes_for_kill(int(kill_s * s))
        assert len(notes) == 1 and "3 BPF events lost" in notes[0], kill_s
    assert losses.notes_for_kill(97 * s) == [] and losses.notes_for_kill(101 * s + 1) == []
    said = losses.update({}, OSError(5, "Input/output error"), 103 * s)
    assert len(said) == 1 and "/dev/kmsg reader stopped" in said[0]
    assert any("/dev/kmsg reader had stopped" in n for n in losses.notes_for_kill(500 * s))
    assert not any("/dev/kmsg" in n for n in losses.notes_for_kill(99 * s))


def test_a_victim_no_read_named_is_placed_by_the_cgroup_its_kernel_snapshot_read():
    """Issue 24's soak: a victim killed within a second of its cgroup's making (no /proc read, no
    sample of its pid) was placed in its parent process's cgroup, outside record's --cgroup, and
    dropped. The memcg snapshot at its SIGKILL names the cgroup by its id (the directory's inode)."""
    from oomscope.layouts import MemcgLevel, MemcgSnapshot

    reps = parse_reports(fixture_text("kmsg", "v1-6.18-storm.kmsg"))
    bare = next(r for r in reps if not r.has_header)
    ev = event_for(bare, victim_parent_pid=99)
    ev.memcg_snapshot = MemcgSnapshot(ts_ns=ev.ts_ns, pid=bare.killed.pid, levels=[
        MemcgLevel(777, 1, 2, 0, None, None, {}, {}, {}, {})])
    gatherer = EvidenceGatherer(FakeStore({}, {99: "/outside"}), FakeLive(), cgroup_version=1)
    kill = PendingKill(pid=bare.killed.pid, first_seen_ns=ev.ts_ns, event=ev, report=bare)
    assert gatherer.locate(kill) == ("/pods/new-pod/ctr", "kernel_snapshot")
    ev.memcg_snapshot = None  # without it, the parent's cgroup is the last resort, and said so
    assert gatherer.locate(kill) == ("/outside", "fork_parent")


def test_a_late_report_or_event_is_said_but_noted_on_no_other_kill():
    """A late report (or event) belongs to a kill already written: the kills written around it lost
    nothing by it, and until 2026-12-08 each of them said it had."""
    s = 1_000_000_000
    losses = Losses(reach_ns=2 * s)
    losses.update({"late_reports": 0, "late_events": 0, "kmsg_records": 0}, None, 100 * s)
    said = losses.update({"late_reports": 1, "late_events": 2, "kmsg_records": 4}, None, 101 * s)
    assert len(said) == 3 and any(x.startswith("1 kernel OOM reports read after") for x in said) \
        and any(x.startswith("2 BPF events read after") for x in said)
    notes = losses.notes_for_kill(100 * s)
    assert len(notes) == 1 and "4 kernel log records lost" in notes[0], notes
