"""What record says as it goes: one line per kill on stdout (text or JSON), the Prometheus
metrics, and what it lost (``Losses``): the /dev/kmsg reader dead, BPF events lost in the perf
buffer, kernel log records lost, cgroups the sampler dropped. A loss is said in record's log when it grows, counted in the metrics, and noted
in the capture of each kill it may have touched (``Losses``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from ..metrics import MAX_NEAR_LIMIT, Metrics
from ..model import Capture
from ..terminal import terminal_safe
from ..postmortem.cause import cause_words
from .outputs import Written
from .watchdog import sentence as watchdog_sentence


NEAR_LIMIT_EVERY_NS = 1_000_000_000  # the headroom metrics are refreshed once a second (a scrape is every 15 s or more)


def _mib(v: Optional[int]) -> str:
    return "?" if v is None else f"{v / 1048576:.1f}MiB"


def kill_line(c: Capture, written: Written, category: str, log_format: str, analysis: Any = None,
              cause: Optional[str] = None, series: Optional[dict] = None) -> str:
    """``cause``: cause_words() as the post-mortem worker computed it; else from ``analysis``.
    ``series``: the kill's series as the worker said it (postmortem/series.py)."""
    if cause is None:
        cause = cause_words(c, analysis)
    if log_format == "json":
        return json.dumps({
            "event": "memory_high_throttling" if c.kind == "throttle" else "oom_kill",
            "kind": ("throttle_episode" if c.kind == "throttle" else "userspace_kill" if c.killer.kind == "userspace"
                     else "kernel_kill"),
            "throttle": dataclasses.asdict(c.throttle) if c.throttle is not None else None,
            "killer": ({"comm": c.killer.comm, "pid": c.killer.pid, "known_as": c.killer.known_as, "signal": c.killer.signal}
                       if c.killer.kind == "userspace" else None),
            "time": c.times.kill_wall, "kill_id": c.kill_id, "pid": c.victim.pid,
            "comm": c.victim.comm, "oom_memcg": c.cgroup.oom_memcg, "task_memcg": c.cgroup.task_memcg,
            "workload": dataclasses.asdict(c.workload), "usage_bytes": c.at_kill.usage_bytes,
            "limit_bytes": c.at_kill.limit_bytes, "state_source": c.at_kill.source, "category": category,
            "cause": cause,
            "incident": c.incident.id if c.incident else None, "postmortem": written.html_path,
            "capture": written.capture_path,
            "not_written": dataclasses.asdict(c.not_written) if c.not_written else None,
            "series": series,
        }, ensure_ascii=True)
    by = (f"killer={terminal_safe(c.killer.known_as or c.killer.comm)!r} killer_pid={c.killer.pid} signal={c.killer.signal} "
          if c.killer.kind == "userspace" else "")
    if c.kind == "throttle" and c.throttle is not None:
        t = c.throttle
        return (f"{c.times.kill_wall} throttled memcg={terminal_safe(t.cgroup)} duration={t.duration_s:.1f}s "
                f"stalled={t.stall_s:.1f}s ({100 * t.share:.0f}%) high={_mib(t.memory_high_bytes)} cause={cause!r} "
                f"-> {written.html_path or written.capture_path}")
    return (f"{c.times.kill_wall} {'userspace-kill' if by else 'kill'} " + by
            + (f"workload={terminal_safe(c.workload.label())!r} " if c.workload.label() else "")
            + f"pid={c.victim.pid} comm={terminal_safe(c.victim.comm)!r} cause={cause!r} "
            f"usage={_mib(c.at_kill.usage_bytes)} limit={_mib(c.at_kill.limit_bytes)} "
            f"memcg={terminal_safe(c.cgroup.oom_memcg or '?')}"
            + (f" incident={c.incident.id}" if c.incident else "")
            + (f" not_written={c.not_written.count}" if c.not_written else "")
            + (f" series={terminal_safe(str(series.get('id')))} series_kill={series.get('kill_number')}" if series else "")
            + f" -> {written.html_path or written.capture_path}")


