"""The operator's files: systemd unit, DaemonSet, Dockerfile, checked by what can run here."""

import os
import shlex
import subprocess

import pytest
import yaml

from oomscope.cli import app
from oomscope.containers import NodeNames
from oomscope.kernel import btf, tracefs

from ..requires import require_tool

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PKG = os.path.join(ROOT, "packaging")


def _record_options():
    import typer.main

    cmd = typer.main.get_command(app).commands["record"]
    return {opt for p in cmd.params for opt in p.opts}


def _check_record_args(args):
    assert args[0] == "record"
    opts = _record_options()
    for a in args[1:]:
        if a.startswith("--"):
            assert a in opts, f"{a} is not an option of oomscope record"


def _unit():
    with open(os.path.join(PKG, "oomscope.service")) as f:
        return f.read()


def test_systemd_unit_verifies_and_runs_record_with_least_privilege():
    require_tool("systemd-analyze", package="systemd")
    unit = _unit()
    res = subprocess.run(["systemd-analyze", "verify", os.path.join(PKG, "oomscope.service")], capture_output=True, text=True, timeout=60)
    problems = [l for l in res.stderr.splitlines() if "oomscope.service" in l and "not found" not in l.lower()]
    assert res.returncode == 0 and not problems, res.stderr
    exec_start = next(l.split("=", 1)[1] for l in unit.splitlines() if l.startswith("ExecStart="))
    args = shlex.split(exec_start)
    _check_record_args(args[1:])
    out = args[args.index("--output") + 1]
    assert "ProtectSystem=strict" in unit and f"ReadWritePaths={os.path.dirname(out)}" in unit
    assert "CapabilityBoundingSet=" in unit and "NoNewPrivileges=yes" in unit


def test_daemonset_mounts_what_record_reads():
    with open(os.path.join(PKG, "kubernetes", "daemonset.yaml")) as f:
        ds = yaml.safe_load(f)
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    (c,) = spec["containers"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    needed = {tracefs.CANDIDATES[0], "/sys/fs/cgroup", os.path.dirname(btf.VMLINUX_BTF), "/lib/modules", "/usr/src",
              "/dev/kmsg", NodeNames().pods_dir, NodeNames().containers_dir}
    assert needed <= mounts, needed - mounts
    out = c["args"][c["args"].index("--output") + 1]
    assert any(out.startswith(m) and m != "/" for m in mounts - needed), "the output folder must be on a mounted volume"
    _check_record_args(c["args"])
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert all(volumes[m["name"]] == m["mountPath"] for m in c["volumeMounts"])
    assert "ALL" in c["securityContext"]["capabilities"]["drop"] and not c["securityContext"]["privileged"]


def test_dockerfile_builds_with_the_setup_script_and_its_steps_run_dry():
    with open(os.path.join(PKG, "Dockerfile")) as f:
        docker = f.read()
    assert "RUN ./setup.sh image" in docker
    cmd = next(l for l in docker.splitlines() if l.startswith("CMD "))
    _check_record_args(yaml.safe_load(cmd[4:]))
    res = subprocess.run(["bash", os.path.join(ROOT, "setup.sh"), "image"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OOMSCOPE_DRY_RUN": "1"})
    assert res.returncode == 0, res.stderr
    assert "python3-bpfcc" in res.stdout and "pip install " in res.stdout
    assert "pip install -e" not in res.stdout  # a built package: the image's command must not need the source
    assert "linux-headers" not in res.stdout + res.stderr  # the node's headers are mounted, not installed


def test_every_package_is_in_the_built_package():
    """setup.sh installs a built package: a package missing from pyproject's list would be missing
    from the installed command while every test run from the checkout still passed."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = set()
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, "oomscope")):
        if "__init__.py" in files and "__pycache__" not in dirpath:
            found.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "."))
    assert found - {"oomscope.bpf"} <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"


# The capabilities record needs, each measured on 6.18 (packaging/oomscope.service says how).
NEEDED_CAPS = {"BPF", "PERFMON", "SYSLOG", "DAC_READ_SEARCH", "SYS_PTRACE"}


def test_daemonset_keeps_only_the_measured_capabilities_each_with_its_reason_and_serves_metrics_on_the_pod_ip():
    path = os.path.join(PKG, "kubernetes", "daemonset.yaml")
    with open(path) as f:
        text = f.read()
    (c,) = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"]
    sc = c["securityContext"]
    assert set(sc["capabilities"]["add"]) == NEEDED_CAPS and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    for cap in NEEDED_CAPS:  # each one said with why
        (line,) = [l for l in text.splitlines() if l.strip().startswith(f"- {cap} ")]
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 20, line
    addr = c["args"][c["args"].index("--metrics-addr") + 1]
    assert addr == "$(POD_IP):9847" and "0.0.0.0" not in text.split("apiVersion")[1]
    (env,) = [e for e in c["env"] if e["name"] == "POD_IP"]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # /dev/kmsg in a pod that is not privileged: what it takes is written down next to the mount
    assert "device cgroup" in text and "OomscopeKernelReportsUnseen" in text
    cgroup = next(m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/cgroup")
    assert cgroup["readOnly"] is True and "cgroup.event_control" in text


def test_systemd_unit_keeps_only_the_measured_capabilities():
    unit = _unit()
    settings = dict(l.split("=", 1) for l in unit.splitlines() if "=" in l and not l.startswith("#"))
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert set(settings[key].split()) == {f"CAP_{c}" for c in NEEDED_CAPS}, key
    require_tool("systemd-analyze", package="systemd")
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", os.path.join(PKG, "oomscope.service")],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0 and "offline" in res.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {res.stderr.strip()[:200]}")
    (rating,) = [l for l in res.stdout.splitlines() if "Overall exposure level" in l]
    assert float(rating.split(":")[1].split()[0]) <= 4.5, rating  # 5.0 with CAP_SYS_ADMIN and CAP_SYS_RESOURCE


def _build_sh_cmd():
    """The default command packaging/image/build.sh writes into the OCI image's config."""
    with open(os.path.join(PKG, "image", "build.sh")) as f:
        words = shlex.split(f.read(), comments=True)
    return [words[i + 1] for i, w in enumerate(words) if w == "--config.cmd"]


def test_the_images_default_command_serves_metrics_on_the_loopback_only():
    with open(os.path.join(PKG, "Dockerfile")) as f:
        cmd = yaml.safe_load(next(l for l in f.read().splitlines() if l.startswith("CMD "))[4:])
    assert cmd == _build_sh_cmd()  # the Dockerfile's image and the built one start the same way
    _check_record_args(cmd)
    host, _, port = cmd[cmd.index("--metrics-addr") + 1].rpartition(":")
    assert host == "127.0.0.1" and port == "9847"


def test_the_image_build_takes_no_mirror_and_nothing_from_a_registry():
    with open(os.path.join(PKG, "image", "build.sh")) as f:
        text = f.read()
    assert "apt-get indextargets" in text and "://" not in text  # the host's apt sources give the mirror
    assert "--variant=minbase" in text and "path-exclude=/usr/share/doc/*" in text
    res = subprocess.run(["bash", "-n", os.path.join(PKG, "image", "build.sh")], capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
