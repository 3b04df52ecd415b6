import time

import pytest

from oomscope.importer import import_reports
from oomscope.kernel import oom_report
from oomscope.kernel.kmsg import parse_record
from oomscope.kernel.oom_report import parse_oom_summary, parse_reports

HOSTILE_CG = "/oomscope-fixture-a,oom_memcg=b<i>x'\"&"


def test_parse_record_unescapes_and_drops_dict_lines():
    rec = parse_record("6,531,11684109,-;anon 1\\x0afile 2\n SUBSYSTEM=memory\n")
    assert rec.seq == 531 and rec.usec == 11684109 and rec.level == 6
    assert rec.lines() == ["anon 1", "file 2"]


def test_parse_record_rejects_non_records():
    assert parse_record("no semicolon here") is None
    assert parse_record("x,y,z;text") is None


def test_v1_report(fixture):
    reps = parse_reports(fixture("kmsg", "v1-6.18-anon.kmsg"))
    assert len(reps) == 1
    r = reps[0]
    assert r.has_header and r.is_memcg
    assert r.trigger_comm == "python3" and r.trigger_pid == 2161
    assert r.gfp_mask == "0xcc0" and r.order == 0
    assert (r.memory.usage_kb, r.memory.limit_kb, r.memory.failcnt) == (65536, 65536, 8087)
    assert r.kmem.usage_kb == 204 and r.memsw is not None and r.swap is None
    assert r.stats_cgroup == "/oomscope-fixture-965"
    assert r.memory_stat["rss"] == 66867200 and r.memory_stat["total_inactive_anon"] == 66850816
    assert len(r.memory_stat) == 42
    assert r.task_columns[-1] == "name" and "rss_anon" in r.task_columns
    assert [(t.pid, t.name, t.values["rss"], t.values["pgtables_bytes"]) for t in r.tasks] == [(2161, "python3", 17022, 188416)]
    s = r.summary
    assert (s.constraint, s.oom_memcg, s.task_memcg, s.task, s.pid, s.uid, s.cpuset, s.mems_allowed) == (
        "CONSTRAINT_MEMCG", "/oomscope-fixture-965", "/oomscope-fixture-965", "python3", 2161, 0, "/", "0")
    k = r.killed
    assert (k.message, k.pid, k.comm, k.total_vm_kb, k.anon_rss_kb, k.file_rss_kb, k.shmem_rss_kb, k.uid, k.pgtables_kb, k.oom_score_adj) == (
        "Memory cgroup out of memory", 2161, "python3", 76656, 65280, 2808, 0, 0, 184, 0)
    assert r.first_seq == 341 and r.last_seq == 418


def test_v1_hostile_names(fixture):
    (r,) = parse_reports(fixture("kmsg", "v1-6.18-hostile-sidecar.kmsg"))
    assert r.stats_cgroup == HOSTILE_CG
    assert r.summary.oom_memcg == HOSTILE_CG and r.summary.task_memcg == HOSTILE_CG
    assert r.summary.task == "<u>p,pid=1</u>" and r.summary.pid == 2195
    assert r.killed.comm == "<u>p,pid=1</u>" and r.killed.pid == 2195
    assert r.trigger_comm == "<u>p,pid=1</u>"
    assert [t.name for t in r.tasks] == ["<u>p,pid=1</u>", "side car"]


def test_v2_stats_in_one_record(fixture):
    text = fixture("kmsg", "v2-6.1-anon.kmsg")
    assert "\\x0a" in text  # memory.stat really is one record there
    (r,) = parse_reports(text)
    assert r.swap is not None and r.memsw is None and r.kmem is None
    assert (r.swap.usage_kb, r.swap.limit_kb) == (0, 0)
    assert r.stats_cgroup == "/oomscope-fixture"
    assert r.memory_stat["anon"] == 66801664 and r.memory_stat["anon_thp"] == 2097152
    assert {"file", "kernel", "sock", "slab_reclaimable", "pgfault"} <= set(r.memory_stat)
    assert r.summary.oom_memcg == "/oomscope-fixture" and r.killed.pid == 257


def test_v2_hostile(fixture):
    (r,) = parse_reports(fixture("kmsg", "v2-6.1-hostile-sidecar.kmsg"))
    assert r.summary.oom_memcg == HOSTILE_CG and r.summary.task_memcg == HOSTILE_CG
    assert r.killed.comm == "<u>p,pid=1</u>" and len(r.tasks) == 2


def test_storm_every_killed_line_is_a_report(fixture):
    text = fixture("kmsg", "v1-6.18-storm.kmsg")
    reps = parse_reports(text)
    killed_lines = text.count("Killed process")
    assert len(reps) == killed_lines == 105
    assert sum(r.has_header for r in reps) == text.count("invoked oom-killer") == 10
    full = [r for r in reps if r.has_header]
    assert all(r.memory_stat and r.summary and r.summary.oom_memcg == "/oomscope-fixture-storm" for r in full)
    bare = [r for r in reps if not r.has_header]
    assert all(r.killed and not r.memory_stat and r.summary is None for r in bare)


