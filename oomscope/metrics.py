"""Prometheus metrics of `record --metrics-addr HOST:PORT` (prometheus_client).

Names and labels follow Prometheus conventions (`oomscope_` prefix, `_total` counters, base
units). Label values come from kill captures, so their number is bounded: at most
MAX_SERIES label sets per counter; kills beyond that are counted under the value "other".
"""

from __future__ import annotations

from typing import Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .errors import EnvironmentProblem
from .model import Capture

MAX_SERIES = 500
KILL_LABELS = ("cgroup", "namespace", "pod", "container", "comm", "category")


def parse_addr(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnvironmentProblem(f"--metrics-addr must be HOST:PORT (e.g. 127.0.0.1:9847), not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Metrics:
    def __init__(self, registry: Optional[CollectorRegistry] = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.kills = Counter("oomscope_oom_kills", "OOM kills seen, by the victim's cgroup and workload and the "
                             "category that explains the kill", KILL_LABELS, registry=r)
        self.captures = Counter("oomscope_captures_written", "Captures (capture.json) written", registry=r)
        self.no_report = Counter("oomscope_kills_without_kernel_report",
                                 "Kills whose kernel OOM report was rate-limited away or not seen", registry=r)
        self.errors = Counter("oomscope_errors", "Errors by component (probe, collector, writer)", ["component"], registry=r)
        self.charge = Gauge("oomscope_charge_tracking_attached", "1 while the memcg charge counters are attached", registry=r)
        self.watched = Gauge("oomscope_watched_cgroups", "Memory cgroups the sampler watches", registry=r)
        self.lost = Gauge("oomscope_bpf_events_lost", "BPF perf-buffer events lost (cumulative)", registry=r)
        self.losses = Gauge("oomscope_lost", "What record lost, by kind (cumulative): bpf_events, charge_snapshots, "
                            "kmsg_records, dropped_cgroups", ["what"], registry=r)
        self.kmsg_reader = Gauge("oomscope_kmsg_reader_up", "1 while the /dev/kmsg reader runs (0: captures lack the kernel's report)",
                                 registry=r)
        self._series = set()
        self._server = None

    def serve(self, addr: str) -> None:
        host, port = parse_addr(addr)
        try:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot serve metrics on {addr}: {exc.strerror}") from None

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()

    def kill(self, capture: Capture, category: str) -> None:
        wl = capture.workload
        values = (capture.cgroup.task_memcg or capture.cgroup.oom_memcg or "unknown", wl.namespace or "",
                  wl.pod or (wl.pod_uid or ""), wl.container or (wl.container_id or "")[:12],
                  capture.victim.comm or "", category or "unknown")
        if values not in self._series and len(self._series) >= MAX_SERIES:
            values = ("other",) * 5 + (values[5],)
        self._series.add(values)
        self.kills.labels(*values).inc()
        if capture.at_kill.source != "kernel_report" and not capture.kernel_report.present:
            self.no_report.inc()
