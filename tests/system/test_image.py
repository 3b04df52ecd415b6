"""The container image, built here (packaging/image/build.sh) and run as the DaemonSet runs it.

The container's command, env, capabilities, namespaces, mounts and limits all come from
packaging/kubernetes/daemonset.yaml, parsed here (tests/system/daemonset_oci.py), and runc runs
the image's root filesystem with them: a mount, a capability or a file the image needs that is
missing fails this test. The recorder inside records a real kill on the host; its post-mortem,
written to the host directory mounted as the DaemonSet's output volume, must say what the kernel's
own report says.
"""

import glob
import json
import os
import secrets
import shutil
import subprocess
import time

import pytest
import yaml

from ..requires import require_tools
from . import daemonset_oci
from .conftest import TIME_SCALE, run_in_cgroup
from .test_record import _assert_equals_report

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DAEMONSET = os.path.join(ROOT, "packaging", "kubernetes", "daemonset.yaml")
BUILD = os.path.join(ROOT, "packaging", "image", "build.sh")
CACHE = os.environ.get("OOMSCOPE_IMAGE_CACHE", "/var/cache/oomscope-image")
POD_IP = "192.0.2.7"  # TEST-NET-1, on the pod's own network namespace only
HOG = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


def _image_config(layout, tag="latest"):
    """The OCI image's config (Entrypoint, Cmd, Env, WorkingDir), read from the layout's blobs."""
    def blob(digest):
        algo, hexa = digest.split(":")
        with open(os.path.join(layout, "blobs", algo, hexa)) as f:
            return json.load(f)

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    (desc,) = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    return blob(blob(desc["digest"])["config"]["digest"])["config"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    require_tools("mmdebstrap", "umoci", "runc", "ip", packages={"ip": "iproute2"})
    t0 = time.monotonic()
    res = subprocess.run([BUILD], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"packaging/image/build.sh failed: {res.stderr[-3000:]}"
    print(f"\nimage: {res.stderr.strip().splitlines()[-1]} ({time.monotonic() - t0:.0f} s)")
    bundle = str(tmp_path_factory.mktemp("image") / "bundle")
    layout = os.path.join(CACHE, "oci")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", bundle], check=True, capture_output=True, timeout=600)
    yield os.path.join(bundle, "rootfs"), _image_config(layout), bundle
    shutil.rmtree(bundle, ignore_errors=True)


class Container:
    """runc running the DaemonSet's container, in a network namespace of its own with the pod's IP."""

    def __init__(self, bundle, rootfs, image_config, tmp_path, devices):
        with open(DAEMONSET) as f:
            self.ds = yaml.safe_load(f)
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.id = f"oomscope-test-{tag}"
        self.cgroup = f"/oomscope-test-{tag}-pod"
        self.netns = f"oomscope-test-{tag}"
        self.bundle = bundle
        pod = self.ds["spec"]["template"]["spec"]
        c = daemonset_oci.container(self.ds)
        # The output volume: a test directory stands in for the node's /var/lib/oomscope.
        (out_mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/oomscope"]
        out_volume = next(v for v in pod["volumes"] if v["name"] == out_mount["name"])
        self.output = tmp_path / "node-var-lib-oomscope"
        self.output.mkdir()
        host_paths = {out_volume["hostPath"]["path"]: str(self.output)}
        # A kubelet node has /var/log/pods and /var/log/containers; this host may not: empty ones stand in.
        self.stand_ins = []
        for v in pod["volumes"]:
            p = v.get("hostPath", {}).get("path")
            if p and p not in host_paths and not os.path.exists(p) and v["hostPath"].get("type", "") in ("", "Directory"):
                host_paths[p] = str(tmp_path / ("standin" + p.replace("/", "-")))
                os.makedirs(host_paths[p])
                self.stand_ins.append(p)
        empty_dirs = {}
        for v in pod["volumes"]:
            if "emptyDir" in v:
                empty_dirs[v["name"]] = str(tmp_path / f"emptydir-{v['name']}")
                os.makedirs(empty_dirs[v["name"]])
        self.spec = daemonset_oci.spec(self.ds, image_config, rootfs, pod_ip=POD_IP, netns=f"/run/netns/{self.netns}",
                                       host_paths=host_paths, cgroups_path=self.cgroup, devices=devices, empty_dirs=empty_dirs)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(self.spec, f, indent=1)
        self.stdout_path = tmp_path / f"{self.id}.stdout"
        self.stderr_path = tmp_path / f"{self.id}.stderr"
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        try:  # the pod's network namespace, with its IP (the pod sandbox's, under a kubelet)
            subprocess.run(["ip", "netns", "add", self.netns], check=True, timeout=30)
            subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True, timeout=30)
            subprocess.run(["ip", "-n", self.netns, "addr", "add", f"{POD_IP}/32", "dev", "lo"], check=True, timeout=30)
        except Exception:
            subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, timeout=30)
            raise
        self.proc = subprocess.Popen(["runc", "run", "--bundle", bundle, self.id], stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL)

    def stdout(self):
        return self.stdout_path.read_text()

    def stderr(self):
        return self.stderr_path.read_text()

    def wait_started(self, timeout=180):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while "recording OOM kills" not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"record did not start in the container (runc exit {self.proc.poll()}): {self.stderr()[-3000:]}")
            time.sleep(0.2)

    def pid(self):
        res = subprocess.run(["runc", "state", self.id], capture_output=True, text=True, timeout=30)
        return json.loads(res.stdout)["pid"]

    def in_netns(self, code):
        """Python code run by the host's python3 in the pod's network namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, "/usr/bin/python3", "-c", code],
                              capture_output=True, text=True, timeout=60)

    def stop(self):
        if self.proc.poll() is None:
            subprocess.run(["runc", "kill", self.id, "TERM"], capture_output=True, timeout=30)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                subprocess.run(["runc", "kill", self.id, "KILL"], capture_output=True, timeout=30)
                self.proc.wait(timeout=30)
        subprocess.run(["runc", "delete", "--force", self.id], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, timeout=30)
        self._out.close()
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def container(image, tmp_path):
    rootfs, config, bundle = image
    started = []

    def start(**kw):
        c = Container(bundle, rootfs, config, tmp_path, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def _caps(mask_hex):
    out = subprocess.run(["capsh", f"--decode={mask_hex}"], capture_output=True, text=True, timeout=30).stdout
    return {c.upper() for c in out.strip().split("=", 1)[1].split(",") if c}


def _postmortem_of(ctr, victim):
    """The capture of the victim in the node's output folder, once its post-mortem is written too."""
    deadline = time.monotonic() + 30 * TIME_SCALE
    while True:
        for p in glob.glob(str(ctr.output / "kills" / "*" / "capture.json")):
            if os.path.exists(os.path.join(os.path.dirname(p), "postmortem.html")):
                with open(p) as f:
                    cap = json.load(f)
                if cap["victim"]["pid"] == victim:
                    return p, cap
        assert time.monotonic() < deadline, f"no post-mortem in the output volume: {ctr.stdout()} {ctr.stderr()[-2000:]}"
        time.sleep(0.2)


