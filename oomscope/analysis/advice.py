"""What to change, from what the memory was made of and how it grew (not a flat +20%).

Sizing tools raise a killed container's limit by a fixed share; users report those limits killing
again. Here each piece of advice says which of three cases it is, and cites the figures it rests on:

- more limit fixes it: usage grew to a plateau (steady state) that is just above the limit;
- more limit only delays it: anonymous memory rising steadily on the timeline (a leak);
- no more limit is needed: page cache that could not be reclaimed (dirty, under writeback,
  tmpfs), a sidecar's share, THP rounding, slab from file churn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

from ..model import Capture
from ..units import fmt_bytes
from .attribution import Analysis

MIB = 1 << 20


def _span(minutes: float) -> str:
    if minutes >= 120:
        return f"{minutes / 60:.1f} h"
    return f"{minutes:.1f} min" if minutes >= 2 else f"{minutes * 60:.0f} s"


def _mib(v: Optional[float]) -> str:
    """The page's one format for a size (units.fmt_bytes), so a figure reads the same everywhere."""
    return "unknown" if v is None else fmt_bytes(int(v))


@dataclass
class Trend:
    """How anonymous memory moved over the oom_memcg's timeline."""

    kind: str  # "leak" | "plateau" | "spike" | "unknown"
    minutes: float = 0.0
    anon_rate_bytes_per_min: Optional[float] = None
    anon_start_bytes: Optional[int] = None
    anon_end_bytes: Optional[int] = None
    r2: Optional[float] = None
    reclaim_runs: Optional[int] = None
    reclaim_empty_runs: Optional[int] = None
    alloc_retry_checks: Optional[int] = None
    alloc_no_progress_max: Optional[int] = None
    compact_retries: Optional[int] = None
    text: str = ""


@dataclass
class Evidence:
    """One figure a piece of advice rests on, as a number (``report -f json``) and as the page
    says it (``str``; issue 26: not only "limit 192.0 MiB")."""

    name: str
    value: Union[int, float, str, None]
    #: "bytes", "count", "ratio" (R², 0..1), "minutes", "text" (a setting or a name), "note" (name only)
    unit: str = "bytes"

    def __str__(self) -> str:
        if self.unit == "note":
            return self.name
        if self.value is None:
            return f"{self.name} unknown"
        if self.unit == "bytes":
            return f"{self.name} {fmt_bytes(int(self.value))}"
        if self.unit == "ratio":
            return f"{self.name} {float(self.value):.2f}"
        if self.unit == "minutes":
            return f"{self.name} {_span(float(self.value))}"
        return f"{self.name} {self.value}"


def ev(name: str, value: Union[int, float, str, None], unit: str = "bytes") -> Evidence:
    return Evidence(name, value, unit)


@dataclass
class Advice:
    case: str  # "more_limit" | "delay_only" | "no_more_limit" | "context"
    title: str
    text: str
    evidence: List[Evidence] = field(default_factory=list)


def _with_reclaim(t: Trend, timeline) -> Trend:
    """The reclaim figures (cumulative) into the trend: those read at the kill when the capture has
    them (they include the reclaim of the last moments), else the timeline's last point's."""
    k = timeline.reclaim_at_kill
    if k is not None:
        t.reclaim_runs, t.reclaim_empty_runs = k.runs, k.empty_runs
        t.alloc_retry_checks, t.alloc_no_progress_max, t.compact_retries = k.alloc_retry_checks, k.alloc_no_progress_max, k.compact_retries
        return t
    last = timeline.points[-1]
    t.reclaim_runs, t.reclaim_empty_runs = last.reclaim_runs, last.reclaim_empty_runs
    t.alloc_retry_checks, t.alloc_no_progress_max = last.alloc_retry_checks, last.alloc_no_progress_max
    t.compact_retries = last.compact_retries
    return t


