"""An imported kill's capture made the fast way (capture/assemble.py capture_from_report, taken by
importer/kills.py when ``bounded`` shows the report's numbers below 2**63) is the capture the
general way makes (assemble with its absurd-number walk): field by field and as the same JSON text,
with the same problems said. Checked on every log fixture (and the kmsg fixtures written as dmesg
prints them), on a storm, on reports changed at random, and on reports whose numbers are set at,
just below and far beyond the bound; and ``bounded`` reads every number field the report's
dataclasses have (a new one would otherwise escape the walk)."""

import dataclasses
import json
import random
import re
import typing

import pytest

from oomscope.importer import kills
from oomscope.importer.kills import KillReader
from oomscope.importer.sources import map_log
from oomscope.kernel import oom_report

from .helpers import dmesg_storm
from ..conftest import fixture_text
from .test_import_regions import _logs, _mutants


def _text(imp) -> str:
    d = json.loads(imp.capture.to_json(None))
    d["times"].pop("captured_wall")
    return json.dumps(d)


def _read(path: str, fast: bool, monkeypatch, regions: bool = True):
    monkeypatch.setattr(kills, "FAST", fast)
    taken = []
    real = kills.capture_from_report

    def counted(*a, **k):
        taken.append(1)
        return real(*a, **k)

    monkeypatch.setattr(kills, "capture_from_report", counted)
    mapped = map_log(path)
    try:
        problems = []
        reader = KillReader(problems=problems, not_after=0.0)
        src = reader.read_regions(mapped.texts()) if regions else reader.read(mapped.lines())
        imps = list(src) + list(reader.end())
    finally:
        mapped.close()
    assert fast or not taken
    return imps, problems, len(taken)


def _same(path: str, monkeypatch) -> int:
    fast, fast_problems, taken = _read(path, True, monkeypatch)
    slow, slow_problems, _ = _read(path, False, monkeypatch)
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        da, db = a.capture.to_dict(), b.capture.to_dict()
        da["times"].pop("captured_wall"), db["times"].pop("captured_wall")
        assert da == db  # field by field
        assert _text(a) == _text(b)  # and the JSON written, in its order
    assert fast_problems == slow_problems
    return taken


@pytest.mark.parametrize("name", sorted(_logs()))
def test_every_fixture_gives_the_same_captures_the_fast_way(tmp_path, monkeypatch, name):
    path = tmp_path / "log"
    path.write_text(_logs()[name])
    _same(str(path), monkeypatch)


def test_the_fixtures_take_the_fast_way(tmp_path, monkeypatch):
    """Not only equal: most of the fixtures' kills are made the fast way (a member of a group kill,
    and any kill with a number beyond the bound, the general way)."""
    taken = total = 0
    for _name, text in sorted(_logs().items()):
        path = tmp_path / "log"
        path.write_text(text)
        imps, _, n = _read(str(path), True, monkeypatch)
        taken, total = taken + n, total + len(imps)
    assert total > 50 and taken >= total * 0.6, (taken, total)


def test_a_storm_gives_the_same_captures_the_fast_way(tmp_path, monkeypatch):
    path = tmp_path / "storm.log"
    path.write_text(dmesg_storm(40, 10))
    assert _same(str(path), monkeypatch) == 80  # every kill the fast way


@pytest.mark.parametrize("seed", range(3))
def test_reports_changed_at_random_give_the_same_captures(tmp_path, monkeypatch, seed):
    path = tmp_path / "log"
    noise = "".join(f"[{2000 + i:5d}.000000] eth0: an ordinary message {i}\n" for i in range(5))
    path.write_text(noise.join(_mutants(seed + 10)) + noise)
    _same(str(path), monkeypatch)


#: at the bound and around it, and far beyond model.ABSURD (2**80)
_NUMBERS = (str(2 ** 63 - 1), str(2 ** 63), str(2 ** 64), str(2 ** 80 // 1024), str(2 ** 80), "9" * 30, "0")


@pytest.mark.parametrize("fixture", ["dmesg-v1-6.18.txt", "kern.log-v2-6.1.txt", "rhel7-3.10-syslog.txt"])
def test_numbers_at_and_beyond_the_bound_give_the_same_captures(tmp_path, monkeypatch, fixture):
    """Each number of each report line set, one at a time, at, below and beyond 2**63 and 2**80
    (with the others as they were): a report below the bound is made the fast way and equals the
    walked capture; one above is walked."""
    rng = random.Random(fixture)
    lines = fixture_text("logs", fixture).rstrip("\n").split("\n")
    out = []
    for i, line in enumerate(lines):
        head, sep, rest = line.partition("] ")
        head, sep, rest = (head, sep, rest) if sep else ("", "", line)
        for m in re.finditer(r"\d+", rest):
            for number in (rng.choice(_NUMBERS[:4]), rng.choice(_NUMBERS[4:])):
                changed = head + sep + rest[:m.start()] + number + rest[m.end():]
                out.append("\n".join(lines[:i] + [changed] + lines[i + 1:]) + "\n")
    rng.shuffle(out)
    path = tmp_path / "log"
    path.write_text("".join(out[:1500]))
    taken = _same(str(path), monkeypatch)
    assert taken > 0


def _int_fields(cls) -> set:
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, typing.Optional[int])}


def test_bounded_reads_every_number_field_of_a_report():
    assert _int_fields(oom_report.OomReport) == set(kills.REPORT_INTS)
    assert _int_fields(oom_report.CounterLine) == set(kills.COUNTER_INTS)
    assert _int_fields(oom_report.KilledProcess) == set(kills.KILLED_INTS)
    assert _int_fields(oom_report.OomSummary) == set(kills.SUMMARY_INTS)
    assert _int_fields(oom_report.TaskRow) == {"pid"}  # and its values: read whole by bounded
    # the report's containers of numbers, each read whole by bounded; the others hold text
    hints = typing.get_type_hints(oom_report.OomReport)
    containers = {f.name for f in dataclasses.fields(oom_report.OomReport)
                  if typing.get_origin(hints[f.name]) in (dict, list)}
    assert containers == {"memory_stat", "mem_info", "tasks", "task_columns", "lines"}
    assert typing.get_args(hints["task_columns"]) == (str,) and typing.get_args(hints["lines"]) == (str,)


def test_bounded_refuses_a_number_at_the_bound_or_not_an_int():
    rep = oom_report.OomReport(memory=oom_report.CounterLine(1, 2, 3), memory_stat={"anon": 5},
                               tasks=[oom_report.TaskRow(1, "x", {"rss": 2})])
    assert kills.bounded(rep)
    for change in (lambda r: setattr(r.memory, "limit_kb", 2 ** 63), lambda r: r.memory_stat.update(anon=-(2 ** 63)),
                   lambda r: r.tasks[0].values.update(rss=2 ** 70), lambda r: setattr(r, "killed_usec", 2 ** 63),
                   lambda r: r.memory_stat.update(anon=1.0), lambda r: setattr(r, "order", True)):
        r = dataclasses.replace(rep, memory=oom_report.CounterLine(1, 2, 3), memory_stat={"anon": 5},
                                tasks=[oom_report.TaskRow(1, "x", {"rss": 2})])
        change(r)
        assert not kills.bounded(r)
