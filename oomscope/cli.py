"""The ``oomscope`` command: one small function per subcommand, no logic of its own.

Only here do errors become a one-line message and an exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, List, Optional  # Annotated: typing's own since 3.9

import typer

from .errors import CaptureError, OomscopeError, error_line, run_entry_point
from .terminal import terminal_safe

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="OOM-kill forensics: what a cgroup's memory was made of when the kernel killed a process.",
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"oomscope {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="print oomscope's version and exit")] = None,
) -> None:
    """OOM-kill forensics: what a cgroup's memory was made of when the kernel killed a process."""


def _fail(exc: OomscopeError) -> "typer.Exit":
    typer.echo(error_line(exc), err=True)
    return typer.Exit(exc.exit_code)


MODE_HELP = "mode of the files written, octal (default 0644: readable by every local user; folders get the same read bits plus search)"
SERIES_HELP = ("kills of one workload (pod, container, unit, else cgroup) each within SECONDS of the one before are one series "
               "(default 3600: a crash loop's restarts come within kubelet's 5-minute backoff plus one life)")
SHARED_HELP = "write into an output folder that another user owns or can write to (refused by default: it could redirect root's writes)"


def _files(mode: Optional[str], allow_shared: bool) -> None:
    """The file mode and output-folder policy of oomscope/safefs.py, before anything is written."""
    from .safefs import configure_from_options

    configure_from_options(mode, allow_shared)


@app.command()
def record(
    output: Annotated[str, typer.Option("--output", "-o", metavar="FOLDER", help="folder for one sub-folder per kill")] = "oomscope-kills",
    duration: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="stop after this many seconds (default: until SIGINT/SIGTERM)")] = None,
    cgroup: Annotated[Optional[str], typer.Option(metavar="CGROUP", help="only kills in this memory cgroup and below, e.g. /kubepods")] = None,
    lab: Annotated[Optional[str], typer.Option(metavar="SCENARIO", help="run this lab scenario while recording, then stop (e.g. anon)")] = None,
    lab_limit: Annotated[str, typer.Option(metavar="SIZE", help="memory limit of the lab's sandbox cgroup")] = "64M",
    # removed (the kernel snapshot at the SIGKILL replaced it): still accepted, so that a unit or a
    # script that passes it keeps recording, with a warning
    charge_tracking: Annotated[Optional[str], typer.Option(hidden=True)] = None,
    metrics_addr: Annotated[Optional[str], typer.Option(metavar="HOST:PORT", help="serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9847)")] = None,
    log_format: Annotated[str, typer.Option(metavar="text|json", help="the per-kill line on stdout: text or json (one JSON object per line)")] = "text",
    keep: Annotated[Optional[str], typer.Option(metavar="N|Nd", help="keep only the newest N post-mortems (100) or those of the last N days (7d)")] = None,
    workload_burst: Annotated[int, typer.Option(metavar="N", help="in a storm, each workload (pod, container, unit, else cgroup) gets N post-mortems in a row, then one per --workload-every; the kills beyond are counted, not written")] = 10,
    workload_every: Annotated[float, typer.Option(metavar="SECONDS", help="after the burst, at most one post-mortem per workload every SECONDS (0: no limit)")] = 60.0,
    workload_disk: Annotated[str, typer.Option(metavar="SIZE", help="the most disk one workload's post-mortems may take; beyond it, its own oldest are removed (0: no limit)")] = "64M",
    max_disk: Annotated[str, typer.Option(metavar="SIZE", help="the most disk all post-mortems may take together; beyond it, the oldest of the workload that holds most go first, each workload's newest last (0: no limit)")] = "1G",
    series_window: Annotated[float, typer.Option(metavar="SECONDS", min=0, help=SERIES_HELP)] = 3600.0,
    mode: Annotated[Optional[str], typer.Option("--mode", metavar="OCTAL", help=MODE_HELP)] = None,
    allow_shared_output: Annotated[bool, typer.Option("--allow-shared-output", help=SHARED_HELP)] = False,
    alloc_sites: Annotated[bool, typer.Option("--alloc-sites/--no-alloc-sites", help="sample the page faults of cgroups near their limit (80%): which code held the memory, who hit the limit")] = True,
    user_kills: Annotated[bool, typer.Option("--user-kills/--no-user-kills", help="record SIGKILL/SIGTERM from earlyoom, systemd-oomd, the kubelet, or any process under memory pressure, as kills")] = True,
    throttle_share: Annotated[float, typer.Option(metavar="SHARE", min=0, max=1, help="a memory.high throttling report when a cgroup stalls on memory this share of its time (0.1: 10%; 0: off)")] = 0.1,
) -> None:
    """Record every OOM kill: a capture.json and a postmortem.html per kill."""
    # Parsed here; recorded by record/main.py in a new interpreter in place of this one (the same
    # pid), which never imports typer, pydantic, pandas or jinja2.
    from .record.main import replace_process, run

    if charge_tracking is not None:
        typer.echo("oomscope: warning: --charge-tracking is ignored: charge tracking was removed "
                   "(the kernel snapshot at each SIGKILL gives the state at the kill on every kernel)", err=True)
    options = dict(output=output, duration=duration, cgroup=cgroup, lab=lab, lab_limit=lab_limit,
                   metrics_addr=metrics_addr, log_format=log_format, keep=keep, mode=mode,
                   allow_shared_output=allow_shared_output, workload_burst=workload_burst,
                   workload_every=workload_every, workload_disk=workload_disk, max_disk=max_disk, series_window=series_window,
                   alloc_sites=alloc_sites, user_kills=user_kills, throttle_share=throttle_share)
    replace_process(options)
    raise typer.Exit(run(options))


