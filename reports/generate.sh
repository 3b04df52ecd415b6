#!/usr/bin/env bash
# Regenerates the example post-mortems in reports/ from real kills: one lab scenario each, recorded
# by oomscope on this machine, with its sampler watching the sandbox before the workload starts
# (the lab waits for it), so each post-mortem has the timeline of the fill.
# Run as root after ./setup.sh:   sudo reports/generate.sh [SCENARIO...]
# OOMSCOPE overrides the command (e.g. OOMSCOPE="python3 -m oomscope" from a checkout).
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
read -r -a oomscope <<< "${OOMSCOPE:-oomscope}"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(anon sidecar untouched thp slab tmpfs java-offheap java-heap)
for scenario in "${scenarios[@]}"; do
    limit=64M
    case "$scenario" in java-*) limit=192M ;; esac   # a JVM alone is resident at ~40 MiB
    "${oomscope[@]}" record --lab "$scenario" --lab-limit "$limit" -o "$work/$scenario" >/dev/null
    rm -rf "$scenario"
    mkdir -p "$scenario"
    # the first kill of the scenario's own cgroup (record sees every kill on the host)
    first="$(dirname "$(grep -l "\"oom_memcg\": \"/oomscope-lab-$scenario-" "$work/$scenario"/*/capture.json | sort | head -n 1)")"
    cp "$first/capture.json" "$scenario/"
    # rendered from the copy, so that the page names the path it is read at
    "${oomscope[@]}" report "$scenario/capture.json" -o "$scenario/postmortem.html" >/dev/null
    echo "reports/$scenario/postmortem.html"
done
