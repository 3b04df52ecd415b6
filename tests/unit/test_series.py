"""Series of kills (issue 29): one workload killed again within the window is one series; the
index groups by series; a series page compares its kills; report -f json and `oomscope series`
say each kill's series; import renders per series."""

import copy
import datetime as dt
import io
import json
import os

from typer.testing import CliRunner

from oomscope.analysis.result import analyse_kill
from oomscope.cli import app
from oomscope.model import Capture, Timeline, TimelinePoint
from oomscope.postmortem.index import OutputIndex
from oomscope.postmortem.series import SeriesKill, build_series
from oomscope.postmortem.stage import InProcess, PostMortems
from oomscope.postmortem.worker import render_series
from oomscope.capture.writer import write_capture
from oomscope.report.render import render_html

from .helpers import WALL, capture_from_fixture

runner = CliRunner()
MIB = 1 << 20


def _k(folder, key, t, clock="wall", host="h"):
    return SeriesKill(folder=folder, kill_id=folder, key=key, workload=key, host=host, clock=clock, t=t, when=str(t))


def test_kills_within_the_window_are_one_series_and_a_gap_starts_another():
    ks = [_k("a1", "unit a", 0), _k("a2", "unit a", 600), _k("a3", "unit a", 1200), _k("a4", "unit a", 1200 + 7200),
          _k("b1", "unit b", 100), _k("u", "unit a", None)]
    series = build_series(ks, window_s=3600)
    by_id = {s.id: [k.folder for k in s.kills] for s in series}
    assert by_id == {"a1": ["a1", "a2", "a3"], "a4": ["a4"], "b1": ["b1"], "u": ["u"]}
    assert series[0].id == "a4", "newest last kill first"
    # another host, or a boot-relative clock, is never the same series
    assert len(build_series([_k("x", "unit a", 0), _k("y", "unit a", 10, host="other")])) == 2
    assert len(build_series([_k("x", "unit a", 0), _k("y", "unit a", 10, clock="boot")])) == 2


def _leaking_kills(n=5, limits=None, gap_s=300.0):
    """n captures of one restarted workload: each life leaks from ~5 MiB to the limit in ~240 s."""
    base, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    caps = []
    for i in range(n):
        c = copy.deepcopy(base)
        when = WALL + dt.timedelta(seconds=i * gap_s)
        c.times.kill_wall = when.isoformat(timespec="milliseconds")
        c.kill_id = when.strftime("%Y%m%dT%H%M%S.000Z") + f"-pid{1000 + i}"
        c.victim.pid = 1000 + i
        limit = (limits[i] if limits else 64) * MIB
        c.at_kill.limit_bytes = limit
        c.at_kill.usage_bytes = limit
        c.timelines = [Timeline(cgroup=c.cgroup.oom_memcg or "/x", points=[
            TimelinePoint(t_ms=-t * 1000.0, usage_bytes=int(limit - t * (limit - 5 * MIB) / 240), limit_bytes=limit)
            for t in range(240, -1, -10)])]
        caps.append(c)
    return caps


def _finisher(out):
    index = OutputIndex(str(out))
    post = PostMortems(str(out), render_html, analyse_kill, index, io.StringIO(), render_series=render_series)
    return InProcess(post), index


