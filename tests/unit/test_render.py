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
