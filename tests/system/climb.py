"""A workload that leaks near its limit before its storm (issue 29: the worker started ahead).

    python climb.py USAGE_FILE LIMIT SECONDS

Run inside a cgroup with a memory limit (its own cgroup.procs written first): up to 76% of LIMIT
at once (the cgroup's usage read from USAGE_FILE, memory.current or v1's memory.usage_in_bytes),
its pid printed; still 11 s (the sampler's ring of ~10 s flat); then climbing 0.5 MiB a second
for SECONDS (80% within ~3 s, 86% after 12 s: 18 s or more from the limit at that rate); "fast"
printed; then 1 MiB at a time until the kernel kills it. Used by
tests/system/test_lean_recorder.py and bench/lean.py --storm-climb.
"""

import os
import sys
import time


def main(usage_file: str, limit: int, seconds: float) -> None:
    def usage() -> int:
        with open(usage_file) as f:
            return int(f.read())

    held = []
    while usage() < 0.76 * limit:
        held.append(b"\1" * (1 << 20))
    print(os.getpid(), flush=True)
    time.sleep(11)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        held.append(b"\1" * (1 << 17))
        time.sleep(0.25)
    print("fast", flush=True)
    while True:
        held.append(b"\1" * (1 << 20))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
