"""Swap at the kill, with the cgroup's swap limit set and not set. Needs swap: inside the test
VMs a zram device provides it (this project's hosts have none)."""

import os
import subprocess

import pytest

from .conftest import run_in_cgroup

HOG = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True:\n    a.append(bytearray(4 << 20))\n"


@pytest.fixture(scope="module")
def zram_swap():
    if os.environ.get("OOMSCOPE_IN_VM") != "1":
        pytest.skip("needs swap: the test VMs make it on zram (this host has none and is shared)")
    steps = ["modprobe zram num_devices=1", "echo 256M > /sys/block/zram0/disksize", "mkswap /dev/zram0", "swapon /dev/zram0"]
    for step in steps:
        r = subprocess.run(["sh", "-c", step], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            pytest.skip(f"could not make zram swap ({step}: {r.stderr.strip()})")
    yield
    subprocess.run(["swapoff", "/dev/zram0"], timeout=120)
    # the device back to no size, so that the next module's fixture can size it again (in one VM
    # the swap tests and then systemd-oomd's: "echo: I/O error" on disksize, CI rehearsal 2026-12-08)
    subprocess.run(["sh", "-c", "echo 1 > /sys/block/zram0/reset"], timeout=60)


@pytest.mark.parametrize("swap_max", ["max", "0"])
def test_swap_at_the_kill(zram_swap, swap_max, recorder, kernel_log, sandbox, hier):
    if hier.version != 2:
        pytest.skip("memory.swap.max is cgroup v2")
    name, path = sandbox(suffix=f"-swap-{swap_max}", limit=48 << 20)
    with open(os.path.join(path, "memory.swap.max"), "w") as f:
        f.write(swap_max)
    rec = recorder()
    res = run_in_cgroup(path, HOG, timeout=300)
    assert res.returncode == -9
    pid = int(res.stdout.split()[0])
    ((cpath, cap),) = rec.wait_for(lambda c: c["victim"]["pid"] == pid, timeout=60)
    rep = kernel_log.report_for(pid)
    ak = cap["at_kill"]
    assert ak["swap_usage_bytes"] == rep.swap.usage_kb * 1024
    with open(os.path.join(os.path.dirname(cpath), "postmortem.html")) as f:
        html = f.read()
    if swap_max == "max":
        assert ak["swap_limit_bytes"] is None and ak["swap_usage_bytes"] > 100 << 20  # most of the 256 MiB swap
        assert "the cgroup could use all of the host" in html
    else:
        assert ak["swap_limit_bytes"] == 0 and ak["swap_usage_bytes"] == 0
        assert "swap was not available to this cgroup" in html
