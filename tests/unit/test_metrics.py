"""The Prometheus metrics' series: what each says, and that their number stays bounded."""

import contextlib
import gzip
import math
import os
import socket
import threading
import time
import urllib.request

import pytest

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from oomscope import metrics as metrics_mod
from oomscope import metrics_http
from oomscope.errors import EnvironmentProblem
from oomscope.kernel.cgroupfs import MemoryHierarchy
from oomscope.metrics import MAX_LAST_KILLS, MAX_NEAR_LIMIT, Metrics, parse_addr
from oomscope.model import CgroupState
from oomscope.record.announce import Announcer
from oomscope.record.outputs import Written
from oomscope.record.readings import NearLimit, Readings
from oomscope.record.sampler import Sample

from .helpers import capture_from_fixture


def _series(m, name):
    text = generate_latest(m.registry).decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]


def _readings(tmp_path):
    with open(os.path.join(tmp_path, "memory.max"), "w") as f:
        f.write("max\n")
    return Readings(MemoryHierarchy(str(tmp_path), 2), ring_ns=10_000_000_000, timeline_points=10,
                    timeline_spacing_s=1.0, pid_retention_ns=60_000_000_000, max_pids=100)


def _sample(t_s, usage, limit):
    return Sample(int(t_s * 1e9), CgroupState(source="last_sample", usage_bytes=usage, limit_bytes=limit), ())


def test_near_limit_is_the_fullest_above_80_percent_with_their_rate(tmp_path):
    r = _readings(tmp_path)
    mib = 1 << 20
    r.set_watched({"/a": 1, "/b": 2, "/c": 3, "/free": 4})
    r.add_pass({"/a": _sample(0, 85 * mib, 100 * mib), "/b": _sample(0, 95 * mib, 100 * mib),
                "/c": _sample(0, 70 * mib, 100 * mib), "/free": _sample(0, 90 * mib, None)}, {}, {})
    r.add_pass({"/a": _sample(5, 90 * mib, 100 * mib), "/b": _sample(5, 95 * mib, 100 * mib)}, {}, {})
    a, b = sorted(r.near_limit(10), key=lambda n: n.cgroup)
    assert [n.cgroup for n in r.near_limit(10)] == ["/b", "/a"]  # fullest first; no limit, or below 80%: absent
    assert a.rate_bytes_per_s == mib and a.seconds_to_limit() == 10.0  # 10 MiB left at 1 MiB/s
    assert b.rate_bytes_per_s == 0 and math.isinf(b.seconds_to_limit())  # not growing: never
    assert [n.cgroup for n in r.near_limit(1)] == ["/b"]  # bounded
    r.add_pass({"/a": _sample(6, 50 * mib, 100 * mib)}, {}, {})  # dropped below 80%
    assert [n.cgroup for n in r.near_limit(10)] == ["/b"]
    r.set_watched({"/a": 1}, vanished=["/b", "/c", "/free"])  # vanished: gone at once
    assert r.near_limit(10) == []


def test_headroom_series_are_bounded_and_removed_when_a_cgroup_leaves():
    m = Metrics()
    rows = [NearLimit(f"/cg{i}", 90 + i % 10, 100, 1.0) for i in range(MAX_NEAR_LIMIT)]
    m.near_limit(rows)
    assert len(_series(m, "oomscope_cgroup_headroom_bytes")) == MAX_NEAR_LIMIT
    (h,) = [s for s in _series(m, "oomscope_cgroup_headroom_bytes") if s.labels["cgroup"] == "/cg3"]
    assert h.value == 7
    (t,) = [s for s in _series(m, "oomscope_cgroup_seconds_to_limit") if s.labels["cgroup"] == "/cg3"]
    assert t.value == 7
    m.near_limit(rows[:2])
    for name in ("oomscope_cgroup_headroom_bytes", "oomscope_cgroup_limit_bytes", "oomscope_cgroup_seconds_to_limit"):
        assert {s.labels["cgroup"] for s in _series(m, name)} == {"/cg0", "/cg1"}


def test_announcer_says_the_headroom_once_a_second_from_the_store():
    m = Metrics()
    asked = []

    def near_limit(n):
        asked.append(n)
        return [NearLimit("/x", 95, 100, None)]

    a = Announcer(open(os.devnull, "w"), open(os.devnull, "w"), metrics=m)
    for now in (1_000_000_000, 1_100_000_000, 2_000_000_000):
        a.health(now_ns=now, sampler_errors=0, events_lost=0, watched=1, losses={},
                 kmsg_error=None, near_limit=near_limit)
    assert asked == [MAX_NEAR_LIMIT, MAX_NEAR_LIMIT]
    (t,) = _series(m, "oomscope_cgroup_seconds_to_limit")
    assert math.isinf(t.value)


