#!/usr/bin/env bash
# The kernel matrix: system tests as root inside VMs that boot Debian's own kernels with cgroup v2
# (6.1 and 6.12), next to the host's run (6.18, cgroup v1). Idempotent; installs what it needs.
#
#   tests/vm/run-matrix.sh                 the VM suite: the tests listed in tests/vm/suite.txt,
#                                          those only a cgroup v2 kernel can prove
#   tests/vm/run-matrix.sh --all           every system test in every VM (on demand; not in CI)
#   tests/vm/run-matrix.sh PYTEST ARGS...  what you name, e.g. tests/system/test_swap.py
#   tests/vm/run-matrix.sh --install-only  the packages and virtme-ng, nothing run
#
# How: virtme-ng (PyPI) boots a Debian kernel package under QEMU with the host's root filesystem
# shared read-only over 9p (writes go to an overlay), so the guest sees the same oomscope
# virtualenv and this checkout; the kernel's exactly matching headers come from linux-headers-*.
# (virtme-ng's initramfs mounts that root itself, uncached: a rootflags= of ours is not used; a
# cached virtiofs root needs the Rust virtiofsd, which Debian 12 does not package.) KVM is tried
# first with a short boot probe; on this
# project's machines it hangs at boot (nested virtualisation), so the VMs run under software
# emulation (TCG).
#
# Time: a slow day must give a slow pass, a hang a failure in time. Each test in a VM has its own
# limit (pytest-timeout, OOMSCOPE_VM_TEST_TIMEOUT, default 600 s: 5x the slowest test measured).
# Each VM gets a fair share of what is left before OOMSCOPE_DEADLINE (epoch seconds, set by
# .ci/run) or, without a deadline, OOMSCOPE_VM_TIMEOUT seconds (default 2400). When a VM fails,
# the tests that passed, failed and did not run are listed, then its console and pytest log.
#
# Environment: OOMSCOPE_VM_KERNELS="6.1 6.12" (series to run), OOMSCOPE_VM_KVM=auto|on|off.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${OOMSCOPE_VENV:-/opt/oomscope/venv}"
VNG_VENV="${OOMSCOPE_VNG_VENV:-/opt/oomscope/vng}"
KERNELS="${OOMSCOPE_VM_KERNELS:-6.1 6.12}"
KVM="${OOMSCOPE_VM_KVM:-auto}"
VM_TIMEOUT="${OOMSCOPE_VM_TIMEOUT:-2400}"
TEST_TIMEOUT="${OOMSCOPE_VM_TEST_TIMEOUT:-600}"
DEADLINE="${OOMSCOPE_DEADLINE:-}"
SUITE="$HERE/tests/vm/suite.txt"
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

suite_ids() {  # the test ids of tests/vm/suite.txt ("host:" lines, comments and blank lines left out)
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SUITE" | grep -v -e '^$' -e '^host:'
}

vm_budget() {  # vm_budget VMS_LEFT -> seconds this VM may take
    local left="$1"
    if [ -z "$DEADLINE" ]; then echo "$VM_TIMEOUT"; return; fi
    local now share
    now=$(date +%s)
    share=$(( (DEADLINE - now) / left ))
    [ "$share" -lt 60 ] && share=60
    echo "$share"
}

# Which collected tests passed, failed, were skipped, or never ran (from pytest -v's lines).
account() {  # account COLLECTED_FILE PYTEST_LOG
    local collected="$1" plog="$2"
    python3 - "$collected" "$plog" <<'EOF'
import re, sys
ids = [l.strip() for l in open(sys.argv[1]) if "::" in l]
seen = {}
try:
    text = open(sys.argv[2], errors="replace").read()
except OSError:
    text = ""
for m in re.finditer(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text, re.M):
    seen.setdefault(m.group(1), m.group(2))
for m in re.finditer(r"^(PASSED|FAILED|SKIPPED|ERROR) (\S+::\S+)", text, re.M):
    seen.setdefault(m.group(2), m.group(1))
for state in ("PASSED", "SKIPPED", "FAILED", "ERROR"):
    got = [i for i in ids if seen.get(i) == state]
    if got:
        print(f"  {state.lower():8} {len(got)}: " + " ".join(i.split('::', 1)[1] for i in got))
missing = [i for i in ids if i not in seen]
if missing:
    print(f"  not run  {len(missing)}: " + " ".join(i.split('::', 1)[1] for i in missing))
EOF
}