# What each loss means, for the log and (but those of ABOUT_WRITTEN_KILLS) the capture's note.
LOSS_WORDS = {
    "bpf_events": "BPF events lost in the perf buffer (kills may be missing or lack their event)",
    "kmsg_records": "kernel log records lost (the kernel's OOM reports of some kills were not seen)",
    "dropped_cgroups": "memory cgroups not sampled (more than the sampler's limit)",
    "late_events": "BPF events read after their kill was written without them (those kills' captures lack the event's "
                   "figures, and are not marked)",
    "late_reports": "kernel OOM reports read after their kill was written from its BPF event alone (those kills' "
                    "captures lack the report's figures and say the report was not available)",
}


# Losses about a kill already written (its capture cannot take a note any more): said in the log and
# counted, never put on the kills written next, which they did not touch.
ABOUT_WRITTEN_KILLS = frozenset({"late_events", "late_reports"})


class Losses:
    """The loss counters of the recorder's parts, read once per drain of the main loop.

    A loss found at one drain happened since the previous one; a kill it may have touched is one
    that happened from ``reach_ns`` before that (a kill waits that long for its kernel report)
    up to now. Each such kill written afterwards gets a note; so does every kill once the
    /dev/kmsg reader has stopped."""

    def __init__(self, reach_ns: int = 2_000_000_000, keep_ns: int = 30_000_000_000) -> None:
        self.seen: Dict[str, int] = {k: 0 for k in LOSS_WORDS}
        self.kmsg_error: Optional[BaseException] = None
        self.kmsg_stopped_ns: Optional[int] = None
        self.reach_ns = reach_ns
        self.keep_ns = keep_ns
        self._last_ns: Optional[int] = None
        self._recent: List[Tuple[int, int, str]] = []  # (from ns, until ns, what was lost)

    def update(self, counts: Dict[str, int], kmsg_error: Optional[BaseException], now_ns: int) -> List[str]:
        """The sentences of what grew since the last call (for the log)."""
        since = (self._last_ns if self._last_ns is not None else now_ns) - self.reach_ns
        self._last_ns = now_ns
        said, noted = [], []
        for key, n in counts.items():
            if n > self.seen.get(key, 0):
                said.append(f"{n - self.seen.get(key, 0)} {LOSS_WORDS[key]} (total {n})")
                if key not in ABOUT_WRITTEN_KILLS:
                    noted.append(said[-1])
                self.seen[key] = n
        if kmsg_error is not None and self.kmsg_error is None:
            self.kmsg_error = kmsg_error
            self.kmsg_stopped_ns = since
            said.append(f"the /dev/kmsg reader stopped ({type(kmsg_error).__name__}: {terminal_safe(str(kmsg_error))}): "
                        "captures from now on lack the kernel's report")
        self._recent = [r for r in self._recent if now_ns - r[1] < self.keep_ns]
        self._recent.extend((since, now_ns, s) for s in noted)
        return said

    def notes_for_kill(self, kill_ns: int) -> List[str]:
        """What record lost around this kill."""
        notes = [f"While this kill was recorded, oomscope lost: {s}." for since, until, s in self._recent
                 if since <= kill_ns <= until]
        if self.kmsg_stopped_ns is not None and kill_ns >= self.kmsg_stopped_ns:
            notes.append("The /dev/kmsg reader had stopped: the kernel's report of this kill could not be read.")
        return notes


