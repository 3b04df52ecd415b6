#!/usr/bin/env bash
# Regenerates the example post-mortems in reports/ from real kills: one lab scenario each, recorded
# by oomscope on this machine. Run as root after ./setup.sh:   sudo reports/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for scenario in anon sidecar untouched thp slab tmpfs; do
    oomscope record --lab "$scenario" -o "$work/$scenario" >/dev/null
    rm -rf "$scenario"
    mkdir -p "$scenario"
    first="$(ls -d "$work/$scenario"/*/ | sort | head -n 1)"   # the first kill of the scenario
    cp "$first/capture.json" "$first/postmortem.html" "$scenario/"
    echo "reports/$scenario/postmortem.html"
done
