"""What a test needs installed, and what a missing one does to the run.

The convention: a test that needs a program or a Python package that ``./setup.sh test`` installs
asks for it here, in its body or in a fixture::

    stress_ng = require_tool("stress-ng")                 # -> its path
    java = require_tool("java", package="openjdk-17-jdk-headless")
    playwright = require_module("playwright.sync_api", package="playwright (PyPI)")

When it is missing, the reason always says "<name> is not installed (<package>: ./setup.sh test
installs it)". By hand (``pytest tests``) that is a skip, printed by ``-rs``. Under
``OOMSCOPE_STRICT_SKIPS=1``, which ``./setup.sh test`` sets for the host's run and passes into
every VM of tests/vm/run-matrix.sh, it is a failure: a package the set-up forgot turns CI red
instead of hiding as a skip (issue 24: stress-ng was never installed, so the storm tests skipped
on the host and in every VM while CI stayed green).

A skip for what the machine *is* (not root, a kernel without BTF or without a tracepoint, cgroup
v1 against v2, no swap on a shared host, a global OOM outside a VM) stays a skip with its reason,
in strict mode too: ``pytest.skip("...")`` as usual, never with "not installed" in its reason.

``strict_skip_report`` (called from tests/conftest.py's ``pytest_runtest_makereport``) is the net
behind the helpers: in strict mode any skip whose reason says "not installed", from a raw
``pytest.skip`` or a ``skipif`` marker written without these helpers, is reported as a failure.
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest

STRICT_ENV = "OOMSCOPE_STRICT_SKIPS"
MISSING = "not installed"  # the words every missing-package reason carries, and the net looks for
#: programs that must never be installed on the host, unpacked for the VMs only (the user-space OOM
#: killers: their packages enable services acting on the whole machine): tests/vm/run-matrix.sh
#: passes the tree's root to each guest in this variable; require_tool looks there after PATH
VM_TOOLS_ENV = "OOMSCOPE_VM_TOOLS"
VM_TOOL_DIRS = ("usr/bin", "usr/sbin", "usr/lib/systemd", "lib/systemd")  # Debian 12 ships systemd-oomd in /lib/systemd


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def missing(what: str, package: str, how: str = "./setup.sh test installs it") -> None:
    """Skip (by hand) or fail (strict mode) for a missing ``what``; never returns."""
    reason = f"{what} is {MISSING} ({package}: {how})"
    if strict():
        pytest.fail(f"{reason}; {STRICT_ENV}=1 makes a missing package a failure", pytrace=False)
    try:
        pytest.skip(reason)
    except pytest.skip.Exception as exc:
        exc._use_item_location = True  # -rs names the test, not this file (as a skipif marker does)
        raise


def vm_tool(name: str) -> str | None:
    """``name`` in the tree of programs unpacked for the VMs only (``OOMSCOPE_VM_TOOLS``), or None."""
    root = os.environ.get(VM_TOOLS_ENV)
    if not root:
        return None
    return shutil.which(name, path=os.pathsep.join(os.path.join(root, d) for d in VM_TOOL_DIRS))


def require_tool(name: str, package: str | None = None, vm_only: bool = False) -> str:
    """The path of the program ``name`` on PATH (Debian package ``package``, by default the same name),
    else in the VMs' tree (``vm_only``: a program never installed on the host, unpacked by
    tests/vm/run-matrix.sh for the guests)."""
    path = shutil.which(name) or vm_tool(name)
    if path is None:
        missing(name, f"Debian package {package or name}",
                "tests/vm/run-matrix.sh unpacks it for the VMs only" if vm_only else "./setup.sh test installs it")
    return path


def require_tools(*names: str, packages: dict | None = None) -> list:
    """The paths of every one of ``names`` (``packages`` maps a name to its Debian package when
    they differ); the reason names every missing one at once."""
    packages = packages or {}
    absent = [n for n in names if shutil.which(n) is None]
    if absent:
        debs = sorted({packages.get(n, n) for n in absent})
        missing(", ".join(absent), f"Debian package{'s' if len(debs) > 1 else ''} {', '.join(debs)}")
    return [shutil.which(n) for n in names]


def require_path(path: str, package: str) -> str:
    """A file a package installs where no PATH look-up finds it (e.g. /usr/bin/chromium by its full path)."""
    if not os.path.exists(path):
        missing(path, f"Debian package {package}")
    return path


def require_module(name: str, package: str | None = None):
    """The imported module ``name`` (from PyPI package ``package``, by default its top-level name)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    missing(f"the Python module {name}", f"PyPI package {package or name.split('.')[0]}")


def strict_skip_report(report) -> None:
    """In strict mode, turn a skip whose reason says a package is "not installed" into a failure."""
    if not (strict() and report.skipped) or getattr(report, "wasxfail", None) is not None:
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if MISSING not in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"{reason}\n(strict mode: {STRICT_ENV}=1 makes a skip for a missing package a failure)"
