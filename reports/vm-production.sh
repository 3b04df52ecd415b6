#!/usr/bin/env bash
# Boots Debian's newest 7.x kernel (the one tests/vm/run-matrix.sh fetched into its cache; run
# `OOMSCOPE_VM_KERNELS=7 tests/vm/run-matrix.sh --install-only` first on a fresh machine) under
# QEMU with virtme-ng, as the VM suite does (cgroup v2, the host's root read-only with an
# overlay), and runs reports/production.py in it as root. OUT is the one folder the guest writes
# to the host: the recorder's kills, examples.json, the logs. Only one VM at a time on a small
# machine: run it under the matrix's lock, as generate.sh does:
#   flock /tmp/oomscope-vm.lock reports/vm-production.sh OUT [--slow-minutes M]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OOMSCOPE_VENV:-/opt/oomscope/venv}"
VNG_VENV="${OOMSCOPE_VNG_VENV:-/opt/oomscope/vng}"
CACHE="${OOMSCOPE_VM_KERNEL_CACHE:-/var/lib/oomscope/vm-kernels}"
out="$(realpath -m "$1")"; shift
extra="${*:-}"
mkdir -p "$out"
version="$(ls -d "$CACHE"/7.*/.complete 2>/dev/null | sed "s|^$CACHE/||; s|/.complete\$||" | sort -V | tail -n 1)"
[ -n "$version" ] || { echo "no 7.x kernel in $CACHE: run OOMSCOPE_VM_KERNELS=7 tests/vm/run-matrix.sh --install-only" >&2; exit 1; }
image="$CACHE/$version/usr/lib/modules/$version/vmlinuz"
kvm="--disable-kvm"   # KVM hangs at boot on this project's machines (run-matrix.sh probes it; here it is not tried)
[ "${OOMSCOPE_VM_KVM:-off}" = "on" ] && kvm=""
echo "vm-production: kernel $version, results in $out" >&2
start=$(date +%s)
cmd="cd '$HERE' && PYTHONDONTWRITEBYTECODE=1 OOMSCOPE_IN_VM=1 '$VENV/bin/python' reports/production.py '$out' $extra > '$out/guest.log' 2>&1; echo \$? > '$out/rc'"
# timeout runs in a process group of its own: stopping this script stops the VM too (a VM left
# running after its lock is given up would share the machine with the next one)
# shellcheck disable=SC2086
PATH="$VNG_VENV/bin:$PATH" timeout --kill-after=20 "${OOMSCOPE_VM_TIMEOUT:-3600}" vng $kvm --run "$image" \
    --user root --memory 2G --cpus 2 --rwdir "$out" --exec "$cmd" </dev/null >"$out/vng.log" 2>&1 &
vm=$!
trap 'kill -- -"$vm" 2>/dev/null; exit 1' INT TERM
wait "$vm" || true
trap - INT TERM
echo "vm-production: $(( $(date +%s) - start )) s; guest exit $(cat "$out/rc" 2>/dev/null || echo none)" >&2
[ "$(cat "$out/rc" 2>/dev/null)" = "0" ]
