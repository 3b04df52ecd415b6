"""Post-mortems in a real browser: Debian's headless Chromium, driven by Playwright.

At desktop and phone widths: no console errors, no request but the page itself (the report is
self-contained and its CSP forbids loading anything), nothing wider than the screen, and a
screenshot that is really there.
"""

import shutil

import pytest

from oomscope.postmortem.stage import write_kill
from oomscope.report.render import render_html

from oomscope.model import Timeline, TimelinePoint

from ..requires import require_module, require_path
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
