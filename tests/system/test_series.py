"""Repeated kills are one series (issue 29): the lab restarts a leaking workload in its sandbox
until the kernel has killed it five times, as a supervisor would; record must show one series of
five kills with the same verdict, each kill's line naming the series and its number in it."""

import json
import os
import subprocess
import sys
import time

from oomscope.lab import RESTARTS, run_scenario

LIMIT = 64 << 20


def _oomscope(*args):
    return subprocess.run([sys.executable, "-m", "oomscope", *args], capture_output=True, text=True, timeout=120)


def test_a_restarted_leak_is_one_series_of_five_kills_with_one_verdict(recorder, hier):
    rec = recorder()
    deadline = time.monotonic() + 120
    while "oomscope: sampling" not in rec.stderr():
        assert time.monotonic() < deadline, f"record's sampler never finished a pass: {rec.stderr()}"
        time.sleep(0.2)
    cgroup = f"/oomscope-test-{os.getpid()}-crashloop"
    run = run_scenario("crashloop", limit_bytes=LIMIT, hier=hier, cgroup=cgroup)
    assert run.killed and len(run.pids_seen) == RESTARTS["crashloop"] == 5, run.stderr
    end = time.monotonic() + 60
    while True:
        caps = [c for c in rec.captures() if c[1]["cgroup"]["oom_memcg"] == cgroup
                and os.path.exists(os.path.join(os.path.dirname(c[0]), "postmortem.html"))]
        if len(caps) >= 5 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert sorted(c[1]["victim"]["pid"] for c in caps) == sorted(run.pids_seen), rec.stdout()
    out_dir = os.path.dirname(os.path.dirname(caps[0][0]))
    # the series, as `oomscope series` reads the folder
    r = _oomscope("series", out_dir, "-f", "json")
    assert r.returncode == 0, r.stderr
    mine = [s for s in json.loads(r.stdout)["series"] if s["key"] == f"cgroup {cgroup}"]
    assert len(mine) == 1 and mine[0]["kills"] == 5, mine
    (series,) = mine
    # each kill's report -f json: its series and number, one verdict for all five
    verdicts = []
    for n, path in enumerate(sorted((c[0] for c in caps), key=lambda p: json.load(open(p))["times"]["kill_monotonic_ns"]), 1):
        r = _oomscope("report", "-f", "json", path)
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout)
        assert j["series"]["id"] == series["id"] and j["series"]["kill_number"] == n and j["series"]["kills_so_far"] == 5
        verdicts.append((tuple(j["verdict"]["categories"]), j["verdict"]["trend"]))
    assert len(set(verdicts)) == 1 and verdicts[0][0][0] in ("anon", "anon_thp") and verdicts[0][1] == "leak", verdicts
    # record's line per kill says the series and which kill of it
    rec.wait_for_output(f"series={series['id']} series_kill=5", timeout=30)
    # the series page: five lives on one axis, a leak that restarts, each kill linked
    page_path = os.path.join(out_dir, series["page"])
    end = time.monotonic() + 10
    while time.monotonic() < end and (not os.path.exists(page_path) or "5 OOM kills" not in open(page_path).read()):
        time.sleep(0.2)
    page = open(page_path).read()
    assert "5 OOM kills" in page and "A leak that restarts" in page and page.count("<polyline") == 5
    assert page.count("postmortem.html") == 5 and "<script" not in page
    assert f"series/{series['id']}.html" in open(os.path.join(out_dir, "index.html")).read()
