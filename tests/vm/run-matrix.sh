#!/usr/bin/env bash
# The kernel matrix: runs the system test suite as root inside VMs that boot Debian's own kernels
# with cgroup v2 (6.1 and 6.12), next to the host's run. Idempotent; installs what it needs.
#
#   tests/vm/run-matrix.sh [PYTEST ARGS...]       (default: tests/system)
#
# How: virtme-ng (PyPI) boots a Debian kernel package under QEMU with the host's root filesystem
# shared read-only (writes go to an overlay), so the guest sees the same oomscope virtualenv and
# this checkout; the kernel's exactly matching headers come from linux-headers-*. KVM is tried
# first with a short boot probe; on this project's machines it hangs at boot (nested
# virtualisation: -cpu host fails on MSR 0x10a, other CPU models hang), so the suite runs under
# software emulation (TCG): about 15 s to boot, a few minutes for the suite.
#
# Environment: OOMSCOPE_VM_KERNELS="6.1 6.12" (series to run), OOMSCOPE_VM_KVM=auto|on|off,
# OOMSCOPE_VM_TIMEOUT (seconds per VM, default 900).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${OOMSCOPE_VENV:-/opt/oomscope/venv}"
VNG_VENV="${OOMSCOPE_VNG_VENV:-/opt/oomscope/vng}"
KERNELS="${OOMSCOPE_VM_KERNELS:-6.1 6.12}"
KVM="${OOMSCOPE_VM_KVM:-auto}"
VM_TIMEOUT="${OOMSCOPE_VM_TIMEOUT:-900}"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'vm-matrix: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "needs root"; exit 1; }

packages_for() {  # kernel series -> Debian packages (image and exactly matching headers)
    case "$1" in
        6.1) echo "linux-image-amd64 linux-headers-amd64" ;;
        *) echo "linux-image-$1-amd64 linux-headers-$1-amd64" ;;
    esac
}

install() {
    local want=(qemu-system-x86 busybox-static)
    for series in $KERNELS; do
        # shellcheck disable=SC2207
        want+=($(packages_for "$series"))
    done
    local missing=()
    for pkg in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        timeout 600 apt-get update -qq
        timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ ! -x "$VNG_VENV/bin/vng" ]; then
        log "installing virtme-ng"
        /usr/bin/python3 -m venv "$VNG_VENV"
        timeout 600 "$VNG_VENV/bin/pip" install -q --disable-pip-version-check virtme-ng 2>&1 \
            | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
    fi
    [ -x "$VNG_VENV/bin/vng" ] || { log "virtme-ng did not install"; exit 1; }
}

kernel_version() {  # series -> the newest installed version of it, e.g. 6.1 -> 6.1.0-56-amd64
    local series="$1"
    ls /boot/vmlinuz-"$series".* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n 1
}

vng_run() {  # vng_run TIMEOUT KVM_FLAG VERSION OUTDIR COMMAND
    local t="$1" kvmflag="$2" version="$3" out="$4" cmd="$5"
    # shellcheck disable=SC2086
    PATH="$VNG_VENV/bin:$PATH" timeout --kill-after=20 "$t" vng $kvmflag --run "/boot/vmlinuz-$version" \
        --user root --memory 2G --cpus 2 --rwdir "$out" --exec "$cmd" </dev/null >"$out/vng.log" 2>&1
}

choose_kvm_flag() {
    local version="$1"
    case "$KVM" in
        off) echo "--disable-kvm"; return ;;
        on) echo ""; return ;;
    esac
    if [ ! -e /dev/kvm ]; then echo "--disable-kvm"; return; fi
    local probe
    probe="$(mktemp -d)"
    if vng_run 25 "" "$version" "$probe" "touch $probe/booted" && [ -f "$probe/booted" ]; then
        log "KVM works: using it"
        echo ""
    else
        log "KVM did not boot within 25 s: using software emulation (--disable-kvm)"
        echo "--disable-kvm"
    fi
    rm -rf "$probe"
}

main() {
    install
    local pytest_args=("$@")
    [ "${#pytest_args[@]}" -gt 0 ] || pytest_args=(tests/system)
    local failed=0 kvmflag="" first=1 summary=""
    for series in $KERNELS; do
        local version
        version="$(kernel_version "$series")"
        if [ -z "$version" ] || [ ! -d "/lib/modules/$version/build/include" ]; then
            log "kernel $series: image or headers missing after install"; failed=1; continue
        fi
        if [ "$first" -eq 1 ]; then kvmflag="$(choose_kvm_flag "$version")"; first=0; fi
        local out start rc
        out="$(mktemp -d)"
        start=$(date +%s)
        log "kernel $version: booting${kvmflag:+ ($kvmflag)}, running ${pytest_args[*]}"
        local quoted
        quoted="$(printf ' %q' "${pytest_args[@]}")"
        local cmd="cd '$HERE' && PYTHONDONTWRITEBYTECODE=1 OOMSCOPE_IN_VM=1 '$VENV/bin/python' -m pytest -q -rs -p no:cacheprovider$quoted > '$out/pytest.log' 2>&1; echo \$? > '$out/rc'"
        vng_run "$VM_TIMEOUT" "$kvmflag" "$version" "$out" "$cmd" || true
        echo "=== system tests in a VM: kernel $version, cgroup v2 ==="
        cat "$out/pytest.log" 2>/dev/null || true
        rc="$(cat "$out/rc" 2>/dev/null || echo none)"
        if [ "$rc" != "0" ]; then
            failed=1
            log "kernel $version: FAILED (pytest exit: $rc) after $(( $(date +%s) - start )) s; last lines of the VM's console:"
            tail -n 30 "$out/vng.log" >&2 || true
        fi
        summary+="kernel $version (cgroup v2): pytest exit $rc in $(( $(date +%s) - start )) s"$'\n'
        rm -rf "$out"
    done
    printf '%s' "$summary" >&2
    return "$failed"
}

main "$@" || exit 1
