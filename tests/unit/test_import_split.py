"""A large log read in two processes (importer/split.py) gives what the log read at one go gives:
the same captures, the same lines said, the same series, wherever it is cut, including a yearless
syslog whose year comes from a line of the first part, undated lines (the made-up clock and the
record count go on from the first part), a memory.oom.group kill, rate-limited kills, and a cut
where no header begins (the worker refuses, this process reads on) or a worker that dies."""

import io
import json
import os

import pytest

from oomscope.importer import run, split
from oomscope.importer.sources import map_log
from oomscope.model import Capture

from ..conftest import fixture_text


def _noise(n: int, start: int) -> str:
    return "".join(f"[{1000 + i / 1000:12.6f}] eth0: link up, an ordinary message {i}\n" for i in range(start, start + n))


def mixed_log() -> str:
    """Reports in several shapes one after another, ordinary lines between them: an RFC 3339
    syslog (a date with its year) before a classic syslog without one (its year from that line),
    a dmesg -t log (no clock: the made-up clock and the record count carry on), group kills (a
    /dev/kmsg dump and caller ids), a storm of rate-limited kills, a 3.10 syslog whose "or
    sacrifice child" lines outlive a header (the worker then reads the whole first part)."""
    parts = [
        fixture_text("logs", "syslog-iso-v2-6.1.txt"),
        fixture_text("logs", "kern.log-v2-6.1.txt"),
        fixture_text("logs", "dmesg-t-undated-v1-6.18.txt"),
        fixture_text("kmsg", "v2-6.1-group.kmsg"),
        fixture_text("logs", "group-kill-caller-id-5.0.txt"),
        fixture_text("kmsg", "v1-6.18-storm.kmsg"),
        fixture_text("logs", "dmesg-v1-6.18.txt"),
        fixture_text("logs", "rhel7-3.10-syslog.txt"),  # pre-4.19: "... or sacrifice child" before each Killed line
        # a pre-4.19 line whose Killed line is not one the parser reads: it outlives the next header
        "[ 2000.000001] Memory cgroup out of memory: Kill process 77 (x) score 9 or sacrifice child\n"
        "[ 2000.000002] Killed process (cut)\n"
        "[ 2000.000003] x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
        "[ 2000.000004] Killed process (cut again)\n",
        fixture_text("logs", "dmesg-v1-6.18.txt").replace("[13321.", "[23321."),  # (not the same kill id again)
    ]
    return "".join(_noise(50, 100 * i) + p + ("" if p.endswith("\n") else "\n") for i, p in enumerate(parts)) + _noise(50, 900)


def _write_log(tmp_path) -> str:
    log = str(tmp_path / "mixed.log")
    with open(log, "w") as f:
        f.write(mixed_log())
    os.utime(log, (1795000000, 1795000000))  # the year of yearless dates nothing else dates: fixed
    return log


def _imported(log: str, out: str):
    o, e = io.StringIO(), io.StringIO()
    run.run_import([log], False, None, out, lambda *a, **k: "<html></html>", o, e)
    caps = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name, "capture.json")
        if os.path.isfile(path):
            with open(path) as f:
                d = Capture.from_dict(json.load(f)).to_dict()
            d["times"].pop("captured_wall", None)
            caps[name] = d
    with open(os.path.join(out, "series.json")) as f:
        series = json.load(f)
    return caps, o.getvalue().replace(out, "OUT"), e.getvalue().replace(out, "OUT"), series


@pytest.fixture
def forced(monkeypatch):
    """Split at the region given (None: not split), whatever the log's size."""
    at = {"k": None}
    monkeypatch.setattr(run, "split_point", lambda buf, regions: at["k"])
    monkeypatch.setattr(split, "can_fork", lambda: True)
    return at


