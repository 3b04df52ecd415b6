"""Lab scenarios: a real OOM kill in a sandbox cgroup that oomscope makes and removes.

Sandbox cgroups are named ``oomscope-lab-<scenario>-<pid>-<random>`` directly under the root of
the memory hierarchy, always have a limit, and are removed (killing only the tasks inside them)
even when the workload fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .errors import CgroupError, OomscopeError
from .kernel.cgroupfs import MemoryHierarchy, create_cgroup, remove_cgroup
from .relaunch import module_command
from .workloads import MIN_LIMIT, SCENARIOS, build_go, build_native

SANDBOX_PREFIX = "oomscope-lab-"
#: scenarios that need a scratch directory: "dir" (on the root filesystem), "tmpfs" (mounted) or
#: "build" (a directory the workload's C program is compiled into, outside the sandbox cgroup)
SCRATCH = {"slab": "dir", "tmpfs": "tmpfs", "leak-native": "build", "leak-go": "build-go"}
#: how long the lab waits for a separate recorder to find its sandbox (two discovery passes)
WATCH_WAIT_S = 2.5
#: scenarios whose workload is restarted in its sandbox after each kill, as a supervisor (kubelet,
#: systemd's Restart=) does, until it has been killed this many times: one series (postmortem/series.py)
RESTARTS = {"crashloop": 5}
RESTART_DELAY_S = 1.0  # kubelet's first backoff is 10 s; short here, the series window is what counts
#: the longest it waits for record --lab's own sampler to have sampled it
WATCH_TIMEOUT_S = 60.0  # the sampler's first pass over a host of 500 cgroups took 32 s (loaded 2-core host)


def _wait_watched(cgroup: str, watched: Optional[Callable[[str], bool]]) -> None:
    if watched is None:
        time.sleep(WATCH_WAIT_S)
        return
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    while time.monotonic() < deadline and not watched(cgroup):
        time.sleep(0.1)
    time.sleep(1.0)  # a second of the empty sandbox: the timeline starts from its idle level


@dataclass
class LabRun:
    scenario: str
    cgroup: str  # the kernel's path, "/oomscope-lab-..."
    fs_path: str
    limit_bytes: int
    main_pid: Optional[int] = None
    returncode: Optional[int] = None
    killed: bool = False
    stderr: str = ""
    pids_seen: List[int] = field(default_factory=list)


def sandbox_name(scenario: str) -> str:
    return f"/{SANDBOX_PREFIX}{scenario}-{os.getpid()}-{secrets.token_hex(3)}"


def run_scenario(
    scenario: str,
    limit_bytes: int = 64 << 20,
    timeout_s: float = 60.0,
    hier: Optional[MemoryHierarchy] = None,
    cgroup: Optional[str] = None,
    on_started=None,
    watched: Optional[Callable[[str], bool]] = None,
    before_removal: Optional[Callable[[LabRun], object]] = None,
) -> LabRun:
    """Make the sandbox, let the sampler find it, then start the workload in it.

    ``watched(cgroup)`` says whether the recorder has sampled the sandbox yet (record --lab
    passes its sampler's); without it (``oomscope lab`` beside a separate ``record``) the lab waits
    WATCH_WAIT_S, longer than the sampler's discovery interval (1 s, record/sampler.py). Either
    way the timeline of the post-mortem starts before the workload's first allocation.

    ``before_removal(run)`` is called once the workload has ended, before the sandbox cgroup is
    removed (0.2 s after the kill otherwise): a caller that must see the cgroup read after the kill
    waits there for its recorder (under a VM's emulation that read came after the removal)."""
    if scenario not in SCENARIOS:
        raise OomscopeError(f"unknown lab scenario {scenario!r} (known: {', '.join(sorted(SCENARIOS))})")
    if os.geteuid() != 0:
        raise CgroupError("the lab creates a cgroup: run it as root (sudo)")
    hier = hier or MemoryHierarchy.detect()
    limit_bytes = max(limit_bytes, MIN_LIMIT.get(scenario, 0))  # said back in LabRun.limit_bytes
    cgroup = cgroup or sandbox_name(scenario)
    path = create_cgroup(hier, cgroup, limit_bytes)
    run = LabRun(scenario=scenario, cgroup=cgroup, fs_path=path, limit_bytes=limit_bytes)
    scratch = ""
    mounted = False
    try:
        if scenario in SCRATCH:
            scratch = tempfile.mkdtemp(prefix=f"oomscope-lab-{scenario}-")
            if SCRATCH[scenario] == "tmpfs":
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={4 * limit_bytes},mode=0700", "oomscope-lab", scratch],
                               check=True, capture_output=True, timeout=30)
                mounted = True
            elif SCRATCH[scenario] == "build":
                build_native(scratch)
            elif SCRATCH[scenario] == "build-go":
                build_go(scratch)
        _wait_watched(cgroup, watched)
        # Join the cgroup before exec, so that everything the workload ever touches is charged
        # there (cgroup v1 does not move a task's earlier charges when it changes cgroup).
        # stderr goes to a file, not a pipe: a helper the workload forked keeps a pipe open.
        argv, env = module_command("oomscope.workloads", [scenario, str(limit_bytes), scratch])
        for life in range(RESTARTS.get(scenario, 1)):
            if life:
                time.sleep(RESTART_DELAY_S)  # the supervisor's backoff
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "oomscope-lab",
                     os.path.join(path, "cgroup.procs"), *argv],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                )
                run.main_pid = proc.pid
                run.pids_seen.append(proc.pid)
                if on_started is not None and not life:
                    on_started(run)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                run.returncode = proc.returncode
                run.killed = proc.returncode == -9
                err.seek(0)
                run.stderr = err.read()[-2000:].decode("utf-8", "replace")
            if not run.killed:  # a life that was not killed ends the loop: the lab says so
                break
        # Let the kernel's report reach the log before the cgroup goes away.
        time.sleep(0.2)
        if before_removal is not None:
            before_removal(run)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OomscopeError(f"lab scenario {scenario!r} could not run: {exc}") from None
    finally:
        try:
            remove_cgroup(path)
        finally:
            # tmpfs pages stay charged until the files go: unmount/remove after the kill.
            if mounted:
                subprocess.run(["umount", scratch], capture_output=True, timeout=60)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
    return run
