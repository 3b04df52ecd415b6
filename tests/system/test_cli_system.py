"""The CLI as a user meets it, as root and not, with tracefs and without."""

import json
import os
import subprocess
import sys

from ..requires import require_tool

OOMSCOPE = [sys.executable, "-m", "oomscope"]


def _run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def test_doctor_says_record_can_run():
    r = _run(OOMSCOPE + ["doctor"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "record can run here" in r.stdout and "[    ok ] load BPF programs" in r.stdout


def _lab_cgroups():
    from oomscope.kernel.cgroupfs import MemoryHierarchy

    root = MemoryHierarchy.detect().root
    return {d for d in os.listdir(root) if d.startswith("oomscope-lab-")}


def test_record_with_lab_prints_the_postmortem(tmp_path):
    before = _lab_cgroups()
    # the sampler's first pass over a busy host's cgroups comes before the lab's workload
    r = _run(OOMSCOPE + ["record", "--lab", "anon", "-o", str(tmp_path)], timeout=300)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("post-mortem: ")
    html_path = last.split(": ", 1)[1]
    assert os.path.isfile(html_path) and os.path.isfile(os.path.join(os.path.dirname(html_path), "capture.json"))
    # the kill line: the cause in plain words, no internal state names
    # (record sees every kill on the host: another test's storm may print its kills first)
    kill = next(line for line in r.stdout.splitlines() if " kill pid=" in line and "memcg=/oomscope-lab-anon-" in line)
    assert "cause='anonymous memory" in kill and "state=" not in kill
    # the sandbox was sampled before the workload began, and the workload filled it over seconds:
    # the post-mortem has the timeline of the fill, and a trend from it
    with open(os.path.join(os.path.dirname(html_path), "capture.json")) as f:
        cap = json.load(f)
    pts = cap["timelines"][0]["points"] if cap.get("timelines") else []
    assert pts and pts[0]["anon_bytes"] == 0, pts[:2]  # the empty sandbox, before the workload
    assert sum(1 for p in pts if 0 < (p["anon_bytes"] or 0) < 48 << 20) >= 2, [(p["t_ms"], p["anon_bytes"]) for p in pts]
    with open(html_path) as f:
        page = f.read()
    assert "No timeline" not in page and "The minutes before the kill" in page
    assert _lab_cgroups() == before, "the lab left its sandbox cgroup behind"
    with open(os.path.join(str(tmp_path), "index.html")) as f:
        index = f.read()
    kill_folder = os.path.basename(os.path.dirname(html_path))
    assert f'href="{kill_folder}/postmortem.html"' in index and "oomscope-anon" in index


def test_lab_alone():
    r = _run(OOMSCOPE + ["lab", "anon", "--limit", "48M"])
    assert r.returncode == 0, r.stderr
    assert "killed by the kernel (SIGKILL)" in r.stdout and "with limit 50331648 bytes" in r.stdout


def test_not_root_is_one_line(tmp_path):
    require_tool("setpriv", package="util-linux")
    r = _run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + OOMSCOPE + ["record", "-o", str(tmp_path)])
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["oomscope: error: record needs root (BPF, tracefs, /dev/kmsg): run it with sudo"]


def test_no_tracefs_is_one_line(tmp_path):
    require_tool("unshare", package="util-linux")
    # In a private mount namespace, hide /sys/kernel (tracefs and debugfs) under a read-only tmpfs:
    # tracefs is then neither mounted nor mountable.
    hide = "mount --make-rprivate / && mount -t tmpfs -o ro,size=1k none /sys/kernel && exec \"$@\""
    r = _run(["unshare", "-m", "sh", "-c", hide, "sh"] + OOMSCOPE + ["record", "-o", str(tmp_path), "--duration", "1"])
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("oomscope: error: cannot mount tracefs"), lines
    r = _run(["unshare", "-m", "sh", "-c", hide, "sh"] + OOMSCOPE + ["doctor"])
    assert r.returncode == 1 and "[MISSING] tracefs: tracefs is not mounted" in r.stdout


def test_the_installed_package_holds_its_templates_compiled():
    """./setup.sh compiles the pages' templates once at install (report/template_cache.py):
    record's post-mortem worker runs with -B and writes no bytecode itself, so without that it
    compiled them at each of its starts (~35 ms of a storm's first kill). The installed package,
    run as the worker runs (-B, from /), compiles none of them."""
    import shutil

    command = shutil.which("oomscope")
    assert command, "oomscope is not installed (./setup.sh)"
    python = os.path.join(os.path.dirname(os.path.realpath(command)), "python")
    probe = ("import jinja2, oomscope\n"
             "calls = []\n"
             "real = jinja2.Environment._compile\n"
             "jinja2.Environment._compile = lambda self, s, f: calls.append(f) or real(self, s, f)\n"
             "from oomscope.report.render import _env\n"
             "e = _env()\n"
             "names = [e.get_template(n).name for n in e.list_templates()]\n"
             "print(oomscope.__file__, len(names), len(calls))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([python, "-B", "-c", probe], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    where, templates, compiled = out.stdout.split()
    assert not where.startswith(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), where
    assert int(templates) >= 3 and int(compiled) == 0, f"{compiled} of {templates} templates compiled at start ({where})"
