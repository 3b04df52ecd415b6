"""tests/vm/suite.txt: every system test is either run in the VMs or said to be proven on the host."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _system_tests():
    found = set()
    folder = os.path.join(ROOT, "tests", "system")
    for name in sorted(os.listdir(folder)):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            found |= {f"tests/system/{name}::{n.name}" for n in tree.body
                      if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return found


def _suite():
    vm, host = set(), set()
    with open(os.path.join(ROOT, "tests", "vm", "suite.txt")) as f:
        for line in f:
            m = re.match(r"^(host:\s*|newest:\s*|on (?:(?:6\.1|6\.12|7) ?)+:\s*)?(tests/\S+::\w+)\s+#\s*\S", line)
            if m:
                (host if m.group(1) and m.group(1).startswith("host:") else vm).add(m.group(2))
            else:
                assert not line.strip() or line.startswith("#"), f"suite.txt: not 'ID  # why': {line!r}"
    return vm, host


def test_every_system_test_is_in_the_vm_suite_or_proven_on_the_host():
    vm, host = _suite()
    tests = _system_tests()
    assert not vm & host, f"in both lists: {sorted(vm & host)}"
    assert not (vm | host) - tests, f"listed but not a test: {sorted((vm | host) - tests)}"
    assert not tests - (vm | host), f"not classified (tests/vm/suite.txt): {sorted(tests - (vm | host))}"
    # what only cgroup v2 can prove stays in the VMs
    assert {"tests/system/test_record.py::test_group_kill_is_one_incident",
            "tests/system/test_global_oom.py::test_global_oom_says_the_node_ran_out",
            "tests/system/test_swap.py::test_swap_at_the_kill"} <= vm


def _suite_ids(series, text, tmp_path):
    """run-matrix.sh's own suite_ids, taken from the script and run on a suite of ours."""
    import subprocess

    script = open(os.path.join(ROOT, "tests", "vm", "run-matrix.sh")).read()
    start = script.index("suite_ids() {")
    body = script[start:script.index("\nnewest_ids() {", start)]
    suite = tmp_path / "suite.txt"
    suite.write_text(text)
    res = subprocess.run(["bash", "-c", body + '\nsuite_ids "$1"', "sh", series], env={"SUITE": str(suite), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_a_line_on_some_series_runs_only_in_their_vms(tmp_path):
    text = ("# a comment\n\n"
            "tests/a.py::test_every  # why\n"
            "on 6.1 7: tests/a.py::test_ends  # why\n"
            "on 6.12: tests/a.py::test_middle  # why\n"
            "host: tests/a.py::test_host  # why\n"
            "newest: tests/a.py::test_newest  # why\n")
    assert _suite_ids("6.1", text, tmp_path) == ["tests/a.py::test_every", "tests/a.py::test_ends"]
    assert _suite_ids("6.12", text, tmp_path) == ["tests/a.py::test_every", "tests/a.py::test_middle"]
    assert _suite_ids("7", text, tmp_path) == ["tests/a.py::test_every", "tests/a.py::test_ends"]
    assert _suite_ids("6", text, tmp_path) == ["tests/a.py::test_every"]  # a series is named whole, not by a prefix


def test_the_real_suite_gives_each_series_its_lines(tmp_path):
    text = open(os.path.join(ROOT, "tests", "vm", "suite.txt")).read()
    every = set(_suite_ids("6.12", text, tmp_path))
    assert "tests/system/test_global_oom.py::test_global_oom_says_the_node_ran_out" not in every
    assert "tests/system/test_kernel_snapshot.py::test_single_kill_snapshot_equals_the_report" in every
    for series in ("6.1", "7"):
        assert "tests/system/test_global_oom.py::test_global_oom_says_the_node_ran_out" in _suite_ids(series, text, tmp_path)
