"""Every post-mortem agrees with itself (issue 15): run over every example in reports/, every
gold capture, and every kill imported from the log fixtures.

- the ledger (victim's RSS, its parts, the charge) sums exactly to the charge;
- no figure is shown as unknown that the capture has (victim RSS, task_memcg, oom_score_adj,
  "only the Killed line" where the report is there);
- no advice rests on a fact the capture lacks (a limit number without a timeline, "no swap"
  without knowing the swap, THP advice without the mode, a helper without a tasks table, "fix the
  items above" with nothing above; swap advice where the growth is not known to have stopped; a
  heap profile for a leak outside the Java heap; one item twice);
- the verdict says what the charge was made of, and never that an RSS above the charge "accounts
  for" it; sizes in the page's one format;
- each example page is what the code renders from its capture (reports/ kept current).
"""

import glob
import io
import os
import re

import pytest

from oomscope.analysis.result import analyse_kill
from oomscope.importer import import_reports
from oomscope.model import Capture
from oomscope.report.view import build_view

from ..conftest import FIXTURES, fixture_text
from .helpers import capture_from_fixture

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "reports", "*", "capture.json")))
GOLD = [("v1-6.18-hostile-sidecar.kmsg", 1), ("v2-6.1-anon.kmsg", 2), ("v2-6.1-global.kmsg", 2)]
LOGS = [("logs", n) for n in sorted(os.listdir(os.path.join(FIXTURES, "logs")))]
LOGS += [("kmsg", n) for n in sorted(os.listdir(os.path.join(FIXTURES, "kmsg")))]


def _cases():
    for path in EXAMPLES:
        yield pytest.param(("example", path), id="example-" + os.path.basename(os.path.dirname(path)))
    for name, version in GOLD:
        yield pytest.param(("gold", (name, version)), id="gold-" + name)
    for folder, name in LOGS:
        yield pytest.param(("import", (folder, name)), id=f"import-{folder}-{name}")


def _captures(case):
    kind, arg = case
    if kind == "example":
        with open(arg) as f:
            return [Capture.from_json(f.read())]
    if kind == "gold":
        return [capture_from_fixture(arg[0], version=arg[1])[0]]
    folder, name = arg
    return [imp.capture for imp in import_reports(io.StringIO(fixture_text(folder, name)), year=2026)]


def test_the_examples_are_there():
    assert len(EXAMPLES) >= 8, EXAMPLES  # the test below would pass on an empty reports/


@pytest.mark.parametrize("case", list(_cases()))
def test_each_page_agrees_with_itself(case):
    caps = _captures(case)
    assert caps
    for cap in caps:
        problems = _problems(cap)
        assert not problems, f"{cap.kill_id}: " + "; ".join(problems)


