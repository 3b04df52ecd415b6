"""packaging/kubernetes/daemonset.yaml as an OCI runtime spec (config.json), for runc.

What a kubelet with containerd gives the container, taken from the manifest: the command (the
image's entrypoint, the manifest's args with $(VAR) expanded from its env), the env (the image's,
then the manifest's), the capabilities (drop ALL, add the listed ones: bounding, effective and
permitted; none inheritable or ambient for uid 0), no_new_privs from allowPrivilegeEscalation, the
read-only root from readOnlyRootFilesystem, the host's PID namespace from hostPID, every hostPath
and emptyDir volume mounted where the manifest mounts it (read-only where it says so), the memory
limit and CPU request. Added as containerd adds them to any container: /proc, /dev, /dev/pts,
/dev/shm, /dev/mqueue, /sys read-only, its masked and read-only /proc paths, and the device
cgroup's default devices. Left out, because record does not use them: /etc/hosts,
/etc/resolv.conf, /etc/hostname, the service account token and the KUBERNETES_* variables. Not
modelled: seccompProfile RuntimeDefault (the manifest's): the container runs without a system-call
filter here, so its effect (bpf and perf_event_open allowed with CAP_BPF and CAP_PERFMON) is not
checked by this test; the manifest says which runtimes allow them.

Not from the manifest, said by the caller: the pod's network namespace and IP (downward API), and
the devices a device plugin grants (packaging/kubernetes/daemonset.yaml, the /dev/kmsg mount).

podman cannot run it here: it always sets RLIMIT_NOFILE, which fails without CAP_SYS_RESOURCE
(README.md, "The container image"); crun 1.8 stops on this host's hybrid cgroup layout. runc with a spec
that sets no rlimits runs it (the container keeps the runtime's limits, as under containerd,
whose default spec sets none).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

# containerd's defaults for a container that is not privileged (pkg/oci/spec.go, populateDefaultUnixSpec)
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# the device cgroup of a container that is not privileged: deny all, then these (containerd's
# DefaultUnixDevices: null, zero, full, random, urandom, tty, console, ptmx and the pts)
DEFAULT_DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                   ("c", 5, 2), ("c", 136, None)]

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args: unknown references are kept, $$ is $."""
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, mult in units.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * mult
    return int(q)


def _cpu_shares(q: str) -> int:
    milli = int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)
    return max(2, milli * 1024 // 1000)  # the kubelet's MilliCPUToShares


def container(ds: dict) -> dict:
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return c


def spec(ds: dict, image_config: dict, rootfs: str, *, pod_ip: str, netns: str, host_paths: Dict[str, str],
         cgroups_path: str, devices: Sequence[str] = (), empty_dirs: Optional[Dict[str, str]] = None) -> dict:
    """The runc config.json that runs the manifest's container from an image's root filesystem.

    image_config: the image's config ("config" of the OCI image config: Entrypoint, Cmd, Env).
    host_paths: hostPath -> the directory actually mounted in its place (the output folder, and
    paths a kubelet would create that the test host lacks); every other hostPath is mounted as is.
    devices: device nodes a device plugin grants (their major:minor read from the host).
    empty_dirs: emptyDir volume name -> a host directory standing in for it.
    """
    pod = ds["spec"]["template"]["spec"]
    c = container(ds)
    sc = c.get("securityContext", {})
    if sc.get("privileged"):
        raise ValueError("a privileged container is not modelled")

    env: Dict[str, str] = {}
    for item in image_config.get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[e["name"]] = pod_ip
        else:
            raise ValueError(f"env {e['name']}: only values and status.podIP are modelled")
    command = c.get("command") or image_config.get("Entrypoint") or []
    args = c.get("args") if "args" in c else (image_config.get("Cmd") or [] if not c.get("command") else [])
    argv = [expand(a, env) for a in list(command) + list(args)]

    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        raise ValueError("only 'drop: [ALL]' plus an explicit add list is modelled")
    kept = sorted(f"CAP_{x}" for x in caps.get("add", []))

    mounts: List[dict] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        vol = volumes[m["name"]]
        ro = bool(m.get("readOnly"))
        if "hostPath" in vol:
            src = host_paths.get(vol["hostPath"]["path"], vol["hostPath"]["path"])
            if not os.path.exists(src):
                raise FileNotFoundError(f"hostPath {vol['hostPath']['path']} (volume {m['name']}) does not exist on this host")
        elif "emptyDir" in vol:
            src = (empty_dirs or {})[m["name"]]
        else:
            raise ValueError(f"volume {m['name']}: only hostPath and emptyDir are modelled")
        # containerd's options for a volume (pkg/cri/opts/spec_linux.go WithMounts)
        mounts.append({"destination": m["mountPath"], "type": "bind", "source": src,
                       "options": ["rbind", "rprivate", "ro" if ro else "rw"]})

    dev_rules = [{"allow": False, "access": "rwm"}]
    for kind, major, minor in DEFAULT_DEVICES:
        rule = {"allow": True, "type": kind, "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        dev_rules.append(rule)
    for path in devices:
        st = os.stat(path)
        dev_rules.append({"allow": True, "type": "c", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "access": "rw"})

    resources: dict = {"devices": dev_rules}
    limits = c.get("resources", {}).get("limits", {})
    requests = c.get("resources", {}).get("requests", {})
    if "memory" in limits:
        resources["memory"] = {"limit": _quantity_bytes(limits["memory"])}
    if "cpu" in requests:
        resources["cpu"] = {"shares": _cpu_shares(requests["cpu"])}

    namespaces = [{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network", "path": netns}]
    if not pod.get("hostPID"):
        namespaces.append({"type": "pid"})

    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": image_config.get("WorkingDir") or "/",
            "capabilities": {"bounding": kept, "effective": kept, "permitted": kept, "inheritable": [], "ambient": []},
            "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False,
        },
        "root": {"path": rootfs, "readonly": bool(sc.get("readOnlyRootFilesystem"))},
        "hostname": ds["metadata"]["name"],
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }

