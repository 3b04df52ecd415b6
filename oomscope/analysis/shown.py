"""What the engineer's screens showed at the kill, beside what the kernel charged.

One result (``Shown``, part of analysis/result.py's KillAnalysis) for every renderer: each tool's
figure from the at-kill state (analysis/dashboards.py's formulas on the capture's memory.stat,
usage and cgroup version; the tasks' RSS), what a 15 s / 60 s scrape last saw from the timeline,
the runtime's own view (a JVM's heap, a Go program's heap in use: ``capture.runtimes``) with the
split of its RSS into heap and outside the heap, and the one sentence: "Your dashboard showed X; the kernel killed at Y; the
difference, Z, was A, B and C." Imported kills have no runtime readings: the same section from the
report's memory.stat. Plain data in and out; no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..model import Capture, RuntimeReading
from ..runtimes.hsperfdata import memory_flags
from ..units import fmt_bytes
from .advice import ev
from .attribution import Analysis
from .dashboards import ScrapeView, ToolFigure, last_scrapes, what_tools_showed

__all__ = ["JavaSplit", "RuntimeSplit", "Shown", "shown_of", "java_advice", "non_heap_upper_bytes", "HEAP_SHARE_CAP"]


@dataclass
class SplitPart:
    key: str
    label: str
    bytes: Optional[int]
    explanation: str


@dataclass
class JavaSplit:
    """A JVM's (or a Go program's: ``reading.kind``) RSS split into its heap and what lies outside
    it, from its own counters."""

    pid: int
    comm: str
    is_victim: bool
    read_ms_before_kill: Optional[float]
    reading: RuntimeReading
    rss_bytes: Optional[int] = None  # the process's RSS at the kill (the kernel's tasks table)
    #: RSS minus the committed heap: what the heap cannot account for (at least this much lay
    #: outside the heap, since a committed heap page is not resident until touched)
    outside_heap_bytes: Optional[int] = None
    parts: List[SplitPart] = field(default_factory=list)


@dataclass
class Shown:
    version: Optional[int]
    figures: List[ToolFigure] = field(default_factory=list)
    #: what a dashboard scraping container_memory_usage_bytes every 15 s / 60 s last saw
    scrapes: List[ScrapeView] = field(default_factory=list)
    java: List[JavaSplit] = field(default_factory=list)
    go: List["RuntimeSplit"] = field(default_factory=list)  # each Go program read, as ``java``
    #: the dashboard figure the sentence starts from, and what the kernel charged
    dashboard_name: str = ""
    dashboard_bytes: Optional[int] = None
    charge_bytes: Optional[int] = None
    difference: List[SplitPart] = field(default_factory=list)
    sentences: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # runtime views not read, and why


def _is_java_task(comm: str, cmdline: Optional[str]) -> bool:
    first = (cmdline or "").split(" ", 1)[0]
    return comm == "java" or first.endswith("/java") or first == "java"


def _java_split(r: RuntimeReading, capture: Capture) -> JavaSplit:
    task = next((t for t in capture.tasks if t.pid == r.pid), None)
    is_victim = r.pid == capture.victim.pid
    rss = task.rss_bytes if task is not None and task.rss_bytes is not None else (capture.victim.rss_bytes if is_victim else None)
    s = JavaSplit(r.pid, r.comm or (task.comm if task else ""), is_victim, r.read_ms_before_kill, r, rss)
    if rss is None or r.heap_committed_bytes is None:
        return s
    # The kernel splits the RSS exactly (anon / file / shmem); the JVM's figures are what it
    # committed, not what is resident: committed heap is charged only as it is touched. So the
    # file pages come from the kernel first, then metaspace (its used part is nearly all of its
    # committed), and the heap is at most what the anonymous RSS leaves: a heap committed beyond
    # that was not all resident (the lab's java-heap: 192.4 MiB committed, 190.9 MiB anon RSS).
    mapped = task.file_rss_bytes if task is not None else (capture.victim.file_rss_bytes if is_victim else None)
    shmem = (task.shmem_rss_bytes if task is not None else (capture.victim.shmem_rss_bytes if is_victim else None)) or 0
    files = min(rss, (mapped or 0) + shmem)
    anon = rss - files
    meta = min(anon, r.metaspace_committed_bytes) if r.metaspace_committed_bytes is not None else 0
    heap = min(r.heap_committed_bytes, anon - meta)
    s.outside_heap_bytes = rss - heap
    capped = (f"; at most {fmt_bytes(heap)} of it resident (the anonymous RSS less metaspace): committed heap is "
              "charged only as it is touched" if heap < r.heap_committed_bytes else "")
    s.parts.append(SplitPart("heap", "Java heap (committed)" if not capped else "Java heap (resident, at most)", heap,
                             f"used {fmt_bytes(r.heap_used_bytes)} of {fmt_bytes(r.heap_committed_bytes)} committed, "
                             f"max {fmt_bytes(r.heap_max_bytes)}; what heap dashboards show is the used part" + capped))
    if r.metaspace_committed_bytes is not None:
        # the class space's committed part is included in metaspace's (hsperfdata sun.gc.metaspace)
        s.parts.append(SplitPart("metaspace", "Metaspace (class metadata)", meta,
                                 f"committed {fmt_bytes(r.metaspace_committed_bytes)}, used {fmt_bytes(r.metaspace_used_bytes)}; of which "
                                 f"compressed class space {fmt_bytes(r.class_space_committed_bytes)}"))
    if files:
        s.parts.append(SplitPart("mapped_files", "Mapped files (libjvm, the JDK's modules, jars)", files,
                                 "file pages in its RSS (the kernel's file-rss and shmem-rss): page cache, charged to "
                                 "whichever cgroup first read them"))
    rest = anon - meta - heap
    threads = f"{r.threads} threads' stacks" if r.threads is not None else "thread stacks"
    s.parts.append(SplitPart("native", "Native memory outside the heap", rest,
                             f"direct buffers, {threads}, the code cache, GC structures and malloc: the JVM's "
                             "counters do not split these (-XX:NativeMemoryTracking=summary and jcmd VM.native_memory do)"
                             + (f"; with the heap's resident part unknown, heap and native memory together were "
                                f"{fmt_bytes(heap + rest)}: this row is a lower bound" if capped else "")))
    return s


RuntimeSplit = JavaSplit


def _go_split(r: RuntimeReading, capture: Capture) -> RuntimeSplit:
    """A Go program's RSS: file pages (its executable, mapped), the heap in use (in-use spans,
    HeapInuse: what Go dashboards show as the heap), free spans the runtime kept (HeapIdle less
    HeapReleased: not returned to the OS, so resident and charged), and the rest of its anonymous
    memory (goroutine stacks, GC metadata, the runtime's own structures, cgo and C allocations)."""
    task = next((t for t in capture.tasks if t.pid == r.pid), None)
    is_victim = r.pid == capture.victim.pid
    src = task if task is not None else (capture.victim if is_victim else None)
    rss = src.rss_bytes if src is not None else None
    s = RuntimeSplit(r.pid, r.comm or (task.comm if task else ""), is_victim, r.read_ms_before_kill, r, rss)
    if rss is None or r.heap_inuse_bytes is None:
        return s
    files = min(rss, (src.file_rss_bytes or 0) + (src.shmem_rss_bytes or 0))
    anon = rss - files
    # a span in use can hold pages not yet touched: the heap is at most the anonymous RSS
    heap = min(r.heap_inuse_bytes, anon)
    free = min(r.heap_free_bytes, anon - heap) if r.heap_free_bytes is not None else 0
    s.outside_heap_bytes = rss - heap
    capped = (f"; at most {fmt_bytes(heap)} of it resident (the anonymous RSS)" if heap < r.heap_inuse_bytes else "")
    s.parts.append(SplitPart("heap", "Go heap in use (HeapInuse)" if not capped else "Go heap in use (resident, at most)", heap,
                             f"in-use spans {fmt_bytes(r.heap_inuse_bytes)}, of which live and not yet swept objects "
                             f"{fmt_bytes(r.heap_alloc_bytes)} (HeapAlloc); the GC's goal {fmt_bytes(r.heap_goal_bytes)}"
                             + (f", GOMEMLIMIT {fmt_bytes(r.memory_limit_bytes)}" if r.memory_limit_bytes is not None
                                else ", no GOMEMLIMIT") + "; what Go dashboards show as the heap" + capped))
    if r.heap_free_bytes is not None:
        s.parts.append(SplitPart("go_free", "Free heap spans kept (HeapIdle - HeapReleased)", free,
                                 "spans the GC freed that the runtime has not yet returned to the OS (its scavenger "
                                 "returns them over minutes, or sooner near GOMEMLIMIT): resident and charged, in no "
                                 "heap-in-use figure" + ("" if free == r.heap_free_bytes else
                                                         f"; {fmt_bytes(r.heap_free_bytes)} by the runtime's count, at most "
                                                         f"{fmt_bytes(free)} of it left in the anonymous RSS")))
    if files:
        s.parts.append(SplitPart("mapped_files", "Mapped files (its executable, shared libraries)", files,
                                 "file pages in its RSS (the kernel's file-rss and shmem-rss): page cache, charged to "
                                 "whichever cgroup first read them"))
    s.parts.append(SplitPart("native", "Other anonymous memory (at least)", anon - heap - free,
                             "what the anonymous RSS leaves after the heap's two figures above: goroutine stacks, GC "
                             "metadata, the runtime's own structures, cgo and C allocations (runtime.MemStats' StackSys, "
                             "GCSys and OtherSys, not read, split these); the heap's figures are the runtime's counts, "
                             "read before the kill, and a span in use may hold pages never touched, so this is a lower bound"))
    return s


def shown_of(capture: Capture, a: Analysis) -> Shown:
    ak = capture.at_kill
    version = capture.cgroup.version or capture.host.cgroup_version
    out = Shown(version=version, charge_bytes=ak.usage_bytes)
    out.figures = what_tools_showed(ak.usage_bytes, ak.memory_stat, version, ak.swap_usage_bytes,
                                    a.victim_rss_bytes if a.victim_rss_bytes is not None else capture.victim.rss_bytes,
                                    [t.rss_bytes for t in capture.tasks])
    if capture.timelines:
        tl = capture.timelines[0]
        out.scrapes = last_scrapes([(p.t_ms, p.usage_bytes) for p in tl.points], (15, 60))

    for r in capture.runtimes:
        if r.kind == "go":
            if r.why_not is not None:
                out.notes.append(f"pid {r.pid} ({r.comm or '?'}): the Go runtime's own view could not be read: {r.why_not}.")
            elif r.heap_inuse_bytes is not None:
                out.go.append(_go_split(r, capture))
            continue
        if r.why_not is not None:
            out.notes.append(f"pid {r.pid} ({r.comm or '?'}): the JVM's own view could not be read: {r.why_not}. "
                             "A JVM publishes it unless started with -XX:-UsePerfData: remove that flag (or start it with "
                             "-XX:+UsePerfData) and keep /tmp/hsperfdata_<user> visible in its mount namespace.")
            continue
        # a capture written before issue 24 may hold the JVM's whole argument line, secrets and all
        # (JAVA_TOOL_OPTIONS): from here on, its memory flags only
        out.java.append(_java_split(dataclasses.replace(r, vm_args=memory_flags(r.vm_args)), capture))
    read_pids = {r.pid for r in capture.runtimes}
    v = capture.victim
    if v.pid not in read_pids:
        if _is_java_task(v.comm, v.cmdline):
            if v.cmdline and "-XX:-UsePerfData" in v.cmdline:
                out.notes.append(f"The killed JVM (pid {v.pid}) ran with -XX:-UsePerfData: it kept no hsperfdata file, so "
                                 "its heap could not be read from outside. Drop the flag (the counters cost a 32 KiB "
                                 "shared file) to see the heap beside the kernel's charge next time.")
            else:
                out.notes.append(f"The killed JVM (pid {v.pid}) was not read before the kill (its cgroup was not near its "
                                 "limit while oomscope watched it, or the kill was imported from a log): its heap is unknown.")
        else:
            out.notes.append(f"oomscope did not read {v.comm or 'the victim'}'s own view of its memory: it reads a JVM's "
                             "(its hsperfdata file) and a Go program's (its runtime's state, through the executable's "
                             "symbols): the victim was neither, or was not read before the kill (a kill imported from a "
                             "log, or a cgroup not yet half full while oomscope watched it); its runtime's metrics, if "
                             "any, are not shown.")

    charge = ak.usage_bytes
    fig = {f.key: f for f in out.figures}
    ws = fig["working_set"].bytes
    ws_parts = [] if ws is None or charge is None else [SplitPart(
        "inactive_file", "inactive page cache", charge - ws,
        "file pages the working set leaves out as reclaimable; the kernel charges them until it reclaims them")]
    rec_parts = [SplitPart(p.key, p.label, p.bytes, p.explanation) for p in a.reconciliation]
    victim_java = next((j for j in out.java if j.is_victim), None)
    said = []  # (dashboard, its figure, the parts of the difference)
    if victim_java is not None and victim_java.reading.heap_used_bytes is not None:
        r = victim_java.reading
        heap = r.heap_used_bytes
        out.figures.insert(1, ToolFigure(
            "jvm_heap_used", "JVM heap used (jvm_memory_used_bytes{area=\"heap\"}, JMX, jstat)", heap,
            "eden + survivors + old generation used (sun.gc.generation.*.space.*.used)",
            f"the JVM's hsperfdata file, read {victim_java.read_ms_before_kill:.0f} ms before the kill"
            if victim_java.read_ms_before_kill is not None else "the JVM's hsperfdata file"))
        said.append(("the heap dashboard (jvm_memory_used_bytes)", heap, _beyond_heap(capture, a, heap)))
        said.append(("kubectl top (the working set)", ws, ws_parts))
    else:
        go = next((r for r in capture.runtimes if r.kind == "go" and r.pid == v.pid and r.heap_inuse_bytes is not None), None)
        if go is not None:
            when = (f", read {go.read_ms_before_kill:.0f} ms before the kill" if go.read_ms_before_kill is not None else "")
            out.figures.insert(1, ToolFigure(
                "go_heap_inuse", "Go heap in use (go_memstats_heap_inuse_bytes, runtime.MemStats.HeapInuse)",
                go.heap_inuse_bytes, "bytes in the Go heap's in-use spans (runtime.gcController.heapInUse)",
                f"the Go runtime's state in the process's memory{when}"))
            said.append(("the Go heap dashboard (go_memstats_heap_inuse_bytes)", go.heap_inuse_bytes,
                         _beyond_heap(capture, a, go.heap_inuse_bytes, GO_BEYOND)))
        said.append(("kubectl top (the working set)", ws, ws_parts))
        v_rss = fig["victim_rss"].bytes
        if v_rss is not None and charge is not None and v_rss < charge:
            said.append(("per-process monitoring (ps/top RSS of the killed process)", v_rss, rec_parts))
    out.dashboard_name, out.dashboard_bytes, out.difference = said[0]
    read = (f"the JVM's own counters, read {victim_java.read_ms_before_kill:.0f} ms before the kill"
            if victim_java is not None and victim_java.read_ms_before_kill is not None else None)
    victim_go = next((g for g in out.go if g.is_victim), None)
    if victim_java is None and victim_go is not None and victim_go.read_ms_before_kill is not None:
        read = f"the Go runtime's own figures, read {victim_go.read_ms_before_kill:.0f} ms before the kill"
    # the heap dashboard's figure is a reading; the others are each tool's formula on the kernel's
    # figures at the instant of the kill, which no scrape saw (the scrape's sentence says what one did)
    out.sentences = [t for name, b, parts in said
                     for t in _sentence(name, b, charge, parts,
                                        read if name.startswith(("the heap dashboard", "the Go heap dashboard")) else None)]
    out.sentences += _scrape_sentence(out.scrapes)
    if charge is None:
        out.sentences = ["The kernel's charge at the kill is not in this capture: what the dashboards showed "
                         "cannot be set beside it."]
    return out


#: the runtime's own memory beyond the heap a dashboard shows: (key, label, explanation, the others' label)
JVM_BEYOND = ("jvm_beyond_heap", "the JVM's own memory beyond the used heap",
              "its anonymous RSS less the used heap: committed but unused heap, metaspace, thread stacks, "
              "direct buffers, code cache, GC structures, malloc", "anonymous memory outside the JVM's RSS")
GO_BEYOND = ("go_beyond_heap", "the Go program's own memory beyond its heap in use",
             "its anonymous RSS less the heap in use: free spans not yet returned to the OS, goroutine stacks, "
             "GC metadata, the runtime's structures, cgo and C allocations", "anonymous memory outside the Go program's RSS")


def _beyond_heap(capture: Capture, a: Analysis, heap_used: int, beyond=JVM_BEYOND) -> List[SplitPart]:
    """The charge less the used heap, by what it was: the JVM's own anonymous memory beyond its
    used heap (its anon RSS, charged here, less the heap's used part), other processes' anonymous
    memory, then every other category of the charge (page cache, kernel memory, ...). The parts add
    up to the difference whenever the categories add up to the charge (they do: 'unexplained' is one)."""
    cats = {c.key: c for c in a.categories}
    anon = cats["anon"].bytes if "anon" in cats else None
    v = capture.victim
    own = v.anon_rss_bytes  # shmem is a category of its own
    out = []
    if anon is not None:
        jvm = max(0, min(anon, own if own is not None else anon) - heap_used)
        out.append(SplitPart(beyond[0], beyond[1], jvm, beyond[2]))
        others = max(0, anon - heap_used - jvm)
        if others:
            out.append(SplitPart("other_anon", beyond[3], others,
                                 "other processes' anonymous memory, or pages of processes already gone"))
    for c in a.categories:
        if c.key != "anon" and c.bytes > 0:
            out.append(SplitPart(c.key, c.label, c.bytes, "charged to the cgroup, in no heap"))
    return out


def _list(parts: List[Tuple[str, int]]) -> str:
    def lower(label: str) -> str:  # "Page cache ..." inside a sentence; "THP" stays
        return label[:1].lower() + label[1:] if label[1:2].islower() else label
    if len(parts) == 1 and parts[0][1] > 0:  # the whole difference: its size is already said
        return lower(parts[0][0])
    plus = [f"{fmt_bytes(b)} of {lower(label)}" for label, b in parts if b > 0]
    less = [f"{fmt_bytes(-b)} of {lower(label)}" for label, b in parts if b < 0]
    if not plus:
        return ""

    def join(items: List[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    # a negative part: pages the dashboard counted that this cgroup was not charged for
    return join(plus) + (f", less {join(less)}" if less else "")


def _sentence(name: str, shown: Optional[int], charge: Optional[int], difference: List[SplitPart],
              read: Optional[str] = None) -> List[str]:
    """ "Your dashboard showed X; the kernel killed at Y; the difference, Z, was A, B and C." A
    figure read from the tool's own source says when (``read``); a tool's formula on the kernel's
    figures is what it *would have shown at the kill*, not what a scrape of it saw (issue 26)."""
    if charge is None or shown is None:
        return []
    z = charge - shown
    parts = [(p.label, p.bytes) for p in difference if p.bytes]
    said = f"showed {fmt_bytes(shown)} ({read})" if read else f"would have shown {fmt_bytes(shown)} at the kill"
    text = f"Your dashboard, {name}, {said}; the kernel killed at {fmt_bytes(charge)}; the difference, {fmt_bytes(z)}"
    if z <= 0:
        text += ": at the kill the dashboard would have shown all the kernel charged."
    else:
        text += f", was {_list(parts)}." if parts else ": not attributed (the capture lacks the figures)."
    return [text]


def _scrape_sentence(scrapes: List[ScrapeView]) -> List[str]:
    """What a dashboard scraping the usage every 15 s last saw, beside the figure at the kill: its
    last scrape was 0 to 15 s before the kill, so a range, and its oldest reading with its age."""
    sc = next((x for x in scrapes if x.interval_s == 15), None)
    if sc is None:
        return []
    if sc.bytes is None:
        return ["What a dashboard scraping the usage every 15 s last saw is unknown: oomscope's timeline does not "
                "reach back that far."]
    oldest = f"was {fmt_bytes(sc.bytes)}" + (" (the cgroup held nothing yet)" if sc.bytes == 0 else "")
    span = (f"{fmt_bytes(sc.low_bytes)}" if sc.low_bytes == sc.high_bytes else
            f"between {fmt_bytes(sc.low_bytes)} and {fmt_bytes(sc.high_bytes)}")
    return [f"Those are figures at the kill, which no scrape saw: a dashboard scraping the usage every 15 s last "
            f"scraped 0 to 15 s before the kill, and oomscope's readings in those 15 s were {span}; the oldest, "
            f"{sc.age_ms / 1000:.1f} s before the kill, {oldest}."]


def flag_bytes(args: Optional[str], flag: str) -> Optional[int]:
    """A -XX:Flag=<size> among the JVM's arguments, in bytes (k/m/g suffixes as the JVM reads them)."""
    m = re.search(rf"-XX:{flag}=(\d+)([kKmMgGtT]?)\b", args or "")
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]


#: titles of the JVM's advice (analysis/result.py looks for the first)
OUTSIDE_HEAP = "Memory outside the Java heap"
HEAP_MAX = "Heap max too close to the limit"


#: without native memory measured (NMT), advice never gives the heap more of the limit than this (%)
HEAP_SHARE_CAP = 75


def non_heap_upper_bytes(j: JavaSplit, charge_bytes: Optional[int]) -> Optional[int]:
    """The largest figure the capture supports for what is charged beside a JVM's heap: the charge
    at the kill less the heap in use (used heap has been written, so it is resident and charged;
    everything else charged is at most the rest), or without the charge its RSS less the heap in
    use. Not ``outside_heap_bytes``, which is a lower bound (RSS less the whole committed heap)."""
    used = j.reading.heap_used_bytes
    base = charge_bytes if charge_bytes is not None else j.rss_bytes
    if used is None or base is None:
        return None
    return max(0, base - used)


def java_advice(shown: Shown, limit_bytes: Optional[int]):
    """Advice for the JVMs read, from their own figures: (case, title, text, evidence) tuples."""
    out = []
    for j in shown.java:
        r = j.reading
        who = f"pid {j.pid} ({j.comm or 'java'})"
        outside = j.outside_heap_bytes
        if limit_bytes and r.heap_max_bytes:
            share = r.heap_max_bytes / limit_bytes
            room = limit_bytes - r.heap_max_bytes
            upper = non_heap_upper_bytes(j, shown.charge_bytes)
            if share >= HEAP_SHARE_CAP / 100:  # native memory beyond the room left is the next advice's matter
                # Room for the heap is the limit less the LARGEST figure the capture supports for
                # what lies outside it (never a lower bound: 18.9 MiB "outside" once sized a heap
                # that left no room for the 53 MiB of native memory the same figures allowed), and
                # without native memory measured (NMT) never more than HEAP_SHARE_CAP% (issue 26)
                left = (f"leaving {fmt_bytes(room)} for everything outside the heap" if room > 0 else
                        "more than the limit itself: the heap alone can fill the cgroup, with nothing left outside it")
                text = (f"The heap may grow to {fmt_bytes(r.heap_max_bytes)}, {share:.0%} of the {fmt_bytes(limit_bytes)} limit, "
                        + left + (f"; outside the heap the JVM took at least {fmt_bytes(outside)} (its RSS less the committed heap)"
                                  if outside is not None else "") + ". ")
                if upper is not None:
                    fit = limit_bytes - upper
                    target = min(HEAP_SHARE_CAP, max(0, int(fit * 100 // limit_bytes)))
                    base = (f"the charge at the kill, {fmt_bytes(shown.charge_bytes)}" if shown.charge_bytes is not None else
                            f"its RSS, {fmt_bytes(j.rss_bytes)}")
                    text += (f"What must fit beside the heap is, by this capture's figures, up to {fmt_bytes(upper)}: {base}, "
                             f"less the {fmt_bytes(r.heap_used_bytes)} of heap in use. Room for the heap: {fmt_bytes(limit_bytes)} - "
                             f"{fmt_bytes(upper)} = {fmt_bytes(max(0, fit))}, {max(0, fit) * 100 // limit_bytes}% of the limit")
                else:
                    target = HEAP_SHARE_CAP
                    text += "This capture does not bound what lies outside the heap"
                text += (f"; native memory was not measured (-XX:NativeMemoryTracking), so the heap gets at most "
                         f"{HEAP_SHARE_CAP}% of the limit. ")
                if target >= 1:
                    text += (f"Size the heap from the limit: -XX:MaxRAMPercentage={target} (instead of a fixed -Xmx), so heap "
                             "max and what lies outside it fit.")
                if target < 25:
                    text += " Outside the heap there was more than a useful heap leaves room for: cap it first (the next item)."
                out.append(("no_more_limit", HEAP_MAX, text,
                            [ev(f"{who} heap max", r.heap_max_bytes), ev("limit", limit_bytes)]
                            + ([ev("heap used", r.heap_used_bytes), ev("outside the heap up to", upper)]
                               if upper is not None else [])))
        if outside is not None and j.rss_bytes and outside >= 0.25 * j.rss_bytes:
            native = next((p.bytes for p in j.parts if p.key == "native"), None)
            direct = flag_bytes(r.vm_args, "MaxDirectMemorySize")
            out.append(("no_more_limit", OUTSIDE_HEAP,
                        f"{fmt_bytes(outside)} of {who}'s {fmt_bytes(j.rss_bytes)} RSS was outside its heap "
                        f"({fmt_bytes(native)} of it native: direct buffers, thread stacks, code cache, GC structures, malloc). "
                        "A heap dashboard does not show it. "
                        + (f"The JVM allowed direct buffers up to {fmt_bytes(direct)} (-XX:MaxDirectMemorySize), "
                           + (f"{direct / limit_bytes:.1f}x the limit. " if limit_bytes else ". ") if direct is not None else
                           "Direct buffers were not capped (-XX:MaxDirectMemorySize defaults to the heap max). ")
                        + "Cap direct buffers with -XX:MaxDirectMemorySize so heap max + direct + the rest fits the limit, and run with "
                        "-XX:NativeMemoryTracking=summary to see the rest (jcmd <pid> VM.native_memory).",
                        [ev(f"{who} RSS", j.rss_bytes), ev("heap committed", r.heap_committed_bytes)]))
        pretouch = bool(r.vm_args and "+AlwaysPreTouch" in r.vm_args)
        if pretouch:
            out.append(("context", "-XX:+AlwaysPreTouch made the whole heap resident",
                        f"{who} runs with -XX:+AlwaysPreTouch: its committed heap ({fmt_bytes(r.heap_committed_bytes)}) was charged "
                        "from the start, however little of it was used.", [ev("vm_args", r.vm_args, "text")]))
        elif (r.heap_max_bytes and r.heap_committed_bytes is not None and r.heap_max_bytes > r.heap_committed_bytes
              and not any(x[1] == HEAP_MAX for x in out)):  # that item already says the heap can outgrow the limit
            out.append(("context", "The heap can still grow into the limit",
                        f"{who}'s heap had {fmt_bytes(r.heap_committed_bytes)} committed of a {fmt_bytes(r.heap_max_bytes)} max: "
                        "it becomes resident as it is touched, so the charge can grow by the difference later. "
                        "-XX:+AlwaysPreTouch touches it all at start, so a heap that does not fit fails at start, not under load.",
                        [ev("heap committed", r.heap_committed_bytes), ev("heap max", r.heap_max_bytes)]))
    return out
