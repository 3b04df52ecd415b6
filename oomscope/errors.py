"""One exception hierarchy. Only cli.py turns these into a one-line message and an exit code."""


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
