"""Import of a storm, written as the command writes it (importer/run.py: the memmem scan of
kernel/logscan.py, the writer thread, batches flushed as parsing goes on), gives for every kill the
capture the code before issue 29's speed work gave: tests/fixtures/imports/storm-gold.jsonl, one
capture a line, made from the same log by ``oomscope import`` at d65e76b (before that work).

The log: the real storm of tests/fixtures/kmsg/v1-6.18-storm.kmsg (105 kills, 10 full reports,
the rest rate-limited) twice, between ordinary messages (``storm_log`` below). To make the gold
again after a change of the capture that is meant: ``python -m tests.unit.test_import_storm_gold OUT``
from a checkout of the code that is right, and copy OUT over the gold file.
"""

import io
import json
import os
import sys

from oomscope.importer.run import run_import
from oomscope.model import Capture

from ..conftest import FIXTURES, fixture_text

GOLD = os.path.join(FIXTURES, "imports", "storm-gold.jsonl")
#: what differs between two imports of one log: which code wrote it (and times.captured_wall: when)
_VARIES = ("oomscope_version",)


def storm_log() -> str:
    noise = "".join(f"4,{i},{i * 1000},-;eth0: link up, some ordinary message {i}\n" for i in range(2000))
    storm = fixture_text("kmsg", "v1-6.18-storm.kmsg")
    return noise + storm + noise + storm.replace("Killed process ", "Killed process 1") + noise


def _captures(out_dir: str):
    caps = []
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name, "capture.json")
        if os.path.isfile(path):
            with open(path) as f:
                caps.append(json.load(f))
    return caps


def _imported(tmp_dir: str):
    log = os.path.join(tmp_dir, "storm.kmsg")
    with open(log, "w") as f:
        f.write(storm_log())
    out = os.path.join(tmp_dir, "out")
    run_import([log], False, None, out, lambda *a, **k: "<html></html>", io.StringIO(), io.StringIO())
    return _captures(out)


def _plain(cap: dict) -> dict:
    """A capture as the model reads it (a gold of an older schema read as today's code reads it)."""
    d = Capture.from_dict(cap).to_dict()
    for k in _VARIES + ("schema_version",):
        d.pop(k, None)
    d["times"].pop("captured_wall", None)
    return d


def test_a_storm_imports_to_the_captures_of_the_code_before(tmp_path):
    got = _imported(str(tmp_path))
    with open(GOLD) as f:
        gold = [json.loads(line) for line in f]
    assert len(got) == len(gold) == 2 * 105
    assert sorted(c["kill_id"] for c in got) == sorted(c["kill_id"] for c in gold)
    by_id = {c["kill_id"]: c for c in gold}
    for cap in got:
        assert _plain(cap) == _plain(by_id[cap["kill_id"]]), cap["kill_id"]


if __name__ == "__main__":  # the gold, from this checkout's code
    import tempfile

    with tempfile.TemporaryDirectory() as d, open(sys.argv[1], "w") as out:
        for cap in _imported(d):
            out.write(json.dumps(cap, sort_keys=True) + "\n")


def test_without_a_writer_process_a_thread_writes_the_same(tmp_path, monkeypatch):
    """Where no process can be forked for the writer (no /dev/shm for its queue, a sandbox), a
    thread writes the same captures."""
    from oomscope.importer import run

    def no_process(*a, **k):
        raise OSError("no semaphores here")

    monkeypatch.setattr(run, "ProcessPoolExecutor", no_process)
    assert isinstance(run._writer(), run.ThreadPoolExecutor)
    got = _imported(str(tmp_path))
    with open(GOLD) as f:
        gold = {c["kill_id"]: c for c in (json.loads(line) for line in f)}
    assert len(got) == len(gold) and all(_plain(c) == _plain(gold[c["kill_id"]]) for c in got)
