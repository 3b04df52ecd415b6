"""oomscope import on the logs people really paste (issue 18): host facts only from the log,
group kills, vendor summaries, undated and foreign-dated logs, filtered and elided excerpts."""

import datetime as dt
import io
import os
import re

import pytest

from oomscope.analysis.result import analyse_kill
from oomscope.importer import import_reports, open_log
from oomscope.importer.sources import file_mtime as _mtime
from oomscope.report.render import render_html

from ..conftest import FIXTURES, fixture_text

LOGS = sorted(os.listdir(os.path.join(FIXTURES, "logs")))


def _imp(name, **kw):
    return import_reports(io.StringIO(fixture_text("logs", name)), year=2026, **kw)


@pytest.mark.parametrize("name", LOGS)
def test_no_imported_capture_states_a_host_fact_the_log_lacks(name):
    text = fixture_text("logs", name)
    imps = _imp(name)
    assert imps
    for imp in imps:
        h = imp.capture.host
        # this machine's settings never leak into a capture of another host
        assert (h.thp_enabled, h.thp_defrag, h.thp_shmem_enabled) == (None, None, None)
        assert (h.overcommit_memory, h.oom_dump_tasks, h.panic_on_oom) == (None, None, None)
        assert h.kernel_release == "" or h.kernel_release in text
        assert h.swap_total_bytes is None or "Total swap" in text
        assert h.mem_total_bytes is None or "pages RAM" in text
        if h.page_size_bytes is not None:  # from the architecture or Mem-Info, never this machine
            assert re.search(r"RIP: |x86_64|amd64|Node \d+ active_anon", text)
        html = render_html(imp.capture, analyse_kill(imp.capture))
        if "Total swap = 0kB" not in text:
            assert "the host has no swap" not in html and "The host has no swap" not in html
        assert any(n.startswith(("Host facts read from the log", "The log states no host facts")) for n in imp.capture.notes)


def test_host_facts_are_read_from_the_report():
    (imp,) = _imp("kern.log-v2-6.1.txt")
    h = imp.capture.host
    assert h.kernel_release == "6.1.0-56-amd64" and h.page_size_bytes == 4096
    note = next(n for n in imp.capture.notes if n.startswith("Host facts"))
    assert "architecture x86_64" in note and "host swap" in note.split("unknown:")[1]
    html = render_html(imp.capture, analyse_kill(imp.capture))
    # unknown is shown as unknown (in the notes), never as "no swap"; the swap item itself waits
    # for a timeline that shows a peak (a leak fills swap too: swap would only delay it)
    assert "host swap" in html and "The host has no swap" not in html


def test_global_oom_swap_ram_and_page_size_from_mem_info():
    text = fixture_text("kmsg", "v2-6.1-global.kmsg")
    (imp,) = import_reports(io.StringIO(text))
    h = imp.capture.host
    assert h.swap_total_bytes is not None and h.page_size_bytes == 4096
    note = next(n for n in imp.capture.notes if n.startswith("Host facts"))
    assert "page size 4 KiB (Mem-Info" in note


def test_group_kill_members_get_the_groups_oom_memcg_and_the_twice_killed_victim_is_one():
    # a real memory.oom.group kill (Debian 6.1 VM): victim 246, then "Tasks in /grpfix ...", then
    # Killed lines for 247, 246 (again) and 248
    imps = import_reports(io.StringIO(fixture_text("kmsg", "v2-6.1-group.kmsg")))
    assert [i.capture.victim.pid for i in imps] == [246, 247, 248]
    assert all(i.capture.cgroup.oom_memcg == "/grpfix" for i in imps)
    assert all(i.capture.kernel_report.group_kill for i in imps)
    head = imps[0].capture
    assert head.cgroup.task_memcg == "/grpfix" and head.cgroup.source == "kernel_log"
    assert head.incident is not None and head.incident.group_cgroup == "/grpfix"
    assert [v.pid for v in head.incident.victims] == [246, 247, 248]
    assert any("killed twice" in n for n in head.notes)  # both facts kept on the one victim
    assert all(i.capture.host.kernel_release == "6.1.0-56-amd64" for i in imps)
    html = render_html(imps[1].capture, analyse_kill(imps[1].capture))
    assert "memory.oom.group" in html
    for i in imps[1:]:  # a member is no rate-limited kill, and no /proc was read for it
        assert not any("rate-limited" in n or "/proc" in n for n in i.capture.notes)


