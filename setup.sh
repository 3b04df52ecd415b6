#!/usr/bin/env bash
# oomscope set-up, idempotent, for Debian and Ubuntu hosts.
#
#   ./setup.sh          install: bcc (python3-bpfcc), kernel headers, tracefs, a virtualenv, oomscope
#   ./setup.sh demo     install, then record a real OOM kill in a sandbox cgroup -> a post-mortem
#   ./setup.sh test     install (and fetch Go 1.21 to 1.27 for the Go tests: tests/go-toolchains.sh),
#                       then run the whole test suite: the container image built
#                       (packaging/image/build.sh), unit + system tests on this host (one runs the
#                       image as the DaemonSet does), then the system tests in VMs booting Debian's
#                       6.1 and 6.12 kernels and the newest 7.x (cgroup v2; the 7.x packages are fetched from
#                       trixie-backports and unpacked into /var/lib/oomscope, never installed)
#   ./setup.sh image    what the container image needs (packaging/Dockerfile): bcc, the virtualenv and
#                       oomscope, no kernel headers (they come from the node, mounted) and no tracefs
#                       mount. With OOMSCOPE_DRY_RUN=1 it prints the steps instead of running them.
#
# Re-runs itself with sudo when not root. Never writes into /lib/modules: when the distribution has
# no headers for the running kernel, its generic headers are merged into $OOMSCOPE_HEADERS_DIR and
# used through BCC_KERNEL_SOURCE.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E bash "$0" "$@"
    fi
    echo "setup.sh: needs root (BPF, cgroups, apt-get), and sudo is not installed" >&2
    exit 1
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OOMSCOPE_VENV:-/opt/oomscope/venv}"
HEADERS_DIR="${OOMSCOPE_HEADERS_DIR:-/var/lib/oomscope/kernel-headers}"
RELEASE="$(uname -r)"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*" >&2; }

DRY_RUN="${OOMSCOPE_DRY_RUN:-}"

apt_install() {
    if [ -n "$DRY_RUN" ]; then echo "would: apt-get install --no-install-recommends $*"; return 0; fi
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ ! -f /var/lib/oomscope/.apt-updated ] || [ -n "${OOMSCOPE_APT_UPDATE:-}" ]; then
        timeout 600 apt-get update -qq
        mkdir -p /var/lib/oomscope && touch /var/lib/oomscope/.apt-updated
    fi
    log "installing ${missing[*]}"
    timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_system_packages() {
    if [ -n "$DRY_RUN" ]; then apt_install python3 python3-venv python3-bpfcc; return 0; fi
    command -v apt-get >/dev/null || { log "apt-get not found: only Debian/Ubuntu are supported by this script"; exit 1; }
    apt_install python3 python3-venv python3-bpfcc
}

install_headers() {
    if [ -d "/lib/modules/$RELEASE/build/include" ]; then
        return 0
    fi
    if [ -z "${BCC_KERNEL_SOURCE:-}" ] && ls "$HEADERS_DIR"/*/.complete >/dev/null 2>&1; then
        log "warning: no kernel headers for $RELEASE; BPF programs compile against the merged headers in $(dirname "$(ls -d "$HEADERS_DIR"/*/.complete | sort -V | tail -n 1)") (BCC_KERNEL_SOURCE)"
        return 0
    fi
    # The exact headers, where the distribution has them.
    if apt-cache show "linux-headers-$RELEASE" >/dev/null 2>&1 || { timeout 600 apt-get update -qq && apt-cache show "linux-headers-$RELEASE" >/dev/null 2>&1; }; then
        apt_install "linux-headers-$RELEASE"
        [ -d "/lib/modules/$RELEASE/build/include" ] && return 0
    fi
    # Otherwise the distribution's generic headers, merged into oomscope's own directory:
    # the -common tree first, then the architecture tree over it.
    local arch
    arch="$(dpkg --print-architecture)"
    apt_install "linux-headers-$arch"
    local archdir common version target
    archdir="$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$archdir" ] || { log "no /usr/src/linux-headers-*-$arch after installing linux-headers-$arch"; exit 1; }
    version="$(basename "$archdir")"
    common="${archdir%-"$arch"}-common"
    target="$HEADERS_DIR/${version#linux-headers-}"
    if [ ! -f "$target/.complete" ]; then
        rm -rf "$target"
        mkdir -p "$target"
        [ -d "$common" ] && cp -rs "$common/." "$target/"
        cp -rsf "$archdir/." "$target/"
        touch "$target/.complete"
    fi
    log "warning: no kernel headers for $RELEASE; BPF programs compile against ${version#linux-headers-} headers in $target (BCC_KERNEL_SOURCE)"
}

