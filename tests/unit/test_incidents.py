from oomscope.model import Capture, CgroupInfo, KernelReportInfo, Victim
from oomscope.capture.groups import GroupLinker, Head


def _cap(pid, kill_id, present, task_memcg="/pod/c", oom_memcg="/pod/c"):
    return Capture(kill_id=kill_id, victim=Victim(pid=pid, comm=f"p{pid}"),
                   cgroup=CgroupInfo(version=2, oom_memcg=oom_memcg, task_memcg=task_memcg),
                   kernel_report=KernelReportInfo(present=present))


def test_members_join_the_first_victims_incident():
    g = GroupLinker()
    head = Head(_cap(10, "k10", True), "/x/k10/capture.json", None, t_ns=1_000, state=None)
    g.note_written(head)
    assert g.head_for("/pod/c", 2_000) is head
    assert g.head_for("/other", 2_000) is None
    assert g.head_for("/pod/c", 1_000 + 10_000_000_000) is None  # too long after
    for pid in (11, 12):
        m = _cap(pid, f"k{pid}", False)
        inc = g.link(head, m, "/pod/c")
        assert m.incident is inc and head.capture.incident is inc
    assert [v.pid for v in head.capture.incident.victims] == [10, 11, 12]
    assert head.capture.incident.id == "k10" and head.capture.kernel_report.group_kill
    g.link(head, _cap(10, "k10b", False), "/pod/c")  # the kernel names the first victim again
    assert [v.pid for v in head.capture.incident.victims] == [10, 11, 12]


def test_only_fully_reported_kills_can_lead_an_incident():
    g = GroupLinker()
    g.note_written(Head(_cap(10, "k10", False), "p", None, t_ns=0, state=None))
    assert g.head_for("/pod/c", 1) is None
