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
            m = re.match(r"^(host:\s*|newest:\s*)?(tests/\S+::\w+)\s+#\s*\S", line)
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
