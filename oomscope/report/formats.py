"""The post-mortem as Markdown (to paste into a ticket) and as JSON (the analysis result).

JSON's ``verdict.categories`` names the one or two categories that explain the kill, largest
first, from one fixed vocabulary: anon, anon_thp, file, shmem, slab, kernel_stack, pagetables,
percpu, vmalloc, kernel, sock, zswap (see analysis/attribution.py), then other_processes when
processes other than the victim held at least 15% of the charge (analysis/verdict.py).

JSON's ``schema`` is the capture's schema version, ``time`` the kill's (ISO 8601; null: undated),
``host`` and ``workload`` the capture's, ``limit_hit`` which limit was hit ({cgroup, scope,
limit_bytes}: analysis/limit.py), and each piece of advice's ``evidence`` a list of {name, value,
unit (bytes, count, ratio, minutes, text, note), text}.

JSON's ``dashboards`` lists what each tool would have shown at the kill, [{key, name, bytes (null:
unknown), formula, source}] (analysis/dashboards.py); ``dashboards_said`` the sentences "Your
dashboard showed X; the kernel killed at Y; the difference, Z, was A, B and C."; ``scrapes`` what a
15 s / 60 s scrape of the usage last saw; ``runtimes`` each JVM read before the kill (the capture's
figures, with ``rss_bytes``, ``outside_heap_bytes`` and ``rss_split``), each Go program read (kind
``go``: ``heap_inuse_bytes``, ``heap_goal_bytes``, ``memory_limit_bytes``, ``allocation_sites``), and
those that could not be read (``why_not``); ``runtime_notes`` what could not be read and why, in words.

JSON's ``allocation_sites`` (issue 27) lists the code that held the memory, largest first:
[{frames (innermost first), bytes, source (``page_faults``: sampled page faults still resident at
the last check before the kill, an estimate: record/sites.py; ``go_heap``), pid, comm, and for
page_faults faults_sampled, pages_sampled, pages_resident, unsymbolized (what could not be named,
and why)}]; ``allocation_sampling`` how ({period, sampled_from_ms, checked_ms, estimate, notes});
``limit_hitters`` the tasks stalled in memcg reclaim when the cgroup hit its limit [{pid, tid,
comm, stall_ms, max_stall_ms, runs, frames, kernel_frames}].
"""

from __future__ import annotations

import dataclasses
import json
import re

from typing import Optional

from ..analysis.result import KillAnalysis, analyse_kill
from ..model import Capture
from ..terminal import json_safe, terminal_safe
from .view import build_view


def render_json(capture: Capture, analysis: Optional[KillAnalysis] = None, series: Optional[dict] = None) -> str:
    """``series``: the kill's series (postmortem/series.py): {id, kill_number, kills_so_far, workload}."""
    result = analysis if analysis is not None else analyse_kill(capture)
    verdict = dataclasses.asdict(result.verdict)
    out = {
        "kill_id": capture.kill_id,
        # issue 26: when, where and what, without reading the capture: the kill's time (ISO 8601, or
        # null: undated), the host, the workload (with its label) and the capture's schema version
        "schema": capture.schema_version,
        "time": capture.times.kill_wall,
        "host": dataclasses.asdict(capture.host),
        "workload": dict(dataclasses.asdict(capture.workload), label=capture.workload.label() or None),
        "victim": {"pid": capture.victim.pid, "comm": capture.victim.comm, "rss_bytes": capture.victim.rss_bytes},
        "cgroup": dataclasses.asdict(capture.cgroup),
        # which limit was hit (analysis/limit.py): scope one of container, pod, all_pods, qos_class,
        # parent, own, host (unknown: a cgroup's, whose not in the capture); limit_bytes null: not known
        "limit_hit": {"cgroup": result.limit_hit.cgroup, "scope": result.limit_hit.scope,
                      "limit_bytes": result.limit_hit.limit_bytes},
        # the structured verdict (analysis/verdict.py); "text" is its sentences, as before
        "verdict": {"categories": verdict["categories"], "text": verdict.pop("sentences"),
                    **{k: v for k, v in verdict.items() if k not in ("categories", "limit_hit")}},
        "analysis": dataclasses.asdict(result.attribution),
        "trend": dataclasses.asdict(result.trend),
        # each piece of advice's evidence as numbers: {name, value, unit, text} (text: as the page says it)
        "advice": [dict(dataclasses.asdict(x), evidence=[dict(dataclasses.asdict(e), text=str(e)) for e in x.evidence])
                   for x in result.advice],
        "incident": dataclasses.asdict(capture.incident) if capture.incident else None,
        "notes": capture.notes,
        # what each tool showed at the kill (analysis/dashboards.py), and the runtimes' own views
        "dashboards": [{"key": f.key, "name": f.name, "bytes": f.bytes, "formula": f.formula, "source": f.source}
                       for f in result.shown.figures],
        "dashboards_said": result.shown.sentences,
        "scrapes": [dataclasses.asdict(s) for s in result.shown.scrapes],
        "runtimes": [dict(dataclasses.asdict(j.reading), rss_bytes=j.rss_bytes, outside_heap_bytes=j.outside_heap_bytes,
                          rss_split=[dataclasses.asdict(p) for p in j.parts])
                     for j in result.shown.java + result.shown.go]
                    + [dataclasses.asdict(r) for r in capture.runtimes if r.why_not is not None],
        "runtime_notes": result.shown.notes,
        # which code held the memory (issue 27): every site, largest first: {frames (innermost
        # first), bytes, source (page_faults: sampled faults still resident, record/sites.py;
        # go_heap: a Go program's heap profile), pid, comm, ...}; how the faults were sampled; the
        # tasks charging when the cgroup hit its limit
        "allocation_sites": allocation_sites(capture),
        "allocation_sampling": dataclasses.asdict(capture.allocation_sampling) if capture.allocation_sampling else None,
        "limit_hitters": [dataclasses.asdict(h) for h in capture.limit_hitters],
        # issue 29: the kill's series (the workload's repeated kills in its output folder); null
        # outside an output folder
        "series": series,
    }
    # Readable UTF-8 (a /café cgroup stays /café), with every control, C1 and bidi character
    # escaped as \uNNNN: this goes to a terminal by default (terminal.py).
    return json_safe(json.dumps(out, indent=2, ensure_ascii=False)) + "\n"


