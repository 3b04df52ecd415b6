"""tracefs: which tracepoints exist and which fields they carry (features detected, not versions).

bcc builds a tracepoint's argument struct from its format file, so tracefs must be mounted.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import List, Optional

from ..errors import EnvironmentProblem

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


@dataclass(frozen=True)
class FormatField:
    ctype: str
    name: str
    offset: int
    size: int


_RE_FIELD = re.compile(
    r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
)


def parse_format(text: str) -> List[FormatField]:
    """A tracepoint's ``format`` file → its own fields (the ``common_*`` ones left out)."""
    fields = []
    for line in text.split("\n"):
        m = _RE_FIELD.match(line)
        if not m:
            continue
        decl = m.group("decl").strip()
        # "unsigned long total_vm", "__data_loc char[] comm", "char comm[16]"
        name_part = decl.split()[-1]
        name = name_part.split("[", 1)[0]
        ctype = decl[: len(decl) - len(name_part)].strip()
        if name.startswith("common_"):
            continue
        fields.append(FormatField(ctype=ctype, name=name, offset=int(m.group("offset")), size=int(m.group("size"))))
    return fields


def find_tracefs() -> Optional[str]:
    for path in CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def ensure_tracefs() -> str:
    """The tracefs mount point; mounts it at /sys/kernel/tracing when it is not mounted."""
    found = find_tracefs()
    if found:
        return found
    if os.geteuid() != 0:
        raise EnvironmentProblem("tracefs is not mounted (run as root, or: mount -t tracefs tracefs /sys/kernel/tracing)")
    try:
        subprocess.run(["mount", "-t", "tracefs", "tracefs", CANDIDATES[0]], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"cannot mount tracefs at {CANDIDATES[0]}: {exc}") from None
    found = find_tracefs()
    if not found:
        raise EnvironmentProblem("tracefs mounted but has no events/ directory")
    return found


def tracepoint_fields(category: str, event: str, tracefs: Optional[str] = None) -> Optional[List[FormatField]]:
    """The fields of ``category:event``, or None when the kernel does not have that tracepoint."""
    tracefs = tracefs or find_tracefs()
    if tracefs is None:
        return None
    try:
        with open(os.path.join(tracefs, "events", category, event, "format")) as f:
            return parse_format(f.read())
    except OSError:
        return None