def test_a_log_cut_at_any_region_imports_as_at_one_go(tmp_path, forced):
    log = _write_log(tmp_path)
    whole = _imported(log, str(tmp_path / "whole"))
    caps = whole[0]
    assert len(caps) > 100
    assert any(c["incident"] and len(c["incident"].get("victims") or []) > 1 for c in caps.values()), "a group kill"
    assert any(c["kill_id"].startswith("undated-line") for c in caps.values()), "undated lines"
    assert any(c["kill_id"].startswith("2026") and any("taken from the line before them" in n for n in c["notes"])
               for c in caps.values()), "a yearless date given its year by a line before it"
    with map_log(log) as mapped:
        n = len(mapped.regions)
        headers = [k for k in range(1, n) if split.starts_a_report(mapped.buf, *mapped.regions[k])]
    assert len(headers) >= 10
    cuts = sorted(set(headers) | set(range(1, n, max(1, n // 12))))  # every header, and cuts where none begins
    for k in cuts:
        forced["k"] = k
        got = _imported(log, str(tmp_path / f"cut{k}"))
        assert got[0] == caps, k
        assert got[1] == whole[1], k
        assert got[2].replace(" 1 kill(s)", "") == whole[2].replace(" 1 kill(s)", ""), k
        assert got[3] == whole[3], k


def test_the_worker_refuses_a_cut_where_no_header_begins(tmp_path, forced, monkeypatch):
    log = _write_log(tmp_path)
    whole = _imported(log, str(tmp_path / "whole"))
    with map_log(log) as mapped:
        k = next(k for k in range(1, len(mapped.regions)) if not split.starts_a_report(mapped.buf, *mapped.regions[k]))
    said = []
    real = split.Worker.verdict
    monkeypatch.setattr(split.Worker, "verdict", lambda self: said.append(real(self)) or said[-1])
    forced["k"] = k
    got = _imported(log, str(tmp_path / "cut"))
    assert said == [False]
    assert got[0] == whole[0] and got[1] == whole[1] and got[3] == whole[3]


def test_a_worker_that_dies_keeps_what_it_wrote_and_the_rest_is_read_here(tmp_path, forced, monkeypatch):
    log = _write_log(tmp_path)
    whole = _imported(log, str(tmp_path / "whole"))
    with map_log(log) as mapped:
        forced["k"] = next(k for k in range(1, len(mapped.regions)) if split.starts_a_report(mapped.buf, *mapped.regions[k]))
    calls = []
    real = split.index_parts

    def dies(cap):  # in the worker: its third batch is never written
        calls.append(1)
        if len(calls) > 20:
            os._exit(3)
        return real(cap)

    monkeypatch.setattr(split, "index_parts", dies)
    monkeypatch.setattr(split, "_BATCH_KILLS", 8)
    out = str(tmp_path / "cut")
    got = _imported(log, out)
    assert got[0] == whole[0] and got[1] == whole[1] and got[3] == whole[3]
    assert "the second reading process ended early; its 16 kill(s) are kept" in got[2]


def test_only_a_large_log_is_cut_and_at_a_header(tmp_path):
    log = _write_log(tmp_path)
    with map_log(log) as mapped:
        assert split.split_point(mapped.buf, mapped.regions) is None  # ~100 kB of reports: one process
        k = split.split_point(mapped.buf, mapped.regions, min_bytes=0)
        assert k is not None and split.starts_a_report(mapped.buf, *mapped.regions[k])
        total = sum(e - s for s, e in mapped.regions)
        assert sum(e - s for s, e in mapped.regions[:k]) >= split.SPLIT_SHARE * total
    data = b"x" * 10 + b"\n  indented invoked oom-killer: gfp_mask=0x0\n"
    assert not split.starts_a_report(data, 10, len(data))  # a continuation line is not where a part begins


def test_one_line_json_is_the_text_to_dict_gives(tmp_path):
    """Capture.to_json(None) encodes the dataclasses themselves (model._json_fields): the same text
    as json.dumps of to_dict, for every capture of the mixed log (a group kill's incident, tasks,
    memory.stat, notes, enums), and for one whose dataclass holds an attribute that is not a field."""
    from oomscope.importer import import_reports

    imps = import_reports(mixed_log().splitlines())
    assert len(imps) > 100
    for imp in imps:  # orjson's text (tests/unit/test_capture_json_line.py): json's value
        assert json.loads(imp.capture.to_json(None, fast=True)) == json.loads(json.dumps(imp.capture.to_dict(), ensure_ascii=False))
    cap = imps[0].capture
    cap.victim.extra = "not a field"  # noqa: B010 (what to_dict leaves out)
    assert json.loads(cap.to_json(None, fast=True)) == json.loads(json.dumps(cap.to_dict(), ensure_ascii=False))
    assert "not a field" not in cap.to_json(None, fast=True)


def test_the_state_at_a_cut_is_the_state_of_the_whole_first_part_read(tmp_path):
    """split.state_at skims the regions before the last header for the reader's state alone: the
    same reader state, kept lines and parser state as reading all of them, at every header."""
    from oomscope.importer.kills import KillReader

    log = _write_log(tmp_path)
    args = dict(not_after=1795000000.0, dated_by=lambda: None)

    def state(r):
        p = r.parser
        return (r.lines.synthetic, r.lines.seq, r.lines.years.hint, sorted(r.walls), r.elsewhere,
                p._cur is None, p._mode, p._last_group, p._sacrifice, p._last_done is None)

    skimmed = 0
    with map_log(log) as mapped:
        for k in range(1, len(mapped.regions)):
            if not split.starts_a_report(mapped.buf, *mapped.regions[k]):
                continue
            whole = KillReader(**args)
            list(whole.read(mapped.lines(0, k), capture=False))  # the whole first part read, its kills dropped
            got = split.state_at(mapped, k, args)
            assert state(got) == state(whole), k
            skimmed += got.parser.headers < whole.parser.headers
    assert skimmed >= 5  # the skim was taken (the parser read less than the whole first part)


def test_a_fifo_is_not_opened_to_be_mapped(tmp_path):
    """map_log leaves what is not a regular file to open_log (a FIFO's bytes are read once: opening
    it here would block for a writer, and reading its magic bytes would take them from the log)."""
    import threading

    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    got = []
    t = threading.Thread(target=lambda: got.append(map_log(fifo)), daemon=True)
    t.start()
    t.join(5)
    assert got == [None]
    assert map_log(str(tmp_path / "missing.log")) is None  # open_log says it cannot be read


def test_the_end_is_made_ready_while_the_worker_still_reads(tmp_path, forced, monkeypatch):
    """This process done with its part before the worker: the end's modules and templates are
    loaded while it waits (importer/run.py warm_pages), and what is written is the same."""
    import time

    log = _write_log(tmp_path)
    whole = _imported(log, str(tmp_path / "whole"))
    with map_log(log) as mapped:
        forced["k"] = next(k for k in range(1, len(mapped.regions)) if split.starts_a_report(mapped.buf, *mapped.regions[k]))
    real = split.index_parts

    def slow(cap):  # in the worker alone: it ends well after this process's part is read
        time.sleep(0.01)
        return real(cap)

    warmed = []
    monkeypatch.setattr(split, "index_parts", slow)
    monkeypatch.setattr(run, "warm_pages", lambda: warmed.append(1))
    got = _imported(log, str(tmp_path / "cut"))
    assert warmed == [1]
    assert got[0] == whole[0] and got[1] == whole[1] and got[3] == whole[3]


def test_a_worker_seen_ended_is_not_signalled(tmp_path, monkeypatch):
    """Worker.ended() reaps the worker: its pid may be another process's afterwards, so stop()
    sends it nothing (fails if stop() kills by the pid it kept)."""
    import time

    monkeypatch.setattr(split, "_work", lambda *a: None)  # the worker ends at once
    log = _write_log(tmp_path)
    with map_log(log) as mapped:
        w = split.Worker(mapped, 1, {}, str(tmp_path / "out"), None)
        deadline = time.monotonic() + 10
        while not w.ended():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        killed = []
        monkeypatch.setattr(split.os, "kill", lambda pid, sig: killed.append(pid))
        w.stop()
        assert killed == [] and w.pid == 0 and w.wait() is None


def test_one_cpu_reads_the_log_in_one_process(tmp_path, monkeypatch):
    """With one CPU to run on the log is not cut (the worker's skim would be more work for the same
    core), and it imports as on two."""
    log = _write_log(tmp_path)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 1)
    two = _imported(log, str(tmp_path / "two"))
    monkeypatch.setattr(split.os, "sched_getaffinity", lambda pid: {0})
    assert not split.can_fork()
    forks = []
    monkeypatch.setattr(split.Worker, "__init__", lambda self, *a: forks.append(1) or (_ for _ in ()).throw(OSError()))
    one = _imported(log, str(tmp_path / "one"))
    assert forks == [] and one[0] == two[0] and one[1] == two[1] and one[3] == two[3]
