"""Charge steering: the in-kernel charge counters (bpf/charge_tracking.c) attached while some
cgroup is near its limit (``--charge-tracking=auto``) or always (``on``), watching the fullest
limited cgroups with their subtrees. Called by the sampler thread after each pass with readings
(ratios change only with readings)."""

from __future__ import annotations

from typing import Dict

from ..kernel.cgroupfs import cgroup_within
from ..layouts import CHARGE_SLOTS
from .charges import choose_watched

AUTO_ATTACH_RATIO = 0.9     # charge tracking attaches when a cgroup is this close to its limit ...
AUTO_DETACH_RATIO = 0.8     # ... and detaches when every cgroup is below this
AUTO_DETACH_AFTER_S = 10.0  # for this long


class ChargeSteering:
    def __init__(self, charge, mode: str = "auto"):
        self.charge = charge  # probes.ChargeTracker (watch, attach, detach, attached)
        self.mode = mode
        self._last_near_ns = 0

    def steer(self, watched: Dict[str, object], now: int) -> None:
        """``watched``: the sampler's cgroups (limited, ratio, near_ns, near_ratio, ino)."""
        # A storm's cgroup swings between its limit and far below it at every kill: it stays a
        # candidate for AUTO_DETACH_AFTER_S after it was last near its limit, ranked by how full it
        # was then. Dropping it at each kill's low reading (while another cgroup on the host was
        # above 80%) changed the watched set, and with it the counters' generation, so the next
        # kill found no paired sample (host CI: a storm kill without a reconstruction).
        window = AUTO_DETACH_AFTER_S * 1e9
        limited = []  # (rank, cgroup)
        near = False
        for cg, w in watched.items():
            if not w.limited:
                continue
            near = near or w.ratio >= AUTO_ATTACH_RATIO
            if w.ratio >= AUTO_DETACH_RATIO:
                w.near_ns, w.near_ratio = now, w.ratio
                self._last_near_ns = now
            limited.append((max(w.ratio, w.near_ratio) if now - w.near_ns < window else w.ratio, cg))
        want = self.mode == "on" or near or (
            self.charge.attached and now - self._last_near_ns < AUTO_DETACH_AFTER_S * 1e9)
        if not want:
            self.charge.detach()
            return
        candidates = []
        for ratio, cg in limited:
            if self.mode != "on" and ratio < AUTO_DETACH_RATIO:
                continue
            subtree = [(c, w.ino) for c, w in watched.items() if cgroup_within(c, cg)]
            candidates.append((ratio, cg, subtree))
        chosen = choose_watched(candidates, CHARGE_SLOTS)
        if chosen:
            self.charge.watch([i for _c, i in chosen])
            self.charge.attach()
