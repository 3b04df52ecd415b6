"""A log read region by region (importer/kills.py read_regions: plain dmesg regions read at once,
a memcg report in its common shape parsed whole by OomReportParser.feed_block) gives what it gives
read line by line (KillReader.read): the same reports, field by field and line by line, the same
captures, the same problems, the same reader state after (record count, made-up clock, parser),
and a skim (importer/split.py) the same state. Checked on every log fixture, on kmsg fixtures
written as dmesg prints them (a multi-line record indented, and each line with its own time), on
a storm, and on reports changed at random (lines removed, doubled, swapped, replaced by lines a
report's reader reads otherwise, hostile names), each region read both ways."""

import random
import re

import pytest

from oomscope.importer.kills import KillReader, NotAHeader
from oomscope.importer.sources import map_log
from oomscope.kernel.kmsg import parse_kmsg_dump
from oomscope.kernel.logformats import plain_dmesg

from .helpers import dmesg_storm
from ..conftest import FIXTURES, fixture_text

import os


def _dmesg_of_kmsg(text: str, own_times: bool) -> str:
    out = []
    for rec in parse_kmsg_dump(text):
        stamp = f"[{rec.usec // 1_000_000:5d}.{rec.usec % 1_000_000:06d}] "
        first, *rest = rec.text.split("\n")
        out.append(stamp + first)
        out += [(stamp if own_times else " " * len(stamp)) + line for line in rest]
    return "\n".join(out) + "\n"


def _logs():
    logs = {}
    for name in sorted(os.listdir(os.path.join(FIXTURES, "logs"))):
        logs[name] = fixture_text("logs", name)
    for name in sorted(os.listdir(os.path.join(FIXTURES, "kmsg"))):
        kmsg = fixture_text("kmsg", name)
        logs[name] = kmsg
        logs[name + ".dmesg"] = _dmesg_of_kmsg(kmsg, own_times=False)
        logs[name + ".dmesg-own-times"] = _dmesg_of_kmsg(kmsg, own_times=True)
    return logs


def _read_by_regions(text: str, tmp_path, name: str):
    """The kills (importer/kills.py Imported) of a log written to tmp_path/name, read by regions
    as import reads a file."""
    path = tmp_path / name
    path.write_text(text)
    mapped = map_log(str(path))
    try:
        reader = KillReader(not_after=0.0)
        return list(reader.read_regions(mapped.texts())) + list(reader.end())
    finally:
        mapped.close()


def _plain(imp) -> dict:
    d = imp.capture.to_dict()
    d["times"].pop("captured_wall", None)
    return d


def _state(reader: KillReader):
    p = reader.parser
    return (reader.lines.seq, reader.lines.synthetic, p.headers, p._cur, p._mode, p._last_group, p._last_done, p._sacrifice,
            sorted(reader.walls), reader.kept, [(_plain(i), i.report) for i in reader.pending])


def _both(path: str, start: int = 0):
    mapped = map_log(path)
    try:
        got = []
        for how in ("lines", "regions"):
            problems = []
            reader = KillReader(problems=problems, not_after=0.0)
            if how == "lines":
                imps = list(reader.read(mapped.lines(start))) + list(reader.end())
            else:
                imps = list(reader.read_regions(mapped.texts(start))) + list(reader.end())
            got.append(([(_plain(i), i.report) for i in imps], problems, _state(reader)))
        return got
    finally:
        mapped.close()


def _same(path: str) -> int:
    by_lines, by_regions = _both(path)
    assert by_regions[0] == by_lines[0]
    assert by_regions[1:] == by_lines[1:]
    return len(by_lines[0])


@pytest.mark.parametrize("name", sorted(_logs()))
def test_every_fixture_reads_the_same_by_regions(tmp_path, name):
    path = tmp_path / "log"
    path.write_text(_logs()[name])
    _same(str(path))


def test_a_storm_reads_the_same_and_its_full_reports_are_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "storm.log"
    path.write_text(dmesg_storm(60, 30))
    from oomscope.kernel.oom_report import OomReportParser
    whole = []
    real = OomReportParser.feed_block

    def counted(self, recs):
        rep = real(self, recs)
        whole.append(rep is not None)
        return rep

    monkeypatch.setattr(OomReportParser, "feed_block", counted)
    assert _same(str(path)) == 120
    assert sum(whole) == 60  # each full report read whole (the fast path is taken, not only equal)
    # as the split's worker reads its part: the first region line by line (its header checked), the rest as above
    whole.clear()
    mapped = map_log(str(path))
    try:
        kills = list(KillReader().read_regions(mapped.texts(), first_is_header=True))
    finally:
        mapped.close()
    assert len(kills) == 118 and sum(whole) == 59  # (the last report and its kill are held for a group kill: end())


