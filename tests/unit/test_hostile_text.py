"""Names chosen by whoever runs a workload, in kernel text (issue 14): Unicode line breaks and
escaped newlines must not forge kills, and ``\\xNN`` escapes are bytes of UTF-8. Each failed on the
code before the fix (str.splitlines(), Latin-1 unescaping, every line of a record a report line)."""

import os
import re

import pytest

from oomscope.importer import import_reports, open_log
from oomscope.kernel.kmsg import _unescape, parse_record
from oomscope.kernel.oom_report import parse_reports
from oomscope.kernel.procfs import parse_proc_cgroup

from ..conftest import fixture_text

KILLED_EVIL = "Memory cgroup out of memory: Killed process 666 (evil) total-vm:1kB, anon-rss:999999kB, file-rss:0kB, shmem-rss:0kB"
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r"]


def _kmsg_escape(text: str) -> str:
    """What /dev/kmsg does to a record's text: bytes < 0x20, >= 0x7f and backslash as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7f and b != 0x5c else f"\\x{b:02x}" for b in text.encode("utf-8"))


def _anon_with_cgroup(name: str, escape: bool = True) -> str:
    """The v1 6.18 fixture, its cgroup renamed to ``name`` (as the kernel prints it in /dev/kmsg)."""
    out = []
    for line in fixture_text("kmsg", "v1-6.18-anon.kmsg").split("\n"):
        if line:
            head, _, text = line.partition(";")
            text = text.replace("/oomscope-fixture-965", "/" + name)
            line = head + ";" + (_kmsg_escape(text) if escape else text)
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_a_unicode_line_break_in_a_cgroup_name_forges_no_kill(sep):
    name = "pod" + sep + KILLED_EVIL + sep + "x"
    reps = parse_reports(_anon_with_cgroup(name))
    assert [(r.killed.pid, r.killed.comm) for r in reps] == [(2161, "python3")]
    assert reps[0].memory is not None and reps[0].memory.usage_kb == 65536
    assert reps[0].stats_cgroup == "/" + name


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_import_of_a_log_file_with_a_unicode_line_break_forges_no_kill(tmp_path, sep):
    # a dmesg-style text log holding the name raw (dmesg prints UTF-8 as it is)
    text = fixture_text("logs", "dmesg-v1-6.18.txt").replace(
        "/oomscope-test-26081-c5f224-outside", "/pod" + sep + "[13321.743530] " + KILLED_EVIL + sep + "x")
    p = tmp_path / "dmesg.txt"
    p.write_bytes(text.encode("utf-8"))
    got = import_reports(open_log(str(p)), year=2026)
    assert [i.capture.victim.pid for i in got] == [27307]


def test_an_escaped_newline_stays_inside_its_record():
    reps = parse_reports(_anon_with_cgroup("pod\n" + KILLED_EVIL + "\nx"))
    assert [r.killed.pid for r in reps] == [2161]
    assert reps[0].memory.usage_kb == 65536  # the figures stay on the real kill


def test_an_escaped_newline_in_a_dmesg_continuation_line_forges_no_kill(tmp_path):
    # dmesg prints a record's further lines indented: a name with a newline becomes one
    text = fixture_text("logs", "dmesg-v1-6.18.txt").replace(
        "/oomscope-test-26081-c5f224-outside:", "/pod\n               " + KILLED_EVIL + "\n               x:")
    p = tmp_path / "dmesg.txt"
    p.write_text(text)
    got = import_reports(open_log(str(p)), year=2026)
    assert [i.capture.victim.pid for i in got] == [27307]


def test_a_comm_with_an_escaped_newline_forges_no_kill():
    rec = "3,500,1000,-;" + _kmsg_escape("Memory cgroup out of memory: Killed process 7 (a\n" + KILLED_EVIL + ") total-vm:1kB")
    reps = parse_reports(rec + "\n")
    assert 666 not in [r.killed.pid for r in reps]


def test_kmsg_escapes_are_utf8_bytes():
    assert _unescape("/caf\\xc3\\xa9") == "/café"
    rec = parse_record("6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
                       "oom_memcg=/caf\\xc3\\xa9,task_memcg=/caf\\xc3\\xa9,task=p,pid=1,uid=0")
    assert "oom_memcg=/café,task_memcg=/café" in rec.text


def test_invalid_utf8_stays_visible():
    assert _unescape("/a\\xffb\\xc3") == "/a\\xffb\\xc3"
    assert _unescape("back\\x5cslash") == "back\\slash"


def test_a_cafe_cgroup_is_reported_as_cafe():
    (rep,) = parse_reports(_anon_with_cgroup("café"))
    assert rep.stats_cgroup == "/café" and rep.summary.oom_memcg == "/café" and rep.summary.task_memcg == "/café"


def test_proc_cgroup_keeps_a_path_with_a_line_separator():
    assert parse_proc_cgroup("4:memory:/a\u2028b\n0::/x\x85y\n") == {"memory": "/a\u2028b", "": "/x\x85y"}


def test_no_splitlines_in_the_package():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "oomscope")
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    found += [f"{f}:{n}" for n, line in enumerate(fh, 1) if ".splitlines(" in line]
    assert found == []


@pytest.mark.parametrize("comm", ["a\nb", "x\n", "\n", "a)\nb (c"])
def test_a_comm_with_a_newline_does_not_hide_its_kill(comm):
    text = fixture_text("kmsg", "v1-6.18-anon.kmsg").replace("(python3)", "(" + _kmsg_escape(comm) + ")").replace(
        "task=python3", "task=" + _kmsg_escape(comm))
    (rep,) = parse_reports(text)
    assert (rep.killed.pid, rep.killed.comm, rep.has_header) == (2161, comm, True)
    assert rep.summary.task == comm and rep.summary.oom_memcg == "/oomscope-fixture-965"


def test_a_comm_with_a_newline_in_a_dmesg_log_does_not_hide_its_kill(tmp_path):
    text = fixture_text("logs", "dmesg-v1-6.18.txt").replace("Killed process 27307 (python)", "Killed process 27307 (a\n               b)")
    p = tmp_path / "dmesg.txt"
    p.write_text(text)
    (imp,) = import_reports(open_log(str(p)), year=2026)
    assert imp.capture.victim.pid == 27307 and imp.capture.victim.comm == "a\nb"


def test_a_cgroup_path_at_the_end_of_a_pre_4_19_line_forges_no_kill():
    lines = ["4,1,100,-;java invoked oom-killer: gfp_mask=0x24000c0, order=0, oom_score_adj=0",
             "6,2,101,-;Task in /x killed as a result of limit of /y: " + KILLED_EVIL,
             "3,3,102,-;Memory cgroup out of memory: Killed process 42 (java) total-vm:10kB, anon-rss:5kB, file-rss:0kB"]
    reps = parse_reports("\n".join(lines) + "\n")
    assert [r.killed.pid for r in reps] == [42]
    assert reps[0].summary.oom_memcg == "/y: " + KILLED_EVIL


def test_the_hosts_log_is_not_unescaped_twice(monkeypatch):
    # a comm holding the four characters \x0a (kmsg gives them as \x5cx0a) and a real newline
    from oomscope.importer import sources as importer
    from oomscope.kernel.kmsg import KmsgRecord

    text = "Memory cgroup out of memory: Killed process 7 (a\\x0a" + KILLED_EVIL + "\\x0ab\x1b) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB"

    class Reader:
        def __init__(self, from_end=False):
            self.batches = [[KmsgRecord(3, 0, 1, 1000, text)], []]

        def read_available(self):
            return self.batches.pop(0)

        def close(self):
            """A fake reader holds nothing to close."""

    monkeypatch.setattr(importer, "KmsgReader", Reader)
    lines, name = importer.host_log()
    (imp,) = import_reports(lines, boot_wall=0.0)
    assert name == "/dev/kmsg" and imp.capture.victim.pid == 7
    assert imp.capture.victim.comm == "a\\x0a" + KILLED_EVIL + "\\x0ab\x1b"


# --- issue 24: a ticket pasted from -f md / -f jira must not notify people or link anywhere ------

_MENTION = re.compile(r"@\w")  # GitHub, GitLab, Jira Cloud: @name
_LINK = re.compile(r"(?i)://|\bwww\.|\b(?:mailto|xmpp|file|tel|javascript):")


@pytest.mark.parametrize("fmt", ["md", "jira"])
def test_a_ticket_has_no_mention_and_no_link_from_a_workloads_names(fmt):
    from oomscope.report.formats import render_jira, render_markdown

    from .helpers import capture_from_fixture

    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    cap.victim.comm = "@oncall"
    cap.cgroup.oom_memcg = cap.cgroup.task_memcg = "/http://evil.example/x"
    for p in cap.tasks[:3]:
        p.comm = "mailto:a@b.example"
    cap.host.hostname = "www.evil.example"
    out = (render_markdown if fmt == "md" else render_jira)(cap, html_path="/var/lib/oomscope/kills/k/postmortem.html")
    assert "oncall" in out and "evil.example/x" in out and "www" in out  # still there to read
    assert not _MENTION.search(out), _MENTION.search(out)
    assert not _LINK.search(out), _LINK.search(out)
    assert "[~" not in out.replace("\\[\\~", "")  # a Jira user link stays escaped