def test_record_flow_gives_each_kill_its_series_and_writes_the_series_page(tmp_path):
    fin, index = _finisher(tmp_path)
    infos = []
    for c in _leaking_kills(5):
        path = write_capture(str(tmp_path), c)
        fin.kill(path, c)
        infos += [d.series for d in fin.results()]
    fin.close()
    assert [i["kill_number"] for i in infos] == [1, 2, 3, 4, 5]
    assert [i["kills_so_far"] for i in infos] == [1, 2, 3, 4, 5]
    assert len({i["id"] for i in infos}) == 1 and infos[0]["workload"].startswith("cgroup /")
    page = (tmp_path / "series" / f"{infos[0]['id']}.html").read_text()
    assert "5 OOM kills of" in page and "A leak that restarts" in page and "Fix the leak, not the limit" in page
    assert "<script" not in page and "<polyline" in page and page.count("<polyline") == 5
    assert page.count('href="../') >= 5 and "postmortem.html" in page
    idx = (tmp_path / "index.html").read_text()
    assert "series of 5 kills" in idx and f"series/{infos[0]['id']}.html" in idx
    # report -f json of any kill says its series; `series DIR -f json` lists it with its kills
    third = sorted(tmp_path.glob("*/capture.json"))[2]
    r = runner.invoke(app, ["report", "-f", "json", str(third)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["series"] == {"id": infos[0]["id"], "kill_number": 3, "kills_so_far": 5,
                                              "workload": infos[0]["workload"]}
    r = runner.invoke(app, ["series", str(tmp_path), "-f", "json"])
    assert r.exit_code == 0, r.output
    (s,) = json.loads(r.output)["series"]
    assert s["kills"] == 5 and [k["kill_number"] for k in s["kill_list"]] == [1, 2, 3, 4, 5]
    r = runner.invoke(app, ["series", str(tmp_path)])
    assert r.exit_code == 0 and "5 kills" in r.output


def test_a_kill_outside_an_output_folder_has_no_series(tmp_path):
    c = _leaking_kills(1)[0]
    p = tmp_path / "capture.json"
    p.write_text(c.to_json())
    r = runner.invoke(app, ["report", "-f", "json", str(p)])
    assert r.exit_code == 0 and json.loads(r.output)["series"] is None


def test_a_raised_limit_and_the_lives_are_compared(tmp_path):
    fin, index = _finisher(tmp_path)
    for c in _leaking_kills(4, limits=[64, 64, 128, 128]):
        fin.kill(write_capture(str(tmp_path), c), c)
    fin.close()
    (s,) = [x for x in index.series.series() if len(x.kills) > 1]
    page = (tmp_path / "series" / f"{s.id}.html").read_text()
    assert "The limit was raised from 64.0 MiB to 128.0 MiB between kill 2 and kill 3, and the kills went on." in page
    assert "The limit was already raised during this series" in page
    assert "Each life (restart to kill) lasted 4.0 min." in page and "A kill every 5.0 min." in page


def test_hostile_names_are_escaped_on_the_series_page(tmp_path):
    fin, index = _finisher(tmp_path)
    for c in _leaking_kills(2):
        c.cgroup.oom_memcg = c.cgroup.task_memcg = "/evil<script>alert(1)</script>\u202e"
        c.victim.comm = "<img src=x onerror=alert(1)>"
        fin.kill(write_capture(str(tmp_path), c), c)
    fin.close()
    (page,) = list((tmp_path / "series").glob("*.html"))
    text = page.read_text()
    assert "<script>" not in text and "<img" not in text and "\u202e" not in text
    assert "&lt;script&gt;" in text
    assert "<script>" not in (tmp_path / "index.html").read_text()


def test_a_storm_log_imports_every_capture_and_renders_per_series(tmp_path):
    from .helpers import dmesg_storm

    log = tmp_path / "storm.log"
    log.write_text(dmesg_storm(30, 0))
    out = tmp_path / "out"
    r = runner.invoke(app, ["import", str(log), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*/capture.json"))) == 60
    assert len(list(out.glob("*/postmortem.html"))) == 4, "each series' first and last kill"
    assert len(list((out / "series").glob("*.html"))) == 2
    idx = (out / "index.html").read_text()
    assert "series of 30 kills" in idx and "/capture.json" in idx
    data = json.loads((out / "series.json").read_text())
    assert data["window_s"] == 3600 and sorted(s["kills"] for s in data["series"]) == [30, 30]
    # any capture is rendered later, on demand
    cap = next(p for p in out.glob("*/capture.json") if not (p.parent / "postmortem.html").exists())
    assert runner.invoke(app, ["report", str(cap)]).exit_code == 0 and (cap.parent / "postmortem.html").exists()
    # a window of 0 s: every kill stands alone
    r = runner.invoke(app, ["series", str(out), "--window", "0", "-f", "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["series"]) == 60


def test_index_without_series_kills_still_lists_each_kill(tmp_path):
    fin, index = _finisher(tmp_path)
    c = _leaking_kills(1)[0]
    fin.kill(write_capture(str(tmp_path), c), c)
    fin.close()
    idx = (tmp_path / "index.html").read_text()
    assert "series of" not in idx and "postmortem.html" in idx


def test_records_line_names_the_series_and_the_metrics_count_series_apart_from_kills():
    from oomscope.metrics import Metrics
    from oomscope.record.announce import Announcer
    from oomscope.record.outputs import Written

    out = io.StringIO()
    metrics = Metrics()
    ann = Announcer(out, io.StringIO(), metrics=metrics)
    caps = _leaking_kills(3)
    for n, c in enumerate(caps, 1):
        ann.kill(c, Written(f"/o/{n}/capture.json", f"/o/{n}/postmortem.html"), "anon", "anonymous 99%",
                 {"id": "S1", "kill_number": n, "kills_so_far": n, "workload": "w"})
    lines = out.getvalue().splitlines()
    assert "series=S1 series_kill=1" in lines[0] and "series=S1 series_kill=3" in lines[2]
    value = metrics.registry.get_sample_value
    assert value("oomscope_oom_kill_series_total") == 1 and value("oomscope_captures_written_total") == 3
    ann = Announcer(out, io.StringIO(), log_format="json")
    ann.kill(caps[0], Written("/o/c.json"), "anon", "x", {"id": "S1", "kill_number": 1, "kills_so_far": 1, "workload": "w"})
    assert json.loads(out.getvalue().splitlines()[-1])["series"]["id"] == "S1"


def test_a_series_whose_kills_are_removed_loses_its_page(tmp_path):
    fin, index = _finisher(tmp_path)
    paths = []
    for c in _leaking_kills(3):
        paths.append(write_capture(str(tmp_path), c))
        fin.kill(paths[-1], c)
    fin.close()
    (old,) = list((tmp_path / "series").glob("*.html"))
    (tmp_path / "series" / "notes.txt").write_text("not ours to remove")
    fin.remove(os.path.basename(os.path.dirname(paths[0])))  # --keep took the first kill: the series is renamed
    fin.close()
    pages = [p.name for p in (tmp_path / "series").iterdir()]
    assert old.name not in pages and len(pages) == 2 and "notes.txt" in pages


def test_a_restarted_leaks_life_starts_at_its_trough_not_at_a_reading_of_the_freeing():
    """CI's 2026-12-07 run of tests/system/test_series.py: the sampler read the cgroup while the
    first victim was being freed (anonymous 60.4 -> 29.1 MiB, then 17.2 as the restarted process
    began), and the second kill's trend, fitted from 29.1 down and up again, read as a plateau."""
    from oomscope.analysis.advice import trend_of

    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "lives", "crashloop-second-kill-v1-6.18.json")
    with open(path) as f:
        c = Capture.from_json(f.read())
    t = trend_of(c)
    assert t.kind == "leak", t.text
    assert 14 <= t.minutes * 60 <= 15.5 and t.r2 >= 0.95, t.text  # from -14.7 s (17.2 MiB) to the kill


def test_a_restarted_leaks_trend_is_its_own_lifes_not_the_saw_tooth():
    from oomscope.analysis.advice import trend_of

    c = _leaking_kills(1)[0]
    pts = []
    for life_start in (-60, -30):  # two lives of 29 s, the first killed at -31 s
        for s in range(0, 30):
            pts.append(TimelinePoint(t_ms=(life_start + s) * 1000.0, anon_bytes=(2 + 2 * s) * MIB, usage_bytes=(2 + 2 * s) * MIB))
    c.timelines = [Timeline(cgroup="/x", points=pts)]
    t = trend_of(c)
    assert t.kind == "leak" and 28 <= t.minutes * 60 <= 30, t.text