def test_vendor_summary_without_constraint_keeps_the_task_cgroup():
    # RHEL 7-style 3.10 backport: "oom-kill:,cpuset=...,oom_memcg=...,task_memcg=..."
    (imp,) = _imp("rhel7-vendor-summary-3.10.txt")
    cg = imp.capture.cgroup
    pod = "/kubepods/burstable/pod6c4333b3-a663-11ea-b39f-6c92bf85beda"
    assert cg.oom_memcg == pod
    assert cg.task_memcg == pod + "/bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5"
    assert cg.constraint == "CONSTRAINT_MEMCG" and imp.capture.victim.pid == 12788
    assert imp.capture.host.kernel_release == "3.10.0-514.16.1.el7.stable.v1.4.x86_64"
    assert imp.capture.host.page_size_bytes == 4096  # x86_64, from the release's name


def test_empty_constraint_summary():
    from oomscope.kernel.oom_report import parse_oom_summary
    s = parse_oom_summary("oom-kill:constraint=,cpuset=abc,mems_allowed=0,oom_memcg=/a,task_memcg=/a/b,task=x,pid=1,uid=0", "x")
    assert (s.cpuset, s.oom_memcg, s.task_memcg, s.constraint, s.pid) == ("abc", "/a", "/a/b", "CONSTRAINT_MEMCG", 1)


@pytest.mark.parametrize("name", ["dmesg-T-ja-v1-6.18.txt", "dmesg-T-zh-v1-6.18.txt", "dmesg-T-de-v1-6.18.txt"])
def test_dmesg_T_in_other_locales_is_dated_right(name):
    imps = _imp(name)
    assert [i.capture.victim.pid for i in imps] == [6404, 7257]
    assert [i.capture.times.kill_wall[:19] for i in imps] == ["2026-11-27T20:31:19", "2026-11-27T20:31:35"]
    assert imps[1].capture.cgroup.oom_memcg == "/oomscope-test-caps-6854" and len(imps[1].capture.at_kill.memory_stat) == 42


def test_locale_dates_read_or_left_undated():
    from oomscope.kernel.logformats import read_log_lines
    lines = ["11月 27 20:31:35 node1 kernel: Memory cgroup out of memory: Killed process 1 (a) total-vm:1kB",
             "avril 16 21:08:50 node1 kernel: Memory cgroup out of memory: Killed process 2 (b) total-vm:1kB",
             "[Xy Qq 27 20:31:35 2026] Memory cgroup out of memory: Killed process 3 (c) total-vm:1kB",
             "avril 16 21:08:50 node1 systemd-oomd[93234]: Killed /user.slice/x.scope"]
    got = [(ll.record.text.split()[7], ll.wall) for ll in read_log_lines(lines, year=2026)]
    assert got[0] == ("1", 1795811495.0) and got[1][0] == "2" and got[1][1] is not None
    assert got[2] == ("3", None)  # a date that does not read is left out, the kill is not
    assert len(got) == 3  # another program's dated line is not kernel text


def test_undated_log_is_imported_undated():
    # `dmesg -t` on this host: no time at all; the task table rows start with "["
    imps = _imp("dmesg-t-undated-v1-6.18.txt")
    assert [i.capture.victim.pid for i in imps] == [6404, 7257]
    cap = imps[1].capture
    assert cap.times.kill_wall is None and cap.kill_id.startswith("undated-")
    # no kernel clock either: the order-keeping clock the reader made up is not shown as a time
    assert cap.times.kill_monotonic_ns is None and cap.times.kernel_report_usec is None
    assert not any("after its host booted" in n for n in cap.notes)
    assert cap.cgroup.task_memcg == "/oomscope-test-caps-6854" and [t.pid for t in cap.tasks] == [7257]
    assert cap.host.kernel_release == "6.18.44-fc-v595"
    assert imps[0].capture.cgroup.oom_memcg == "/oomscope-lab-java-heap-6334-b5a056"  # its report cut to the summary


def test_grep_filtered_log_gives_a_capture_per_killed_line():
    imps = _imp("dmesg-grep-filtered-v1-6.18.txt")
    assert [i.capture.victim.pid for i in imps] == [6404, 7257, 7601]
    assert [i.capture.cgroup.task_memcg for i in imps] == [
        "/oomscope-lab-java-heap-6334-b5a056", "/oomscope-test-caps-6854", "/oomscope-test-caps-7574"]