def test_truncated_report_is_replaced_by_the_next():
    recs = [
        "4,1,10,-;a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "6,2,11,-;memory: usage 10kB, limit 10kB, failcnt 1",
        # the rest of this report is lost; a new one starts
        "4,3,20,-;b invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "6,4,21,-;eth0: unrelated message",
        "3,5,22,-;Memory cgroup out of memory: Killed process 7 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    (r,) = parse_reports("\n".join(recs))
    assert r.trigger_comm == "b" and r.memory is None and r.killed.pid == 7


def test_killed_line_of_older_kernels():
    k = oom_report.parse_killed_line("Killed process 42 (java) total-vm:100kB, anon-rss:50kB, file-rss:10kB, shmem-rss:0kB")
    assert (k.pid, k.comm, k.anon_rss_kb, k.uid, k.oom_score_adj) == (42, "java", 50, None, None)


def test_comm_with_closing_paren():
    k = oom_report.parse_killed_line("Out of memory: Killed process 9 (a) b) total-vm:1kB, anon-rss:2kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:5")
    assert k.comm == "a) b" and k.oom_score_adj == 5 and k.message == "Out of memory"


def test_summary_without_known_comm_or_memcg():
    line = ("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/x,y,mems_allowed=0-1,3,"
            "oom_memcg=/a,oom_memcg=b,task_memcg=/a,oom_memcg=b/c,task_memcg=d,task=e,pid=1,uid=2,pid=77,uid=0")
    s = parse_oom_summary(line)
    assert s.task == "e,pid=1,uid=2" and s.pid == 77 and s.uid == 0
    assert s.oom_memcg == "/a,oom_memcg=b" and s.task_memcg == "/a,oom_memcg=b/c,task_memcg=d"
    assert s.cpuset == "/x,y" and s.mems_allowed == "0-1,3"


def test_summary_global_oom_has_no_memcg():
    s = parse_oom_summary("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=stress,pid=5,uid=0")
    assert s.constraint == "CONSTRAINT_NONE" and s.pid == 5 and s.oom_memcg is None


def test_group_kill_repeats_victim():
    recs = [
        "4,1,10,-;a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "3,2,11,-;Memory cgroup out of memory: Killed process 7 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        "6,3,12,-;Tasks in /g are going to be killed due to memory.oom.group set",
        "3,4,13,-;Memory cgroup out of memory: Killed process 8 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        "3,5,14,-;Memory cgroup out of memory: Killed process 7 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    reps = parse_reports("\n".join(recs))
    assert [r.killed.pid for r in reps] == [7, 8, 7]
    assert reps[0].has_header and reps[1].group_kill_cgroup == "/g"


def test_global_oom(fixture):
    (r,) = parse_reports(fixture("kmsg", "v2-6.1-global.kmsg"))
    assert r.has_header and not r.is_memcg and r.memory is None and not r.memory_stat
    assert r.summary.constraint == "CONSTRAINT_NONE" and r.summary.oom_memcg is None
    assert r.summary.task_memcg == "/oomscope-fixture-global" and r.summary.pid == 252
    assert r.killed.message == "Out of memory" and r.killed.anon_rss_kb == 883832
    mi = r.mem_info
    assert mi["ram_pages"] == 262013 and mi["free_swap_kb"] == 0 and mi["total_swap_kb"] == 0
    assert {"active_anon", "inactive_anon", "free", "slab_reclaimable", "shmem"} <= set(mi)
    assert len(r.tasks) > 3  # every task of the host


def test_v2_7x_report_min_protection_line_and_newer_keys(fixture):
    # Debian's 7.3.4 (VM, cgroup v2): memory.stat one key per record (as 6.12), keys 6.1 lacks
    # (sec_pagetables, zswap_incomp, pgdemote_proactive, pgsteal_proactive, swpin_zero), and a line
    # after memory.stat, at warning level, that older kernels do not print:
    # "Memory cgroup min protection 0kB -- low protection 0kB".
    text = fixture("kmsg", "v2-7.3-anon.kmsg")
    assert "4,609,64718470,-;Memory cgroup min protection 0kB -- low protection 0kB" in text
    (r,) = parse_reports(text)
    assert r.has_header and r.is_memcg and r.trigger_comm == "python3" and r.trigger_pid == 201
    assert (r.memory.usage_kb, r.memory.limit_kb, r.memory.failcnt) == (65536, 65536, 35)
    assert (r.swap.usage_kb, r.swap.limit_kb) == (0, 0) and r.memsw is None and r.kmem is None
    assert r.stats_cgroup == "/fix7" and len(r.memory_stat) == 71
    assert r.memory_stat["anon"] == 66859008 and r.memory_stat["kernel"] == 249856
    assert r.memory_stat["pagetables"] == 204800 and r.memory_stat["pgfault"] == 17106
    assert {"sec_pagetables", "zswap_incomp", "pgdemote_proactive", "pgsteal_proactive", "swpin_zero"} <= set(r.memory_stat)
    assert "Memory cgroup min protection 0kB -- low protection 0kB" not in r.memory_stat
    assert [(t.pid, t.name, t.values["rss_anon"], t.values["pgtables_bytes"]) for t in r.tasks] == [(201, "python3", 16323, 196608)]
    assert r.summary.oom_memcg == "/fix7" and r.summary.task_memcg == "/fix7"
    k = r.killed
    assert (k.pid, k.comm, k.total_vm_kb, k.anon_rss_kb, k.file_rss_kb, k.pgtables_kb) == (201, "python3", 77644, 65292, 944, 192)
    assert r.first_seq == 506 and r.last_seq == 614


# --- issue 24: a container's log line must not stall import (kubectl logs | oomscope import -) ----

_SUMMARY_HEAD = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0"


def _hostile_summaries(size):
    """oom-kill: lines of about ``size`` characters, each built to make a splitter that tries every
    pair of its keys (or every ",task=") do work quadratic in the length."""
    n = size // 24
    return [
        _SUMMARY_HEAD + ",oom_memcg=/" * n + ",task_memcg=/x" * n + ",task=python,pid=7,uid=0",
        _SUMMARY_HEAD + ",oom_memcg=/a,task_memcg=/b" * n + ",task=python,pid=7,uid=0",
        _SUMMARY_HEAD + ",task=" * (4 * n) + ",pid=7,uid=0",
        _SUMMARY_HEAD + ",oom_memcg=/" + "a" * size + ",task_memcg=/" + "a" * size + ",task=x,pid=1,uid=0",
        _SUMMARY_HEAD + ",task=a,pid=" + "9" * size + ",uid=0",  # int() refuses 4300+ digits
    ]


@pytest.mark.parametrize("size", [77_000, 1 << 20])
def test_a_huge_hostile_summary_line_is_parsed_in_linear_time(size):
    # 77 KB took 28.6 s (issue 24): the splitter tried every (",oom_memcg=", ",task_memcg=") pair
    for line in _hostile_summaries(size):
        for comm in (None, "python"):
            t0 = time.monotonic()
            s = parse_oom_summary(line, comm, None)
            elapsed = time.monotonic() - t0
            assert elapsed < 1.0, (line[:120], comm, elapsed)
            assert s is not None and (s.pid is None or s.pid < 1 << 32)


def test_a_hostile_summary_line_does_not_stall_import(fixture):
    lines = fixture("logs", "dmesg-v1-6.18.txt").splitlines()
    hostile = _hostile_summaries(77_000)[0].replace(",pid=7,", ",pid=27307,")
    t0 = time.monotonic()
    (imp,) = import_reports([("[13321.743557] " + hostile) if "oom-kill:" in line else line for line in lines], year=2026)
    assert time.monotonic() - t0 < 3.0  # 22.9 s before (the import of this log, 77 KB)
    assert imp.report.killed.pid == 27307 and imp.report.summary.pid == 27307


def test_summary_splits_are_those_of_the_kernel_lines():
    # what the bounded splitter must keep reading as before
    s = parse_oom_summary(_SUMMARY_HEAD + ",oom_memcg=/k/p,task_memcg=/k/p/c,task=a,b,pid=1,uid=2,pid=3,uid=4")
    assert (s.oom_memcg, s.task_memcg, s.task, s.pid, s.uid) == ("/k/p", "/k/p/c", "a,b,pid=1,uid=2", 3, 4)
    s = parse_oom_summary(_SUMMARY_HEAD + ",oom_memcg=/,task_memcg=/x,task=" + "c" * 16 + ",pid=1,uid=2")
    # a "comm" longer than 15 bytes is no comm: the text is the cgroup's name
    assert (s.oom_memcg, s.task_memcg, s.task, s.pid) == ("/", "/x,task=" + "c" * 16 + ",pid=1,uid=2", None, None)
    s = parse_oom_summary(_SUMMARY_HEAD + ",oom_memcg=/ab,task_memcg=/abc,task=a,pid=1,uid=2")
    assert (s.oom_memcg, s.task_memcg) == (None, None)  # /abc is not within /ab
    s = parse_oom_summary(_SUMMARY_HEAD + ",oom_memcg=/x,task_memcg=/x,task=é" * 1 + ",pid=1,uid=2", "é")
    assert (s.oom_memcg, s.task_memcg, s.task, s.pid) == ("/x", "/x", "é", 1)


def test_records_written_from_user_space_never_reach_the_oom_report_parser():
    """Issue 24: root in a privileged container can write /dev/kmsg. What it writes gets facility 1
    (LOG_USER) or any other but 0 (kernel/printk/printk.c, devkmsg_write): a forged report is dropped
    before the parser; the kernel's own records pass."""
    from oomscope.kernel.kmsg import parse_record
    from oomscope.record.collector import kernel_records

    kernel = parse_record("6,1001,5000,-;Memory cgroup out of memory: Killed process 4242 (hog) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0")
    forged = parse_record("14,1002,5001,-;Memory cgroup out of memory: Killed process 4243 (victim) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0")
    named = parse_record(f"{(3 << 3) | 6},1003,5002,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x,task_memcg=/x,task=victim,pid=4243,uid=0")
    assert kernel.facility == 0 and forged.facility == 1 and named.facility == 3
    assert kernel_records([kernel, forged, named]) == [kernel]
