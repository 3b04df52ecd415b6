#!/usr/bin/env bash
# The kernel matrix: system tests as root inside VMs that boot Debian's own kernels with cgroup v2
# (6.1, 6.12 and Debian's newest 7.x), next to the host's run (6.18, cgroup v1). Idempotent;
# installs what it needs.
#
#   tests/vm/run-matrix.sh                 the VM suite: the tests listed in tests/vm/suite.txt,
#                                          those only a cgroup v2 kernel can prove
#   tests/vm/run-matrix.sh --all           every system test in every VM (on demand; not in CI)
#   tests/vm/run-matrix.sh PYTEST ARGS...  what you name, e.g. tests/system/test_swap.py
#   tests/vm/run-matrix.sh --install-only  the packages, the fetched kernels and virtme-ng, nothing run
#
# Kernels: 6.1 and 6.12 are packages of the host's own release (Debian 12), installed with apt.
# A series the host's release does not carry ("7") is fetched from OOMSCOPE_VM_KERNEL_SUITE
# (trixie-backports) without touching the host's apt set-up or upgrading anything: apt runs with
# lists, cache and sources of its own under OOMSCOPE_VM_KERNEL_CACHE (/var/lib/oomscope/vm-kernels),
# asking the Debian mirror the host's own sources use (tests/vm/debian_mirror.py derives it), for the
# newest version of the series that has all five packages (linux-binary, linux-modules,
# linux-headers, linux-headers-*-common, linux-kbuild; ~135 MB). They are unpacked with dpkg -x into
# a private tree (CACHE/<version>/usr/...; no maintainer scripts) and depmod is run there. Nothing
# goes into the host's /lib/modules or /boot: virtme-ng, given the kernel image inside that tree,
# mounts a tmpfs over the guest's /lib/modules and links /lib/modules/<version> to the tree's
# usr/lib/modules/<version>, whose build and source links are relative, so bcc in the guest finds the
# exactly matching headers at /lib/modules/$(uname -r)/build as with an installed kernel. Each run
# asks the suite for its newest version (a few hundred KB of lists); one already unpacked is reused,
# and older ones of the series are removed once a newer one is in place. Offline, the newest tree
# already unpacked is used, said so.
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
# Strictness: the VMs run pytest with OOMSCOPE_STRICT_SKIPS=1 (tests/requires.py), as ./setup.sh test
# runs the host's suite: a test skipped because a package is not installed fails the VM's run;
# skips for what the kernel is (cgroup v1-only features, no BTF) stay skips, listed per VM.
# OOMSCOPE_STRICT_SKIPS=0 turns it off for a run by hand.
#
# Environment: OOMSCOPE_VM_KERNELS="6.1 6.12 7" (series to run), OOMSCOPE_VM_KVM=auto|on|off,
# OOMSCOPE_VM_KERNEL_SUITE, OOMSCOPE_VM_KERNEL_CACHE (above).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${OOMSCOPE_VENV:-/opt/oomscope/venv}"
VNG_VENV="${OOMSCOPE_VNG_VENV:-/opt/oomscope/vng}"
KERNELS="${OOMSCOPE_VM_KERNELS:-6.1 6.12 7}"  # 7: the newest 7.x of $KERNEL_SUITE, fetched (below)
KERNEL_SUITE="${OOMSCOPE_VM_KERNEL_SUITE:-trixie-backports}"
KERNEL_CACHE="${OOMSCOPE_VM_KERNEL_CACHE:-/var/lib/oomscope/vm-kernels}"
KVM="${OOMSCOPE_VM_KVM:-auto}"
VM_TIMEOUT="${OOMSCOPE_VM_TIMEOUT:-2400}"
TEST_TIMEOUT="${OOMSCOPE_VM_TEST_TIMEOUT:-600}"
DEADLINE="${OOMSCOPE_DEADLINE:-}"
KEEP="${OOMSCOPE_VM_KEEP:-}"  # a host folder the guests may write (tests copy the post-mortems they made there: OOMSCOPE_KEEP_DIR)
VM_TOOLS="${OOMSCOPE_VM_TOOLS_CACHE:-/var/lib/oomscope/vm-tools}"  # the user-space OOM killers, for the guests only (below)
STRICT_SKIPS="${OOMSCOPE_STRICT_SKIPS:-1}"  # tests/requires.py: in the VMs a test skipped for a missing package fails
SUITE="$HERE/tests/vm/suite.txt"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'vm-matrix: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "needs root"; exit 1; }

