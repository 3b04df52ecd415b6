"""Prometheus for real: Debian's `prometheus` on the loopback scrapes `record --metrics-addr` every
second, with the shipped alert rules loaded; a real kill in a sandbox cgroup is counted with its
labels, and the OOMKill alert fires with the post-mortem's path."""

import json
import os
import sys
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from ..requires import require_tool
from .conftest import TIME_SCALE, run_in_cgroup
from .test_service import HOG, _free_port

RULES = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "prometheus", "oomscope-rules.yml")


class Prometheus:
    """Debian's prometheus on 127.0.0.1, its storage in a temporary folder; stopped by its pid."""

    def __init__(self, binary, folder, target):
        self.port = _free_port()
        config = os.path.join(folder, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    f"rule_files: [{json.dumps(os.path.abspath(RULES))}]\n"
                    "scrape_configs:\n"
                    f"  - {{job_name: oomscope, static_configs: [{{targets: [{json.dumps(target)}]}}]}}\n")
        self.log_path = os.path.join(folder, "prometheus.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(folder, 'data')}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait(lambda: self._get("/-/ready", raw=True), 60, "Prometheus did not become ready")

    def _get(self, path, raw=False):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        return body if raw else json.loads(body)

    def query(self, promql):
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        return answer["data"]["result"] if answer and answer.get("status") == "success" else []

    def alerts(self):
        answer = self._get("/api/v1/alerts")
        return answer["data"]["alerts"] if answer else []

    def wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            got = predicate()
            if got:
                return got
            time.sleep(0.5)
        with open(self.log_path) as f:
            raise AssertionError(f"{what}; prometheus said: {f.read()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # by its pid: the Popen of this test
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def prometheus(tmp_path):
    binary = require_tool("prometheus")
    started = []

    def start(target):
        folder = tmp_path / "prometheus"
        folder.mkdir()
        p = Prometheus(binary, str(folder), target)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_prometheus_counts_a_real_kill_with_its_labels_and_alerts_with_the_postmortem(recorder, sandbox, prometheus):
    name, path = sandbox(limit=64 << 20)
    port = _free_port()
    rec = recorder("--metrics-addr", f"127.0.0.1:{port}", "--cgroup", name)
    prom = prometheus(f"127.0.0.1:{port}")
    # scraped before the kill: oomscope is up, reads the kernel log, and has counted nothing yet
    prom.wait(lambda: prom.query('up{job="oomscope"} == 1'), 30, "Prometheus never scraped record")
    assert prom.query("oomscope_kmsg_reader_up")[0]["value"][1] == "1"
    assert prom.query("oomscope_oom_kills_total") == []

    res = run_in_cgroup(path, HOG)
    assert res.returncode == -9
    pid = int(res.stdout.split()[0])
    ((cap_path, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    postmortem = os.path.join(os.path.dirname(cap_path), "postmortem.html")

    promql = f'oomscope_oom_kills_total{{cgroup="{name}"}}'
    (series,) = prom.wait(lambda: prom.query(promql), 30, f"Prometheus never counted the kill ({promql})")
    print(f"\nquery: {promql}\nanswer: {json.dumps(series)}")
    labels = series["metric"]
    assert labels["job"] == "oomscope" and labels["instance"] == f"127.0.0.1:{port}"
    assert labels["cgroup"] == name and labels["comm"] == cap["victim"]["comm"] and labels["category"] == "anon"
    assert series["value"][1] == "1"

    (last,) = prom.query(f'oomscope_last_oom_kill_timestamp_seconds{{cgroup="{name}"}}')
    assert last["metric"]["postmortem"] == postmortem and last["metric"]["category"] == "anon"
    assert abs(float(last["value"][1]) - time.time()) < 120

    def oom_alert():
        return [a for a in prom.alerts() if a["labels"].get("alertname") == "OOMKill"
                and a["labels"].get("cgroup") == name and a["state"] == "firing"]

    (alert,) = prom.wait(oom_alert, 30, "the OOMKill alert never fired")
    print(f"alert: {json.dumps(alert['annotations'])}")
    assert alert["annotations"]["postmortem"] == postmortem and alert["annotations"]["category"] == "anon"


# 40 MiB at once, then 1 MiB a second until killed: some ten seconds above 80% of a 64 MiB limit
SLOW_HOG = r"""
import os, time
print(os.getpid(), flush=True)
def touched(n):
    b = bytearray(n)
    for i in range(0, n, 4096):
        b[i] = 1
    return b
a = [touched(40 << 20)]
while True:
    a.append(touched(512 << 10))
    time.sleep(0.5)
"""


def test_prometheus_sees_the_headroom_of_a_filling_cgroup_and_its_series_go_after_the_kill(recorder, sandbox, prometheus):
    name, path = sandbox(limit=64 << 20)
    port = _free_port()
    rec = recorder("--metrics-addr", f"127.0.0.1:{port}", "--cgroup", name)
    prom = prometheus(f"127.0.0.1:{port}")
    prom.wait(lambda: prom.query('up{job="oomscope"} == 1'), 30, "Prometheus never scraped record")
    hog = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh", os.path.join(path, "cgroup.procs"),
                            sys.executable, SLOW_HOG], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        promql = f'oomscope_cgroup_seconds_to_limit{{cgroup="{name}"}} < 120'
        (series,) = prom.wait(lambda: prom.query(promql), 60, f"Prometheus never saw the cgroup filling up ({promql})")
        (headroom,) = prom.query(f'oomscope_cgroup_headroom_bytes{{cgroup="{name}"}}')
        (limit,) = prom.query(f'oomscope_cgroup_limit_bytes{{cgroup="{name}"}}')
        print(f"\nquery: {promql}\nanswer: {json.dumps(series)}\nheadroom: {headroom['value'][1]} of {limit['value'][1]}")
        assert float(limit["value"][1]) == 64 << 20
        assert 0 <= float(headroom["value"][1]) <= 0.2 * (64 << 20)  # at or above 80% of the limit
        assert 0 < float(series["value"][1]) < 120
        hog.wait(timeout=120 * TIME_SCALE)
    finally:
        if hog.poll() is None:
            hog.kill()  # by its pid: the Popen of this test
            hog.wait()
    assert hog.returncode == -9
    pid = int(hog.stdout.read().split()[0])
    rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    # the cgroup emptied by the kill drops below 80%: its series leave record and Prometheus
    prom.wait(lambda: not prom.query(f'oomscope_cgroup_headroom_bytes{{cgroup="{name}"}}'), 30,
              "the headroom series stayed after the cgroup emptied")
    prom.wait(lambda: prom.query(f'oomscope_oom_kills_total{{cgroup="{name}"}}'), 30, "the kill was not counted")