def _weighted_fit(t: List[float], y: List[int], w: List[float]) -> Tuple[float, float, float, float]:
    """The weighted least-squares line of y over t: (slope, R², the line's value at the first t,
    at the last t); a flat line through the weighted mean when t is constant. Plain Python, no
    numpy (issue 29: numpy was the post-mortem worker's only use of it, 30-70 ms of its start and
    ~5 MiB of its memory, for a few hundred points): the weighted means, variances and covariance
    of numpy.average and numpy.cov(aweights=w), without cov's normalisation, which both the slope
    and R² divide out; math.fsum rounds each sum once (tests/unit/test_advice.py
    checks the figures against numpy's on every capture with a timeline in the repository)."""
    ws = math.fsum(w)
    if ws <= 0:
        return 0.0, 0.0, float(y[0]), float(y[-1])
    tm = math.fsum(wi * ti for wi, ti in zip(w, t)) / ws
    ym = math.fsum(wi * yi for wi, yi in zip(w, y)) / ws
    dt = [ti - tm for ti in t]
    dy = [yi - ym for yi in y]
    var_t = math.fsum(wi * a * a for wi, a in zip(w, dt))
    cov = math.fsum(wi * a * b for wi, a, b in zip(w, dt, dy))
    var_y = math.fsum(wi * b * b for wi, b in zip(w, dy))
    if var_t <= 0:
        return 0.0, 0.0, ym, ym
    slope = cov / var_t
    r2 = cov * cov / (var_t * var_y) if var_y > 0 else 0.0
    return slope, r2, ym + slope * (t[0] - tm), ym + slope * (t[-1] - tm)