packages_for() {  # kernel series of the host's release -> its packages (image, exactly matching headers)
    case "$1" in
        6.1) echo "linux-image-amd64 linux-headers-amd64" ;;
        6.*) echo "linux-image-$1-amd64 linux-headers-$1-amd64" ;;
        *) echo "" ;;   # fetched from $KERNEL_SUITE by fetch_kernel
    esac
}

install() {
    local want=(qemu-system-x86 busybox-static)
    for series in $KERNELS; do
        # shellcheck disable=SC2207
        want+=($(packages_for "$series"))
    done
    want+=(kmod)   # depmod, for the fetched kernels' trees
    # What the VM suite's tests run: the guests see this host's root filesystem, so a tool they
    # need is installed here (the storm: stress-ng; the JVM tests: OpenJDK). Strict mode (below)
    # fails a test that finds one missing.
    want+=(stress-ng openjdk-17-jdk-headless)
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
    vm_tools
}

# The user-space OOM killers the VM suite runs (issue 28: earlyoom, systemd-oomd). They act on the
# whole machine they run on, and installing their packages enables their services (on a host run by
# systemd: a killer acting on the user's machine after ./setup.sh test). So they are never installed
# here: their .deb files (the host's own sources and release, so systemd-oomd and its
# libsystemd-shared are one version) are fetched with apt-get download into a scratch folder and
# unpacked with dpkg -x (no maintainer scripts, no service) into $VM_TOOLS/root, which the guests
# see over 9p as every host file. The guests get that path as OOMSCOPE_VM_TOOLS: tests/requires.py's
# require_tool looks there after PATH (strict mode: a missing one fails the VM's run). Reused while
# the versions hold; offline, the tree unpacked before is used, said so.
VM_TOOL_PACKAGES=(earlyoom systemd-oomd libsystemd-shared)
vm_tools() {
    local want="" pkg v tmp
    for pkg in "${VM_TOOL_PACKAGES[@]}"; do
        v="$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then want=""; break; fi
        want+="$pkg=$v "
    done
    if [ -n "$want" ] && [ "$(cat "$VM_TOOLS/root/.versions" 2>/dev/null)" = "$want" ]; then return 0; fi
    if [ -z "$want" ]; then
        timeout 600 apt-get update -qq || true
        want=""
        for pkg in "${VM_TOOL_PACKAGES[@]}"; do
            v="$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
            [ -n "$v" ] && [ "$v" != "(none)" ] || { want=""; break; }
            want+="$pkg=$v "
        done
    fi
    mkdir -p "$VM_TOOLS"
    tmp="$(mktemp -d "$VM_TOOLS/.fetch-XXXXXX")"
    # shellcheck disable=SC2086
    if [ -z "$want" ] || ! (cd "$tmp" && timeout 600 apt-get download -qq $want >/dev/null 2>"$tmp/err"); then
        rm -rf "$tmp"
        if [ -f "$VM_TOOLS/root/.versions" ]; then
            log "user-space killers: could not fetch ${want:-${VM_TOOL_PACKAGES[*]}}; using those unpacked before: $(cat "$VM_TOOLS/root/.versions")"
            return 0
        fi
        log "user-space killers: could not fetch ${VM_TOOL_PACKAGES[*]} (their VM tests will fail)"; return 0
    fi
    rm -rf "$VM_TOOLS/root.new"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$VM_TOOLS/root.new"; done
    rm -rf "$tmp"
    printf '%s' "$want" >"$VM_TOOLS/root.new/.versions"
    rm -rf "$VM_TOOLS/root" && mv "$VM_TOOLS/root.new" "$VM_TOOLS/root"
    log "user-space killers: $want unpacked for the VMs in $VM_TOOLS/root (not installed on this host)"
}

kernel_version() {  # series -> the newest installed version of it, e.g. 6.1 -> 6.1.0-56-amd64
    local series="$1"
    ls /boot/vmlinuz-"$series".* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n 1
}

# A kernel of another suite, in a private tree: see the top of this file. The private apt and
# the unpacking are tests/debian-fetch.sh's, shared with tests/go-toolchains.sh.
# shellcheck source=tests/debian-fetch.sh
. "$HERE/tests/debian-fetch.sh"
kernel_apt() { debian_apt "$@"; }  # apt-get or apt-cache with the matrix's own sources, lists and cache