def _problems(cap: Capture):
    out = []
    result = analyse_kill(cap)
    a = result.attribution
    view = build_view(cap, result)
    facts = {kv.key: kv.value for kv in view.facts}
    victim_row = next((t for t in cap.tasks if t.is_victim), None)

    # --- the ledger sums exactly to the charge ---
    if a.reconciliation:
        total = a.victim_rss_bytes + sum(p.bytes for p in a.reconciliation)
        if total != a.usage_bytes:
            out.append(f"ledger sums to {total}, the charge is {a.usage_bytes}")
        if view.reconciliation[-1].kind != "total" or view.reconciliation[0].kind != "start":
            out.append("the ledger's table does not run from the victim's RSS to the charge")
    elif a.victim_rss_bytes is not None and a.usage_bytes is not None and a.gap_bytes:
        out.append("victim RSS and charge known, yet no ledger")
    if a.categories and a.usage_bytes is not None and sum(c.bytes for c in a.categories) != a.usage_bytes:
        out.append("the categories do not sum to the charge")
    kernel_labels = {c.label for c in a.categories if c.key == "kernel"}
    if len(kernel_labels) > 1:
        out.append(f"kernel memory under several names: {kernel_labels}")

    # --- no figure shown as unknown that the capture has ---
    if victim_row is not None and victim_row.rss_bytes is not None and facts.get("Victim RSS (anon / file / shmem)", "").startswith("—"):
        out.append("victim RSS '—' above a tasks table that has it")
    if victim_row is not None and victim_row.oom_score_adj is not None and facts.get("Victim oom_score_adj") == "—":
        out.append(f"victim oom_score_adj '—' where the tasks table has {victim_row.oom_score_adj}")
    lines = "\n".join(cap.kernel_report.lines)
    m = re.search(r"oom-kill:.*task_memcg=([^,\s]+)", lines)
    if m and facts.get("Victim's cgroup (task_memcg)") == "—":
        out.append(f"task_memcg '—' where the oom-kill: line has {m.group(1)}")
    m = re.search(r"oom-kill:.*oom_memcg=([^,\s]+)", lines)
    if m and facts.get("Cgroup that hit its limit (oom_memcg)") == "—":
        out.append(f"oom_memcg '—' where the oom-kill: line has {m.group(1)}")
    has_report = bool(re.search(r"memory: usage|Mem-Info|Tasks state|oom-kill:|invoked oom-killer|Memory cgroup stats", lines))
    for note in cap.notes:
        if "only the 'Killed process' line" in note.lower() and has_report:
            out.append(f"says only the Killed line is in the log, but the report is: {note[:80]}")
    if re.search(r"Mem-Info:|memory: usage", lines) and cap.at_kill.usage_bytes is None and not cap.host_memory_at_kill:
        out.append("the report's memory lines are in the log, but no usage or host memory was taken from them")

    # --- which limit was hit, for every kill (issue 26): never "none" where a cgroup's limit was hit ---
    if not result.verdict.sentences:
        out.append("an empty verdict")
    if cap.cgroup.constraint == "CONSTRAINT_MEMCG" and facts.get("Limit") == "none":
        out.append("Limit 'none' where CONSTRAINT_MEMCG proves a cgroup's limit was hit")
    # a user-space kill hit no limit: its verdict names the killer; a throttling episode names memory.high
    named = {"userspace": cap.killer.known_as or cap.killer.comm, "memory_high": "memory.high"}.get(result.limit_hit.scope,
                                                                                                    result.limit_hit.name)
    if result.limit_hit.scope not in ("host", "unknown") and (not named or named not in said_first(result)):
        out.append(f"the verdict does not say whose limit was hit ({result.limit_hit.scope})")

    # --- what a scrape saw is not what the tool would have shown at the kill (issue 26) ---
    for sc in result.shown.scrapes:
        if sc.bytes is not None and not (sc.age_ms <= sc.interval_s * 1000 and sc.low_bytes <= sc.bytes <= sc.high_bytes):
            out.append(f"a {sc.interval_s} s scrape of {sc.bytes} B {sc.age_ms} ms old, outside its interval or range")
    for s in result.shown.sentences:
        if re.search(r"showed [\d.]+ [KMG]?i?B;", s):
            out.append(f"a figure at the kill said as shown on a dashboard: {s[:80]}")

    # --- every fitted figure labelled as fitted and possible; a projection only within its span (issue 26) ---
    t = result.trend
    ceiling = min([x for x in (a.usage_bytes, a.limit_bytes) if x] or [0]) or None
    if t.kind == "leak":
        if "fitted" not in t.text:
            out.append(f"a fitted rise not said as fitted: {t.text[:80]}")
        if ceiling is not None and max(t.anon_end_bytes or 0, t.anon_start_bytes or 0) > ceiling:
            out.append(f"a fitted value ({t.anon_end_bytes} B) beyond the charge or the limit ({ceiling} B)")
    for x in result.advice:
        m = re.search(r"buys about ([\d.]+) (s|min|h)\b", x.text)
        if m and float(m.group(1)) * {"s": 1 / 60, "min": 1, "h": 60}[m.group(2)] > t.minutes * 1.05:
            out.append(f"a projection ({m.group(0)}) beyond the {t.minutes:.2f} min it was fitted on")

    # --- one incident's pages agree, and no part is bigger than what it is a part of (issue 26) ---
    inc = cap.incident
    listed = {t.pid for t in cap.tasks} | {cap.victim.pid}
    if inc is not None and inc.group_kill and any(x.pid not in listed for x in inc.victims):
        if any(p.key == "anon_unlisted" for p in a.reconciliation):
            out.append("a group member's page puts the group's other processes under 'exited before the report'")
    if "the largest part of the difference" in said_all(result) and a.gap_bytes is not None:
        if any(p.bytes > a.gap_bytes for p in a.reconciliation):
            out.append("a 'largest part' of the difference bigger than the difference")
    for x in result.advice:
        if x.case == "no_more_limit" and re.search(r"(size|raise) the limit", x.text):
            out.append(f"'needs no more limit' that then says to size or raise the limit: {x.title}")

    # --- nothing said from a figure the capture lacks (issue 26: RHEL 7, 3.10) ---
    if any(not t.is_victim and t.anon_rss_bytes is None for t in cap.tasks) and (
            a.others_shared_bytes or "the others' anonymous RSS is such pages" in view.tasks_note):
        out.append("pages 'shared after fork()' where the others' RSS is not split (anon '—')")
    if any(x.title.startswith("Kernel slab") for x in result.advice) and not any(c.key == "slab" for c in a.categories):
        out.append("slab advice resting on a kernel-memory figure alone")

    # --- no advice on a fact the capture lacks ---
    has_timeline = bool(cap.timelines) and any(len(t.points) >= 2 for t in cap.timelines)
    for i, x in enumerate(result.advice):
        if re.search(r"[Aa] limit of \d", x.text) and not has_timeline:
            out.append(f"a limit number without a timeline: {x.title}")
        if x.title == "No swap" and cap.host.swap_total_bytes != 0:
            out.append("'No swap' where the host's swap is not known to be zero")
        if x.title == "Transparent huge pages" and x.case == "no_more_limit" and cap.host.thp_enabled not in ("always", "madvise"):
            out.append("THP advice that names a fix without the host's THP mode")
        if "madvise" in x.text and "switch" in x.text and cap.host.thp_enabled == "madvise":
            out.append("telling a madvise host to switch to madvise")
        if x.title.startswith("Other processes") and len(cap.tasks) < 2:
            out.append("advice on other processes without a tasks table")
        if "items above" in x.text and not any(y.case == "no_more_limit" for y in result.advice[:i]):
            out.append("'fix the items above' with nothing above")
        if x.title.startswith("Reserved is not charged") and not cap.victim.total_vm_bytes:
            out.append("advice on the reserved size without total_vm")
        if x.title in ("No swap", "Swap: unknown") and result.trend.kind not in ("plateau", "spike"):
            out.append(f"swap advice where the growth is not known to have stopped ({result.trend.kind})")
        if x.case == "delay_only" and "heap profile" in x.text and any(y.title == "Memory outside the Java heap" for y in result.advice):
            out.append("a heap profile to find a leak that grew outside the heap")
        if any(re.search(r"_bytes \d", str(e)) for e in x.evidence):
            out.append(f"a raw field and byte count where the page says sizes one way: {x.evidence}")
    # --- no runtime advice leaves less than the capture's upper bound of non-heap memory (issue 26) ---
    jvm = next((j for j in result.shown.java if j.is_victim), None)
    for x in result.advice:
        m = re.search(r"MaxRAMPercentage=(\d+)", x.text)
        if not m:
            continue
        pct, limit = int(m.group(1)), a.limit_bytes
        if pct > 75:
            out.append(f"MaxRAMPercentage={pct}: more than 75% of the limit with native memory not measured")
        used = jvm.reading.heap_used_bytes if jvm is not None else None
        charge = a.usage_bytes if a.usage_bytes is not None else (jvm.rss_bytes if jvm is not None else None)
        if limit and used is not None and charge is not None and pct * limit / 100 + (charge - used) > limit:
            out.append(f"MaxRAMPercentage={pct} leaves less than the {charge - used} bytes the capture allows outside the heap")
    titles = [x.title for x in result.advice]
    if len(titles) != len(set(titles)):
        out.append(f"an item twice: {titles}")
    if "Heap max too close to the limit" in titles and "The heap can still grow into the limit" in titles:
        out.append("the heap's growth into the limit said twice")

    # --- the verdict says what the charge was made of, and the RSS as it was ---
    said = " ".join(result.verdict.sentences)
    if a.top_categories and a.usage_bytes and cap.cgroup.constraint == "CONSTRAINT_MEMCG" and "Most of the charge was" not in said:
        out.append(f"the verdict does not say what the charge was made of ({a.top_categories})")
    if "accounts for the whole charge" in said and (a.gap_bytes or 0) < 0:
        out.append("the victim's RSS, more than the charge, said to account for it")
    if any(c.series and len(c.xaxis) < 2 for c in view.timeline_charts):
        out.append("a timeline without a time axis")
    if view.bar and not view.bar_scale:
        out.append("a bar without its scale")
    if not has_timeline and result.trend.kind != "unknown":
        out.append(f"a trend ({result.trend.kind}) without a timeline")
    return out


