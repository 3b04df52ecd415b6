"""Prometheus metrics of `record --metrics-addr HOST:PORT` (prometheus_client), served by
metrics_http.MetricsServer: one thread, a bounded number of connections, each with a deadline.

Names and labels follow Prometheus conventions (`oomscope_` prefix, `_total` counters, base
units). Label values come from kill captures and cgroup names, so their number is bounded:

- ``oomscope_oom_kills_total``: at most MAX_SERIES label sets; kills beyond that are counted
  under the value "other".
- ``oomscope_last_oom_kill_timestamp_seconds``: one series per cgroup, its last kill (a new kill
  in the cgroup replaces the series: the post-mortem's path is a label), at most MAX_LAST_KILLS
  cgroups (the cgroup whose last kill is the oldest loses its series first). It is what an alert
  joins to name the post-mortem; its value is the kill's Unix time, so it alerts on the first
  kill of a cgroup too (``increase()`` of a counter that appears at 1 sees no increase).
- ``oomscope_cgroup_{headroom,limit}_bytes``, ``oomscope_cgroup_seconds_to_limit``: only the
  MAX_NEAR_LIMIT fullest cgroups at or above NEAR_LIMIT_RATIO (80%) of their own limit at their
  last reading (record/readings.py ``near_limit``); a cgroup that drops below, vanishes or is
  pushed out by fuller ones loses its series.
"""

from __future__ import annotations

import collections
import datetime as dt
from typing import TYPE_CHECKING, Iterable, Optional, Tuple

from .errors import EnvironmentProblem
from .metrics_http import MetricsServer
from .model import Capture

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MAX_SERIES = 500
KILL_LABELS = ("cgroup", "namespace", "pod", "container", "comm", "category")
MAX_LAST_KILLS = 200
LAST_KILL_LABELS = KILL_LABELS + ("postmortem",)
THROTTLE_LABELS = ("cgroup", "namespace", "pod", "container")
MAX_NEAR_LIMIT = 20


