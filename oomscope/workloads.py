"""Workloads the lab runs inside a sandbox cgroup: ``python -m oomscope.workloads NAME LIMIT``.

The lab starts them already inside a cgroup with a memory limit (lab.py); each names itself and
allocates. Run by hand outside such a cgroup they would allocate up to 4x LIMIT and stop.
"""

from __future__ import annotations

import os
import sys
import time

CHUNK = 1 << 20


def _name(name: str) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write(name[:15])


def _touch_until_killed(limit: int) -> None:
    hold = []
    # Safety: stop at 4x the limit; reaching it means no kill happened (reported by the lab).
    for _ in range(4 * limit // CHUNK):
        hold.append(bytearray(CHUNK))  # bytearray() zero-fills: every page is touched and charged
    time.sleep(1)


def anon(limit: int) -> None:
    _name("oomscope-anon")
    _touch_until_killed(limit)


def sidecar(limit: int) -> None:
    """A main process and a helper both allocate: the victim's RSS is well below the charge."""
    _name("oomscope-main")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("/proc/self/comm", "w") as f:
            f.write("oomscope-side")
        held = bytearray(int(limit * 0.35))
        for i in range(0, len(held), 4096):
            held[i] = 1
        os.write(w, b"x")
        time.sleep(120)  # the lab kills it when it removes the cgroup
        os._exit(0)
    os.close(w)
    os.read(r, 1)  # wait until the sidecar holds its share
    _touch_until_killed(limit)


SCENARIOS = {"anon": anon, "sidecar": sidecar}


def main(argv) -> int:
    name, limit = argv[0], int(argv[1])
    SCENARIOS[name](limit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