def trend_of(capture: Capture) -> Trend:
    """A straight-line fit of anon over the timeline: a leak rises steadily over most of it."""
    if not capture.timelines or not capture.timelines[0].points:
        return Trend("unknown", text="No timeline: oomscope was not sampling this cgroup before the kill.")
    # in time order: a capture is input like any other (one with its points out of order gave the
    # fit negative weights and numpy's "aweights cannot be negative": tests/unit/test_fuzz_parsers.py)
    pts = sorted((p for p in capture.timelines[0].points if p.anon_bytes is not None), key=lambda p: p.t_ms)
    if len(pts) < 5 or pts[-1].t_ms - pts[0].t_ms < 10_000:
        return _with_reclaim(Trend("unknown", text="The timeline is too short (under 10 s or 5 points) to tell a leak from a plateau."),
                             capture.timelines[0])
    # What reclaim cannot take back without swap: anonymous memory, and tmpfs and kernel memory
    # (slab) too, so that a tmpfs or a descriptor leak that fills the cgroup reads as a rise, not
    # as flat anonymous memory. The kernel figure includes slab (v2 "kernel"; v1 kmem).
    def held(p) -> int:
        kernel = p.kernel_bytes if p.kernel_bytes is not None else (p.slab_bytes or 0)
        return p.anon_bytes + (p.shmem_bytes or 0) + kernel
    # A workload restarted in the same cgroup (a crash loop, systemd's Restart=) ends each earlier
    # life in a drop of what is held (the killed process's memory is freed at once): this kill's
    # trend is its own life's, from the last drop of more than half on (issue 29: fitted over the
    # saw-tooth of five lives, a steady leak read as a plateau from its second kill on).
    for i in range(len(pts) - 1, 0, -1):
        if held(pts[i]) < 0.5 * held(pts[i - 1]):
            pts = pts[i:]
            # A reading can fall while the killed process is still being freed (the oom reaper
            # and exit free it over a few ms; tests/fixtures/lives/crashloop-second-kill-v1-6.18.json:
            # 60.4 -> 29.1 MiB at the kill, the new life from 17.2): the life starts at its trough.
            while len(pts) > 1 and held(pts[1]) < held(pts[0]):
                pts = pts[1:]
            break
    # Before its workload started the cgroup held next to nothing (a sandbox or a pod sandbox made
    # ahead of its process): that stretch says nothing about the workload's growth, and fitting it
    # makes a steady rise look like a flat line and a jump. Keep only its last point, the start.
    empty = 0.01 * max(held(pts[-1]), 1)
    first = 0
    while first + 1 < len(pts) and held(pts[first + 1]) < empty:
        first += 1
    pts = pts[first:]
    if len(pts) < 5 or pts[-1].t_ms - pts[0].t_ms < 10_000:
        return _with_reclaim(Trend("unknown", text="The timeline is too short (under 10 s or 5 points since the cgroup "
                                   "first held memory) to tell a leak from a plateau."), capture.timelines[0])
    other = held(pts[-1]) - pts[-1].anon_bytes
    what = ("Anonymous memory" if other < 0.1 * max(held(pts[-1]), 1)
            else "Memory that reclaim cannot free (anonymous, tmpfs, kernel)")
    # Neither pandas nor numpy (issue 29: the post-mortem worker loads neither): the same
    # arithmetic, the same figures (gold files; _weighted_fit)
    tt = [p.t_ms / 60_000 for p in pts]
    anon = [held(p) for p in pts]
    minutes = tt[-1] - tt[0]
    # Each point weighs the time it stands for (half the gaps on either side): the timeline is
    # dense near the kill and thinned with age (record/timeline.py: every point of the last 10
    # minutes, one per 2 or 15 minutes before), and an unweighted fit would be the last 10
    # minutes' fit whatever the hours before did.
    gaps = [0.0] + [b - a for a, b in zip(tt, tt[1:])]
    w = [(g + g_next) / 2 for g, g_next in zip(gaps, gaps[1:] + [0.0])]
    slope, r2, fit_start, fit_end = _weighted_fit(tt, anon, w)
    # The rise is the fitted line's, not the first and last readings': a thinned stretch's point is
    # its highest reading (the top of a garbage collector's saw-tooth), the last one a raw reading.
    # A fitted value is never beyond what is possible (issue 26: "rose to 64.5 MiB" with a 64.0 MiB
    # limit): what is held is at most the charge, which is at most the limit.
    ceiling = min([x for x in (capture.at_kill.usage_bytes, capture.at_kill.limit_bytes, pts[-1].limit_bytes) if x]
                  or [max(fit_start, fit_end, 0.0)])
    start, end = int(min(ceiling, max(0.0, fit_start))), int(min(ceiling, max(0.0, fit_end)))
    last = anon[-1]
    t = Trend("unknown", minutes=minutes, anon_rate_bytes_per_min=slope, anon_start_bytes=start,
              anon_end_bytes=end, r2=r2)
    _with_reclaim(t, capture.timelines[0])
    # the first half of the timeline against the second: a plateau is flat in both, then jumps
    half = [a for a, x in zip(anon, tt) if x <= tt[0] + minutes / 2]
    if r2 >= 0.8 and slope > 0 and end - start >= 0.25 * max(end, 1):
        t.kind = "leak"
        t.text = (f"{what} rose steadily for {_span(minutes)}: a straight line fitted to its readings (R²={r2:.2f}) "
                  f"rises {_mib(slope)}/min, from about {_mib(start)} to about {_mib(end)} (fitted values"
                  + ((", the end capped at the charge at the kill" if capture.at_kill.usage_bytes else ", the end capped at the limit")
                     if fit_end > ceiling else "") + ").")
    elif max(half) - min(half) <= 0.05 * max(last, 1) and last > max(half) * 1.1:
        t.kind = "spike"
        t.text = (f"{what} was flat at about {_mib(int(sum(half) / len(half)))} and jumped to {_mib(last)} at the end "
                  f"of a {_span(minutes)} timeline: a burst, not a leak.")
    else:
        t.kind = "plateau"
        t.text = (f"{what} held between {_mib(min(anon))} and {_mib(max(anon))} "
                  f"over {_span(minutes)} (no steady rise: R²={r2:.2f}).")
    return t