def parse_addr(text: str) -> Tuple[str, int]:
    """HOST:PORT ([v6]:PORT) of --metrics-addr. The host is required: an empty one (":9847") used
    to mean every address, which is never what a recorder on a shared node should do unasked."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnvironmentProblem(f"--metrics-addr must be HOST:PORT (e.g. 127.0.0.1:9847), not {text!r}")
    host = host.strip("[]")
    if not host:
        raise EnvironmentProblem(f"--metrics-addr {text!r} has no host: write 0.0.0.0:{port} to serve metrics on "
                                 f"every address, or 127.0.0.1:{port} for this host only")
    return host, int(port)


class Metrics:
    def __init__(self, registry: Optional["CollectorRegistry"] = None):
        # imported here, not with this module: a recorder without --metrics-addr never loads
        # prometheus_client (and the email, http and urllib modules it imports): 3.4 MiB of
        # anonymous memory measured in a python that imports what record does (issue 29)
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.kills = Counter("oomscope_oom_kills", "OOM kills seen, by the victim's cgroup and workload and the "
                             "category that explains the kill", KILL_LABELS, registry=r)
        self.captures = Counter("oomscope_captures_written", "Captures (capture.json) written", registry=r)
        self.series = Counter("oomscope_oom_kill_series", "Series of repeated kills: a workload killed again within the "
                              "series window (record --series-window), counted at its second kill; its later kills "
                              "count in oomscope_oom_kills_total only", registry=r)
        self.no_report = Counter("oomscope_kills_without_kernel_report",
                                 "Kills whose kernel OOM report was rate-limited away or not seen", registry=r)
        self.not_written = Counter("oomscope_kills_not_written", "OOM kills counted but not written (no capture, no "
                                   "post-mortem) by reason: rate, a workload's storm beyond its budget (record "
                                   "--workload-burst, --workload-every)", ["reason"], registry=r)
        self.errors = Counter("oomscope_errors", "Errors by component (probe, collector, writer)", ["component"], registry=r)
        self.watched = Gauge("oomscope_watched_cgroups", "Memory cgroups the sampler watches", registry=r)
        self.lost = Gauge("oomscope_bpf_events_lost", "BPF perf-buffer events lost (cumulative)", registry=r)
        self.losses = Gauge("oomscope_lost", "What record lost, by kind (cumulative): bpf_events, kmsg_records, "
                            "dropped_cgroups, late_events, late_reports", ["what"], registry=r)
        self.thread_stalled = Gauge("oomscope_thread_stalled", "1 while a thread of record (sampler, kmsg) makes no progress "
                                    "or has died (record/watchdog.py); kills are still recorded", ["thread"], registry=r)
        for name in ("sampler", "kmsg"):
            self.thread_stalled.labels(name).set(0)
        self.kmsg_reader = Gauge("oomscope_kmsg_reader_up", "1 while the /dev/kmsg reader runs (0: captures lack the kernel's report)",
                                 registry=r)
        self.last_kill = Gauge("oomscope_last_oom_kill_timestamp_seconds",
                               "Unix time of each cgroup's last OOM kill, with the post-mortem's path and the category "
                               f"that explains it (one series per cgroup, at most {MAX_LAST_KILLS} cgroups)",
                               LAST_KILL_LABELS, registry=r)
        near = f"(only the {MAX_NEAR_LIMIT} fullest cgroups at or above 80% of their own limit)"
        self.headroom = Gauge("oomscope_cgroup_headroom_bytes", f"Limit minus usage at the last reading {near}",
                              ["cgroup"], registry=r)
        self.limit = Gauge("oomscope_cgroup_limit_bytes", f"The cgroup's memory limit {near}", ["cgroup"], registry=r)
        self.to_limit = Gauge("oomscope_cgroup_seconds_to_limit",
                              f"Seconds until usage reaches the limit at its rate over the last ~10 s; +Inf when not "
                              f"growing {near}", ["cgroup"], registry=r)
        self.throttled = Counter("oomscope_memory_high_throttled_seconds",
                                 "Seconds some task of the cgroup was stalled on memory (PSI some) during memory.high "
                                 "throttling episodes (record --throttle-share), by cgroup and workload "
                                 f"(at most {MAX_SERIES} label sets, then other)", THROTTLE_LABELS, registry=r)
        self._throttle_series: set = set()
        self._series = set()
        self._last: "collections.OrderedDict[str, Tuple[str, ...]]" = collections.OrderedDict()  # cgroup -> labels
        self._near: set = set()
        self._server: Optional[MetricsServer] = None

    def serve(self, addr: str) -> None:
        """Serve the metrics on ADDR (HOST:PORT) from a thread of their own (metrics_http: bounded)."""
        from prometheus_client import make_wsgi_app

        host, port = parse_addr(addr)
        try:
            self._server = MetricsServer(host, port, make_wsgi_app(self.registry))
        except OSError as exc:  # socket.gaierror included: its strerror says the name is unknown
            raise EnvironmentProblem(f"cannot serve metrics on {addr}: {exc.strerror or exc}") from None
        self._server.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def kill(self, capture: Capture, category: str, postmortem: Optional[str] = None) -> None:
        wl = capture.workload
        values = (capture.cgroup.task_memcg or capture.cgroup.oom_memcg or "unknown", wl.namespace or "",
                  wl.pod or (wl.pod_uid or ""), wl.container or (wl.container_id or "")[:12],
                  capture.victim.comm or "", category or "unknown")
        self._last_kill(values, postmortem or "", _unix_time(capture.times.kill_wall))
        if values not in self._series and len(self._series) >= MAX_SERIES:
            values = ("other",) * 5 + (values[5],)
        self._series.add(values)
        self.kills.labels(*values).inc()
        if capture.at_kill.source != "kernel_report" and not capture.kernel_report.present:
            self.no_report.inc()

    def throttled_seconds(self, cgroup: str, wl, seconds: float) -> None:
        """Stall seconds of a throttling episode as they accrue (record/throttle.py)."""
        values = (cgroup, wl.namespace or "", wl.pod or (wl.pod_uid or ""), wl.container or (wl.container_id or "")[:12])
        if values not in self._throttle_series and len(self._throttle_series) >= MAX_SERIES:
            values = ("other",) * 4
        self._throttle_series.add(values)
        self.throttled.labels(*values).inc(max(0.0, seconds))

    def kill_not_written(self, capture: Capture, reason: str) -> None:
        """A kill counted, not written (record/budget.py): in oomscope_oom_kills_total under the
        category "not_written" (its last-kill series keeps naming its last post-mortem), and by reason."""
        wl = capture.workload
        values = (capture.cgroup.task_memcg or capture.cgroup.oom_memcg or "unknown", wl.namespace or "",
                  wl.pod or (wl.pod_uid or ""), wl.container or (wl.container_id or "")[:12],
                  capture.victim.comm or "", "not_written")
        if values not in self._series and len(self._series) >= MAX_SERIES:
            values = ("other",) * 5 + (values[5],)
        self._series.add(values)
        self.kills.labels(*values).inc()
        self.not_written.labels(reason).inc()

    def _last_kill(self, values: Tuple[str, ...], postmortem: str, when: float) -> None:
        cgroup = values[0]
        old = self._last.pop(cgroup, None)
        if old is not None:
            self.last_kill.remove(*old)
        while len(self._last) >= MAX_LAST_KILLS:
            _cg, evicted = self._last.popitem(last=False)
            self.last_kill.remove(*evicted)
        labels = values + (postmortem,)
        self._last[cgroup] = labels
        self.last_kill.labels(*labels).set(when)

    def near_limit(self, rows: Iterable) -> None:
        """The headroom series, exactly for these cgroups (readings.NearLimit): the others' are removed."""
        now = set()
        for row in rows:
            now.add(row.cgroup)
            self.headroom.labels(row.cgroup).set(max(0, row.limit_bytes - row.usage_bytes))
            self.limit.labels(row.cgroup).set(row.limit_bytes)
            self.to_limit.labels(row.cgroup).set(row.seconds_to_limit())
        for cgroup in self._near - now:
            for gauge in (self.headroom, self.limit, self.to_limit):
                gauge.remove(cgroup)
        self._near = now


def _unix_time(iso: Optional[str]) -> float:
    """A capture's ISO 8601 time as Unix seconds (now when it has none)."""
    try:
        return dt.datetime.fromisoformat(iso).timestamp() if iso else dt.datetime.now(dt.timezone.utc).timestamp()
    except ValueError:
        return dt.datetime.now(dt.timezone.utc).timestamp()
