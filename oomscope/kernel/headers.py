"""Kernel headers for bcc, which compiles the BPF C at load time.

Best: the exact headers of the running kernel (/lib/modules/<release>/build). When the
distribution has none for this kernel (a custom build), setup.sh merges the distribution's generic
headers into oomscope's own directory, and bcc is pointed there through BCC_KERNEL_SOURCE.
We never write into /lib/modules. The BPF programs read only tracepoint arguments (laid out from
the running kernel's tracefs format files) and helpers, never kernel structs, so headers of
another version are enough to compile them.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Optional

PRIVATE_HEADERS_DIR = os.environ.get("OOMSCOPE_HEADERS_DIR", "/var/lib/oomscope/kernel-headers")


@dataclass(frozen=True)
class HeadersChoice:
    path: Optional[str]
    exact: bool
    how: str  # a sentence for doctor and record's start-up line


def find_headers(release: Optional[str] = None) -> HeadersChoice:
    release = release or os.uname().release
    preset = os.environ.get("BCC_KERNEL_SOURCE")
    if preset and os.path.isdir(preset):
        return HeadersChoice(preset, exact=False, how=f"BCC_KERNEL_SOURCE={preset} (set by the user)")
    build = f"/lib/modules/{release}/build"
    if os.path.isdir(os.path.join(build, "include")):
        return HeadersChoice(build, exact=True, how=f"exact headers for {release} ({build})")
    private = sorted(glob.glob(os.path.join(PRIVATE_HEADERS_DIR, "*", "include")))
    if private:
        path = os.path.dirname(private[-1])
        return HeadersChoice(
            path, exact=False,
            how=f"no headers for {release}; using the distribution's {os.path.basename(path)} headers from {path}",
        )
    return HeadersChoice(None, exact=False, how=f"no kernel headers for {release} (run setup.sh)")


def apply_headers(choice: HeadersChoice) -> None:
    """Point bcc at the chosen headers when they are not the kernel's own."""
    if choice.path and not choice.exact:
        os.environ["BCC_KERNEL_SOURCE"] = choice.path