@pytest.mark.timeout(2400)
def test_the_image_run_as_the_daemonset_records_a_kill_as_the_kernel_reported_it(container, sandbox, kernel_log):
    # /dev/kmsg granted as a device plugin grants it (the DaemonSet's /dev/kmsg mount says why it must be)
    ctr = container(devices=("/dev/kmsg",))
    ctr.wait_started()
    c = daemonset_oci.container(ctr.ds)
    start_line = next(l for l in ctr.stderr().splitlines() if "recording OOM kills" in l)
    print(f"\nrunc ran the image as the DaemonSet; stand-ins for missing host paths: {ctr.stand_ins or 'none'}\n{start_line}")
    if not os.path.isdir(f"/lib/modules/{os.uname().release}/build"):
        # this node has no headers of its own: the image's generic ones compiled the programs
        assert "/opt/oomscope/kernel-headers/" in start_line, start_line

    # The container is what the manifest says: its capabilities, no_new_privs, the host's PID
    # namespace, a read-only root, its memory limit.
    pid = ctr.pid()
    with open(f"/proc/{pid}/status") as f:
        status = dict(l.split(":", 1) for l in f.read().splitlines())
    want = {f"CAP_{x}" for x in c["securityContext"]["capabilities"]["add"]}
    assert _caps(status["CapEff"].strip()) == want and _caps(status["CapBnd"].strip()) == want
    assert status["NoNewPrivs"].strip() == "1"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    with open(f"/proc/{pid}/mountinfo") as f:
        root_opts = next(l.split()[5] for l in f if l.split()[4] == "/")
    assert root_opts.split(",")[0] == ("ro" if c["securityContext"]["readOnlyRootFilesystem"] else "rw"), root_opts
    limit = daemonset_oci._quantity_bytes(c["resources"]["limits"]["memory"])
    with open(f"/sys/fs/cgroup/memory{ctr.cgroup}/memory.limit_in_bytes") as f:
        assert int(f.read()) == limit

    # A real kill on the host, outside the container.
    name, path = sandbox(limit=64 << 20)
    res = run_in_cgroup(path, HOG)
    assert res.returncode == -9
    victim = int(res.stdout.split()[0])
    cap_path, cap = _postmortem_of(ctr, victim)
    rep = kernel_log.report_for(victim)
    _assert_equals_report(cap, rep)  # the kernel's report, read from /dev/kmsg inside the container
    assert cap["cgroup"]["oom_memcg"] == name and cap["victim"]["source"] == "kernel_report"
    with open(os.path.join(os.path.dirname(cap_path), "postmortem.html")) as f:
        html = f.read()
    assert f"pid {victim} (python" in html and name in html
    print(f"recorded from inside: pid {victim} in {name}, usage {cap['at_kill']['usage_bytes']} of "
          f"{cap['at_kill']['limit_bytes']} bytes, failcnt {cap['at_kill']['failcnt']}; {os.path.relpath(cap_path, ctr.output)}")

    # The JSON log line (the pod's log) names the post-mortem by its path in the container.
    deadline = time.monotonic() + 10 * TIME_SCALE
    while '"event": "oom_kill"' not in ctr.stdout():
        assert time.monotonic() < deadline, ctr.stdout()
        time.sleep(0.1)
    (line,) = [json.loads(x) for x in ctr.stdout().splitlines() if x.startswith("{")]
    assert line["pid"] == victim and line["postmortem"].startswith("/var/lib/oomscope/kills/")

    # Metrics on the pod's IP, port 9847 (the DaemonSet's $(POD_IP)), and not on the pod's loopback.
    got = ctr.in_netns(f"import urllib.request; print(urllib.request.urlopen('http://{POD_IP}:9847/metrics', timeout=10).read().decode())")
    assert got.returncode == 0, got.stderr
    kills = [l for l in got.stdout.splitlines() if l.startswith("oomscope_oom_kills_total{") and f'cgroup="{name}"' in l]
    assert len(kills) == 1 and kills[0].endswith(" 1.0"), got.stdout[-2000:]
    lo = ctr.in_netns("import urllib.request; urllib.request.urlopen('http://127.0.0.1:9847/metrics', timeout=5)")
    assert lo.returncode != 0 and "Connection refused" in lo.stderr, lo.stderr
    assert ctr.stop() == 0  # SIGTERM through runc: a clean stop