def allocation_sites(capture: Capture) -> list:
    """The capture's allocation sites and its Go programs' heap profiles, largest first."""
    sites = [dataclasses.asdict(a) for a in capture.allocation_sites]
    for r in capture.runtimes:
        for a in getattr(r, "allocation_sites", ()):
            sites.append(dict(dataclasses.asdict(a), pid=a.pid if a.pid is not None else r.pid, comm=a.comm or r.comm))
    return sorted(sites, key=lambda a: -(a.get("bytes") or 0))


#: What makes a name pasted into a ticket notify someone or link somewhere (issue 24): an
#: ``@name`` mention (GitHub, GitLab, Jira Cloud), a URL's ``://``, ``www.``, and the schemes that
#: link without ``//`` (``mailto:``, ...). Escaping does not stop them (GitHub mentions and links
#: the text after its escapes are undone; a zero-width character would be escaped for the terminal
#: and shown as ``\u200b``), so each is defanged the way threat reports write an address, with
#: brackets the markup then shows as text: ``[@]oncall``, ``http[:]//evil.example``,
#: ``www[.]evil.example``, ``mailto[:]a[@]b.example``. oomscope's own sentences hold none of them.
_LINKING = re.compile(r"@(?=\w)|:(?=//)|(?<![^\W_])www\.|(?<![^\W_])(?:mailto|xmpp|file|tel|callto|sips?|news|nntp"
                      r"|ircs?|javascript|data|s?ftps?|ssh|git|svn|skype|https?):", re.I)


def _defang(value: str) -> str:
    return _LINKING.sub(lambda m: m.group()[:-1] + "[" + m.group()[-1] + "]", value)


class _Markdown:
    """Markdown for a ticket (GitHub, GitLab): kernel strings with no markup, no HTML, no line
    breaks, nothing that acts on a terminal (the summary goes to stdout by default), no mention
    and no link (_LINKING)."""

    specials = "\\`*_[]<>|"

    def text(self, value: str) -> str:
        value = _defang(terminal_safe(str(value).replace("\n", " ").replace("\r", " ")))
        for ch in self.specials:
            value = value.replace(ch, "\\" + ch)
        return value

    def heading(self, value: str) -> str:
        return f"### {value}"

    def code(self, value: str) -> str:
        return f"`{terminal_safe(value).replace('`', chr(39))}`"

    def bold(self, value: str) -> str:
        return f"**{value}**"

    def italic(self, value: str) -> str:
        return f"*{value}*"

    def quote(self, value: str) -> str:
        return f"> {value}"

    def table(self, head, aligns, rows):
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]


class _Jira(_Markdown):
    """Jira's wiki markup: the same escaping of a workload's strings, with Jira's own specials
    (a name must not open a link, a ``[~user]`` mention, a macro such as {html}, or a table
    cell), and the same defanging (_LINKING)."""

    specials = "\\*_?+^~|{}[]!#-"

    def heading(self, value: str) -> str:
        return f"h3. {value}"

    def code(self, value: str) -> str:
        return "{{" + self.text(value) + "}}"

    def bold(self, value: str) -> str:
        return f"*{value}*"

    def italic(self, value: str) -> str:
        return f"_{value}_"

    def quote(self, value: str) -> str:
        return f"bq. {value}"

    def table(self, head, aligns, rows):
        return ["|| " + " || ".join(head) + " ||"] + ["| " + " | ".join(r or " " for r in row) + " |" for row in rows]


def _md(text: str) -> str:
    return _Markdown().text(text)


