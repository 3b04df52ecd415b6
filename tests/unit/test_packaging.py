"""The operator's files: systemd unit, DaemonSet, Dockerfile, checked by what can run here."""

import fnmatch
import os
import re
import shlex
import subprocess
import sys

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
    # 5.0 with CAP_SYS_ADMIN and CAP_SYS_RESOURCE; 4.5 without them; 3.1 with the device, system-call
    # and IP address filters (issue 24)
    assert float(rating.split(":")[1].split()[0]) <= 3.1, rating


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


# -- issue 24: what a container controls must not reach the recorder --------------------------

def _daemonset():
    with open(os.path.join(PKG, "kubernetes", "daemonset.yaml")) as f:
        return yaml.safe_load(f)


def test_daemonset_filters_system_calls_mounts_tracefs_read_only_and_holds_no_token():
    spec = _daemonset()["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert c["imagePullPolicy"] in ("IfNotPresent", "Always", "Never")  # said, not the default
    tracing = next(m for m in c["volumeMounts"] if m["mountPath"] == tracefs.CANDIDATES[0])
    assert tracing.get("readOnly") is True
    # the output folder is the only volume the pod may write
    writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/var/lib/oomscope"], writable


def test_network_policy_lets_only_prometheus_reach_the_metrics_port_and_the_pods_reach_no_one():
    ds = _daemonset()
    with open(os.path.join(PKG, "kubernetes", "networkpolicy.yaml")) as f:
        text = f.read()
    np = yaml.safe_load(text)
    assert np["kind"] == "NetworkPolicy" and np["apiVersion"] == "networking.k8s.io/v1"
    assert np["metadata"]["namespace"] == ds["metadata"]["namespace"]
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"} and np["spec"]["egress"] == []
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    port = int(c["args"][c["args"].index("--metrics-addr") + 1].rpartition(":")[2])
    for rule in np["spec"]["ingress"]:
        assert rule["from"], "a rule without 'from' admits every pod"
        for peer in rule["from"]:  # a peer names pods, by namespace and label, never the whole cluster
            assert peer.get("podSelector", {}).get("matchLabels") and peer.get("namespaceSelector", {}).get("matchLabels")
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    assert "ADAPT" in text  # the Prometheus selector is the operator's to set


def _unit_settings():
    settings = {}
    for line in _unit().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_allows_one_device_the_system_calls_record_makes_and_the_loopback_only():
    s = _unit_settings()
    assert s["DevicePolicy"] == ["closed"] and s["DeviceAllow"] == ["/dev/kmsg r"]
    (filt,) = s["SystemCallFilter"]
    groups = filt.split()
    # what a service uses, and what record needs beyond it: bpf() (@privileged), perf_event_open (@debug)
    assert groups[0] == "@system-service" and {"bpf", "perf_event_open"} <= set(groups)
    assert not {"@mount", "@privileged", "@debug", "mount", "ptrace"} & set(groups)
    assert s["SystemCallErrorNumber"] == ["EPERM"]
    assert s["IPAddressDeny"] == ["any"] and s["IPAddressAllow"] == ["localhost"]
    exec_start = shlex.split(s["ExecStart"][0])
    host = exec_start[exec_start.index("--metrics-addr") + 1].rpartition(":")[0]
    assert host == "127.0.0.1"  # what IPAddressAllow=localhost lets a scraper reach


def test_systemd_unit_keeps_record_out_of_a_host_wide_oom_kill_but_bounded():
    """A container without a limit that fills the node must not make the kernel or systemd-oomd
    kill the recorder of that very kill (issue 24); record stays bounded by its own MemoryMax."""
    s = _unit_settings()
    (adj,) = s["OOMScoreAdjust"]
    assert -1000 < int(adj) <= -500  # -1000 would make it unkillable even by its own MemoryMax
    assert s["ManagedOOMPreference"] == ["omit"]
    assert s["MemoryMax"] == ["512M"]


def test_systemd_unit_leaves_record_a_whole_core_in_a_storm():
    """CPUQuota=50% throttled record and its worker in an OOM storm (kill -> post-mortem p95 437 ms
    against 95 ms at 100%: bench/latency.py --quota-compare, bench/README.md)."""
    (quota,) = _unit_settings()["CPUQuota"]
    assert quota.endswith("%") and int(quota[:-1]) >= 100


_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)((?:\s+--hash=sha256:[0-9a-f]{64})+)\s*$")