_HOSTILE = [
    "Memory cgroup out of memory: Killed process 4242 (evil) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    "x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "memory: usage 1kB, limit 2kB, failcnt 3",
    "swap: usage 1kB, limit 2kB, failcnt 3",
    "Memory cgroup stats for /other:",
    "Memory cgroup stats for /old: rss:4KB cache:8KB",
    "Tasks state (memory values in pages):",
    "[  pid  ]   uid  tgid total_vm      rss name",
    "[  77]     0    77     1     1 sleeper",
    "[ 88] x",
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a/b,task=x,pid=9,uid=0",
    "CPU: 0 PID: 3 Comm: other Not tainted 6.1.0 #1",
    "Mem-Info:",
    "Total swap = 1024kB",
    "5 pages RAM",
    "Tasks in /g are going to be killed due to memory.oom.group set",
    "oom_reaper: reaped process 9 (x), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "Task in /a killed as a result of limit of /a",
    "Memory cgroup out of memory: Kill process 9 (x) score 1 or sacrifice child",
    "Process 9 (x) is already exiting. Skip killing the task",
    "rss \u0663\u0664",
    "pgfault 12",
    "kmem: usage 1kB",
    "",
]


def _mutants(seed: int):
    rng = random.Random(seed)
    report = fixture_text("logs", "dmesg-v1-6.18.txt").rstrip("\n").split("\n")
    v2 = _dmesg_of_kmsg(fixture_text("kmsg", "v2-6.1-anon.kmsg"), own_times=True).rstrip("\n").split("\n")
    for _ in range(150):
        lines = list(rng.choice((report, v2)))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            i = rng.randrange(len(lines))
            what = rng.randrange(7)
            stamp = lines[i].split("] ", 1)[0] + "] "
            if what == 0:
                del lines[i]
            elif what == 1:
                lines.insert(i, lines[i])
            elif what == 2:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif what == 3:
                lines[i] = stamp + rng.choice(_HOSTILE)
            elif what == 4:
                lines.insert(i, stamp + rng.choice(_HOSTILE))
            elif what == 5:  # a line of another shape: an indented one, a caller id, a carriage return, an odd time
                lines.insert(i, rng.choice(("  continued", "[ T42] x", stamp + "x\r", "[1.5] short time", "[   12.123456][ C1] y",
                                            "Dec  6 10:00:00 host kernel: x", "[123456789012.000001] far")))
            else:  # a name with odd characters in the victim's or the cgroup's place
                lines[i] = re.sub(r"\(python\)|/oomscope-test-26081-c5f224-outside",
                                  lambda m: rng.choice(("(a) b)", "(x\u2028y)", "/a:b", "/Killed process 1 (x)")), lines[i])
        yield "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(4))
def test_reports_changed_at_random_read_the_same_by_regions(tmp_path, seed):
    path = tmp_path / "log"
    noise = "".join(f"[{2000 + i:5d}.000000] eth0: an ordinary message {i}\n" for i in range(5))
    path.write_text(noise.join(_mutants(seed)) + noise)
    _same(str(path))


def test_the_first_region_must_begin_with_a_header_as_read_does(tmp_path):
    path = tmp_path / "log"
    path.write_text(fixture_text("logs", "dmesg-v1-6.18.txt"))
    mapped = map_log(str(path))
    try:
        # the region of the Killed line alone, first: no header
        k = next(i for i, (s, e) in enumerate(mapped.regions) if b"invoked oom-killer" not in mapped.buf[s:e]) \
            if len(mapped.regions) > 1 else None
        for reader_call in (lambda r: r.read(mapped.lines(1), first_is_header=True),
                            lambda r: r.read_regions(mapped.texts(1), first_is_header=True)):
            with pytest.raises(NotAHeader):
                list(reader_call(KillReader()))
        assert k is None or k >= 0
    finally:
        mapped.close()


def test_plain_dmesg_takes_only_the_kernels_own_shape():
    assert plain_dmesg("[    5.000001] a\n[12345.123456] b\n") == [("    5", "000001", "a"), ("12345", "123456", "b")]
    for text in ("[    5.000001] a\n  continued\n", "[    5.000001] a\n\n[    5.000002] b\n", "[    5.000001] a\r\n",
                 "[5.000001] a\n", "[    5.0001] a\n", "[    5.000001] [ T42] a\n", "x\n", "", "[    \u0665.000001] a\n"):
        assert plain_dmesg(text) is None, text


def test_a_skim_by_regions_leaves_the_state_of_a_skim_by_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text(fixture_text("logs", "dmesg-v1-6.18.txt") + fixture_text("logs", "rhel7-3.10-syslog.txt")
                    + _dmesg_of_kmsg(fixture_text("kmsg", "v2-6.1-group.kmsg"), own_times=False))
    mapped = map_log(str(path))
    try:
        a, b = KillReader(not_after=0.0), KillReader(not_after=0.0)
        clean_a = a.skim(mapped.lines())
        clean_b = b.skim_regions(mapped.texts())
        assert (clean_a, a.lines.seq, a.lines.synthetic, sorted(a.walls), a.kept) == \
            (clean_b, b.lines.seq, b.lines.synthetic, sorted(b.walls), b.kept)
        assert clean_a is False  # the 3.10 log's "or sacrifice child" lines
    finally:
        mapped.close()
