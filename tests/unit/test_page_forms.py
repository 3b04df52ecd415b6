"""The page's other forms (issue 26, point 9): tickets with the processes table, dark mode, paper,
colours, words for every chart, a phone's index. Unit tests on the rendered text; the real
browser's view of the same (layout, computed colours, a PDF) is tests/unit/test_browser.py."""

import itertools
import re

import pytest

from oomscope.model import Timeline, TimelinePoint
from oomscope.report import view as view_mod
from oomscope.report.formats import render_jira, render_markdown
from oomscope.report.index import render_index, row_for
from oomscope.report.render import render_html

from .helpers import capture_from_fixture

MIB = 1 << 20
HOSTILE_CMD = "/bin/app --sep='a|b' `id` {noformat}{html}<b>x</b>{noformat} || [~admin] *bold* @oncall"
HOSTILE_COMM = "w|k`{x}"


def _leak_capture(fixture="v2-6.1-anon.kmsg", points=21, step_ms=6000.0):
    cap, _ = capture_from_fixture(fixture, version=2)
    limit = cap.at_kill.limit_bytes or (64 << 20)
    cap.timelines = [Timeline(cap.cgroup.oom_memcg or "/", [
        TimelinePoint(t_ms=-step_ms * (points - 1 - i), usage_bytes=limit * (i + 1) // points,
                      anon_bytes=limit * i // points, file_bytes=limit // points, limit_bytes=limit)
        for i in range(points)])]
    return cap


# ---- tickets: the processes table ----

def _table_after(text: str, first_head: str):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_head))
    out = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


