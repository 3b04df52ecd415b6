"""Screenshots of the example pages in Debian's headless Chromium (Playwright, no browser
download), as a reader sees them: the first screen at 1280x800 and at 390x844 (a phone), the
timeline at 390 px, the first screen at 1280 px in dark mode, and the page printed to A4 PDF.

    /opt/oomscope/venv/bin/python reports/screenshots.py [EXAMPLE...]   (default: EXAMPLES below)

Writes reports/screenshots/<example>-<form>.png and <example>.pdf; the index of all the examples
as index-390.png. Each PNG is a screen, not the whole page (small files; the page is beside it).
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "screenshots")
EXAMPLES = ["k8s-leak", "k8s-pagecache", "k8s-slow-leak", "aks-imported"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def shoot(browser, name: str) -> list:
    page_path = os.path.join(HERE, name, "postmortem.html")
    url = "file://" + page_path
    made = []

    def out(form: str) -> str:
        p = os.path.join(OUT, f"{name}-{form}")
        made.append(p)
        return p

    for width, height, scheme, form in ((1280, 800, "light", "1280.png"), (390, 844, "light", "390.png"),
                                        (1280, 800, "dark", "dark-1280.png")):
        page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
        page.goto(url)
        page.screenshot(path=out(form))
        if width == 390 and scheme == "light" and page.locator("#timeline").count():
            page.locator("#timeline").screenshot(path=out("390-timeline.png"))
        page.close()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    page.pdf(path=os.path.join(OUT, f"{name}.pdf"), format="A4", print_background=True)
    made.append(os.path.join(OUT, f"{name}.pdf"))
    page.close()
    return made


def main(argv) -> int:
    from playwright.sync_api import sync_playwright

    names = argv or EXAMPLES
    os.makedirs(OUT, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        for name in names:
            if not os.path.isfile(os.path.join(HERE, name, "postmortem.html")):
                print(f"screenshots: no {name}/postmortem.html", file=sys.stderr)
                continue
            for f in shoot(browser, name):
                print(f"reports/{os.path.relpath(f, HERE)} {os.path.getsize(f) // 1024} KiB")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
