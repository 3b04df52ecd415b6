"""cgroup v1 usage thresholds: an eventfd the kernel signals when a cgroup's usage crosses one.

cgroup v1 has no notification on memory.events (that file is v2's). What it has instead is the
threshold API (Documentation/admin-guide/cgroup-v1/memory.rst, "Memory thresholds"): write
``"<eventfd> <fd of memory.usage_in_bytes> <bytes>"`` to the cgroup's ``cgroup.event_control``, and
the kernel signals the eventfd each time the usage crosses that many bytes, up or down.

What the kernel does (mm/memcontrol-v1.c):
  - the check runs every THRESHOLDS_EVENTS_TARGET (128) page charge events per CPU, on the cgroup
    and each of its ancestors, so a crossing is seen within 512 KiB per CPU;
  - the descriptor of memory.usage_in_bytes is only used to name the counter: it can be closed
    once the registration is written;
  - each registration (one write) swaps the cgroup's threshold array and waits for an RCU grace
    period before returning (synchronize_rcu() in __mem_cgroup_usage_register_event): 10-17 ms
    a write here, asleep; writes from several threads share grace periods (record/notify.py);
  - closing the eventfd ends the registrations (its release wakes the kernel's waiter with
    EPOLLHUP, memcg_event_wake); removing the cgroup ends them too, signalling the eventfd once.

Measured on this host (6.18, cgroup v1): a 64 MiB cgroup filled at 200 MiB/s, thresholds at 32,
58 and 63 MiB were signalled at 172, 304 and 327 ms; the kill came at 354 ms. A peek every
250 ms could have missed everything after the first.
"""

from __future__ import annotations

import os
from typing import Iterable


def register(cgroup_dir: str, thresholds: Iterable[int]) -> int:
    """A non-blocking eventfd signalled when ``cgroup_dir``'s usage crosses any of ``thresholds``
    (bytes). Raises OSError when the cgroup cannot take them (gone, no v1 memory controller, out
    of descriptors); nothing is left open then."""
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        ufd = os.open(os.path.join(cgroup_dir, "memory.usage_in_bytes"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            ctl = os.open(os.path.join(cgroup_dir, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                for t in sorted(set(int(t) for t in thresholds)):
                    # one registration per write; the kernel strips the newline (strstrip in
                    # memcg_write_event_control)
                    os.write(ctl, f"{efd} {ufd} {t}\n".encode())
            finally:
                os.close(ctl)
        finally:
            os.close(ufd)
    except BaseException:
        os.close(efd)
        raise
    return efd


def unregister(efd: int) -> None:
    """Close the eventfd: the kernel drops its registrations."""
    try:
        os.close(efd)
    except OSError:
        pass


def drain(efd: int) -> int:
    """How many crossings were signalled since the last drain (0: none)."""
    try:
        return os.eventfd_read(efd)
    except BlockingIOError:
        return 0