def test_elided_cut_and_interleaved_report():
    imps = _imp("dmesg-elided-v1-6.18.txt")
    # the first report cut at its start, the second with "..." / "[...]" and another subsystem's
    # line amid memory.stat, the third cut before its Killed line (not a kill)
    assert [i.capture.victim.pid for i in imps] == [6404, 7257]
    assert imps[0].capture.cgroup.oom_memcg == "/oomscope-lab-java-heap-6334-b5a056"
    st = imps[1].capture.at_kill.memory_stat
    assert st["pgfault"] == 16459 and st["total_shmem"] == 0 and len(st) == 26  # stats after the interleaved line kept
    assert imps[1].capture.at_kill.usage_bytes == 65536 * 1024


def test_group_kill_members_get_the_first_victims_oom_memcg_and_cgroup_memory():
    # 5.0-rc4-next (linux-mm, 2019): printk caller ids ("[ T9185]"), a summary that says
    # CONSTRAINT_NONE for a memcg OOM (the kernel bug fixed by "mm/oom_kill.c: fix uninitialized
    # oc->constraint"), then 11 members of the memory.oom.group kill of /test1, reaper lines between
    imps = import_reports(io.StringIO(fixture_text("logs", "group-kill-caller-id-5.0.txt")))
    assert [i.capture.victim.pid for i in imps] == [9188, 1, 9182, 9183, 9184, 9185, 9186, 9187, 9189, 9190, 9191, 9192]
    head, members = imps[0].capture, [i.capture for i in imps[1:]]
    assert head.cgroup.oom_memcg == "/test1" and head.cgroup.constraint == "CONSTRAINT_MEMCG"
    assert imps[0].report.trigger_comm == "a.out"  # the caller id is not part of the text
    for m in members:
        assert m.cgroup.oom_memcg == "/test1" and m.cgroup.task_memcg is None  # its own cgroup is not in the log
        assert (m.at_kill.usage_bytes, m.at_kill.limit_bytes) == (51200 * 1024, 51200 * 1024)
        assert m.at_kill.memory_stat == head.at_kill.memory_stat and m.at_kill.memory_stat["rss"] == 49484 * 1024
        assert m.incident is head.incident and m.host.kernel_release == "5.0.0-rc4-next-20190131"
        assert any("printed just before" in n for n in m.notes)
        assert not any("rate-limited" in n for n in m.notes)
    assert len(head.incident.victims) == 12
    assert {i.report.has_header for i in imps[1:]} == {False}  # a member's own lines: its Killed line only


def test_a_group_kill_cut_at_its_start_and_a_node_agents_quote_of_it():
    # an AKS node's /var/log/syslog (a public write-up): the report cut at its oom-kill: line, the
    # victim killed again as a member of its memory.oom.group kill, and node-problem-detector's
    # own line quoting the Killed line (not a kernel line: not a kill)
    imps = _imp("syslog-aks-group-kill-npd.txt")
    assert len(imps) == 1
    cap = imps[0].capture
    assert cap.victim.pid == 68061 and cap.cgroup.oom_memcg == "/kubepods.slice"
    assert cap.cgroup.task_memcg.endswith("cri-containerd-178ec18073cc6ac7be2de8d9869daf162a6349dd056b6535849112c53ec3102a.scope")
    assert cap.kernel_report.group_kill and any("killed twice" in n for n in cap.notes)
    assert cap.workload.label()  # the pod is named from the cgroup


def test_a_yearless_journal_in_japanese_is_dated_from_the_file_or_left_undated(tmp_path):
    # journalctl -o short of this host's kernel records under LC_ALL=ja_JP.UTF-8: "11月 27 22:28:49"
    text = fixture_text("logs", "journal-short-ja-v1-6.18.txt")
    # no year anywhere, no file: undated, never this year
    imps = import_reports(io.StringIO(text))
    assert [i.capture.victim.pid for i in imps] == [18707, 20958]
    for imp in imps:
        assert imp.capture.times.kill_wall is None and imp.capture.kill_id.startswith("undated-")
        assert any("without a year" in n and "11月 27 22:2" in n for n in imp.capture.notes)
        assert not any("after its host booted" in n for n in imp.capture.notes)  # no kernel clock in this shape
    # a file: the year that does not put the kill after the file's last change, even across New Year
    log = tmp_path / "journal.txt"
    log.write_text(text, encoding="utf-8")
    for mtime, year in (("2026-11-28T00:00:00", 2026), ("2027-01-05T00:00:00", 2026), ("2026-11-27T22:30:00", 2026)):
        t = dt.datetime.fromisoformat(mtime).replace(tzinfo=dt.timezone.utc).timestamp()
        os.utime(log, (t, t))
        imps = import_reports(open_log(str(log)), not_after=_mtime(str(log)))
        # local time as printed, its zone unknown: no invented offset or milliseconds (issue 26, point 5)
        assert [i.capture.times.kill_wall for i in imps] == [f"{year}-11-27T22:27:52", f"{year}-11-27T22:28:49"]
        assert all(i.capture.times.kill_wall_zone == "unknown" for i in imps)
        assert all(any("modification time" in n for n in i.capture.notes) for i in imps)
    # a year given wins; a dated line before the yearless ones gives it too (the log is in time order)
    assert import_reports(io.StringIO(text), year=2024)[1].capture.times.kill_wall.startswith("2024-11-27")
    dated = "2025-12-30T10:00:00+00:00 host kernel: Linux version 6.18.44\n"
    assert import_reports(io.StringIO(dated + text))[1].capture.times.kill_wall.startswith("2026-11-27")
    dated = "2025-12-31T10:00:00+00:00 host kernel: Linux version 6.18.44\n" + text.replace("11月 27", "1月 02")
    assert import_reports(io.StringIO(dated))[1].capture.times.kill_wall.startswith("2026-01-02")