def said_all(result) -> str:
    return " ".join(result.verdict.sentences)


def test_the_pages_of_one_incident_agree():
    # issue 26: pid 247's page put 65.5 MiB under "processes that exited before the report" while
    # pid 246's named 247 and 248 as holding it; every page of a group kill tells one story
    seen = 0
    for folder, name in LOGS:
        caps = [imp.capture for imp in import_reports(io.StringIO(fixture_text(folder, name)), year=2026)]
        incidents = {}
        for cap in caps:
            if cap.incident is not None and cap.incident.group_kill:
                incidents.setdefault(cap.incident.id, []).append(cap)
        for pages in incidents.values():
            if len(pages) < 2:
                continue
            seen += 1
            results = [analyse_kill(c) for c in pages]
            assert len({(c.at_kill.usage_bytes, c.at_kill.limit_bytes, c.cgroup.oom_memcg) for c in pages}) == 1
            assert len({r.limit_hit.scope for r in results}) == 1
            assert len({tuple(r.attribution.top_categories) for r in results}) == 1
            for c, r in zip(pages, results):
                others = [x for x in c.incident.victims if x.pid != c.victim.pid]
                said = said_all(r)
                assert all(f"pid {x.pid} " in said for x in others), (c.victim.pid, said)
                assert not any(p.key == "anon_unlisted" for p in r.attribution.reconciliation), c.victim.pid
    assert seen >= 1


