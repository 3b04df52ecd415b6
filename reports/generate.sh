#!/usr/bin/env bash
# Regenerates the example post-mortems in reports/ from real kills: one lab scenario each, recorded
# by oomscope on this machine. Run as root after ./setup.sh:   sudo reports/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for scenario in anon sidecar untouched thp slab tmpfs java-offheap java-heap; do
    limit=64M
    case "$scenario" in java-*) limit=192M ;; esac   # a JVM alone is resident at ~40 MiB
    oomscope record --lab "$scenario" --lab-limit "$limit" -o "$work/$scenario" >/dev/null
    rm -rf "$scenario"
    mkdir -p "$scenario"
    # the first kill of the scenario's own cgroup (record sees every kill on the host)
    first="$(dirname "$(grep -l "\"oom_memcg\": \"/oomscope-lab-$scenario-" "$work/$scenario"/*/capture.json | sort | head -n 1)")"
    cp "$first/capture.json" "$first/postmortem.html" "$scenario/"
    echo "reports/$scenario/postmortem.html"
done