def test_journalctl_header_gives_the_year_of_the_short_format():
    lines = ["-- Logs begin at Tue 2019-06-25 10:00:00 CST, end at Wed 2020-01-02 10:00:00 CST. --",
             "12月 30 20:31:35 node1 kernel: Memory cgroup out of memory: Killed process 1 (a) total-vm:1kB",
             "1月 02 08:00:00 node1 kernel: Memory cgroup out of memory: Killed process 2 (b) total-vm:1kB"]
    walls = [i.capture.times.kill_wall for i in import_reports(lines)]
    assert walls == ["2019-12-30T20:31:35", "2020-01-02T08:00:00"]  # local, zone unknown (issue 26)


@pytest.mark.parametrize("line", ["[12345678.123456][T123456] Memory cgroup out of memory: Killed process 1 (a) total-vm:1kB",
                                  "[12345678.123456] [  C3] Memory cgroup out of memory: Killed process 1 (a) total-vm:1kB",
                                  "[  T17] Memory cgroup out of memory: Killed process 1 (a) total-vm:1kB"])
def test_printk_caller_ids_are_not_kernel_text(line):
    (imp,) = import_reports([line])
    assert imp.capture.victim.pid == 1 and imp.capture.victim.comm == "a"


def test_import_year_option_and_undated_default_from_stdin(tmp_path):
    from typer.testing import CliRunner

    from oomscope.cli import app

    text = fixture_text("logs", "journal-short-ja-v1-6.18.txt")
    res = CliRunner().invoke(app, ["import", "-", "-o", str(tmp_path / "a")], input=text)
    assert res.exit_code == 0, res.output
    assert "undated-line83-pid20958" in res.output and "2026-11-27" not in res.output
    res = CliRunner().invoke(app, ["import", "-", "-o", str(tmp_path / "b"), "--year", "2025"], input=text)
    assert res.exit_code == 0 and "2025-11-27T22:28:49" in res.output


def test_cgroup_v2_constraint_memcg_summary_from_a_grep_of_var_log_messages():
    # an ECS task's kill on a cgroup v2 host, `grep -i oom /var/log/messages` (sparrc/slides,
    # tests/fixtures/README.md): "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),..."
    # between the header line and the Killed line, systemd's and oom_reaper's lines after it
    ecs = "/ecstasks.slice/ecstasks-488fc5b8b77f4fb7984bdc4aba948f9f.slice"
    scope = ecs + "/docker-60ef727c9751aac9084702bca274544f94f1bb070ace95e8a79911c22b01a91d.scope"
    (imp,) = _imp("messages-cgroup2-ecs-constraint-memcg.txt")
    cap = imp.capture
    assert (cap.victim.pid, cap.victim.comm, cap.victim.uid, cap.victim.oom_score_adj) == (51947, "tail", 0, 0)
    assert (cap.cgroup.oom_memcg, cap.cgroup.task_memcg, cap.cgroup.constraint) == (ecs, scope, "CONSTRAINT_MEMCG")
    assert imp.report.summary.cpuset == scope.rsplit("/", 1)[1]
    v = cap.victim
    assert (v.total_vm_bytes, v.anon_rss_bytes, v.file_rss_bytes, v.shmem_rss_bytes, v.pgtables_bytes) == (
        459896 << 10, 458176 << 10, 772 << 10, 0, 948 << 10)
    assert cap.times.kill_wall.startswith("2026-04-15T23:04:52")  # the year given (--year)
    assert cap.host.kernel_release == "" and cap.at_kill.usage_bytes is None  # neither is in the log
    # without a year the kill is undated, said once, never dated with this year
    (undated,) = import_reports(io.StringIO(fixture_text("logs", "messages-cgroup2-ecs-constraint-memcg.txt")))
    assert undated.capture.times.kill_wall is None and undated.capture.victim.pid == 51947
    assert not any("neither dates" in n for n in undated.capture.notes)
    assert any("'Apr 15 23:04:52' without a year" in n for n in undated.capture.notes)


