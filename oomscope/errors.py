"""One exception hierarchy, and the one way an entry point (cli.py, record/main.py) turns an error
into a one-line message and an exit code."""

import os
import sys


class OomscopeError(Exception):
    """Base of every error oomscope reports to the user as one line."""

    exit_code = 1


class CaptureError(OomscopeError):
    """A capture file is missing, unreadable, or not a capture of a schema we read."""

    exit_code = 2


class ParseError(OomscopeError):
    """Kernel text that does not have the expected shape."""

    exit_code = 2


class EnvironmentProblem(OomscopeError):
    """The host cannot do what was asked: not root, no tracefs, no BPF, no headers, ..."""

    exit_code = 3


class CgroupError(OomscopeError):
    """A cgroup could not be created, read or removed."""

    exit_code = 4


class ProbeError(EnvironmentProblem):
    """The BPF programs could not be compiled or attached."""


class ImportProblem(OomscopeError):
    """A kernel log to import cannot be read, or the output folder written (oomscope import)."""

    exit_code = 2


def error_line(exc: OomscopeError) -> str:
    from .terminal import terminal_safe

    return f"oomscope: error: {terminal_safe(str(exc))}"


def run_entry_point(body) -> int:
    """body()'s exit code (None: 0); never a traceback for the user (OOMSCOPE_DEBUG=1 shows it)."""
    from .terminal import terminal_safe

    try:
        return body() or 0
    except KeyboardInterrupt:
        sys.stderr.write("oomscope: interrupted\n")
        return 130
    except Exception as exc:  # the user sees one line, never a traceback
        if os.environ.get("OOMSCOPE_DEBUG"):
            raise
        sys.stderr.write(f"oomscope: internal error: {type(exc).__name__}: {terminal_safe(str(exc))}\n")
        return 70
