"""tests/requires.py: a test skipped for a missing package fails under OOMSCOPE_STRICT_SKIPS=1
(as ./setup.sh test runs the suite); a skip for what the machine is stays a skip."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFTEST = """
import pytest
from tests.requires import strict_skip_report

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    strict_skip_report(outcome.get_result())
"""

TESTS = """
import pytest
from tests.requires import require_module, require_tool

def test_helper_tool():
    require_tool("oomscope-no-such-tool-24")

def test_helper_module():
    require_module("oomscope_no_such_module_24")

@pytest.fixture
def needs():
    require_tool("oomscope-no-such-tool-24", package="some-package")

def test_helper_in_a_fixture(needs):
    pass

@pytest.mark.skipif(True, reason="frob is not installed (apt-get install frob)")
def test_raw_skipif_for_a_package():
    pass

def test_raw_skip_for_a_package():
    pytest.skip("frob is not installed")

def test_skip_for_the_machine():
    pytest.skip("memory.oom.group is cgroup v2 only")

@pytest.mark.skipif(True, reason="a global OOM is made only inside the test VMs")
def test_skipif_for_the_machine():
    pass

def test_present_tool():
    assert require_tool("sh")
"""


def _run(tmp_path, strict):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(TESTS)
    env = dict(os.environ, PYTHONPATH=ROOT, OOMSCOPE_STRICT_SKIPS="1" if strict else "")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_by_hand_a_missing_package_is_a_skip_with_its_reason(tmp_path):
    r = _run(tmp_path, strict=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 7 skipped" in r.stdout, r.stdout
    assert "oomscope-no-such-tool-24 is not installed (Debian package oomscope-no-such-tool-24: ./setup.sh test installs it)" in r.stdout
    assert "the Python module oomscope_no_such_module_24 is not installed (PyPI package oomscope_no_such_module_24" in r.stdout


def test_strict_mode_fails_a_missing_package_and_keeps_the_machines_skips(tmp_path):
    r = _run(tmp_path, strict=True)
    assert r.returncode == 1, r.stdout + r.stderr
    # a skip at set-up (a fixture, a skipif marker) fails as an error, one in the test as a failure
    assert "3 failed, 1 passed, 2 skipped, 2 errors" in r.stdout, r.stdout
    failed = sorted(line.split("::")[1].split()[0] for line in r.stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    assert failed == ["test_helper_in_a_fixture", "test_helper_module", "test_helper_tool",
                      "test_raw_skip_for_a_package", "test_raw_skipif_for_a_package"], r.stdout
    assert "OOMSCOPE_STRICT_SKIPS=1" in r.stdout
    assert "memory.oom.group is cgroup v2 only" in r.stdout and "only inside the test VMs" in r.stdout


def test_a_vm_only_tool_is_found_in_the_unpacked_tree_and_fails_strict_mode_when_missing(tmp_path, monkeypatch):
    """The user-space killers are never installed on the host: tests/vm/run-matrix.sh unpacks them and
    passes the tree as OOMSCOPE_VM_TOOLS; require_tool finds them there (systemd-oomd in Debian 12's
    /lib/systemd), and a missing one fails strict mode, saying where it should have come from."""
    import pytest

    from tests import requires

    tree = tmp_path / "root"
    (tree / "lib/systemd").mkdir(parents=True)
    tool = tree / "lib/systemd/oomscope-vm-tool-28"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv(requires.VM_TOOLS_ENV, str(tree))
    monkeypatch.setenv(requires.STRICT_ENV, "1")
    assert requires.require_tool("oomscope-vm-tool-28", vm_only=True) == str(tool)
    monkeypatch.delenv(requires.VM_TOOLS_ENV)
    with pytest.raises(pytest.fail.Exception, match="unpacks it for the VMs only"):
        requires.require_tool("oomscope-vm-tool-28", vm_only=True)