@pytest.mark.parametrize("shape", ["docker logs -t", "CRI log file", "docker json-file", "docker logs"])
def test_a_kernel_log_relayed_by_a_container_is_imported(shape):
    # A dmesg-tailing container's output as `docker logs -t` / `kubectl logs --timestamps`, a CRI
    # log file under /var/log/pods and docker's json-file driver. No public log of a relayed OOM
    # report in these shapes was found: the relayed lines here are this host's real report
    # (dmesg-v1-6.18.txt) in each shape's framing (docker's and the CRI's log formats).
    import json
    lines = fixture_text("logs", "dmesg-v1-6.18.txt").splitlines()
    relay = "2026-11-28T09:00:00.123456789Z"  # when the relay printed it: hours after the kill
    framed = {"docker logs -t": [f"{relay} {ln}" for ln in lines],
              "CRI log file": [f"2026-11-28T09:00:00.123456789+00:00 stdout F {ln}" for ln in lines],
              "docker json-file": [json.dumps({"log": ln + "\n", "stream": "stdout", "time": relay}) for ln in lines],
              "docker logs": lines}[shape]
    framed.insert(3, f"{relay} node1 systemd[1]: a dated line of another program: not kernel text")
    (imp,) = import_reports(io.StringIO("\n".join(framed) + "\n"))
    cap = imp.capture
    assert (cap.victim.pid, cap.victim.comm, cap.victim.anon_rss_bytes) == (27307, "python", 65280 << 10)
    assert cap.cgroup.oom_memcg == cap.cgroup.task_memcg == "/oomscope-test-26081-c5f224-outside"
    assert len(cap.at_kill.memory_stat) == 42 and cap.at_kill.limit_bytes == 64 << 20
    assert cap.host.kernel_release == "6.18.44-fc-v669"
    # the relay's time is when it printed the line, not when the kernel logged it: not a date
    assert cap.times.kill_wall is None and cap.kill_id == "boot+13321.743621s-pid27307"
    assert [t.pid for t in cap.tasks] == [27307]


def test_a_grep_of_summary_lines_alone_gives_a_kill_each():
    # `dmesg | grep -i kill | grep docker` from dyrnq/install-docker#14: only a global OOM's
    # summary survived the grep (the Killed line does not say "docker")
    (imp,) = _imp("dmesg-grep-summary-only-global.txt")
    cap = imp.capture
    assert imp.report.killed_from_summary and (cap.victim.pid, cap.victim.comm, cap.victim.uid) == (7134, "java", 1000)
    assert cap.cgroup.task_memcg == "/system.slice/docker-00748bf4e957f82c239a1db8a88579059b7d40c7b5fbd3f43617d31d3f646f12.scope"
    assert cap.cgroup.oom_memcg is None and cap.cgroup.constraint == "CONSTRAINT_NONE"  # global_oom: no limit was hit
    assert cap.victim.anon_rss_bytes is None and cap.at_kill.usage_bytes is None  # the memory is not in the log
    assert cap.kill_id == "boot+4650180.470877s-pid7134" and cap.times.kill_wall is None
    assert any(n.startswith("The 'Killed process' line of this kill is not in the log: its one-line summary") for n in cap.notes)
    assert not any("oom_reaper's line names the victim" in n for n in cap.notes)
    # two summaries in a row are two kills; a summary followed by the kernel's "is already
    # exiting. Skip killing" (mm/oom_kill.c: __oom_kill_process) is none
    line = fixture_text("logs", "dmesg-grep-summary-only-global.txt").strip()
    two = [line, line.replace("pid=7134", "pid=7135").replace("[4650180.470877]", "[4650181.000000]")]
    assert [i.capture.victim.pid for i in import_reports(io.StringIO("\n".join(two) + "\n"))] == [7134, 7135]
    exiting = [line, "[4650180.470900] Out of memory: OOM victim 7134 (java) is already exiting. Skip killing the task"]
    assert import_reports(io.StringIO("\n".join(exiting) + "\n")) == []
