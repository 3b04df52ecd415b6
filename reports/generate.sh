#!/usr/bin/env bash
# Regenerates the example post-mortems in reports/ from real kills: one lab scenario each, recorded
# by oomscope on this machine. Run as root after ./setup.sh:   sudo reports/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for scenario in anon sidecar; do
    oomscope record --lab "$scenario" -o "$work/$scenario" >/dev/null
    rm -rf "$scenario"
    mkdir -p "$scenario"
    cp "$work/$scenario"/*/capture.json "$work/$scenario"/*/postmortem.html "$scenario/"
    echo "reports/$scenario/postmortem.html"
done
