"""oomscope import on this kernel's own log: a real kill, then `dmesg` and `dmesg -T` imported and
compared with the kernel's report (on 6.1/6.12 in the VMs, cgroup v2's memory.stat is one
multi-line record, which dmesg prints indented under its first line)."""

import subprocess
import sys

import pytest

from ..requires import require_tool
from .conftest import run_in_cgroup

HOG = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


@pytest.mark.parametrize("flags", [[], ["-T"]])
def test_dmesg_of_a_real_kill_imports_to_the_kernels_figures(kernel_log, sandbox, tmp_path, flags):
    require_tool("dmesg", package="util-linux")
    name, path = sandbox(limit=64 << 20)
    res = run_in_cgroup(path, HOG)
    assert res.returncode == -9
    pid = int(res.stdout.split()[0])
    rep = kernel_log.report_for(pid)
    if not rep.has_header:
        pytest.skip("the kernel rate-limited this kill's report (a storm test ran just before)")
    log = subprocess.run(["dmesg", *flags], capture_output=True, text=True, timeout=60).stdout
    out = tmp_path / "imported"
    r = subprocess.run([sys.executable, "-m", "oomscope", "import", "-", "-o", str(out)], input=log,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    caps = [json.loads(p.read_text()) for p in out.glob("*/capture.json")]
    (cap,) = [c for c in caps if c["victim"]["pid"] == pid]
    assert cap["at_kill"]["source"] == "kernel_log"
    assert cap["at_kill"]["memory_stat"] == rep.memory_stat
    assert cap["cgroup"]["oom_memcg"] == name
    assert cap["at_kill"]["usage_bytes"] == rep.memory.usage_kb * 1024
    assert {t["pid"] for t in cap["tasks"]} == {t.pid for t in rep.tasks}