class Announcer:
    def __init__(self, out: TextIO, err: TextIO, log_format: str = "text", metrics: Optional[Metrics] = None):
        self.out = out
        self.err = err
        self.log_format = log_format
        self.metrics = metrics
        self.losses = Losses()
        self._sampler_errors_seen = 0
        self._lost_seen = 0
        self._next_near_ns = 0
        self._notify_errors_said = 0

    def threads(self, changes: List[Any], now_ns: int) -> None:
        """record's threads that stalled, died or came back (record/watchdog.py): a log line each,
        and the gauge of those not running."""
        for ts in changes:
            level = "" if ts.state == "running" else "warning: "
            self.err.write(f"oomscope: {level}{terminal_safe(watchdog_sentence(ts, now_ns))}\n")
            self.err.flush()
        if self.metrics is not None and changes:
            for ts in changes:
                self.metrics.thread_stalled.labels(ts.name).set(0 if ts.state == "running" else 1)

    def kill(self, capture: Capture, written: Written, category: str = "", cause: Optional[str] = None,
             series: Optional[dict] = None) -> None:
        """``category``: the dominant category of the kill's memory, ``cause``: the cause in a few
        words (cause_words), ``series``: its series, all from the post-mortem worker (postmortem/worker.py)."""
        if self.metrics is not None and capture.kind == "throttle":  # no kill: its seconds were counted as they came
            self.metrics.captures.inc()
        elif self.metrics is not None:
            self.metrics.kill(capture, category, written.html_path or written.capture_path)
            self.metrics.captures.inc()
            if series and series.get("kill_number") == 2:  # a workload killed again: a series begins
                self.metrics.series.inc()
        self.out.write(kill_line(capture, written, category, self.log_format, cause=cause, series=series) + "\n")
        self.out.flush()

    def not_written(self, stub: Capture, workload: str, starts: bool, budget: str) -> None:
        """A kill counted, not written (record/budget.py): ``stub`` holds its pid, comm, cgroups and
        workload. Said in the log once at the start of each run of them, not per kill (a storm's
        line a kill was the flood again); the next written kill's line and capture give the count."""
        if self.metrics is not None:
            self.metrics.kill_not_written(stub, "rate")
        if starts:
            self.err.write(f"oomscope: note: {terminal_safe(workload)}: a storm beyond its budget ({budget}): its kills "
                           f"from now on are counted, not written, until its budget allows one; that post-mortem "
                           f"says how many (first: pid {stub.victim.pid} at {stub.times.kill_wall})\n")
            self.err.flush()

    def not_written_left(self, workload: str, nw) -> None:
        """Kills not written that no later post-mortem will say (record stops, or the workload is forgotten)."""
        self.err.write(f"oomscope: note: {terminal_safe(workload)}: {nw.count} kill(s) between {nw.first_wall} and "
                       f"{nw.last_wall} were counted, not written (a storm beyond its budget: {nw.budget})\n")
        self.err.flush()

    def error(self, component: str, message: str) -> None:
        """``message``: a line that may hold an exception's text (a cgroup's or a file's name)."""
        self.err.write(terminal_safe(message) + "\n")
        if self.metrics is not None:
            self.metrics.errors.labels(component).inc()

    def health(self, *, now_ns: int, sampler_errors: int, events_lost: int, watched: int,
               losses: Dict[str, int], kmsg_error: Optional[BaseException], kmsg_open: bool = True,
               notify_errors: int = 0, notify_error: Optional[str] = None,
               near_limit: Optional[Callable[[int], List[Any]]] = None) -> None:
        """Once per drain: the gauges, the error counters, and any loss that grew; once a second,
        the headroom of the cgroups near their limit (``near_limit(n)``: readings.Readings.near_limit)."""
        for sentence in self.losses.update(losses, kmsg_error, now_ns):
            self.err.write(f"oomscope: warning: {sentence}\n")
        if notify_errors > self._notify_errors_said:
            # said once per new failure, never silently: those cgroups are read by polling only
            self.err.write(f"oomscope: warning: limit notifications could not be set up for {notify_errors} cgroup(s) "
                           f"(latest: {terminal_safe(notify_error or '?')}); they are read by polling only\n")
            self._notify_errors_said = notify_errors
        if self.metrics is None:
            return
        new_errors = sampler_errors - self._sampler_errors_seen
        if new_errors > 0:
            self.metrics.errors.labels("sampler").inc(new_errors)
            self._sampler_errors_seen = sampler_errors
        lost = events_lost - self._lost_seen
        if lost > 0:
            self.metrics.errors.labels("probe").inc(lost)  # BPF events lost in the perf buffer
            self._lost_seen = events_lost
        self.metrics.watched.set(watched)
        self.metrics.lost.set(events_lost)
        for key, n in losses.items():
            self.metrics.losses.labels(key).set(n)
        self.metrics.kmsg_reader.set(1 if kmsg_open and kmsg_error is None else 0)
        if near_limit is not None and now_ns >= self._next_near_ns:
            self._next_near_ns = now_ns + NEAR_LIMIT_EVERY_NS
            self.metrics.near_limit(near_limit(MAX_NEAR_LIMIT))