def advise(capture: Capture, a: Analysis, trend: Optional[Trend] = None) -> List[Advice]:
    trend = trend or trend_of(capture)
    out: List[Advice] = []
    cats = {c.key: c.bytes for c in a.categories}
    usage, limit = a.usage_bytes, a.limit_bytes
    cg = capture.cgroup
    k = capture.killer
    if capture.kind == "throttle" and capture.throttle is not None:
        top = max(a.categories, key=lambda c: c.bytes) if a.categories else None
        out.append(Advice("context", "Throttled at memory.high, not killed",
                          f"Raise memory.high above what the workload holds at its busiest (it peaked at "
                          f"{capture.throttle.usage_peak_bytes or 0:,} bytes), or make it hold less"
                          + (f": most of the charge was {top.label[:1].lower() + top.label[1:]}" if top is not None else "")
                          + ". Under Kubernetes MemoryQoS memory.high is set from the container's limit "
                          "(memoryThrottlingFactor): raise the limit, or lower the factor's effect.",
                          [ev("memory_high", capture.throttle.memory_high_bytes)]))
        return out + _reclaim_context(trend)
    if k.kind == "userspace":  # no limit was hit: the killer's thresholds decided (analysis/killer.py)
        how = {"earlyoom": "earlyoom's --avoid REGEX, or lower -m/-s",
               "systemd-oomd": "ManagedOOMPreference=avoid or omit on the unit, or a higher ManagedOOMMemoryPressureLimit=",
               "kubelet": "a Guaranteed QoS class or a higher priority for the pod, or eviction thresholds set for the node"}
        out.append(Advice("context", "A user-space killer acted, not the kernel",
                          f"{k.known_as or k.comm or 'A process'} killed it by its own thresholds, before any cgroup limit was "
                          f"reached: keep the host (or the cgroup) further from them, or exclude this workload "
                          f"({how.get(k.known_as or '', 'the killer configuration')}).",
                          [ev("killer", k.known_as or k.comm, "text")]))
        return out + _reclaim_context(trend)
    if cg.constraint and cg.constraint != "CONSTRAINT_MEMCG":
        out.append(Advice("context", "The host ran out, not a cgroup",
                          "Reserve memory for the system (kubelet --system-reserved / eviction thresholds), lower the sum "
                          "of limits below the node's RAM, or give the node more memory; a container limit would not have changed this kill.",
                          [ev("constraint", cg.constraint, "text")]))
        return out + _reclaim_context(trend)
    if not usage or not limit:
        return out
    details = {d.key: d.bytes for d in a.details}
    file_ = cats.get("file", 0)
    shmem = cats.get("shmem", 0)
    dirty = details.get("file_dirty", details.get("dirty", 0))
    writeback = details.get("file_writeback", details.get("writeback", 0))
    mapped = details.get("file_mapped", details.get("mapped_file", 0))
    unevictable = details.get("unevictable", 0)

    # --- page cache / tmpfs that reclaim could not take back ---
    stuck = {"dirty": dirty, "under writeback": writeback, "mapped by processes": mapped, "unevictable": unevictable}
    stuck = {k: v for k, v in stuck.items() if v >= 0.05 * usage}
    if shmem >= 0.2 * usage:
        out.append(Advice("no_more_limit", "tmpfs / shared memory held the charge",
                          f"{_mib(shmem)} ({100 * shmem / usage:.0f}% of the charge) was tmpfs or shared memory: it cannot be "
                          "reclaimed while the files exist (and swap is its only way out). Delete files the job no longer needs, "
                          "put scratch data on disk instead of /dev/shm or an emptyDir with medium: Memory, or cap that tmpfs with size=. "
                          "Killing the writer freed none of it: the files outlive the process, so a container restarted "
                          "into the same tmpfs (an emptyDir outlives a container restart) starts with them charged and is killed again.",
                          [ev("shmem", shmem), ev("usage", usage), ev("limit", limit)]))
    # page cache that could not be written back is said even when page cache is a small part of the
    # charge: 20.5 MiB under writeback of a 128 MiB charge (16%) was what a slow volume left
    # (reports/k8s-pagecache, recorded on 7.3): the kill came that much sooner
    unwritten = dirty + writeback
    if file_ >= 0.2 * usage or (unwritten >= 0.1 * usage and stuck):
        if stuck:
            why = ", ".join(f"{_mib(v)} {k}" for k, v in stuck.items())
            out.append(Advice("no_more_limit", "Page cache that reclaim could not free",
                              f"{_mib(file_)} of page cache was charged, and of it {why}: reclaim cannot drop dirty or "
                              "under-writeback pages until they are written, nor pages still mapped. Write less at once "
                              "(fsync or O_DIRECT for bulk writes, a lower vm.dirty_bytes) rather than raising the limit.",
                              [ev("file", file_)] + [ev(k, v) for k, v in stuck.items()]))
        else:
            out.append(Advice("context", "Page cache was large but reclaimable",
                              f"{_mib(file_)} of page cache was charged; it was clean and unmapped, so the kernel could have "
                              "reclaimed it. It is not what filled the limit; look at the categories that could not shrink.",
                              [ev("file", file_), ev("dirty", dirty), ev("writeback", writeback)]))

    # --- other processes (sidecars) ---
    others = next((p.bytes for p in a.reconciliation if p.key == "other_processes"), 0)
    if others >= 0.15 * usage:
        helpers = sorted((t for t in capture.tasks if t.pid != capture.victim.pid and t.rss_bytes),
                         key=lambda t: -(t.rss_bytes or 0))
        named = ", ".join(f"pid {t.pid} ({t.comm}, RSS {_mib(t.rss_bytes)}"
                          + (f", {_mib(t.anon_rss_bytes)} of it anonymous" if t.anon_rss_bytes is not None and t.anon_rss_bytes != t.rss_bytes else "")
                          + ")" for t in helpers[:3])
        who = f"the helper{'s' if len(helpers) > 1 else ''} {named}" if helpers else "the other processes"
        out.append(Advice("no_more_limit", "Other processes in the cgroup took a share",
                          f"Processes other than the victim held {_mib(others)} of anonymous memory ({100 * others / usage:.0f}% of the charge). "
                          f"Give {who} {'their' if len(helpers) > 1 else 'its'} own container (its own limit), so that "
                          "the victim's limit holds only its own memory.",
                          [ev("others", others), ev("victim RSS", a.victim_rss_bytes)] + ([ev("helpers", named, "text")] if named else [])))

    # --- slab ---
    slab = cats.get("slab", 0)
    # cgroup v1 memory.stat has no slab: its kmem counter (mostly slab) stands in for it
    kmem_v1 = cats.get("kernel", 0) if a.cgroup_version == 1 else 0
    if slab >= 0.2 * usage:
        out.append(Advice("no_more_limit", "Kernel slab from file churn",
                          f"{_mib(slab)} of slab (inodes, dentries) was charged to the cgroup: creating and keeping many "
                          "files does this. Remove files sooner, use fewer, larger files, or keep the scratch tree outside the container.",
                          [ev("slab", slab)]))
    elif kmem_v1 >= 0.2 * usage:
        # the kmem counter alone does not say slab (issue 26: slab advice on a 3.10 kernel's kmem
        # figure): it is slab, kernel stacks and page tables together; say so, and how to tell
        out.append(Advice("context", "Kernel memory (cgroup v1's kmem counter)",
                          f"{_mib(kmem_v1)} of kernel memory was charged to the cgroup ({100 * kmem_v1 / usage:.0f}% of the charge). "
                          "cgroup v1's kmem counter holds slab, kernel stacks and page tables together and does not say "
                          "which. Slab from creating and keeping many files is the usual cause: the cgroup's "
                          "memory.kmem.slabinfo (or /proc/slabinfo) shows it as dentry and inode caches; then remove files "
                          "sooner, use fewer, larger files, or keep the scratch tree outside the container.",
                          [ev("kmem", kmem_v1), ev("slab", None)]))

    # --- THP ---
    thp = details.get("anon_thp", details.get("rss_huge", 0))
    anon = cats.get("anon", 0)
    mode = capture.host.thp_enabled
    if thp and anon and thp >= 0.5 * anon:
        # The capture shows how much was in huge pages, not how much of each the program used: a
        # program that touches every byte (the lab's thp) gains nothing from turning THP off.
        # So this is context with the check that tells, not a cause (issue 15: no advice on a
        # fact the capture lacks).
        if mode == "always":
            what = ("The host gives huge pages to every program (mode 'always'): switch the host, or this process "
                    "(prctl PR_SET_THP_DISABLE), to 'madvise' if the program does not need them.")
        elif mode == "madvise":
            what = ("The host gives huge pages only where a program asks (mode 'madvise'), so this program asked for them "
                    "(madvise MADV_HUGEPAGE: e.g. a JVM's -XX:+UseTransparentHugePages, an allocator's THP option): turn "
                    "that off, or set PR_SET_THP_DISABLE for the process, if it does not need them.")
        else:
            what = "The host's THP mode is not known: see /sys/kernel/mm/transparent_hugepage/enabled on that host."
        out.append(Advice("context", "Transparent huge pages",
                          f"{_mib(thp)} of {_mib(anon)} anonymous memory was in huge pages (THP mode: {mode or 'unknown'}). A huge page is "
                          "charged whole (2 MiB) even when the program touches a few bytes of it; whether this program used "
                          "all of each is not in the capture (run it with THP off and compare its RSS at the same load). "
                          f"{what}",
                          [ev("anon_thp", thp), ev("anon", anon), ev("THP enabled", mode, "text")]))

    # --- swap ---
    # Only where it changes what the reader does: most of the charge was what swap could take out,
    # and the growth had stopped (a peak: cold pages could go to swap). A leak fills swap too and
    # is killed later; without a timeline the peak-or-leak item already says what is not known.
    swappable = anon + shmem >= 0.5 * usage and trend.kind in ("plateau", "spike")
    held_words = " and ".join(w for w, v in (("anonymous memory", anon), ("tmpfs", shmem)) if v)
    if capture.host.swap_total_bytes is None and swappable:
        out.append(Advice("context", "Swap: unknown",
                          f"Whether the host had swap is unknown (not in what oomscope read). If it had none, {held_words} "
                          "could only stay in RAM; with swap (or zram) cold anonymous pages could have been pushed "
                          "out instead of a kill.", [ev("host swap", None, "text")]))
    elif capture.host.swap_total_bytes == 0 and swappable:
        out.append(Advice("context", "No swap",
                          f"The host has no swap, so the {_mib(anon + shmem)} of {held_words} could only stay "
                          "in RAM; with swap (or zram) its cold pages could have been pushed out instead of a kill.",
                          [ev("swap total", 0), ev("anon + shmem", anon + shmem), ev("usage", usage)]))

    # --- the limit itself, by the trend ---
    if trend.kind == "leak" and trend.anon_rate_bytes_per_min:
        rate = trend.anon_rate_bytes_per_min
        extra = max(limit * 0.25, 100 * MIB)
        # A projection only where the fit and its span support it (issue 26: "buys about 22 s" from a
        # 14 s fill): a good fit, and no further ahead than the stretch it was fitted on.
        if (trend.r2 or 0) >= 0.9 and extra / rate <= trend.minutes:
            ahead = f"At that rate, a limit {_mib(extra)} higher buys about {_span(extra / rate)}. "
        else:
            ahead = (f"How long a higher limit would hold cannot be said from a {_span(trend.minutes)} timeline: the fit "
                     "shows the memory still rising at the kill, not for how long it would go on. ")
        out.append(Advice("delay_only", "A leak: a larger limit only delays the next kill",
                          f"{trend.text} {ahead}" + _what_grows(a) + " instead.",
                          [ev("fitted start", trend.anon_start_bytes), ev("fitted end", trend.anon_end_bytes),
                           ev("over", trend.minutes, "minutes"), ev("R²", trend.r2, "ratio")]))
    elif trend.kind in ("plateau", "spike"):
        unreclaimable = anon + cats.get("kernel", 0) + cats.get("pagetables", 0) + cats.get("kernel_stack", 0) + shmem + slab
        headroom = max(0.15 * usage, 32 * MIB)
        suggested = int((usage + headroom + MIB - 1) // MIB) * MIB
        first = (" Fix the items above first: they need no more limit."
                 if any(x.case == "no_more_limit" for x in out) else "")
        out.append(Advice("more_limit", "A limit that would have held",
                          f"The cgroup needed {_mib(usage)}, of which {_mib(unreclaimable)} could not be reclaimed (anonymous, "
                          f"tmpfs, kernel memory). {trend.text} A limit of {suggested // MIB} MiB (the charge at the kill plus "
                          f"{_mib(headroom)} headroom) would have held this peak.{first}",
                          [ev("usage at the kill", usage), ev("limit", limit), ev("unreclaimable", unreclaimable)]))
    else:
        # Without the minutes before the kill a peak cannot be told from a leak: no number is
        # offered as if the growth had stopped (a leak killed at 96 MiB is killed at 128 MiB too).
        out.append(Advice("context", "A peak or a leak? This capture cannot tell",
                          f"{trend.text} The cgroup was charged {_mib(usage)} at the kill, but whether its memory had stopped "
                          "growing is not known, so no limit can be said to be enough. What tells them apart: the cgroup's "
                          "memory over the minutes before the kill (keep oomscope record running: it samples every cgroup; "
                          "or your dashboards' history of it): a steady rise is a leak, which more limit only delays; a "
                          "level that stopped, or a burst that ended, is a peak, which more limit fixes.",
                          [ev("usage at the kill", usage), ev("limit", limit), ev("no timeline", None, "note")]))
    return out + _reclaim_context(trend)


#: where to look for an anonymous-memory leak in a JVM whose memory was mostly outside its heap
#: (analysis/result.py puts it in place of the heap profile: a heap profile does not show it)
JVM_NATIVE_GROWTH = ("Find what grows outside the heap (jcmd <pid> VM.native_memory summary.diff with "
                     "-XX:NativeMemoryTracking=summary; direct buffers: the JVM's BufferPool MBeans)")
HEAP_GROWTH = "Find what grows (heap profile, cache without eviction)"


def _what_grows(a: Analysis) -> str:
    """Where to look for the leak, by what the charge was mostly made of."""
    top = a.top_categories[0] if a.top_categories else "anon"
    if top == "shmem":
        return "Find what writes the tmpfs files that are never deleted (du on the tmpfs mounts, /dev/shm)"
    if top in ("slab", "kernel"):
        return "Find what creates or opens files and keeps them (ls /proc/<pid>/fd | wc -l, a descriptor leak)"
    return HEAP_GROWTH


def _reclaim_context(trend: Trend) -> List[Advice]:
    """What reclaim and the page allocator did before the kill, from the timeline's counters."""
    out: List[Advice] = []
    if trend.reclaim_runs:
        out.append(Advice("context", "Reclaim before the kill",
                          f"The cgroup's processes ran reclaim {trend.reclaim_runs} times while oomscope watched; "
                          f"{trend.reclaim_empty_runs or 0} of those freed nothing: what was left could not be reclaimed.",
                          [ev("reclaim runs", trend.reclaim_runs, "count"), ev("empty", trend.reclaim_empty_runs or 0, "count")]))
    if trend.alloc_retry_checks:
        # mm/page_alloc.c: should_reclaim_retry gives up after MAX_RECLAIM_RETRIES (16) rounds
        # in a row that freed nothing; then the allocation ends in the OOM killer.
        out.append(Advice("context", "The page allocator retried before giving up",
                          f"Allocations by the cgroup's processes checked {trend.alloc_retry_checks} times whether "
                          f"reclaim could still free enough, up to {trend.alloc_no_progress_max or 0} rounds in a row "
                          f"without progress (the kernel gives up after 16), and retried compaction "
                          f"{trend.compact_retries or 0} times: the host's free memory was exhausted.",
                          [ev("reclaim retry checks", trend.alloc_retry_checks, "count"),
                           ev("rounds without progress up to", trend.alloc_no_progress_max or 0, "count"),
                           ev("compaction retries", trend.compact_retries or 0, "count")]))
    return out