main() {
    install
    local pytest_args=("$@")
    if [ "${#pytest_args[@]}" -eq 0 ]; then
        # shellcheck disable=SC2207
        pytest_args=($(suite_ids))
    elif [ "${pytest_args[0]}" = "--all" ]; then
        pytest_args=(tests/system "${pytest_args[@]:1}")
    fi
    cd "$HERE"
    # What should run, collected on the host: a VM that dies early still says what it did not run.
    local collected
    collected="$(mktemp)"
    "$VENV/bin/python" -m pytest -q --collect-only -p no:cacheprovider "${pytest_args[@]}" >"$collected" 2>&1 \
        || { log "pytest could not collect ${pytest_args[*]}:"; cat "$collected" >&2; rm -f "$collected"; return 1; }
    local failed=0 kvmflag="" first=1 summary="" n_left
    n_left=$(wc -w <<<"$KERNELS")
    for series in $KERNELS; do
        local version
        version="$(kernel_version "$series")"
        if [ -z "$version" ] || [ ! -d "/lib/modules/$version/build/include" ]; then
            log "kernel $series: image or headers missing after install"; failed=1; n_left=$((n_left - 1)); continue
        fi
        if [ "$first" -eq 1 ]; then kvmflag="$(choose_kvm_flag "$version")"; first=0; fi
        local out start rc budget
        out="$(mktemp -d)"
        start=$(date +%s)
        budget="$(vm_budget "$n_left")"
        n_left=$((n_left - 1))
        log "kernel $version: booting${kvmflag:+ ($kvmflag)}, $(grep -c '::' "$collected") tests, at most $budget s"
        # The arguments go in a file (pytest's @file): the kernel's command line, which carries
        # the VM's command, holds 2048 bytes on x86 and a longer one never boots.
        printf '%s\n' "${pytest_args[@]}" >"$out/pytest-args"
        local cmd="date +%s > '$out/booted'; cd '$HERE' && PYTHONDONTWRITEBYTECODE=1 OOMSCOPE_IN_VM=1 '$VENV/bin/python' -m pytest -v -rs -p no:cacheprovider --durations=15 --timeout=$TEST_TIMEOUT @'$out/pytest-args' > '$out/pytest.log' 2>&1; echo \$? > '$out/rc'"
        local vrc=0
        vng_run "$budget" "$kvmflag" "$version" "$out" "$cmd" || vrc=$?
        local took=$(( $(date +%s) - start )) booted="?"
        [ -f "$out/booted" ] && booted=$(( $(cat "$out/booted") - start ))
        echo "=== system tests in a VM: kernel $version, cgroup v2 (booted in $booted s, $took s in all) ==="
        rc="$(cat "$out/rc" 2>/dev/null || echo none)"
        account "$collected" "$out/pytest.log"
        if [ "$rc" != "0" ]; then
            failed=1
            if [ "$vrc" -eq 124 ] || [ "$vrc" -eq 137 ]; then
                log "kernel $version: TIMED OUT after $took s (its share of the time left: $budget s)"
            fi
            log "kernel $version: FAILED (pytest exit: $rc); its pytest log, then the last lines of its console:"
            cat "$out/pytest.log" >&2 2>/dev/null || true
            tail -n 40 "$out/vng.log" >&2 || true
        else
            grep '^record start-up' "$out/pytest.log" || true
            sed -n '/slowest .* durations/,$p' "$out/pytest.log"
        fi
        summary+="kernel $version (cgroup v2): pytest exit $rc, booted in $booted s, $took s in all"$'\n'
        rm -rf "$out"
    done
    rm -f "$collected"
    printf '%s' "$summary" >&2
    return "$failed"
}

if [ "${1:-}" = "--install-only" ]; then install; exit 0; fi
main "$@" || exit 1