newest_in_suite() {  # series arch -> the newest version (e.g. 7.3.4+deb13-amd64) with all five packages
    local series="$1" arch="$2" v base
    kernel_apt apt-cache pkgnames "linux-binary-$series." 2>/dev/null \
        | sed -n "s/^linux-binary-\(${series//./\\.}\.[0-9.]*+[a-z0-9]*-$arch\)\$/\1/p" | sort -rV \
        | while read -r v; do
            base="${v%-"$arch"}"
            for pkg in "linux-binary-$v" "linux-modules-$v" "linux-headers-$v" "linux-headers-$base-common" "linux-kbuild-$base"; do
                kernel_apt apt-cache show "$pkg" >/dev/null 2>&1 || continue 2
            done
            echo "$v"; break
        done
}

newest_unpacked() {  # series -> the newest version already unpacked in the cache
    ls -d "$KERNEL_CACHE/$1".*/.complete 2>/dev/null | sed "s|^$KERNEL_CACHE/||; s|/.complete\$||" | sort -V | tail -n 1
}

fetch_kernel() {  # series -> the version now unpacked in $KERNEL_CACHE/<version> (stdout), or fails
    local series="$1" arch apt_dir version start
    arch="$(dpkg --print-architecture)"
    apt_dir="$KERNEL_CACHE/apt"
    if ! debian_apt_init "$apt_dir" "$KERNEL_SUITE"; then
        log "kernel $series: no Debian mirror in this host's apt sources"; return 1
    fi
    start=$(date +%s)
    if debian_apt_update "$apt_dir"; then
        version="$(newest_in_suite "$series" "$arch")"
    else
        log "kernel $series: could not read $KERNEL_SUITE from $DEBIAN_MIRROR: $(tail -n 1 "$apt_dir/update.err")"
    fi
    if [ -z "${version:-}" ]; then
        version="$(newest_unpacked "$series")"
        [ -n "$version" ] || { log "kernel $series: none in $KERNEL_SUITE at $DEBIAN_MIRROR, and none unpacked before"; return 1; }
        log "kernel $series: using $version, unpacked before (the newest in $KERNEL_SUITE is unknown)"
        echo "$version"; return 0
    fi
    local root="$KERNEL_CACHE/$version"
    if [ ! -f "$root/.complete" ]; then
        local base="${version%-"$arch"}" mb
        log "kernel $series: fetching $version from $DEBIAN_MIRROR $KERNEL_SUITE"
        rm -rf "$root.new"
        mb="$(debian_unpack "$root.new" "$KERNEL_CACHE" "linux-binary-$version" "linux-modules-$version" \
            "linux-headers-$version" "linux-headers-$base-common" "linux-kbuild-$base")" \
            || { log "kernel $series: download of $version failed"; rm -rf "$root.new"; return 1; }
        depmod -b "$root.new/usr" "$version" 2>/dev/null
        [ -f "$root.new/usr/lib/modules/$version/modules.dep" ] || { log "kernel $series: depmod failed in $root.new"; return 1; }
        rm -rf "$root" && mv "$root.new" "$root" && touch "$root/.complete"
        log "kernel $series: $version: $mb MB fetched and unpacked in $(( $(date +%s) - start )) s"
        local old
        for old in "$KERNEL_CACHE/$series".*; do
            if [ "$old" != "$root" ] && [ -d "$old" ]; then log "kernel $series: removing the older $old"; rm -rf "$old"; fi
        done
    fi
    echo "$version"
}

kernel_image() {  # series version -> the kernel image to boot
    if [ -n "$(packages_for "$1")" ]; then echo "/boot/vmlinuz-$2"; else echo "$KERNEL_CACHE/$2/usr/lib/modules/$2/vmlinuz"; fi
}

kernel_headers() {  # series version -> the headers' include directory the guest will see through /lib/modules/<version>/build
    if [ -n "$(packages_for "$1")" ]; then echo "/lib/modules/$2/build/include"; else echo "$KERNEL_CACHE/$2/usr/lib/modules/$2/build/include"; fi
}

