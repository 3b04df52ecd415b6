"""record as a service: Prometheus metrics after a real kill, JSON log lines, retention."""

import json
import socket
import urllib.request

from .conftest import run_in_cgroup

HOG = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_count_a_real_kill_and_the_log_line_is_json(recorder, sandbox):
    name, path = sandbox(limit=64 << 20)
    port = _free_port()
    rec = recorder("--metrics-addr", f"127.0.0.1:{port}", "--log-format", "json", "--cgroup", name)
    res = run_in_cgroup(path, HOG)
    assert res.returncode == -9
    pid = int(res.stdout.split()[0])
    rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    rec.wait_for_output('"event": "oom_kill"')
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    kills = [line for line in body.splitlines() if line.startswith("oomscope_oom_kills_total{")]
    assert len(kills) == 1, body
    assert f'cgroup="{name}"' in kills[0] and 'comm="python' in kills[0] and 'category="anon"' in kills[0]
    assert kills[0].endswith(" 1.0")
    assert "oomscope_captures_written_total 1.0" in body
    assert "# TYPE oomscope_oom_kills_total counter" in body
    (line,) = [json.loads(x) for x in rec.stdout().splitlines() if x.startswith("{")]
    assert line["pid"] == pid and line["oom_memcg"] == name and line["postmortem"].endswith("postmortem.html")
