#!/usr/bin/env bash
# Regenerates the example post-mortems in reports/ from real kills. Run as root after ./setup.sh
# (from a checkout: OOMSCOPE="env PYTHONPATH=$PWD python3 -m oomscope"):
#
#   sudo reports/generate.sh [SCENARIO...]   lab scenarios on this host, one kill each (below)
#   sudo reports/generate.sh production      the examples shaped like production: one VM boot of
#                                            Debian's newest 7.x kernel (cgroup v2), a Kubernetes
#                                            node's cgroups, three workloads at once, ~45 minutes
#                                            (reports/production.py, reports/vm-production.sh)
#   reports/generate.sh aks                  the imported AKS log (tests/fixtures/logs)
#   reports/generate.sh screenshots          PNGs and PDFs of the pages (reports/screenshots.py)
#
# Lab scenarios: recorded by oomscope on this machine, with its sampler watching the sandbox before
# the workload starts (the lab waits for it), so each post-mortem has the timeline of the fill.
# OOMSCOPE overrides the command (e.g. OOMSCOPE="python3 -m oomscope" from a checkout).
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
read -r -a oomscope <<< "${OOMSCOPE:-oomscope}"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(anon sidecar untouched thp slab tmpfs java-offheap java-heap leak-native leak-go)

render() {  # FOLDER: its capture.json rendered beside it (from the copy, so the page names that path)
    "${oomscope[@]}" report "$1/capture.json" -o "$1/postmortem.html" >/dev/null
    echo "reports/$1/postmortem.html"
}

production() {
    local out="$work/vm"
    # one VM at a time on a small machine: the matrix's lock (tests/vm/run-matrix.sh)
    flock /tmp/oomscope-vm.lock ./vm-production.sh "$out" || echo "generate: the VM run did not end cleanly; taking what it recorded" >&2
    cp "$out/production.log" production.log
    python3 - "$out" <<'PY'
import json, os, shutil, sys
out = sys.argv[1]
examples = json.load(open(os.path.join(out, "examples.json")))
kills = os.path.join(out, "kills")
for name, ex in examples.items():
    # the container's own kill (the kernel names the pod's slice when the pod's limit is the one hit)
    found = sorted(d for d in os.listdir(kills) if "-pid" in d and os.path.isfile(os.path.join(kills, d, "capture.json"))
                   and json.load(open(os.path.join(kills, d, "capture.json")))["cgroup"]["task_memcg"] == ex["cgroup"])
    if not found:
        print(f"generate: no kill of {name} ({ex['cgroup']})", file=sys.stderr)
        continue
    shutil.rmtree(name, ignore_errors=True)
    os.makedirs(name)
    shutil.copy(os.path.join(kills, found[0], "capture.json"), name)
    json.dump(ex, open(os.path.join(name, "setup.json"), "w"), indent=1)
    print(name)
PY
}

for scenario in "${scenarios[@]}"; do
    case "$scenario" in
        production)
            for name in $(production); do render "$name"; done
            continue ;;
        aks)
            # an AKS node's /var/log/syslog, quoted in a public note (tests/fixtures/README.md has its origin)
            "${oomscope[@]}" import ../tests/fixtures/logs/syslog-aks-group-kill-npd.txt -o "$work/aks" >/dev/null 2>&1
            rm -rf aks-imported && mkdir -p aks-imported
            cp "$(ls -d "$work"/aks/*-pid*/ | head -n 1)capture.json" aks-imported/
            render aks-imported
            continue ;;
        screenshots)
            "${PYTHON:-/opt/oomscope/venv/bin/python}" screenshots.py
            continue ;;
    esac
    limit=64M
    case "$scenario" in java-*) limit=192M ;; esac   # a JVM alone is resident at ~40 MiB
    "${oomscope[@]}" record --lab "$scenario" --lab-limit "$limit" -o "$work/$scenario" >/dev/null
    rm -rf "$scenario"
    mkdir -p "$scenario"
    # the first kill of the scenario's own cgroup (record sees every kill on the host)
    first="$(dirname "$(grep -l "\"oom_memcg\": \"/oomscope-lab-$scenario-" "$work/$scenario"/*/capture.json | sort | head -n 1)")"
    cp "$first/capture.json" "$scenario/"
    render "$scenario"
done
