"""oomscope import: every log shape in tests/fixtures/logs gives the captures the kernel's report says."""

import gzip
import io
import os

import pytest

from oomscope.importer import ImportProblem, import_reports, open_log
from oomscope.importer.run import parse_since
from oomscope.kernel.oom_report import parse_reports

from ..conftest import FIXTURES, fixture_text


def _imp(name, **kw):
    return import_reports(io.StringIO(fixture_text("logs", name)), **kw)


@pytest.mark.parametrize("name", ["kern.log-v2-6.1.txt", "syslog-iso-v2-6.1.txt", "journal-v2-6.1.json"])
def test_wrapped_v2_report_equals_the_kmsg_original(name):
    (want,) = parse_reports(fixture_text("kmsg", "v2-6.1-anon.kmsg"))
    (imp,) = _imp(name, year=2026)
    cap = imp.capture
    assert cap.victim.pid == want.killed.pid and cap.victim.comm == want.killed.comm
    assert cap.at_kill.memory_stat == want.memory_stat and cap.at_kill.source == "kernel_log"
    assert cap.cgroup.oom_memcg == want.summary.oom_memcg and cap.cgroup.task_memcg == want.summary.task_memcg
    assert cap.at_kill.usage_bytes == want.memory.usage_kb * 1024
    assert [t.pid for t in cap.tasks] == [t.pid for t in want.tasks]
    assert cap.cgroup.version == 2 and cap.host.hostname == "debian12"
    # dated by the log itself: boot at 2026-11-20 08:00 UTC + the printk time of the Killed line
    assert cap.times.kill_wall.startswith("2026-11-20T08:")
    assert cap.timelines == [] and any("kernel log" in n for n in cap.notes)
    assert all(s.source == "kernel_log" for s in cap.at_kill_sources.values())


@pytest.mark.parametrize("name", ["dmesg-v1-6.18.txt", "dmesg-T-v1-6.18.txt"])
def test_this_hosts_dmesg_raw_and_dated(name):
    (imp,) = _imp(name)
    cap = imp.capture
    assert cap.victim.pid == 27307 and cap.cgroup.oom_memcg == "/oomscope-test-26081-c5f224-outside"
    assert cap.at_kill.memory_stat["rss"] == 66891776 and cap.at_kill.memory_stat["total_rss"] == 66891776
    assert cap.at_kill.usage_bytes == 65536 * 1024 and cap.cgroup.version == 1
    if name.startswith("dmesg-T"):
        assert cap.times.kill_wall.startswith("2026-11-25T10:42:39")
    else:  # no dates in raw dmesg: the kill is placed after boot, and said so
        assert cap.times.kill_wall is None and cap.kill_id.startswith("boot+13321.")
        assert any("no dates" in n for n in cap.notes)


def test_pre_4_19_syslog_rhel7():
    imps = _imp("rhel7-3.10-syslog.txt", year=2020)
    assert [i.capture.victim.pid for i in imps] == [42452, 42453, 33421]
    bare, full = imps[0].capture, imps[2].capture
    assert not imps[0].report.has_header and bare.victim.anon_rss_bytes == 96 * 1024 and bare.victim.uid == 0
    assert any("rate-limited" in n for n in bare.notes)
    # the report cut at its start still gives its cgroup's stats (one-line key:NKB format)
    assert full.at_kill.memory_stat["cache"] == 4096 and full.at_kill.memory_stat["mapped_file"] == 4096
    assert [t.pid for t in full.tasks] == [33421]
    assert full.times.kill_wall.startswith("2020-08-17T06:27:51")


def test_pre_4_19_kmsg_task_in_line_and_oom_reaper():
    (imp,) = _imp("kmsg-4.x-kubepods.txt")
    cap = imp.capture
    pod = "/kubepods.slice/kubepods-pod9eb0e64e_6e1a_43e4_b372_2603a3cc2941.slice"
    assert cap.victim.pid == 2292670 and cap.victim.comm == "main"
    assert cap.cgroup.oom_memcg == pod
    assert cap.cgroup.task_memcg.startswith(pod + "/docker-663f")
    # the pod's own line is all zeros: the subtree's charge is the sum of its cgroups' local lines
    assert cap.at_kill.usage_bytes == 20480 * 1024 and cap.at_kill.memory_stat["rss"] == 19800 * 1024
    assert {t.pid for t in cap.tasks} == {2276312, 2292670}
    # no Killed line: the victim's RSS and oom_score_adj come from its row of the tasks table
    assert cap.victim.rss_bytes == 5602 * 4096 and cap.victim.oom_score_adj == -997
    assert not any("only the 'Killed process' line" in n.lower() for n in cap.notes)


