"""The kernel wakes the sampler when a limited cgroup fills up, on the real kernel: cgroup v1
usage thresholds (an eventfd per cgroup), cgroup v2 memory.events (inotify).

The sampler is run with every polling interval at a minute, so a reading during the workload can
only come from a notification."""

import contextlib
import os
import threading
import time

import pytest

from oomscope.record.notify import LimitNotifications
from oomscope.record.sampler import Sampler

from .conftest import run_in_cgroup

IN_VM = os.environ.get("OOMSCOPE_IN_VM") == "1"
LIMIT = 64 << 20

# 40 MiB (62% of the limit) at about 200 MiB/s, held for 1.5 s, then on until the kernel kills it
FILL_HOLD_FILL = r"""
import time
a = []
for _ in range(10):
    a.append(bytearray(4 << 20)); time.sleep(0.02)
time.sleep(1.5)
while True:
    a.append(bytearray(4 << 20)); time.sleep(0.02)
"""


@contextlib.contextmanager
def polling_once_a_minute(hier, name):
    """A sampler of ``name`` whose every polling interval is a minute, running in a thread, once its
    limit notification is set up: a reading while the workload runs comes from a notification."""
    s = Sampler(hier, top=name, idle_interval_s=60, far_interval_s=60, mid_interval_s=60, peek_interval_s=60,
                discover_interval_s=1)
    stop = threading.Event()
    th = threading.Thread(target=s.run, args=(stop,), daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 10
        while not s.notified(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.notified(name), f"no limit notification set up for {name} (errors: {s.notify.errors})"
        yield s
    finally:
        stop.set()
        th.join(timeout=10)
        s.close()


def test_filling_a_limited_cgroup_wakes_the_sampler(hier, sandbox):
    name, path = sandbox(suffix="-notify", limit=LIMIT)
    with polling_once_a_minute(hier, name) as s:
        before = len(s.store.samples(name))
        t_start = time.monotonic_ns()
        res = run_in_cgroup(path, FILL_HOLD_FILL, timeout=60)
        t_reaped = time.monotonic_ns()
        assert res.returncode == -9  # the kernel's OOM killer
    during = [x for x in s.store.samples(name)[before:] if x.t_ns >= t_start]
    print(f"cgroup v{hier.version}: {s.limit_hits} notified readings; during the workload: "
          + ", ".join(f"{x.state.usage_bytes / LIMIT:.0%}" for x in during)
          + (f"; the last {(t_reaped - during[-1].t_ns) / 1e6:.0f} ms before the victim was reaped" if during else ""))
    assert s.limit_hits >= 1 and during
    if hier.version == 1:
        # Thresholds at 25% and 50% were crossed on the way to the hold (40 MiB and the
        # interpreter: 70% measured), so the cgroup was read while it held, long before the kill;
        # no polling would have read it then.
        held = [x for x in during if 0.5 <= x.state.usage_bytes / LIMIT < 0.85]
        assert held, "no reading while the cgroup held its 40 MiB"
    elif not IN_VM:
        # v2 notifies at the limit (a "max" event, before reclaim gives up): read near it
        assert max(x.state.usage_bytes for x in during) >= 0.9 * LIMIT
    else:
        # Under the VMs' software emulation the reading woken by the "max" event races the kill:
        # measured 36 ms before it in one run, after the victim's memory was freed in another.
        # What holds there: a reading was woken by the notification while the workload ran
        # (asserted above). test_memory_events_wake_the_sampler_near_the_mark asserts the
        # reading's level on v2 with a mark the workload stays above.
        assert any(x.t_ns <= t_reaped for x in during), "no reading while the workload ran"


# 44 MiB of anonymous memory (over memory.high at 36 MiB, under memory.max), held for 3 s, then
# a clean exit: memory.high throttles and never kills (Documentation/admin-guide/cgroup-v2.rst).
OVER_HIGH_AND_HOLD = r"""
import time
a = []
for _ in range(11):
    a.append(bytearray(4 << 20)); time.sleep(0.02)
time.sleep(3.0)
"""


def test_memory_events_wake_the_sampler_near_the_mark(hier, sandbox):
    """cgroup v2: every event counted in memory.events (high, max, oom, oom_kill) notifies its
    watchers, so the sampler, polling once a minute, reads the cgroup at once, at the level that
    raised the event. Here the event is "high", which the workload stays above for 3 s: the
    reading's level does not depend on how fast the machine is (the "max" event of a kill does)."""
    if hier.version != 2:
        pytest.skip("memory.high and memory.events are cgroup v2 (this host's memory controller is on v1)")
    high = 36 << 20
    name, path = sandbox(suffix="-high", limit=LIMIT)
    with open(os.path.join(path, "memory.high"), "w") as f:
        f.write(str(high))
    with polling_once_a_minute(hier, name) as s:
        before = len(s.store.samples(name))
        t_start = time.monotonic_ns()
        res = run_in_cgroup(path, OVER_HIGH_AND_HOLD, timeout=120)
        assert res.returncode == 0, res.stderr  # throttled, never killed
        with open(os.path.join(path, "memory.events")) as f:
            events = dict(line.split() for line in f.read().split("\n") if line)
    during = [x for x in s.store.samples(name)[before:] if x.t_ns >= t_start]
    print(f"memory.high {high >> 20} MiB: events {events}; {s.limit_hits} notified readings; during the workload: "
          + ", ".join(f"{x.state.usage_bytes / high:.0%} of high" for x in during))
    assert int(events["high"]) >= 1, events
    assert s.limit_hits >= 1 and during
    assert max(x.state.usage_bytes for x in during) >= 0.95 * high


# ~34 MiB touched page by page (the interpreter and 24 MiB), then a clean exit: over 25% of LIMIT
TOUCH_AND_EXIT = r"""
a = bytearray(24 << 20)
for i in range(0, len(a), 4096):
    a[i] = 1
"""


def test_thresholds_registered_together_wake_for_their_own_cgroup(hier, sandbox):
    """cgroup v1: the thresholds of many cgroups are registered by several threads at once (each
    write waits for an RCU grace period, record/notify.py); each cgroup's eventfd still wakes the
    sampler for that cgroup and no other."""
    if hier.version != 1:
        pytest.skip("usage thresholds are cgroup v1's; this hierarchy is v2 (memory.events, tested above)")
    made = [sandbox(suffix=f"-many{i}", limit=LIMIT) for i in range(12)]
    notes = LimitNotifications(hier)
    try:
        notes.sync({name: LIMIT for name, _ in made})
        assert [name for name, _ in made if not notes.notified(name)] == [], notes.last_error
        assert notes.poll(0) is None  # registering signals nothing
        name, path = made[7]
        res = run_in_cgroup(path, TOUCH_AND_EXIT, timeout=60)
        assert res.returncode == 0, res.stderr
        hit = set()
        deadline = time.monotonic() + 5
        while name not in hit and time.monotonic() < deadline:
            hit |= notes.poll(100) or set()
        assert hit == {name}
    finally:
        notes.close()
