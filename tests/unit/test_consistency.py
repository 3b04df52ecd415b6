"""Every post-mortem agrees with itself (issue 15): run over every example in reports/, every
gold capture, and every kill imported from the log fixtures.

- the ledger (victim's RSS, its parts, the charge) sums exactly to the charge;
- no figure is shown as unknown that the capture has (victim RSS, task_memcg, oom_score_adj,
  "only the Killed line" where the report is there);
- no advice rests on a fact the capture lacks (a limit number without a timeline, "no swap"
  without knowing the swap, THP advice without the mode, a helper without a tasks table, "fix the
  items above" with nothing above).
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
    if view.timeline and len(view.timeline_xaxis) < 2:
        out.append("a timeline without a time axis")
    if view.bar and not view.bar_scale:
        out.append("a bar without its scale")
    if not has_timeline and result.trend.kind != "unknown":
        out.append(f"a trend ({result.trend.kind}) without a timeline")
    return out


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