vng_run() {  # vng_run TIMEOUT KVM_FLAG IMAGE OUTDIR COMMAND
    local t="$1" kvmflag="$2" image="$3" out="$4" cmd="$5"
    # shellcheck disable=SC2086
    PATH="$VNG_VENV/bin:$PATH" timeout --kill-after=20 "$t" vng $kvmflag --run "$image" \
        --user root --memory 2G --cpus 2 --rwdir "$out" ${KEEP:+--rwdir "$KEEP"} --verbose --append loglevel=3 \
        --exec "$cmd" </dev/null >"$out/vng.log" 2>&1
}

choose_kvm_flag() {
    local image="$1"
    case "$KVM" in
        off) echo "--disable-kvm"; return ;;
        on) echo ""; return ;;
    esac
    if [ ! -e /dev/kvm ]; then echo "--disable-kvm"; return; fi
    local probe
    probe="$(mktemp -d)"
    if vng_run 25 "" "$image" "$probe" "touch $probe/booted" && [ -f "$probe/booted" ]; then
        log "KVM works: using it"
        echo ""
    else
        log "KVM did not boot within 25 s: using software emulation (--disable-kvm)"
        echo "--disable-kvm"
    fi
    rm -rf "$probe"
}

suite_ids() {  # suite_ids SERIES -> the test ids of tests/vm/suite.txt run in that series' VM: the lines
    # with no prefix, and the "on SERIES...:" lines that name it ("host:" and "newest:" lines,
    # comments and blank lines left out)
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SUITE" | awk -v series="$1" '
        /^$/ || /^host:/ || /^newest:/ { next }
        /^on [^:]*:/ {
            split(substr($0, 4, index($0, ":") - 4), named, " ")
            for (i in named) if (named[i] == series) { sub(/^on [^:]*:[[:space:]]*/, ""); print; next }
            next
        }
        { print }'
}