def said_first(result) -> str:
    return result.verdict.sentences[0] if result.verdict.sentences else ""


def test_a_helpers_rss_is_split_into_what_was_charged_here_shared_and_file_pages():
    # issue 15: the helper's RSS (tasks table), the ledger's row and the JSON must agree
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    a = analyse_kill(cap).attribution
    held = next(p.bytes for p in a.reconciliation if p.key == "other_processes")
    helper_rss = sum(t.rss_bytes for t in cap.tasks if not t.is_victim)
    assert held + a.others_shared_bytes + a.others_file_bytes == helper_rss == a.others_rss_bytes
    assert 0 < a.others_shared_bytes < held  # pages shared after fork(): counted in both RSS, charged once
    row = next(r for r in build_view(cap).reconciliation if r.label.startswith("Anonymous memory of 1 other"))
    assert "shared" in row.explanation and "file" in row.explanation


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_each_example_page_is_what_the_code_renders_from_its_capture(path):
    # reports/ is re-rendered after a change of the analysis or the page (reports/README.md):
    # a stale example would show advice the code no longer gives
    from oomscope.report.render import render_html

    with open(path, encoding="utf-8") as f:
        cap = Capture.from_json(f.read())
    with open(os.path.join(os.path.dirname(path), "postmortem.html"), encoding="utf-8") as f:
        page = f.read()
    assert render_html(cap) == page, "stale: run oomscope report reports/X/capture.json -o reports/X/postmortem.html"


def _example(name):
    with open(os.path.join(ROOT, "reports", name, "capture.json"), encoding="utf-8") as f:
        return Capture.from_json(f.read())


def test_a_thp_kill_is_said_as_anonymous_memory_in_huge_pages_everywhere():
    # top_categories says "anon_thp", which is no category of the charge: the verdict, record's
    # kill line and the index each once said nothing of what filled the limit
    from oomscope.record.announce import cause_words
    from oomscope.report.index import row_for

    cap = _example("thp")
    result = analyse_kill(cap)
    assert result.top_categories == ["anon_thp"]
    said = " ".join(result.verdict.sentences)
    assert "Most of the charge was anonymous memory (heap, stacks) (63.8 MiB, 99.7%; 58.0 MiB of it in transparent huge pages)" in said
    assert cause_words(cap, result).startswith("anonymous memory (heap, stacks; mostly in huge pages) 100%")
    assert row_for(cap, result).categories == "anonymous, in huge pages"


