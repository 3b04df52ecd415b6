import re

from oomscope.report.render import render_html

from .helpers import capture_from_fixture


def test_hostile_names_render_as_text():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    cap.victim.cmdline = '<script>alert(1)</script> --x="y"'
    html = render_html(cap)
    assert "<u>" not in html and "<i>" not in html and "<script" not in html
    assert "&lt;u&gt;p,pid=1&lt;/u&gt;" in html
    assert "/oomscope-fixture-a,oom_memcg=b&lt;i&gt;x&#39;&#34;&amp;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_self_contained():
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    html = render_html(cap)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html


def test_names_the_victim_and_the_numbers():
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    html = render_html(cap)
    assert "pid 2161 (python3)" in html and "64.0 MiB" in html and "/oomscope-fixture-965" in html


def test_json_names_the_categories():
    import json

    from oomscope.report.formats import render_json

    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    out = json.loads(render_json(cap))
    assert out["verdict"]["categories"] == ["anon", "other_processes"]  # the sidecar held 20% (issue 15)
    assert out["victim"]["comm"] == "<u>p,pid=1</u>"  # JSON keeps the raw string; it is data
    assert any(p["key"] == "other_processes" for p in out["analysis"]["reconciliation"])


def test_markdown_escapes_kernel_strings():
    from oomscope.report.formats import render_markdown

    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    md = render_markdown(cap)
    assert "<u>" not in md and "\\<u\\>p,pid=1\\</u\\>" in md
    assert "| Category | Charged | Share of usage |" in md


def test_index_lists_kills_and_escapes(tmp_path):
    from oomscope.postmortem.index import OutputIndex
    from oomscope.postmortem.stage import write_kill
    from oomscope.report.render import render_html

    for name in ("v1-6.18-hostile-sidecar.kmsg", "v1-6.18-anon.kmsg"):
        cap, _ = capture_from_fixture(name)
        write_kill(str(tmp_path), cap, render_html)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "capture.json").write_text("{broken")
    idx = OutputIndex(str(tmp_path))  # reads what is there, skips what it cannot read
    assert len(idx.rows) == 2
    html = (tmp_path / "index.html").read_text() if idx.write() else ""
    assert "&lt;u&gt;p,pid=1&lt;/u&gt;" in html and "<u>" not in html and "postmortem.html" in html


def test_jira_summary_escapes_a_hostile_name_and_keeps_the_order():
    from oomscope.report.formats import render_jira

    from .helpers import capture_from_fixture

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.victim.comm = "[x|http://evil]{html}<b>*"
    out = render_jira(cap, html_path="/var/lib/oomscope/kills/k/postmortem.html")
    assert out.startswith("h3. OOM kill: ")
    assert "[x|http://evil]" not in out and "{html}" not in out and "\\[x\\|http\\[:\\]//evil\\]\\{html\\}" in out
    assert out.index("*What to change*") < out.index("|| Fact || Value ||")
    assert "| Post\\-mortem (HTML) | /var/lib/oomscope/kills/k/postmortem.html |" in out  # '-' is escaped in Jira
    assert "| Kernel |" in out and "| Host |" in out


def test_the_index_has_host_and_pod_columns_and_links_an_undated_kill():
    import io as _io

    from oomscope.importer import import_reports
    from oomscope.postmortem.index import OutputIndex

    from ..conftest import fixture_text

    idx = OutputIndex("/nonexistent-oomscope-index")
    (imp,) = import_reports(_io.StringIO(fixture_text("logs", "kmsg-4.x-kubepods.txt")))
    idx.add(f"/x/{imp.capture.kill_id}/capture.json", imp.capture)
    html = idx.render()
    assert "<th>Host</th>" in html and "<th>Pod / workload</th>" in html
    assert "pod 9eb0e64e…, 663f6287c450" in html  # a pod UID cut to 8 digits
    assert f">{imp.capture.kill_id}</a>" in html  # no date: the kill id is the link
    assert "1 OOM kill<" in html or "oomscope: 1 OOM kill</title>" in html


def test_a_timeline_of_hours_is_drawn_whole_and_its_last_10_minutes_apart():
    # the recorder keeps hours, thinned with age (record/timeline.py): drawn on one axis, the
    # minutes before the kill would be the last 5% of the chart
    from oomscope.model import Timeline
    from oomscope.record.timeline import FIELDS, TimelineRing
    from oomscope.report.view import build_view

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", 2)
    ring = TimelineRing()
    for s in range(3 * 3600, -1, -1):  # a reading a second for 3 hours, up to the kill
        v = {f: None for f in FIELDS}
        v.update(usage_bytes=(3 * 3600 - s) * 1000, limit_bytes=12_000_000, anon_bytes=(3 * 3600 - s) * 900)
        ring.add(-s * 1_000_000_000, v)
    cap.timelines = [Timeline(cap.cgroup.oom_memcg, ring.points(0), thinned_by_age=True)]
    view = build_view(cap)
    whole, recent = view.timeline_charts
    # the oldest point kept is a 15-minute bucket's highest reading (a rise: its last one)
    labels = [kv.value for kv in whole.xaxis]
    assert labels[0] == "-2 h 46 min" and labels[1].startswith("-2 h ") and labels[2].endswith(" min"), labels
    assert [kv.value for kv in recent.xaxis] == ["-10 min", "-7.5 min", "-5 min", "-2.5 min", "the kill"]
    assert "highest reading of each 2 minutes" in whole.span and view.timeline_title.startswith("The hours before")
    assert whole.span.startswith("2.8 h before the kill to the kill") and recent.span == "10 min before the kill to the kill"
    # a capture written before the retention (schema 5: at most 600 readings, none thinned) is
    # not said to be thinned
    cap.timelines[0].thinned_by_age = False
    assert "highest" not in build_view(cap).timeline_charts[0].span
    page = render_html(cap)
    assert page.count('<svg class="timeline"') == 2
    assert "The last 10 minutes: " in page


def test_times_around_the_kill_read_in_one_unit_each():
    from oomscope.report.view import _ago, _duration

    assert [_ago(ms) for ms in (-45_000, -150_000, -450_000, -1_500_000, -7_200_000, -12_000_000, -200, 5_000)] == \
        ["-45 s", "-2.5 min", "-7.5 min", "-25 min", "-2 h", "-3 h 20 min", "0 s", "+5.0 s"]
    assert [_duration(ms) for ms in (24_100, 150_000, 600_000, 2_700_000, 7_200_000, 20_880_000)] == \
        ["24.1 s", "2.5 min", "10 min", "45 min", "2 h", "5.8 h"]