def test_storm_kmsg_gives_one_capture_per_killed_line():
    text = fixture_text("kmsg", "v1-6.18-storm.kmsg")
    imps = import_reports(io.StringIO(text))
    assert len(imps) == text.count("Killed process")
    assert sum(i.report.has_header for i in imps) == text.count("invoked oom-killer")


def test_gzip_file_by_magic_and_truncated_gz(tmp_path):
    raw = fixture_text("logs", "kern.log-v2-6.1.txt").encode()
    gz = tmp_path / "kern.log.2.gz"
    gz.write_bytes(gzip.compress(raw))
    assert len(import_reports(open_log(str(gz)), year=2026)) == 1
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    list(open_log(str(cut)))  # a truncated .gz: what was read is kept, no exception


def test_truncated_report_at_the_end_is_not_a_kill():
    text = fixture_text("logs", "dmesg-v1-6.18.txt")
    assert import_reports(io.StringIO(text[: text.index("Tasks state")])) == []


def test_missing_file_and_bad_since_are_one_line_errors(tmp_path):
    with pytest.raises(ImportProblem, match="cannot read"):
        list(open_log(str(tmp_path / "nope.log")))
    with pytest.raises(ImportProblem, match="--since"):
        parse_since("yesterday-ish")
    assert parse_since("2026-11-25") == 1795564800.0


def test_since_filters_by_kill_date():
    assert _imp("kern.log-v2-6.1.txt", year=2026, since=parse_since("2026-11-21")) == []
    assert len(_imp("kern.log-v2-6.1.txt", year=2026, since=parse_since("2026-11-19"))) == 1


def test_the_mmap_scan_finds_what_a_full_read_finds(tmp_path):
    """The fast path (kernel/logscan.py) against every line through the parsers, on every
    fixture with ordinary messages between the reports; and a stream split in tiny blocks."""
    from oomscope.importer.sources import _scan_stream

    noise = "".join(f"[{i}.000001] eth0: link up, some ordinary message {i}\n" for i in range(50))
    for name in sorted(os.listdir(os.path.join(FIXTURES, "logs"))) + ["../kmsg/v1-6.18-storm.kmsg"]:
        text = fixture_text("logs", name)
        mixed = noise + text + noise + text
        p = tmp_path / "mixed.log"
        p.write_text(mixed)

        def key(imps):
            return [(i.capture.victim.pid, i.report.has_header, sorted(i.capture.at_kill.memory_stat.items())) for i in imps]

        want = key(import_reports(io.StringIO(mixed), year=2026))
        assert key(import_reports(open_log(str(p)), year=2026)) == want, name
        small = list(_scan_stream(io.BytesIO(mixed.encode()), "test", block=997))
        assert key(import_reports(iter(small), year=2026)) == want, name


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(FIXTURES, "logs"))))
def test_capture_to_dict_is_asdict(name):
    """Capture.to_dict is a faster dataclasses.asdict (issue 18): the same dict for every kill."""
    import dataclasses

    for imp in _imp(name):
        assert imp.capture.to_dict() == dataclasses.asdict(imp.capture)


def test_gz_members_padding_and_damage(tmp_path):
    """The .gz reader (zlib in large blocks, issue 18): several members read one after another,
    zero padding after the last ignored, damaged data a warning with what was read kept."""
    raw = fixture_text("logs", "kern.log-v2-6.1.txt").encode()
    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(raw) + gzip.compress(raw.replace(b"Killed process 257", b"Killed process 258")) + b"\0" * 512)
    assert [i.capture.victim.pid for i in import_reports(open_log(str(two)), year=2026)] == [257, 258]
    bad = tmp_path / "bad.gz"
    data = bytearray(gzip.compress(raw * 50))
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(data))
    list(open_log(str(bad)))  # no exception: a warning, and what was read before the damage