def test_the_index_says_what_filled_the_limit_in_words_and_names_other_processes():
    from oomscope.report.index import row_for

    assert row_for(_example("sidecar")).categories == "anonymous (heap), other processes"  # 35% held by the helper
    assert row_for(_example("slab")).categories == "kernel (slab), anonymous (heap)"
    assert row_for(_example("tmpfs")).categories == "tmpfs / shared memory"


def test_a_victim_rss_above_the_charge_is_said_as_such():
    result = analyse_kill(_example("anon"))
    said = " ".join(result.verdict.sentences)
    assert "was more than the charge: it counts 5.6 MiB of its file pages charged elsewhere" in said
    assert "accounts for the whole charge" not in said


def test_a_jvm_heap_committed_beyond_its_anonymous_rss_is_not_shown_resident():
    # java-heap: 192.4 MiB committed, 190.9 MiB anonymous RSS, 9.3 MiB of file pages: the split
    # once showed the whole committed heap resident, mapped files 0 B and 7.8 MiB outside the heap
    # (from which it sized -XX:MaxRAMPercentage=94)
    cap = _example("java-heap")
    result = analyse_kill(cap)
    (j,) = result.shown.java
    parts = {p.key: p for p in j.parts}
    v = cap.victim
    assert parts["mapped_files"].bytes == (v.file_rss_bytes or 0) + (v.shmem_rss_bytes or 0)  # the kernel's figure
    assert parts["heap"].bytes <= v.rss_bytes - parts["mapped_files"].bytes - parts["metaspace"].bytes
    assert parts["heap"].bytes < j.reading.heap_committed_bytes and "at most" in parts["heap"].label
    assert sum(p.bytes for p in j.parts) == j.rss_bytes
    heap_max = next(x for x in result.advice if x.title == "Heap max too close to the limit")
    assert "MaxRAMPercentage=87" not in heap_max.text  # from 18.9 MiB outside the heap: a lower bound (issue 26)


def test_heap_advice_leaves_room_for_the_largest_non_heap_figure_the_capture_supports():
    # java-heap: 192 MiB charged, 127.9 MiB of heap in use: up to 64.1 MiB lay outside the heap.
    # MaxRAMPercentage=87 (a 167 MiB heap) left 25 MiB for it: advice that causes the next kill
    cap = _example("java-heap")
    result = analyse_kill(cap)
    heap_max = next(x for x in result.advice if x.title == "Heap max too close to the limit")
    assert "MaxRAMPercentage=66" in heap_max.text
    # the arithmetic is on the page, and the cap without NMT is said
    assert "up to 64.1 MiB: the charge at the kill, 192.0 MiB, less the 127.9 MiB of heap in use" in heap_max.text
    assert "192.0 MiB - 64.1 MiB = 127.9 MiB, 66% of the limit" in heap_max.text
    assert "at most 75% of the limit" in heap_max.text


def test_a_jvm_kill_line_says_the_memory_was_outside_the_java_heap():
    # "anonymous memory (heap, stacks) 99%" alone reads as the Java heap to whoever runs a JVM
    from oomscope.record.announce import cause_words

    off = _example("java-offheap")
    assert "native memory outside the Java heap 89%" in cause_words(off, analyse_kill(off))  # 170.7 of 192 MiB
    heap = _example("java-heap")
    assert "outside the Java heap" not in cause_words(heap, analyse_kill(heap))


def test_rhel7_says_no_sharing_without_the_split_and_no_slab_from_kmem_alone():
    # issue 26: "4.4 MiB of the others' anonymous RSS was shared after fork()" beside a table whose
    # anon column is "—"; slab advice resting on a 3.10 kernel's kmem figure alone
    (imp,) = import_reports(io.StringIO(fixture_text("logs", "rhel7-vendor-summary-3.10.txt")), year=2026)
    cap = imp.capture
    result = analyse_kill(cap)
    view = build_view(cap, result)
    assert "the others' anonymous RSS is such pages" not in view.tasks_note and result.attribution.others_shared_bytes == 0
    assert not any(x.title.startswith("Kernel slab") for x in result.advice)
    kmem = next(x for x in result.advice if x.title == "Kernel memory (cgroup v1's kmem counter)")
    assert kmem.case == "context" and "does not say which" in kmem.text
