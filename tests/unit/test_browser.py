"""Post-mortems in a real browser: Debian's headless Chromium, driven by Playwright.

At desktop and phone widths: no console errors, no request but the page itself (the report is
self-contained and its CSP forbids loading anything), nothing wider than the screen, and a
screenshot that is really there.
"""

import itertools
import shutil

import pytest

from oomscope.postmortem.stage import write_kill
from oomscope.report.render import render_html

from oomscope.model import Timeline, TimelinePoint

from ..requires import require_module, require_path, require_tool
from .helpers import capture_from_fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

CASES = [("v1-6.18-hostile-sidecar.kmsg", 1), ("v2-6.1-anon.kmsg", 2), ("v2-6.1-global.kmsg", 2)]


@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_module("playwright.sync_api", package="playwright").sync_playwright
    require_path(CHROMIUM, package="chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        yield b
        b.close()


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
@pytest.mark.parametrize("fixture_name,version", CASES)
def test_postmortem_in_chromium(browser, tmp_path, fixture_name, version, width, height):
    cap, _ = capture_from_fixture(fixture_name, version=version)
    cap.victim.cmdline = "<script>alert(1)</script> /usr/bin/app --config=/etc/app.yaml " + "x" * 300
    if version == 2:  # a leak on the timeline: the chart and the advice render too
        limit = cap.at_kill.limit_bytes or (64 << 20)
        cap.timelines = [Timeline(cap.cgroup.oom_memcg or "/", [
            TimelinePoint(t_ms=-6000.0 * (20 - i), usage_bytes=limit * (i + 1) // 21, anon_bytes=limit * i // 21,
                          file_bytes=limit // 21, limit_bytes=limit) for i in range(21)])]
    _, html_path, err = write_kill(str(tmp_path), cap, render_html)
    assert err is None
    page = browser.new_page(viewport={"width": width, "height": height})
    messages, requests, dialogs = [], [], []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    url = "file://" + html_path
    page.goto(url)
    assert messages == [] and dialogs == []
    assert requests == [url]
    scroll_width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner, f"the page is {scroll_width}px wide in a {inner}px window"
    assert page.locator("h1").inner_text().startswith(f"pid {cap.victim.pid}")
    if version == 2:
        box = page.locator("svg.timeline").bounding_box()
        assert box and 0 < box["width"] <= width and box["height"] > 50
        assert page.locator("svg.timeline polyline").count() >= 2
        if "global" not in fixture_name:
            assert "More limit only delays this" in page.locator("table.advice").inner_text()
    shot = tmp_path / f"{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_java_dashboards_section_in_chromium(browser, tmp_path, width, height):
    from oomscope.model import RuntimeReading

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    mib = 1 << 20
    cap.victim.comm = "<img src=x onerror=alert(1)>"
    limit = cap.at_kill.limit_bytes or (64 << 20)
    cap.timelines = [Timeline(cap.cgroup.oom_memcg or "/", [
        TimelinePoint(t_ms=-3000.0 * (30 - i), usage_bytes=limit * (i + 1) // 31, limit_bytes=limit) for i in range(31)])]
    cap.runtimes = [RuntimeReading("java", cap.victim.pid, cap.victim.comm, 40.0, heap_used_bytes=6 * mib,
                                   heap_committed_bytes=16 * mib, heap_max_bytes=48 * mib, metaspace_used_bytes=5 * mib,
                                   metaspace_committed_bytes=6 * mib, threads=14, vm_args="-Xmx48m <b>x</b>")]
    _, html_path, err = write_kill(str(tmp_path), cap, render_html)
    assert err is None
    page = browser.new_page(viewport={"width": width, "height": height})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("file://" + html_path)
    assert dialogs == []
    scroll_width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner, f"the page is {scroll_width}px wide in a {inner}px window"
    said = page.locator("#dashboards p.said")
    assert said.count() == 3  # the heap dashboard, kubectl top at the kill, what a 15 s scrape saw
    assert said.nth(0).inner_text().startswith("Your dashboard, the heap dashboard (jvm_memory_used_bytes), showed 6.0 MiB")
    if width == 1280:  # what to change starts on the first screen, under the verdict (issue 26; 1280x800)
        assert page.locator("#advice h2").bounding_box()["y"] + 40 <= 800
    assert page.locator("table.scrapes tbody tr").count() == 2
    assert "unknown" not in page.locator("table.scrapes").inner_text()  # the timeline reaches back 90 s
    bar = page.locator("#dashboards svg.bar").bounding_box()
    assert bar and 0 < bar["width"] <= width
    for cell in page.locator("#dashboards table.split td:first-child").all():
        assert cell.bounding_box()["width"] >= 60  # no column one letter wide
    # the advice is read, not scrolled sideways: a phone once cut every line of it at the edge
    for table in ("table.advice", "table.split"):  # prose in cells: read, not scrolled
        w = page.evaluate(f"(t => [t.scrollWidth, t.clientWidth])(document.querySelector('{table}'))")
        assert w[0] <= w[1], f"{table} is {w[0]}px wide in {w[1]}px"
    page.screenshot(path=str(tmp_path / f"java-{width}.png"), full_page=True)
    page.close()


# ---- issue 26, point 9: a phone, the dark, paper ----

MIB = 1 << 20
K8S_CGROUP = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3c2a51_6d0e_4c7b_9a2e_5b1d7c9e0f42.slice/"
              "cri-containerd-" + "9f" * 32 + ".scope")


def _with_timeline(cap, limit, points, step_ms):
    cap.at_kill.limit_bytes = limit
    cap.timelines = [Timeline(cap.cgroup.oom_memcg or "/", [
        TimelinePoint(t_ms=-step_ms * (points - 1 - i), usage_bytes=limit * (i + 1) // points, anon_bytes=limit * i // points,
                      file_bytes=limit // points, limit_bytes=limit) for i in range(points)])]
    return cap


def _rendered(tmp_path, cap, name="pm"):
    folder = tmp_path / name
    folder.mkdir()
    _, html_path, err = write_kill(str(folder), cap, render_html)
    assert err is None
    return html_path


def _overlaps(a, b):
    return a["left"] < b["right"] - 0.5 and b["left"] < a["right"] - 0.5 and a["top"] < b["bottom"] - 0.5 and b["top"] < a["bottom"] - 0.5


AXIS_BOXES = """() => [...document.querySelectorAll('svg.timeline')].map(s => {
  const b = s.getBoundingClientRect();
  return {svg: {left: b.left, right: b.right, top: b.top, bottom: b.bottom},
          texts: [...s.querySelectorAll('text')].filter(t => getComputedStyle(t).display !== 'none').map(t => {
            const r = t.getBoundingClientRect();
            return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};})};})"""


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
@pytest.mark.parametrize("limit,points,step_ms", [(192 * MIB, 42, 1000.0), (1023 * MIB + 900 * 1024, 200, 60_000.0),
                                                  (64 * MIB, 600, 18_000.0)])
def test_chart_axis_labels_neither_clip_nor_overlap(browser, tmp_path, width, height, limit, points, step_ms):
    """At 390 px "192.0 MiB" was drawn past the chart's left edge and shown as "92.0" (issue 26)."""
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    html_path = _rendered(tmp_path, _with_timeline(cap, limit, points, step_ms))
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto("file://" + html_path)
    charts = page.evaluate(AXIS_BOXES)
    assert charts
    for chart in charts:
        svg, texts = chart["svg"], chart["texts"]
        assert len(texts) >= 5  # three values, at least two times
        for t in texts:
            assert t["right"] > t["left"], t
            assert svg["left"] - 0.5 <= t["left"] and t["right"] <= svg["right"] + 0.5, f"{t['text']!r} clipped: {t} in {svg}"
            assert svg["top"] - 0.5 <= t["top"] and t["bottom"] <= svg["bottom"] + 0.5, f"{t['text']!r} clipped: {t} in {svg}"
            assert t["bottom"] - t["top"] >= 9, f"{t['text']!r} is {t['bottom'] - t['top']:.1f} px high"
        for a, b in itertools.combinations(texts, 2):
            assert not _overlaps(a, b), f"{a['text']!r} and {b['text']!r} overlap at {width} px: {a} {b}"
    page.close()


def _no_sideways_scroll(page):
    """The document, and every element in it, fits the window: nothing to scroll sideways."""
    scroll_width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner, f"the page is {scroll_width}px wide in a {inner}px window"
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => {
        const o = getComputedStyle(e).overflowX;
        return (o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth + 1;
      }).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth)""")
    return wide


def test_index_and_page_do_not_scroll_sideways_at_390(browser, tmp_path):
    from oomscope.report.index import render_index, row_for

    rows = []
    for i, (fixture, version) in enumerate(CASES):
        cap, _ = capture_from_fixture(fixture, version=version)
        cap.cgroup.oom_memcg = cap.cgroup.task_memcg = K8S_CGROUP
        cap.kill_id = f"20261206T0{i}1500.123Z-{cap.victim.pid}-oomscope-anon-with-a-long-name"
        rows.append(row_for(cap))
    index = tmp_path / "index.html"
    index.write_text(render_index(rows))
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto("file://" + str(index))
    wide = _no_sideways_scroll(page)
    assert wide == [], f"at 390 px these scroll sideways: {wide}"
    assert page.locator("td[data-label='Cgroup']").first.bounding_box()["width"] <= 390
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.cgroup.oom_memcg = cap.cgroup.task_memcg = K8S_CGROUP
    page.goto("file://" + _rendered(tmp_path, _with_timeline(cap, 256 * MIB, 60, 4000.0)))
    _no_sideways_scroll(page)  # the page itself; a wide table of figures may scroll inside its box
    page.close()


def _rgb(css: str):
    import re
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])


def _luminance(rgb):
    r, g, b = [c / 255 for c in rgb]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _hex_rgb(h: str):
    return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))


def test_dark_mode_in_chromium(browser, tmp_path):
    from oomscope.report.index import render_index, row_for
    from oomscope.report.view import DARK_COLOURS, LIMIT_COLOUR, TIMELINE_SERIES

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    html_path = _rendered(tmp_path, _with_timeline(cap, 64 * MIB, 30, 2000.0))
    index = tmp_path / "index.html"
    index.write_text(render_index([row_for(cap)]))
    usage_light = next(c for k, _l, c in TIMELINE_SERIES if k == "usage_bytes")
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        page.goto("file://" + html_path)
        bg, fg = page.evaluate("[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]")
        usage, limit, label, verdict = page.evaluate("""() => [
            getComputedStyle(document.querySelector('svg.timeline polyline.line-usage_bytes')).stroke,
            getComputedStyle(document.querySelector('svg.timeline line.limit')).stroke,
            getComputedStyle(document.querySelector('svg.timeline text')).fill,
            getComputedStyle(document.querySelector('section.verdict')).backgroundColor]""")
        if scheme == "dark":
            assert _luminance(_rgb(bg)) < 0.1 and _luminance(_rgb(fg)) > 0.7, (bg, fg)
            assert _rgb(usage) == _hex_rgb(DARK_COLOURS["usage_bytes"]) and _rgb(limit) == _hex_rgb(DARK_COLOURS["limit"])
            assert _luminance(_rgb(label)) > 0.7 and _luminance(_rgb(verdict)) < 0.2, (label, verdict)
        else:
            assert _luminance(_rgb(bg)) > 0.9 and _luminance(_rgb(fg)) < 0.2, (bg, fg)
            assert _rgb(usage) == _hex_rgb(usage_light) and _rgb(limit) == _hex_rgb(LIMIT_COLOUR)
        page.goto("file://" + str(index))
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (_luminance(_rgb(bg)) < 0.1) == (scheme == "dark"), (scheme, bg)
        page.close()


def test_printed_to_pdf_the_report_is_open_and_the_timeline_stays_with_its_heading(browser, tmp_path):
    import subprocess

    pdftotext = require_tool("pdftotext", package="poppler-utils")
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    html_path = _rendered(tmp_path, _with_timeline(cap, 64 * MIB, 30, 2000.0))
    page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page.goto("file://" + html_path)
    heading = page.locator("#timeline h2").inner_text()
    kernel_line = next(line for line in cap.kernel_report.lines if "invoked oom-killer" in line)
    # the heading falls at every height of an A4 page in turn (a spacer above everything): at none
    # of them may the chart go to the next page without it
    for spacer in range(0, 1100, 100):
        page.evaluate(f"document.body.style.paddingTop = '{spacer}px'")
        pdf = tmp_path / f"p{spacer}.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=True)
        assert pdf.read_bytes()[:5] == b"%PDF-"
        text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=60,
                              check=True).stdout
        pages = text.split("\f")
        (on,) = [p for p in pages if heading[:40] in p]
        after = on[on.index(heading[:40]):]
        assert "the kill" in after and "Limit" in after, f"spacer {spacer}px: the chart left its heading's page"
        assert "invoked oom-killer" in text.replace("\n", " ") or kernel_line[:30] in text, "the kernel's report was not printed"
        assert "lines as the kernel printed them" not in text  # the closed <details> is not what is printed
    page.close()