def _cells(row: str):
    """A Markdown/Jira table row's cells, split on the pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|+", row.strip())[1:-1]]


def test_markdown_ticket_has_the_processes_table_escaped():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    for t in cap.tasks:
        if t.pid == cap.victim.pid:
            t.comm, t.cmdline = HOSTILE_COMM, HOSTILE_CMD
    md = render_markdown(cap)
    table = _table_after(md, "| pid | Name | RSS |")
    assert len(table) >= 2 + len(cap.tasks[:1])
    head = _cells(table[0])
    assert head[0] == "pid" and head[-1] == "Command line"
    victim = next(r for r in table[2:] if "(victim)" in r)
    cells = _cells(victim)
    assert len(cells) == len(head), cells  # no pipe of the name or the command line opened a cell
    assert cells[1].startswith("w\\|k\\`{x}")
    assert "\\`id\\`" in cells[-1] and "a\\|b" in cells[-1] and "<b>" not in cells[-1] and "\\<b\\>" in cells[-1]
    assert "\\[@\\]oncall" in cells[-1]  # a mention defanged


def test_jira_ticket_has_the_processes_table_escaped():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    cap.victim.cmdline = HOSTILE_CMD
    for t in cap.tasks:
        t.cmdline = HOSTILE_CMD
    jira = render_jira(cap)
    table = _table_after(jira, "|| pid || Name ||")
    assert len(table) >= 2
    n = len(_cells(table[0]))
    victim = next(r for r in table[1:] if "(victim)" in r)
    cells = _cells(victim)
    assert len(cells) == n, cells
    assert re.search(r"(?<!\\)\{noformat", jira) is None and "\\{noformat\\}" in cells[-1]  # no macro opened
    assert re.search(r"(?<!\\)\{html", jira) is None and "[~admin]" not in jira and "\\[\\~admin\\]" in cells[-1]


def test_ticket_processes_table_is_bounded():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    base = cap.tasks[0]
    import dataclasses
    cap.tasks = [dataclasses.replace(base, pid=1000 + i, rss_bytes=(i + 1) * 4096) for i in range(60)]
    for t in cap.tasks:
        t.cmdline = "x" * 5000
    md = render_markdown(cap)
    rows = _table_after(md, "| pid | Name | RSS |")[2:]
    assert len(rows) == 20
    assert "The 20 largest of 60 shown" in md
    assert max(len(r) for r in rows) < 600


# ---- dark mode, paper ----

def _css(html: str) -> str:
    return html[html.index("<style>"):html.index("</style>")]


def _media_block(css: str, query: str) -> str:
    i = css.index(query)
    depth, j = 0, css.index("{", i)
    for k in range(j, len(css)):
        depth += {"{": 1, "}": -1}.get(css[k], 0)
        if depth == 0:
            return css[j:k + 1]
    raise AssertionError(query)


def test_dark_mode_on_every_page():
    cap = _leak_capture()
    from oomscope.report.render import _env
    series_source = _env().loader.get_source(_env(), "series.html.j2")[0]  # its CSS needs no view
    pages = {"post-mortem": render_html(cap), "index": render_index([row_for(cap)]), "series": series_source}
    for name, html in pages.items():
        assert '<meta name="color-scheme" content="light dark">' in html, name
        dark = _media_block(_css(html) if "<style>" in html else html, "@media (prefers-color-scheme: dark)")
        assert "--bg:" in dark and "--fg:" in dark, name
        assert re.search(r"background: var\(--bg\)", html), name  # the page's background follows it
    pm = pages["post-mortem"]
    dark = _media_block(_css(pm), "@media (prefers-color-scheme: dark)")
    assert f"--usage:{view_mod.DARK_COLOURS['usage_bytes']}" in dark and f"--limit:{view_mod.DARK_COLOURS['limit']}" in dark
    for hard in ("#fdf2f1;", "#fdecea;", "#f6f8fa;"):  # backgrounds fixed to light colours outside the variables
        assert hard not in _css(pm).split("@media")[0].replace("--verdict-bg:#fdf2f1;", "").replace(
            "--victim-bg:#fdecea;", "").replace("--code-bg:#f6f8fa;", ""), hard


def test_print_opens_the_kernel_report_and_keeps_the_timeline_with_its_heading():
    cap = _leak_capture()
    html = render_html(cap)
    printed = _media_block(_css(html), "@media print")
    assert "details.kernel-report { display: none; }" in printed and ".print-only { display: block; }" in printed
    assert ".keep" in printed and "break-inside: avoid" in printed and "break-after: avoid" in printed
    copy = re.search(r'<pre class="log print-only">(.*?)</pre>', html, re.S)
    assert copy and len(copy.group(1).strip().splitlines()) == len(cap.kernel_report.lines)
    keep = re.search(r'<section id="timeline">\s*<div class="keep">\s*<h2>(.*?)</h2>(.*?)</div>\s*</div>', html, re.S)
    assert keep and "The minutes before the kill" in keep.group(1) and "<svg class=\"timeline\"" in keep.group(2)


# ---- colours ----

def _lab(hexcolour: str):
    h = hexcolour.lstrip("#")
    rgb = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    x, y, z = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
               (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def delta_e(a: str, b: str) -> float:
    """CIE76: ~2 is the smallest difference an eye sees side by side; lines need far more."""
    return sum((p - q) ** 2 for p, q in zip(_lab(a), _lab(b))) ** 0.5


TIMELINE_MIN_DE = 20  # two lines of one chart (Anonymous and Limit were 12.7 apart)
BAR_MIN_DE = 10  # two parts of one bar: side by side, each named in the legend with its value


def _timeline_colours(html: str):
    charts = re.findall(r'<svg class="timeline".*?</svg>', html, re.S)
    assert charts
    out = []
    for c in charts:
        lines = dict(re.findall(r'<polyline class="line-(\w+)" fill="none" stroke="(#[0-9a-f]{6})"', c))
        limit = re.search(r'<line class="limit"[^>]* stroke="(#[0-9a-f]{6})"', c)
        if limit:
            lines["limit"] = limit.group(1)
        out.append(lines)
    return out


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_two_lines_of_a_chart_share_a_colour(scheme):
    # every line a timeline can draw, at once (the palette), and a rendered chart
    every = {k: c for k, _l, c in view_mod.TIMELINE_SERIES}
    every.update(limit=view_mod.LIMIT_COLOUR, jvm_heap=view_mod.JVM_HEAP_COLOUR)
    cap = _leak_capture()
    for p in cap.timelines[0].points:
        p.shmem_bytes, p.slab_bytes, p.kernel_bytes = 2 * MIB, 3 * MIB, 4 * MIB
    charts = _timeline_colours(render_html(cap))
    assert {"usage_bytes", "anon_bytes", "file_bytes", "limit"} <= set(charts[0])
    for lines in [every] + charts:
        if scheme == "dark":
            lines = dict(lines, **{k: c for k, c in view_mod.DARK_COLOURS.items() if k in lines})
        for (k1, c1), (k2, c2) in itertools.combinations(lines.items(), 2):
            assert delta_e(c1, c2) >= TIMELINE_MIN_DE, f"{k1} {c1} and {k2} {c2}: delta E {delta_e(c1, c2):.1f}"
    assert delta_e(every["anon_bytes"], every["limit"]) >= TIMELINE_MIN_DE  # the pair


def test_no_two_parts_of_a_bar_share_a_colour():
    # every key a bar can show (categories, reconciliation parts, the JVM's split) against every other
    pal = {k: c for k, c in view_mod.PALETTE.items() if k != "rest"}  # "rest" stands only where no category is known
    for (k1, c1), (k2, c2) in itertools.combinations(pal.items(), 2):
        assert delta_e(c1, c2) >= BAR_MIN_DE, f"{k1} {c1} and {k2} {c2}: delta E {delta_e(c1, c2):.1f}"
    for fixture, version in (("v1-6.18-hostile-sidecar.kmsg", 1), ("v2-6.1-anon.kmsg", 2)):
        cap, _ = capture_from_fixture(fixture, version=version)
        html = render_html(cap)
        for bar in re.findall(r'<svg class="bar".*?</svg>', html, re.S):
            fills = re.findall(r'fill="(#[0-9a-f]{6})"', bar)
            assert len(fills) == len(set(fills)), fills


def test_legend_swatches_match_the_lines():
    html = render_html(_leak_capture())
    svg = re.search(r'<svg class="timeline".*?</svg>\s*<div class="legend">(.*?)</div>', html, re.S)
    lines = dict(re.findall(r'<polyline class="line-(\w+)" fill="none" stroke="(#[0-9a-f]{6})"', svg.group(0)))
    for key, colour in lines.items():
        assert f'<span class="swatch {key}" style="background: {colour}">' in svg.group(1)
    assert '<span class="swatch limit"></span>Limit' in svg.group(1)


# ---- a text alternative for every chart ----

def _svgs(html: str):
    return re.findall(r"<svg\b[^>]*>.*?</svg>", html, re.S)


def _check_alternative(svg: str, html: str):
    head = svg[:svg.index(">") + 1]
    assert 'role="img"' in head, head
    ids = re.search(r'aria-labelledby="([^"]+)"', head)
    assert ids, head
    title = re.search(r"<title id=\"([^\"]+)\">([^<]+)</title>", svg)
    desc = re.search(r"<desc id=\"([^\"]+)\">([^<]+)</desc>", svg)
    assert title and desc, svg[:300]
    assert ids.group(1).split() == [title.group(1), desc.group(1)]
    assert re.search(r"\d", desc.group(2)), desc.group(2)  # the figures it draws, not only its name
    assert html.count(f'id="{title.group(1)}"') == 1 and html.count(f'id="{desc.group(1)}"') == 1
    return desc.group(2)


def test_every_chart_has_a_text_alternative_with_its_figures():
    cap = _leak_capture(points=301, step_ms=12000.0)  # an hour: two charts (the whole, the last 10 min)
    html = render_html(cap)
    svgs = _svgs(html)
    assert len(svgs) >= 4  # the charge's bar, two timelines, the reconciliation's bar
    descs = [_check_alternative(s, html) for s in svgs]
    tl = [d for s, d in zip(svgs, descs) if 'class="timeline"' in s]
    assert len(tl) == 2
    limit = cap.at_kill.limit_bytes
    from oomscope.units import fmt_bytes
    assert f"limit {fmt_bytes(limit)}" in tl[0] and "Usage from" in tl[0] and "at the kill" in tl[0]
    bar = next(d for s, d in zip(svgs, descs) if 'aria-labelledby="cat-t' in s)
    assert "Anonymous" in bar or "anon" in bar.lower()


def test_series_chart_has_a_text_alternative():
    from oomscope.report.series import build_series_view
    from oomscope.report.render import _env
    from types import SimpleNamespace as NS
    kills = [NS(number=i + 1, folder=f"k{i}", when="2026-12-06 10:0{i}", t_s=60.0 * i, pid=100 + i, comm="app",
                usage_bytes=64 * MIB, limit_bytes=64 * MIB, cause="anon", trend="leak", life_s=50.0, life_from="start",
                growth_bytes_per_s=1.2 * MIB, points=[(0.0, 10 * MIB), (50.0, 64 * MIB)]) for i in range(3)]
    a = NS(kills=kills, kills_total=3, workload="pod shop/api", named=True, first="10:00", last="10:02", verdict="v",
           pattern_text="p", same=[], changed=[], advice=[])
    v = build_series_view(a, lambda folder: True)
    html = _env().get_template("series.html.j2").render(v=v)
    (svg,) = _svgs(html)
    desc = _check_alternative(svg, html)
    assert "kill 1:" in desc and "limit 64.0 MiB" in desc and "highest 64.0 MiB" in desc


# ---- the phone's index ----

def test_index_is_cards_on_a_phone():
    cap = _leak_capture()
    html = render_index([row_for(cap)])
    phone = _media_block(_css(html), "@media (max-width: 640px)")
    assert "thead { display: none; }" in phone and "td[data-label]::before" in phone
    assert "overflow-x: auto" not in html  # nothing scrolls sideways: the rows become cards
    row = re.search(r"<tbody>\s*<tr>(.*?)</tr>", html, re.S).group(1)
    assert row.count("data-label=") == row.count("<td") - 1  # every cell but the first (the time, the card's head)