def _pinned(path):
    """name -> version of a requirements file whose every entry is name==version with hashes."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    pins = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _PIN.match(line.strip())
        assert m, f"{os.path.basename(path)}: not an exact version with sha256 hashes: {line.strip()[:100]}"
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def _dockerfile_requirements(docker):
    (arg,) = [l for l in docker.splitlines() if l.startswith("ARG OOMSCOPE_REQUIREMENTS=")]
    return yaml.safe_load(arg.split("=", 1)[1]).split()


def test_the_images_python_dependencies_are_exact_versions_with_hashes_installed_with_require_hashes():
    import tomllib

    from packaging.requirements import Requirement

    pins = _pinned(os.path.join(PKG, "image", "requirements.txt"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    for dep in map(Requirement, project["project"]["dependencies"]):
        name = re.sub(r"[-_.]+", "-", dep.name).lower()
        assert name in pins and dep.specifier.contains(pins[name]), f"{dep} is not pinned (or not met) in requirements.txt"
    build = _pinned(os.path.join(PKG, "image", "build-requirements.txt"))
    for dep in map(Requirement, project["build-system"]["requires"]):
        assert dep.specifier.contains(build[dep.name.lower()]), dep
    with open(os.path.join(PKG, "image", "build.sh")) as f:
        build_sh = f.read()
    with open(os.path.join(PKG, "image", "customize.sh")) as f:
        customize = f.read()
    for name in ("requirements.txt", "build-requirements.txt"):  # every file checked against its hashes
        assert re.search(r"--require-hashes[^\n]* -r \"\$HERE/%s\"" % re.escape(name), build_sh), name
    assert "--no-deps --no-build-isolation" in build_sh
    assert "--require-hashes -r /tmp/wheels/requirements.txt" in customize and "--no-deps" in customize
    for script in ("build.sh", "customize.sh"):
        res = subprocess.run(["bash", "-n", os.path.join(PKG, "image", script)], capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr
    # the Dockerfile: the same pins through setup.sh image (run dry here)
    with open(os.path.join(PKG, "Dockerfile")) as f:
        docker = f.read()
    files = _dockerfile_requirements(docker)
    assert files == ["packaging/image/requirements.txt", "packaging/image/build-requirements.txt"]
    res = subprocess.run(["bash", os.path.join(ROOT, "setup.sh"), "image"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OOMSCOPE_DRY_RUN": "1", "OOMSCOPE_REQUIREMENTS": " ".join(files)})
    assert res.returncode == 0, res.stderr
    assert "pip install --require-hashes -r " in res.stdout and "--no-deps --no-build-isolation" in res.stdout


def test_the_dockerfile_names_a_point_release_and_copies_only_what_the_build_reads():
    with open(os.path.join(PKG, "Dockerfile")) as f:
        docker = f.read()
    (base,) = [l.split()[1] for l in docker.splitlines() if l.startswith("FROM ")]
    assert re.fullmatch(r"debian:(\d+\.\d+-slim|[a-z]+-\d{8}-slim)(@sha256:[0-9a-f]{64})?", base), base
    assert "@sha256:" in docker  # how to pin the digest is said
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]

    def sent(path):  # Docker's rule: the last pattern matching the path or one of its parents decides
        parts = path.split("/")
        keep = True
        for pat in patterns:
            neg, pat = pat.startswith("!"), pat.lstrip("!").strip("/")
            if any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
                keep = neg
        return keep

    needed = ["pyproject.toml", "README.md", "setup.sh", "oomscope/cli.py", "oomscope/report/templates",
              "bpf/oom_events.c"] + _dockerfile_requirements(docker)
    assert all(sent(p) for p in needed), [p for p in needed if not sent(p)]
    for p in (".git/config", "tests/unit/test_cli.py", ".pytest_cache/v", ".hypothesis/examples", "build/lib/x.py",
              "oomscope.egg-info/PKG-INFO", "venv/bin/python", "oomscope-demo/k/capture.json", "reports/anon/x.html",
              "bench/soak.py", "oomscope/__pycache__/cli.cpython-311.pyc", "vagrant/Vagrantfile"):
        assert not sent(p), p


def test_a_commands_start_loads_no_pydantic(tmp_path):
    """pyproject.toml caps typer below 0.29, which coerces every parameter through pydantic (0.08-0.1 s
    of each command's start: bench/README.md, issue 29's ninth pass). An import run whole, parameters
    parsed and a kill written, without pydantic loaded: fails under typer 0.29."""
    log = os.path.join(ROOT, "tests", "fixtures", "logs", "dmesg-v1-6.18.txt")
    code = ("import runpy, sys\n"
            "sys.argv = ['oomscope', 'import', sys.argv[1], '-o', sys.argv[2], '--since', '2000-01-01']\n"
            "try:\n    runpy.run_module('oomscope', run_name='__main__')\n"
            "finally:\n    sys.stderr.write('pydantic loaded: %s\\n' % any(m.split('.')[0] == 'pydantic' for m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code, log, str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 kill(s)" in res.stderr and "pydantic loaded: False" in res.stderr, res.stderr