@pytest.mark.timeout(2400)
def test_without_the_kmsg_device_the_kill_is_recorded_from_bpf_and_said(container, sandbox, kernel_log):
    """The DaemonSet as written, with no device plugin: the device cgroup refuses /dev/kmsg (the
    manifest says so next to the mount); record says it, and records the kill without the report."""
    ctr = container(devices=())
    ctr.wait_started()
    assert "cannot read /dev/kmsg (Operation not permitted)" in ctr.stderr(), ctr.stderr()[-2000:]
    name, path = sandbox(limit=64 << 20)
    res = run_in_cgroup(path, HOG)
    assert res.returncode == -9
    victim = int(res.stdout.split()[0])
    _cap_path, cap = _postmortem_of(ctr, victim)
    k = kernel_log.report_for(victim).killed  # the test's own reader, on the host
    v = cap["victim"]
    assert v["source"] == "bpf" and cap["at_kill"]["source"] != "kernel_report"
    assert (v["anon_rss_bytes"], v["file_rss_bytes"], v["shmem_rss_bytes"]) == (k.anon_rss_kb * 1024, k.file_rss_kb * 1024, k.shmem_rss_kb * 1024)
    got = ctr.in_netns(f"import urllib.request; print(urllib.request.urlopen('http://{POD_IP}:9847/metrics', timeout=10).read().decode())")
    assert "oomscope_kmsg_reader_up 0.0" in got.stdout, got.stdout[-2000:]
    assert ctr.stop() == 0