newest_ids() {  # the test ids of tests/vm/suite.txt's "newest:" lines: run only in the run's last (newest) VM, after its own
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SUITE" | sed -n 's/^newest:[[:space:]]*//p'
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
    local pytest_args=("$@") newest_extra=() from_suite=0
    if [ "${#pytest_args[@]}" -eq 0 ]; then
        from_suite=1
        # shellcheck disable=SC2207
        newest_extra=($(newest_ids))
    elif [ "${pytest_args[0]}" = "--all" ]; then
        pytest_args=(tests/system "${pytest_args[@]:1}")
    fi
    cd "$HERE"
    # The "newest:" lines run after the newest series' own tests, in its VM. They had a VM of their
    # own from 2026-12-06 14:48: appended, the 7.3 VM had died at the first of them with nothing on
    # its console, two hours before every tracepoint was held on for the guest's life
    # (hold-tracepoints.sh: a kernel patching its own text under emulation can panic), the cause
    # found then. A boot, pytest's start and the shared record's start: ~90 s under emulation.
    local runs="$KERNELS" newest_series run
    newest_series="$(awk '{print $NF}' <<<"$KERNELS")"
    # What each VM should run, collected on the host before any boots: a VM that dies early still
    # says what it did not run, and a test id that does not collect fails the run at once. A list
    # that another VM has too is collected once.
    local lists
    lists="$(mktemp -d)"
    for run in $runs; do
        local ids=() other
        if [ "$from_suite" -eq 1 ]; then
            # shellcheck disable=SC2207
            ids=($(suite_ids "$run"))
            [ "$run" = "$newest_series" ] && ids+=("${newest_extra[@]}")
        else
            ids=("${pytest_args[@]}")
        fi
        if [ "${#ids[@]}" -eq 0 ]; then
            log "tests/vm/suite.txt names no test for the $run VM"; rm -rf "$lists"; return 1
        fi
        printf '%s\n' "${ids[@]}" >"$lists/$run.args"
        for other in "$lists"/*.collected; do
            if [ -f "$other" ] && cmp -s "${other%.collected}.args" "$lists/$run.args"; then
                cp "$other" "$lists/$run.collected"; break
            fi
        done
        [ -f "$lists/$run.collected" ] && continue
        "$VENV/bin/python" -m pytest -q --collect-only -p no:cacheprovider "${ids[@]}" >"$lists/$run.collected" 2>&1 \
            || { log "pytest could not collect the tests of the $run VM:"; cat "$lists/$run.collected" >&2; rm -rf "$lists"; return 1; }
    done
    local failed=0 kvmflag="" first=1 summary="" n_left
    n_left=$(wc -w <<<"$runs")
    for run in $runs; do
        local version image vm_collected="$lists/$run.collected" series="$run" vm_label=""
        [ "$from_suite" -eq 1 ] && [ "$run" = "$newest_series" ] && [ "${#newest_extra[@]}" -gt 0 ] && vm_label=", with the newest: lines"
        if [ -n "$(packages_for "$series")" ]; then
            version="$(kernel_version "$series")"
        else
            version="$(fetch_kernel "$series")" || version=""
        fi
        image="$(kernel_image "$series" "$version")"
        if [ -z "$version" ] || [ ! -f "$image" ] || [ ! -d "$(kernel_headers "$series" "$version")" ]; then
            log "kernel $series: image or headers missing after install"; failed=1; n_left=$((n_left - 1)); continue
        fi
        if [ "$first" -eq 1 ]; then kvmflag="$(choose_kvm_flag "$image")"; first=0; fi
        local out start rc budget
        out="$(mktemp -d)"
        start=$(date +%s)
        budget="$(vm_budget "$n_left")"
        n_left=$((n_left - 1))
        log "kernel $version: booting${kvmflag:+ ($kvmflag)}, $(grep -c '::' "$vm_collected") tests, at most $budget s"
        # The arguments go in a file (pytest's @file): the kernel's command line, which carries
        # the VM's command, holds 2048 bytes on x86 and a longer one never boots.
        cp "$lists/$run.args" "$out/pytest-args"
        local cmd="date +%s > '$out/booted'; sh '$HERE/tests/vm/hold-tracepoints.sh' > '$out/hold.log' 2>&1; cd '$HERE' && PYTHONDONTWRITEBYTECODE=1 OOMSCOPE_IN_VM=1 OOMSCOPE_VM_TOOLS='$VM_TOOLS/root' OOMSCOPE_KEEP_DIR='$KEEP' OOMSCOPE_STRICT_SKIPS='$STRICT_SKIPS' '$VENV/bin/python' -m pytest -v -rs -p no:cacheprovider --durations=15 --timeout=$TEST_TIMEOUT @'$out/pytest-args' > '$out/pytest.log' 2>&1; echo \$? > '$out/rc'"
        local vrc=0
        vng_run "$budget" "$kvmflag" "$image" "$out" "$cmd" || vrc=$?
        local took=$(( $(date +%s) - start )) booted="?"
        [ -f "$out/booted" ] && booted=$(( $(cat "$out/booted") - start ))
        echo "=== system tests in a VM: kernel $version, cgroup v2${vm_label} (booted in $booted s, $took s in all) ==="
        cat "$out/hold.log" 2>/dev/null || echo "hold-tracepoints: did not run (the guest wrote no hold.log)"
        rc="$(cat "$out/rc" 2>/dev/null || echo none)"
        account "$vm_collected" "$out/pytest.log"
        if [ "$rc" != "0" ]; then
            failed=1
            if [ "$vrc" -eq 124 ] || [ "$vrc" -eq 137 ]; then
                log "kernel $version: TIMED OUT after $took s (its share of the time left: $budget s)"
            fi
            log "kernel $version: FAILED (pytest exit: $rc); its pytest log, then its console (the kernel's messages at loglevel 3: oopses, panics, lockups):"
            cat "$out/pytest.log" >&2 2>/dev/null || true
            local first_oops
            first_oops="$(grep -n -m1 -E 'Oops|BUG:|Kernel panic|rcu.*stall|hung_task' "$out/vng.log" | cut -d: -f1 || true)"
            if [ -n "$first_oops" ]; then
                sed -n "${first_oops},$((first_oops + 60))p" "$out/vng.log" >&2 || true
                echo "[...]" >&2
            fi
            tail -n 40 "$out/vng.log" >&2 || true
        else
            grep -E '^(record start-up|measured:)' "$out/pytest.log" || true
            sed -n '/slowest .* durations/,$p' "$out/pytest.log"
        fi
        summary+="kernel $version (cgroup v2)${vm_label}: pytest exit $rc, booted in $booted s, $took s in all"$'\n'
        rm -rf "$out"
    done
    rm -rf "$lists"
    printf '%s' "$summary" >&2
    return "$failed"
}

if [ "${1:-}" = "--install-only" ]; then
    install
    for series in $KERNELS; do
        [ -n "$(packages_for "$series")" ] || fetch_kernel "$series" >/dev/null
    done
    exit 0
fi
main "$@" || exit 1