@app.command()
def report(
    capture: Annotated[str, typer.Argument(metavar="CAPTURE.json", help="a capture.json written by record or import")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="where to write (default: beside the capture for html, stdout for md and json)")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="html|md|jira|json", help="html (the post-mortem), md (a summary for a ticket), jira (the same in Jira's wiki markup) or json (the analysis)")] = "html",
    mode: Annotated[Optional[str], typer.Option("--mode", metavar="OCTAL", help=MODE_HELP)] = None,
    allow_shared_output: Annotated[bool, typer.Option("--allow-shared-output", help=SHARED_HELP)] = False,
) -> None:
    """Render the post-mortem of a capture (no root, no BPF needed)."""
    from .model import Capture
    from .report.formats import render_jira, render_json, render_markdown
    from .report.render import render_html
    from .safefs import atomic_write, read_regular_file

    try:
        _files(mode, allow_shared_output)
        beside = os.path.join(os.path.dirname(os.path.abspath(capture)), "postmortem.html")
        html_path = beside if os.path.isfile(beside) else None  # named in a ticket's summary
        renderers = {"html": render_html, "json": render_json,
                     "md": lambda c: render_markdown(c, html_path=html_path),
                     "jira": lambda c: render_jira(c, html_path=html_path)}
        if fmt not in renderers:
            raise OomscopeError(f"unknown format {fmt!r} (html, md, jira or json)")
        try:
            text = read_regular_file(capture).decode("utf-8")  # no FIFO, no device, no 2 GB file
        except (OSError, UnicodeDecodeError) as exc:
            raise CaptureError(f"cannot read {capture}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            cap = Capture.from_json(text)
        except CaptureError as exc:
            hint = (" (this is a post-mortem page: pass the capture.json beside it)"
                    if text.lstrip()[:15].lower().startswith(("<!doctype", "<html")) else "")
            raise CaptureError(f"{capture}: {exc}{hint}") from None
        if fmt == "json":
            from .postmortem.index import series_of_capture

            out = render_json(cap, series=series_of_capture(os.path.abspath(capture), cap))
        else:
            out = renderers[fmt](cap)
        if fmt != "html" and output is None:
            # The renderers escape what a workload chose; this is the last line of defence.
            typer.echo(terminal_safe(out, keep_newlines=True) if fmt in ("md", "jira") else out, nl=False)
            return
        dest = output or os.path.join(os.path.dirname(os.path.abspath(capture)), "postmortem.html")
        try:
            atomic_write(dest, out)
        except OSError as exc:
            raise OomscopeError(f"cannot write {dest}: {exc.strerror or exc}") from None
        typer.echo(terminal_safe(dest))
    except OomscopeError as exc:
        raise _fail(exc) from None


@app.command("import")
def import_logs(
    files: Annotated[Optional[List[str]], typer.Argument(metavar="LOG", help="kernel logs: dmesg, /dev/kmsg dumps, syslog, journalctl -k (short or -o json), .gz; - for stdin; none: this host's log")] = None,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FOLDER", help="folder for the captures and post-mortems")] = "oomscope-imported",
    journal: Annotated[bool, typer.Option("--journal", help="read journalctl -k (JSON) as well")] = False,
    since: Annotated[Optional[str], typer.Option(metavar="DATE|AGO", help="only kills at or after this date (2026-11-25T10:00) or this long ago (2h, 7d)")] = None,
    year: Annotated[Optional[int], typer.Option(metavar="YEAR", min=1970, max=9999, help="the year of dates printed without one (syslog, journalctl -o short); default: from the log's other dates, else the file's modification time, else undated")] = None,
    series_window: Annotated[float, typer.Option(metavar="SECONDS", min=0, help=SERIES_HELP)] = 3600.0,
    mode: Annotated[Optional[str], typer.Option("--mode", metavar="OCTAL", help=MODE_HELP)] = None,
    allow_shared_output: Annotated[bool, typer.Option("--allow-shared-output", help=SHARED_HELP)] = False,
) -> None:
    """Post-mortems of OOM kills found in kernel logs (kills from before record ran)."""
    from .importer.run import render_html, render_series, run_import

    try:
        _files(mode, allow_shared_output)
        written = run_import(list(files or []), journal, since, output, render_html, sys.stdout, sys.stderr, year=year,
                             series_window_s=series_window, render_series=render_series)
        if not written:
            typer.echo("no OOM kills found in the log", err=True)
    except OomscopeError as exc:
        raise _fail(exc) from None


@app.command()
def series(
    folder: Annotated[str, typer.Argument(metavar="DIR", help="an output folder of record or import")],
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="text (one line per series) or json (each series with its kills)")] = "text",
    window: Annotated[Optional[float], typer.Option(metavar="SECONDS", min=0, help="the series window (default: the one the folder was written with, else 3600)")] = None,
) -> None:
    """The series of a folder's kills: one workload killed again and again, newest first."""
    from .postmortem.index import folder_series
    from .postmortem.series import describe_series

    try:
        index = folder_series(folder, window)
        typer.echo(describe_series(index, fmt), nl=False)
    except OomscopeError as exc:
        raise _fail(exc) from None


