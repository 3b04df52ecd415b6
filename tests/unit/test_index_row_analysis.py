"""An index row's words for what the charge was mostly made of are made from what a row shows of
the attribution (analysis/attribution.py top_and_others), not the whole analysis (issue 29, eighth
pass): the same words as ``mostly(analyse(capture))`` on the capture fixtures, on every kill of the
log fixtures and of reports changed at random, and on captures whose victim, other processes and
memory.stat are changed at random (no memory.stat, no usage, no RSS, RSS without its split, other
processes holding most of the charge or none of it)."""

import copy
import os
import random

import pytest

from oomscope.analysis.attribution import analyse, top_and_others
from oomscope.model import Capture, Task
from oomscope.report.index import _mostly_words, mostly, row_for

from ..conftest import FIXTURES, fixture_text
from .test_import_regions import _logs, _mutants, _read_by_regions


def _same(cap: Capture) -> str:
    whole = mostly(analyse(cap))
    assert _mostly_words(*top_and_others(cap), cap.at_kill.usage_bytes) == whole
    assert row_for(cap).categories == whole
    return whole


def _imported(text: str, tmp_path, name: str):
    return [i.capture for i in _read_by_regions(text, tmp_path, name)]


def _fixture_captures():
    names = sorted(os.listdir(os.path.join(FIXTURES, "captures")))
    assert names
    return [Capture.from_json(fixture_text("captures", n)) for n in names]


def test_capture_fixtures():
    for cap in _fixture_captures():
        _same(cap)


@pytest.mark.parametrize("name", sorted(_logs()))
def test_every_kill_of_the_log_fixtures(tmp_path, name):
    for cap in _imported(_logs()[name], tmp_path, "log"):
        _same(cap)


def test_reports_changed_at_random(tmp_path):
    n = 0
    for seed in range(2):
        for i, text in enumerate(_mutants(seed)):
            for cap in _imported(text, tmp_path, f"m{seed}-{i}"):
                _same(cap)
                n += 1
    assert n > 150


def test_captures_changed_at_random(tmp_path):
    rng = random.Random(29)
    bases = _fixture_captures() + _imported(fixture_text("logs", "dmesg-v1-6.18.txt"), tmp_path, "d") \
        + _imported(fixture_text("logs", "kern.log-v2-6.1.txt"), tmp_path, "k")
    words = set()
    for _ in range(1500):
        cap = copy.deepcopy(rng.choice(bases))
        v, ak = cap.victim, cap.at_kill
        for attr in ("anon_rss_bytes", "file_rss_bytes", "shmem_rss_bytes", "rss_total_bytes"):
            if rng.random() < 0.3:
                setattr(v, attr, rng.choice((None, 0, 4096, 50 << 20, 200 << 20)))
        if rng.random() < 0.3:
            ak.usage_bytes = rng.choice((None, 0, 64 << 20, 256 << 20))
        if rng.random() < 0.2:
            ak.memory_stat = {}
        elif rng.random() < 0.3:
            ak.memory_stat = dict(ak.memory_stat, **{rng.choice(("anon", "rss", "total_rss", "cache", "shmem", "file")):
                                                    rng.choice((0, 1 << 20, 60 << 20, 300 << 20))})
        if rng.random() < 0.5:
            cap.tasks = [t for t in cap.tasks if t.is_victim] + [
                Task(pid=1000 + i, comm="side", anon_rss_bytes=rng.choice((None, 0, 8 << 20, 120 << 20)),
                     file_rss_bytes=rng.choice((None, 0, 1 << 20)), rss_bytes=rng.choice((None, 30 << 20)))
                for i in range(rng.randrange(0, 4))]
        words.add(_same(cap))
    assert len(words) > 3  # the changes reach different words (other processes among them)
    assert any("other processes" in w for w in words)
