"""packaging/prometheus/oomscope-rules.yml: checked and unit-tested by promtool (Debian's
`prometheus` package), and every oomscope metric it names is one record serves."""

import os
import re
import subprocess

from prometheus_client import generate_latest

from oomscope.metrics import Metrics

from ..requires import require_tool

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RULES_DIR = os.path.join(ROOT, "packaging", "prometheus")
RULES = os.path.join(RULES_DIR, "oomscope-rules.yml")


def _promtool():
    return require_tool("promtool", package="prometheus")


def test_promtool_checks_the_rules():
    res = subprocess.run([_promtool(), "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS: 8 rules found" in res.stdout, res.stdout + res.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    res = subprocess.run([_promtool(), "test", "rules", "oomscope-rules.test.yml"], cwd=RULES_DIR,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_every_metric_the_rules_name_is_served():
    with open(RULES) as f:
        text = "\n".join(line for line in f if not line.lstrip().startswith("#"))
    named = set(re.findall(r"\boomscope_[a-z_]+", text))
    m = Metrics()
    m.losses.labels("bpf_events").set(0)  # labelled families print their name once they have a child
    m.headroom.labels("/x").set(0)
    m.limit.labels("/x").set(0)
    m.to_limit.labels("/x").set(0)
    m.last_kill.labels(*("x",) * 7).set(0)
    m.throttled.labels(*("x",) * 4).inc(0)
    served = set(re.findall(r"^(oomscope_[a-z_]+)", generate_latest(m.registry).decode(), re.M))
    assert named and named <= served, named - served