@app.command()
def lab(
    scenario: Annotated[str, typer.Argument(metavar="SCENARIO", help="anon, sidecar, untouched, thp, slab, tmpfs, java-offheap, java-heap, leak-native, leak-go or crashloop")],
    limit: Annotated[str, typer.Option(metavar="SIZE", help="memory limit of the sandbox cgroup")] = "64M",
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="give up after this many seconds")] = 60.0,
) -> None:
    """Make a real OOM kill in a sandbox cgroup (run `record` alongside to get its post-mortem)."""
    from .lab import run_scenario
    from .units import parse_size

    try:
        run = run_scenario(scenario, limit_bytes=parse_size(limit), timeout_s=timeout)
        outcome = "killed by the kernel (SIGKILL)" if run.killed else f"not killed (exit code {run.returncode})"
        typer.echo(f"{scenario}: pid {run.main_pid} in {run.cgroup} with limit {run.limit_bytes} bytes: {outcome}")
        if not run.killed:
            raise typer.Exit(1)
    except OomscopeError as exc:
        raise _fail(exc) from None


@app.command()
def doctor(
    no_load: Annotated[bool, typer.Option("--no-load", help="skip compiling and attaching the BPF programs")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="DIR", help="also say how the recorder writing to this folder is doing (its threads; from its recorder-status.json)")] = None,
) -> None:
    """Check that record can run here; print what is missing and the command that fixes it."""
    from .doctor import record_can_run, recorder_check, run_checks

    checks = run_checks(load_probe=not no_load)
    if output is not None:
        checks.append(recorder_check(output))
    for c in checks:
        mark = "ok " if c.ok else ("MISSING" if c.required else "note")
        line = f"[{mark:>7}] {c.name}: {c.detail}"
        if not c.ok and c.fix:
            line += f"  -> fix: {c.fix}"
        typer.echo(terminal_safe(line))  # a detail may hold an error's text: a file's or a cgroup's name
    ok = record_can_run(checks)
    typer.echo("record can run here" if ok else "record cannot run here yet")
    raise typer.Exit(0 if ok else 1)


def main(argv: Optional[List[str]] = None) -> None:
    sys.exit(run_entry_point(lambda: app(args=argv, prog_name="oomscope")))
