"""``oomscope record`` as the long-running process runs it, without the command line's parser.

cli.py parses the options with typer, then replaces itself (execve: the same pid, so a unit or a
DaemonSet sees no difference) with ``python -P -m oomscope.record.main OPTIONS``, OPTIONS the
parsed options as JSON. typer (and pydantic, which typer 0.29 parsed options through: pyproject.toml
now caps typer below it) held 12 MiB of anonymous memory that a recorder would keep for its life
(bench/README.md), a fifth of it with 500 cgroups watched; typer alone 5.7 MiB. Where the process
cannot be replaced, cli.py calls ``run`` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Optional

from ..errors import OomscopeError, error_line, run_entry_point
from ..terminal import terminal_safe
from . import heap

#: the options of ``record``, as cli.py passes them (its parameters' names)
OPTIONS = ("output", "duration", "cgroup", "lab", "lab_limit", "metrics_addr", "log_format", "keep",
           "mode", "allow_shared_output", "workload_burst", "workload_every", "workload_disk", "max_disk", "series_window",
           "alloc_sites", "user_kills", "throttle_share")


def replace_process(options: dict) -> None:
    """Run ``record`` in a new interpreter in place of this process; returns only if that fails."""
    from ..relaunch import module_command

    argv, env = module_command("oomscope.record.main", [json.dumps(options)])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write(f"oomscope: note: recording in this process ({terminal_safe(argv[0])} could not be started: {exc.strerror})\n")


def _sampled(collector, cgroup: str) -> bool:
    """record --lab starts its workload once its sampler's first pass over the host has ended
    (until then a new cgroup waits for it: 32 s for 500 on a loaded 2-core host) and it has read
    the sandbox once: from then on the sandbox is read on its schedule (peeked at every second
    while empty), so the timeline starts there. Waiting for a second read added up to the idle
    interval (10 s) of empty sandbox to every timeline (run_lab also makes the sandbox only after
    the first pass: two host runs, one empty reading 2 s before the fill)."""
    return collector.sampler.passes >= 1 and len(collector.sampler.store.samples(cgroup)) >= 1


def _size_or_none(text: str):
    """--workload-disk and --max-disk: a size, or 0 (no limit: None)."""
    from ..units import parse_size

    return None if str(text).strip().lower() in ("0", "off", "none") else parse_size(str(text))


def parse_options(o: dict):
    """record's options as cli.py passed them (every one of OPTIONS, with typer's defaults filled
    in), parsed once into typed values: (the collector's RecordOptions, the lab scenario or None,
    the lab's limit in bytes). A bad value fails here, before anything is loaded."""
    from ..units import parse_size
    from .collector import RecordOptions
    from .retention import Retention

    limit = parse_size(o["lab_limit"])
    log_format = o["log_format"]
    if log_format not in ("text", "json"):
        raise OomscopeError(f"--log-format must be text or json, not {log_format!r}")
    burst, every, disk = o["workload_burst"], o["workload_every"], _size_or_none(o["workload_disk"])
    if not isinstance(burst, int) or burst < 0 or not isinstance(every, (int, float)) or every < 0:
        raise OomscopeError(f"--workload-burst and --workload-every must be 0 or more, not {burst!r} and {every!r}")
    opts = RecordOptions(output=o["output"], duration_s=o["duration"], cgroup=o["cgroup"], metrics_addr=o["metrics_addr"],
                         log_format=log_format, keep=Retention.parse(o["keep"]) if o["keep"] is not None else None,
                         workload_burst=burst, workload_every_s=float(every), workload_disk_bytes=disk,
                         max_disk_bytes=_size_or_none(o.get("max_disk", "1G")),
                         alloc_sites=bool(o.get("alloc_sites", True)), user_kills=bool(o.get("user_kills", True)),
                         throttle_share=float(o.get("throttle_share", 0.1)))
    return opts, o["lab"], limit


def run(options: dict) -> int:
    """Record every OOM kill until stopped (or the lab's kill): the exit code."""
    # Nothing of analysis/ or report/ here: pandas and jinja2 stay out of the long-running
    # recorder; post-mortems are rendered by a worker process (postmortem/finisher.py).
    from .. import safefs
    from ..lab import run_scenario
    from ..postmortem.finisher import start_worker
    from .collector import Collector, Downstream, install_signal_handlers

    output, lab = options["output"], options["lab"]
    heap.configure()  # before any thread starts (record/heap.py)
    try:
        if os.geteuid() != 0:
            raise OomscopeError("record needs root (BPF, tracefs, /dev/kmsg): run it with sudo")
        opts, lab, limit = parse_options(options)
        safefs.configure_from_options(options["mode"], options["allow_shared_output"])
        os.close(safefs.open_dir(output, create=True))  # an unsafe output folder fails before BPF is loaded
        window = options.get("series_window")  # postmortem/series.py: kept by the worker
        if window is not None and (not isinstance(window, (int, float)) or window < 0):
            raise OomscopeError(f"--series-window must be 0 or more seconds, not {window!r}")
        collector = Collector(opts, Downstream(start_finisher=lambda out, err: start_worker(out, err, window)),
                              sys.stdout, sys.stderr)
        install_signal_handlers(collector)
        print(collector.describe(), file=sys.stderr, flush=True)
        until = None
        lab_state = {}
        if lab is not None:
            def run_lab() -> None:
                try:
                    # the sandbox is made once the first pass is over: made during it, it would be
                    # read once early in the pass and then not until the pass ended (20 s of empty
                    # sandbox at the head of the timeline on this host); made after, it is found
                    # within a second (discovery) and read at once
                    from ..lab import WATCH_TIMEOUT_S
                    deadline = time.monotonic() + WATCH_TIMEOUT_S
                    while collector.sampler.passes < 1 and time.monotonic() < deadline and not collector.stop.is_set():
                        time.sleep(0.1)
                    lab_state["run"] = run_scenario(lab, limit_bytes=limit,
                                                    watched=lambda cg: _sampled(collector, cg))
                except OomscopeError as exc:
                    lab_state["error"] = exc
                finally:
                    lab_state["done"] = True

            thread = threading.Thread(target=run_lab, name="lab", daemon=True)
            thread.start()
            until = lambda: lab_state.get("done", False)  # noqa: E731
        recorded = collector.run(until=until)
        if "error" in lab_state:
            raise lab_state["error"]
        if lab is not None:
            lab_run = lab_state.get("run")
            mine = [k for k in recorded if lab_run is not None and k.oom_memcg == lab_run.cgroup]
            if not mine:
                raise OomscopeError(f"the lab scenario {lab!r} ended without a recorded kill (workload exit code "
                                    f"{lab_run.returncode if lab_run else '?'})")
            print(f"post-mortem: {terminal_safe(os.path.abspath(mine[-1].html_path or mine[-1].capture_path))}", flush=True)
        else:
            print(f"{collector.kills_recorded} kill(s) recorded in {terminal_safe(os.path.abspath(output))}", file=sys.stderr, flush=True)
        return 0
    except OomscopeError as exc:
        print(error_line(exc), file=sys.stderr, flush=True)
        return exc.exit_code


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        options = json.loads(args[0]) if len(args) == 1 else None
    except ValueError:
        options = None
    if not isinstance(options, dict) or not set(OPTIONS) <= set(options):
        print("oomscope: error: oomscope.record.main takes the options of `oomscope record` as one JSON "
              "object; run `oomscope record` instead", file=sys.stderr)
        return 2
    # the name `ps -C oomscope` and `pgrep -x oomscope` find, as before the exec (the
    # interpreter's otherwise: python3.11)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write("oomscope")
    return run_entry_point(lambda: run(options))


if __name__ == "__main__":
    sys.exit(main())
