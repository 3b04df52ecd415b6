"""The reclaim map's entries of processes long gone are deleted (probes.OomProbes._prune_reclaim):
the map is an LRU of 16,384 that nothing else emptied, read whole at each fast pass while a cgroup
is near its limit (the soak of 2026-12-06: the sampling thread 20% of a core). The method is
driven here on a dict standing in for bcc's table; the deletes are the same `del table[Key(pid)]`."""

import os
import time
import types

from oomscope.layouts import ReclaimStats
from oomscope.probes import RECLAIM_KEEP_S, RECLAIM_PRUNE_EVERY_S, OomProbes

GONE = 4_194_000 + 17  # above this host's pid_max (4194304 at most): never a live process


class _Table(dict):
    Key = int  # bcc's table.Key(pid): here the pid itself


def _probes():
    return types.SimpleNamespace(_reclaim_pruned_ns=0, _reclaim_gone=set(), reclaim_pruned=0)


def test_an_entry_is_deleted_only_when_gone_at_two_prunes_and_quiet_for_a_minute(monkeypatch):
    now = [time.monotonic_ns()]
    monkeypatch.setattr(time, "monotonic_ns", lambda: now[0])
    old = now[0] - int((RECLAIM_KEEP_S + 5) * 1e9)
    read = {os.getpid(): ReclaimStats(memcg_runs=1, last_ns=old),  # alive: kept
            GONE: ReclaimStats(memcg_runs=3, last_ns=old),          # gone and quiet: deleted at the second prune
            GONE + 1: ReclaimStats(memcg_runs=2, last_ns=now[0])}   # gone just now (a victim): kept
    table, p = _Table(read), _probes()
    OomProbes._prune_reclaim(p, table, read)
    assert set(table) == set(read) and p.reclaim_pruned == 0  # first seen gone: not yet
    now[0] += int(RECLAIM_PRUNE_EVERY_S * 1e9) // 2
    OomProbes._prune_reclaim(p, table, read)
    assert set(table) == set(read)  # too soon after the last prune: nothing done
    now[0] += int(RECLAIM_PRUNE_EVERY_S * 1e9)
    OomProbes._prune_reclaim(p, table, read)
    assert set(table) == {os.getpid(), GONE + 1} and p.reclaim_pruned == 1