mount_tracefs() {
    if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
        mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || log "warning: could not mount tracefs"
    fi
}

install_venv() {
    # OOMSCOPE_REQUIREMENTS (packaging/Dockerfile): files of exact versions with their hashes, paths
    # relative to the checkout; the dependencies come from them alone (--require-hashes), and
    # oomscope is built with the setuptools they pin (--no-build-isolation)
    local pinned=() f
    for f in ${OOMSCOPE_REQUIREMENTS:-}; do pinned+=(-r "$HERE/$f"); done
    if [ -n "$DRY_RUN" ]; then
        echo "would: python3 -m venv --system-site-packages $VENV"
        if [ "${#pinned[@]}" -gt 0 ]; then
            echo "would: $VENV/bin/pip install --require-hashes ${pinned[*]}"
            echo "would: $VENV/bin/pip install --no-deps --no-build-isolation $HERE"
        else
            echo "would: $VENV/bin/pip install $HERE"
        fi
        echo "would: ln -sf $VENV/bin/oomscope /usr/local/bin/oomscope"
        return 0
    fi
    # A virtualenv made from the distribution's python3 with --system-site-packages sees the
    # distribution's bcc (the PyPI package called "bcc" is an unrelated project).
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import bcc' 2>/dev/null; then
        rm -rf "$VENV"
        mkdir -p "$(dirname "$VENV")"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
    fi
    local extra=""
    [ "${1:-}" = "test" ] && extra="[test]"
    # A built package, not an editable install: the installed command must keep working when the
    # checkout is moved or removed, and for users who cannot read the checkout.
    if [ "${#pinned[@]}" -gt 0 ]; then
        timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes "${pinned[@]}"
        timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation "$HERE"
    else
        timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check "$HERE$extra" 2>&1 \
            | grep -v -e "is ignored: it is neither a file nor a directory" >&2 || true
    fi
    (cd / && "$VENV/bin/python" -c 'import oomscope.cli, oomscope.bpf, sys; sys.exit(oomscope.__file__.startswith(sys.argv[1]))' "$HERE") \
        || { log "the oomscope package did not install (as a built package, apart from $HERE)"; exit 1; }
    # The pages' templates compiled once, beside the package's .pyc (report/template_cache.py):
    # record's post-mortem worker runs with -B and never writes them itself (~35 ms at each start)
    (cd / && env -u PYTHONDONTWRITEBYTECODE "$VENV/bin/python" -c \
        'from oomscope.report.render import _env; e = _env(); [e.get_template(n) for n in e.list_templates()]') \
        || log "warning: the page templates were not compiled ahead (each process compiles them)"
    ln -sf "$VENV/bin/oomscope" /usr/local/bin/oomscope
}

