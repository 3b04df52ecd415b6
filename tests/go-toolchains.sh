#!/usr/bin/env bash
# Go toolchains newer than the host's own (Debian 12 packages golang-1.19 alone), for the tests that
# check oomscope's table of Go runtime layouts (oomscope/runtimes/goruntime.py) against binaries
# each Go built: tests/unit/test_go_layout.py and tests/system/test_go_runtime.py. Idempotent;
# ./setup.sh test runs it.
#
#   tests/go-toolchains.sh          fetch what is missing, print "RELEASE GOROOT" per toolchain
#
# Debian's own packages, never go.dev's downloads nor GOTOOLCHAIN's: golang-1.X-go and golang-1.X-src
# of the suite apt prefers among bookworm-backports, trixie and trixie-backports (1.21-1.23 come from
# the first, 1.24 from trixie, 1.25-1.27 from trixie-backports; no suite has a golang-1.20), fetched
# and unpacked as tests/vm/run-matrix.sh fetches its kernels (tests/debian-fetch.sh: apt with lists,
# cache and sources of its own under OOMSCOPE_GO_TOOLCHAINS, default /var/lib/oomscope/go-toolchains,
# dpkg -x into CACHE/<version>/, no maintainer scripts, nothing installed into /usr). The tests find
# CACHE/go1.X, a link to that tree's usr/lib/go-1.X (a GOROOT: bin/go, pkg/tool, src). A toolchain
# already unpacked is reused without asking the mirror; a newer Debian revision of a minor replaces
# it once the minor is fetched again (remove CACHE/go1.X). Measured on this project's machine
# (2026-12-06): 1.21.13 (40 MB downloaded), 1.22.12 (41 MB), 1.23.5 (43 MB), 1.24.4 (47 MB), 1.25.12
# (37 MB), 1.26.11 (41 MB) and 1.27.4 (45 MB): 294 MB, 5-10 s each plus ~5 s of lists, 1.8 GB
# unpacked (1.21 and 1.23 alone: 83 MB, 12 s with the lists, 0.5 GB); a second run asks nothing of
# the mirror (0.04 s).
#
# Environment: OOMSCOPE_GO_MINORS="1.21 1.22 1.23 1.24 1.25 1.26 1.27" (which minors), OOMSCOPE_GO_TOOLCHAINS (the cache).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MINORS="${OOMSCOPE_GO_MINORS:-1.21 1.22 1.23 1.24 1.25 1.26 1.27}"
CACHE="${OOMSCOPE_GO_TOOLCHAINS:-/var/lib/oomscope/go-toolchains}"
SUITES="bookworm-backports trixie trixie-backports"
export DEBIAN_FRONTEND=noninteractive
# shellcheck source=tests/debian-fetch.sh
. "$HERE/debian-fetch.sh"

log() { printf 'go-toolchains: %s\n' "$*" >&2; }

usable() {  # GOROOT -> its go runs here and says its release
    [ -x "$1/bin/go" ] && [ -f "$1/.complete" ] && GOROOT="$1" GOTOOLCHAIN=local "$1/bin/go" version >/dev/null 2>&1
}

main() {
    mkdir -p "$CACHE"
    local minor missing=() updated=0 failed=0
    for minor in $MINORS; do
        usable "$CACHE/go$minor" || missing+=("$minor")
    done
    for minor in ${missing[@]+"${missing[@]}"}; do
        if [ "$updated" -eq 0 ]; then
            [ "$(id -u)" -eq 0 ] || { log "needs root to fetch Go ${missing[*]}"; return 1; }
            debian_apt_init "$CACHE/apt" $SUITES || { log "no Debian mirror in this host's apt sources"; return 1; }
            debian_apt_update "$CACHE/apt" || { log "could not read $SUITES from $DEBIAN_MIRROR: $(tail -n 1 "$CACHE/apt/update.err")"; return 1; }
            updated=1
        fi
        local start version root mb
        start=$(date +%s)
        # the candidate (the first suite's, by pin) of golang-1.X-go, and -src of the same version
        version="$(debian_apt apt-cache policy "golang-$minor-go" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
        if [ -z "$version" ] || [ "$version" = "(none)" ] \
            || ! debian_apt apt-cache show "golang-$minor-src=$version" >/dev/null 2>&1; then
            log "Go $minor: golang-$minor-go and -src of one version are in none of $SUITES"; failed=1; continue
        fi
        root="$CACHE/$version"
        rm -rf "$root.new"
        log "Go $minor: fetching golang-$minor-go and golang-$minor-src $version from $DEBIAN_MIRROR"
        if ! mb="$(debian_unpack "$root.new" "$CACHE" "golang-$minor-go=$version" "golang-$minor-src=$version")"; then
            log "Go $minor: the download of $version failed"; rm -rf "$root.new"; failed=1; continue
        fi
        touch "$root.new/usr/lib/go-$minor/.complete"
        rm -rf "$root" && mv "$root.new" "$root"
        ln -sfn "$version/usr/lib/go-$minor" "$CACHE/go$minor"
        if ! usable "$CACHE/go$minor"; then
            log "Go $minor: $CACHE/go$minor/bin/go does not run on this host"; failed=1; continue
        fi
        local old
        for old in "$CACHE"/"$minor".*; do
            if [ "$old" != "$root" ] && [ -d "$old" ]; then log "Go $minor: removing the older $old"; rm -rf "$old"; fi
        done
        log "Go $minor: $version: $mb MB fetched and unpacked in $(( $(date +%s) - start )) s"
    done
    for minor in $MINORS; do
        if usable "$CACHE/go$minor"; then
            echo "go$minor $(readlink -f "$CACHE/go$minor")"
        fi
    done
    return "$failed"
}

main "$@"