def test_last_kill_is_one_series_per_cgroup_with_the_postmortem(monkeypatch):
    cap, _rep = capture_from_fixture("v1-6.18-anon.kmsg")
    m = Metrics()
    a = Announcer(open(os.devnull, "w"), open(os.devnull, "w"), metrics=m)

    a.kill(cap, Written("/out/k1/capture.json", "/out/k1/postmortem.html"), "anon")
    a.kill(cap, Written("/out/k2/capture.json", "/out/k2/postmortem.html"), "anon")
    (s,) = _series(m, "oomscope_last_oom_kill_timestamp_seconds")  # the second kill replaced the first
    assert s.labels["postmortem"] == "/out/k2/postmortem.html" and s.labels["category"] == "anon"
    assert s.labels["cgroup"] == (cap.cgroup.task_memcg or cap.cgroup.oom_memcg)
    assert abs(s.value - metrics_mod._unix_time(cap.times.kill_wall)) < 1e-3 and s.value > 1.7e9
    (k,) = _series(m, "oomscope_oom_kills_total")
    assert k.value == 2
    monkeypatch.setattr(metrics_mod, "MAX_LAST_KILLS", 3)
    for i in range(5):
        cap.cgroup.task_memcg = f"/cg{i}"
        m.kill(cap, "anon", f"/out/cg{i}/postmortem.html")
    assert {s.labels["cgroup"] for s in _series(m, "oomscope_last_oom_kill_timestamp_seconds")} == {"/cg2", "/cg3", "/cg4"}
    assert MAX_LAST_KILLS == 200


# -- the HTTP endpoint (issue 24: each idle connection held a thread and a descriptor for good) --

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _scrape(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def test_idle_connections_hold_no_thread_and_are_closed_within_seconds_while_scrapes_go_on():
    m = Metrics()
    port = _free_port()
    m.serve(f"127.0.0.1:{port}")
    try:
        assert _scrape(port)[0] == 200
        threads, fds = threading.active_count(), _fds()
        idle = []
        for _ in range(100):  # connected, never a byte sent
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.append(s)
        half = socket.create_connection(("127.0.0.1", port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a request that never ends
        idle.append(half)
        time.sleep(0.5)
        # a scrape is answered while they are open
        status, text = _scrape(port)
        assert status == 200 and "oomscope_captures_written_total" in text
        # no thread per connection, and a bounded number of descriptors held for them
        assert threading.active_count() <= threads + 1
        assert _fds() - fds <= len(idle) + metrics_http.MAX_CONNECTIONS
        # and within a few seconds, nothing of them is left in this process
        deadline = time.monotonic() + metrics_http.REQUEST_TIMEOUT_S + 4
        while time.monotonic() < deadline and (_fds() - len(idle) > fds or threading.active_count() > threads):
            time.sleep(0.2)
        assert threading.active_count() <= threads, "a connection still holds a thread"
        assert _fds() - len(idle) <= fds, "the server still holds descriptors for idle connections"
        for s in idle:  # the server closed them: each reads an end of file (or a reset)
            s.settimeout(1)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        assert _scrape(port)[0] == 200
    finally:
        for s in idle:
            s.close()
        m.close()


def test_a_request_larger_than_the_cap_is_refused_and_the_server_goes_on():
    m = Metrics()
    port = _free_port()
    m.serve(f"127.0.0.1:{port}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n")
            reply = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(4096):
                    reply += chunk
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431")
        assert _scrape(port)[0] == 200
    finally:
        m.close()


def test_the_endpoint_is_prometheus_clients_answer(tmp_path):
    m = Metrics()
    m.captures.inc()
    port = _free_port()
    m.serve(f"127.0.0.1:{port}")
    try:
        status, text = _scrape(port)
        assert status == 200 and text == generate_latest(m.registry).decode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(resp.read()) == generate_latest(m.registry)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # HTTP/1.0, not GET: 405
            s.sendall(b"POST /metrics HTTP/1.0\r\n\r\n")
            assert s.recv(100).split(b"\r\n")[0].endswith(b" 405 Method Not Allowed")
    finally:
        m.close()
    with pytest.raises(OSError):  # closed: the port is free again
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_metrics_addr_needs_a_host():
    assert parse_addr("127.0.0.1:9847") == ("127.0.0.1", 9847)
    assert parse_addr("0.0.0.0:9847") == ("0.0.0.0", 9847)
    assert parse_addr("[::1]:9847") == ("::1", 9847)
    with pytest.raises(EnvironmentProblem) as exc:
        parse_addr(":9847")  # used to mean every address
    msg = str(exc.value)
    assert "\n" not in msg and "0.0.0.0:9847" in msg and exc.value.exit_code != 0
    for bad in ("9847", "host:", "host:99999", "[]:9847"):
        with pytest.raises(EnvironmentProblem):
            parse_addr(bad)


def test_a_recorder_without_metrics_never_imports_prometheus_client():
    """prometheus_client and what it imports (email, http, urllib.request, wsgiref) are 3.4 MiB of
    anonymous memory a recorder without --metrics-addr held for its life (issue 29, measured in a
    python importing what record does); they are imported when Metrics is made."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys\n"
            "import oomscope.record.main, oomscope.record.collector, oomscope.postmortem.finisher, oomscope.lab\n"
            "print('prometheus_client' in sys.modules)\n"
            "from oomscope.metrics import Metrics\n"
            "print('prometheus_client' in sys.modules)\n"
            "Metrics()\n"
            "print('prometheus_client' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=root), cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]