main() {
    local what="${1:-install}"
    case "$what" in install|demo|test|image) ;; *) echo "usage: $0 [install|demo|test|image]" >&2; exit 2;; esac
    if [ "$what" = "image" ]; then
        install_system_packages
        install_venv image
        log "image ready: mount the node's /lib/modules, /usr/src, /sys/kernel/tracing, /sys/fs/cgroup and /dev/kmsg"
        return 0
    fi
    install_system_packages
    install_headers
    mount_tracefs
    install_venv "$what"
    # The test suite validates vagrant/Vagrantfile offline with Debian's vagrant, and renders
    # post-mortems in Debian's chromium (and reads its PDFs with poppler-utils' pdftotext), reads a real JVM's counters (OpenJDK: java, javac, jstat) and
    # scrapes record's metrics with a real Prometheus (and checks the alert rules with promtool),
    # builds the container image (mmdebstrap, umoci) and runs it as the DaemonSet does (runc, ip, capsh),
    # makes OOM storms with stress-ng, rates the unit with systemd-analyze (systemd), builds Go
    # programs whose runtime is read from outside (golang-go), and runs
    # util-linux's setpriv, unshare and dmesg. Every test that needs one of them asks for it through
    # tests/requires.py: under OOMSCOPE_STRICT_SKIPS=1 (set below for the host's run and the VMs',
    # which share this root filesystem) a missing one fails the test instead of skipping it, so a
    # package missing from this list turns CI red.
    if [ "$what" = "test" ]; then
        apt_install vagrant chromium openjdk-17-jdk-headless prometheus mmdebstrap umoci runc iproute2 libcap2-bin \
            stress-ng systemd util-linux golang-go poppler-utils
        # Go 1.21 to 1.27 (Debian 12 packages 1.19 alone), whose runtime layouts
        # oomscope reads: Debian's golang-1.X-go and -src from bookworm-backports, trixie and
        # trixie-backports, unpacked into /var/lib/oomscope/go-toolchains, never installed
        # (tests/go-toolchains.sh: 294 MB the first time, ~1 min (1.21 and 1.23: 83 MB, 12 s), 1.8 GB
        # unpacked; nothing asked of the mirror once there)
        "$HERE/tests/go-toolchains.sh" >/dev/null || log "Go toolchains: not all fetched (their Go tests will fail)"
    fi
    case "$what" in
        install)
            log "done: run 'sudo oomscope doctor', then 'sudo oomscope record --output /var/lib/oomscope/kills'" ;;
        demo)
            exec "$VENV/bin/oomscope" record --lab anon --output "${OOMSCOPE_DEMO_OUTPUT:-$HERE/oomscope-demo}" ;;
        test)
            cd "$HERE"
            export OOMSCOPE_STRICT_SKIPS=1
            local rc=0
            local t0 irc=0
            echo "=== the container image: packaging/image/build.sh ==="
            t0=$(date +%s)
            "$HERE/packaging/image/build.sh" || irc=$?
            log "image: build.sh exit $irc in $(( $(date +%s) - t0 )) s (tests/system/test_image.py runs it)"
            [ "$irc" -eq 0 ] || rc=1
            echo "=== lint: ruff check (pyproject.toml's [tool.ruff]; ruff comes with the [test] extra) ==="
            "$VENV/bin/ruff" check oomscope bench tests || { log "ruff check: findings (above)"; rc=1; }
            echo "=== types: mypy (pyproject.toml's [tool.mypy]: names and calls; mypy comes with the [test] extra) ==="
            t0=$(date +%s)
            "$VENV/bin/mypy" --cache-dir /dev/null || { log "mypy: findings (above)"; rc=1; }
            log "mypy: $(( $(date +%s) - t0 )) s"
            t0=$(date +%s)
            echo "=== unit and system tests on this host: kernel $RELEASE ==="
            "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider --durations=10 tests || rc=$?
            log "host suite: pytest exit $rc in $(( $(date +%s) - t0 )) s"
            if [ -n "${OOMSCOPE_SKIP_VMS:-}" ]; then
                log "OOMSCOPE_SKIP_VMS is set: the kernel matrix (system tests in VMs) is skipped"
            elif [ "$(uname -m)" != "x86_64" ]; then
                log "the kernel matrix needs x86_64 (QEMU with Debian's amd64 kernels): skipped"
            else
                "$HERE/tests/vm/run-matrix.sh" || rc=1
            fi
            exit "$rc" ;;
    esac
}

main "$@"