def _ticket(capture: Capture, analysis: Optional[KillAnalysis], html_path: Optional[str], m: _Markdown) -> str:
    """The post-mortem for a ticket: verdict, what to change, what the dashboards showed, then the
    facts (host, kernel, where the HTML post-mortem is), the attribution and the notes."""
    v = build_view(capture, analysis if analysis is not None else analyse_kill(capture))
    t = m.text
    lines = [m.heading("OOM kill: " + t(v.headline)), "", m.code(capture.kill_id), ""]
    lines += [f"- {t(x)}" for x in v.verdict]
    if v.advice:
        lines += ["", m.bold("What to change"), ""]
        lines += [f"- {m.italic(t(r.case))}: {m.bold(t(r.title) + '.')} {t(r.text)}" for r in v.advice]
    if v.shown is not None:
        sh = v.shown
        lines += ["", m.bold("What your dashboards showed, beside what the kernel charged"), ""]
        lines += [x for s in sh.sentences for x in (t(s), "")][:-1]
        lines += [""] + m.table(["Tool", "At the kill", "Formula", "Source"], "lrll",
                                [[t(r.name), t(r.value), t(r.formula), t(r.source)] for r in sh.tools])
        if sh.scrapes:
            lines += [""] + m.table(["A scrape of the usage", "Last value (worst case)", "Taken", "Range in that interval"], "lrlr",
                                    [[t(r.interval), t(r.value), t(r.when), t(r.range)] for r in sh.scrapes])
        for j in sh.java:
            lines += ["", m.italic(f"{j.runtime} own view: " + t(j.title)) + (f", {t(j.read)}" if j.read else ""), "", t(j.summary), ""]
            lines += m.table(["Part of its RSS", "Bytes", "What it is"], "lrl",
                             [[t(r.label), t(r.size), t(r.explanation)] for r in j.parts])
            lines += [""] + [f"- {t(kv.key)}: {t(kv.value)}" for kv in j.figures]
        if sh.notes:
            lines += [""] + [m.quote(t(n)) for n in sh.notes]
    h = capture.host
    facts = [(kv.key, kv.value) for kv in v.facts]
    facts += [("Host", h.hostname or "unknown"), ("Kernel", h.kernel_release or "unknown")]
    if html_path:
        facts.append(("Post-mortem (HTML)", html_path))
    lines += [""] + m.table(["Fact", "Value"], "ll", [[t(k), t(val)] for k, val in facts])
    if v.categories:
        lines += [""] + m.table(["Category", "Charged", "Share of usage"], "lrr",
                                [[t(r.label), t(r.charged), t(r.share)] for r in v.categories])
    if v.reconciliation:
        lines += ["", t(v.reconciliation_summary), ""]
        lines += m.table(["From the victim's RSS to the charge", "Bytes"], "lr", [[t(r.label), t(r.size)] for r in v.reconciliation])
        lines += ["", t(v.accounting)]
    if v.tasks:
        lines += _tasks(v, m, html_path)
    if v.notes:
        lines += [""] + [m.quote(t(n)) for n in v.notes]
    return "\n".join(lines) + "\n"


#: a ticket's processes table: the largest by RSS (the page has up to 100), each command line cut
TICKET_TASK_ROWS = 20
TICKET_CMDLINE_CHARS = 160


def _tasks(v, m: _Markdown, html_path: Optional[str]) -> list:
    """The processes table of the page (issue 26: the tickets had none). Names and command lines
    are the workload's: each cell goes through the format's escaping (a ``|`` would end a cell, a
    backtick open code, ``{noformat}`` a Jira macro), cut to TICKET_CMDLINE_CHARS."""
    t = m.text
    rows = []
    for r in v.tasks[:TICKET_TASK_ROWS]:
        cmd = r.cmdline if len(r.cmdline) <= TICKET_CMDLINE_CHARS else r.cmdline[:TICKET_CMDLINE_CHARS - 1] + "…"
        rows.append([t(r.pid), t(r.comm) + (" (victim)" if r.is_victim else ""), t(r.rss), t(r.rss_anon), t(r.rss_file),
                     t(r.rss_shmem), t(r.oom_score_adj), t(cmd)])
    out = ["", m.bold(t(v.tasks_title)), "", t("Source: " + v.tasks_source)]
    if v.tasks_note:
        out += ["", t(v.tasks_note)]
    out += [""] + m.table(["pid", "Name", "RSS", "anon", "file", "shmem", "oom_score_adj", "Command line"], "rlrrrrrl", rows)
    if len(v.tasks) > TICKET_TASK_ROWS:
        out += ["", t(f"The {TICKET_TASK_ROWS} largest of {len(v.tasks)} shown; all of them in the HTML post-mortem"
                  + (f" ({html_path})" if html_path else "") + ".")]
    return out


def render_markdown(capture: Capture, analysis: Optional[KillAnalysis] = None, html_path: Optional[str] = None) -> str:
    return _ticket(capture, analysis, html_path, _Markdown())


def render_jira(capture: Capture, analysis: Optional[KillAnalysis] = None, html_path: Optional[str] = None) -> str:
    """The same as render_markdown, in Jira's wiki markup (-f jira)."""
    return _ticket(capture, analysis, html_path, _Jira())
