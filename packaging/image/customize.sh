#!/usr/bin/env bash
# mmdebstrap's customize hook for packaging/image/build.sh: runs on the build host with the image's
# root filesystem in $1. Installs oomscope's wheels into a virtualenv that sees Debian's bcc, and
# Debian's generic kernel headers, merged, for nodes that have none.
set -euo pipefail
R="$1"
: "${OOMSCOPE_WHEELS:?}" "${OOMSCOPE_PYVER:?}" "${OOMSCOPE_HEADERS_IN_IMAGE:?}" "${MMDEBSTRAP_APT_CONFIG:?}"
log() { printf 'image: %s\n' "$*" >&2; }

# oomscope: a built package (the wheel), not the checkout. A virtualenv made from Debian's python3
# with --system-site-packages sees Debian's bcc (the PyPI package "bcc" is an unrelated project).
got="$(chroot "$R" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$got" = "$OOMSCOPE_PYVER" ] || { log "the image's python3 is $got, the wheels were built for $OOMSCOPE_PYVER"; exit 1; }
mkdir -p "$R/tmp/wheels"
cp "$OOMSCOPE_WHEELS"/*.whl "$(dirname "${BASH_SOURCE[0]}")/requirements.txt" "$R/tmp/wheels/"
wheel="$(cd "$OOMSCOPE_WHEELS" && ls oomscope-*.whl)"
# In the chroot, pip sees only the wheels: none of the build host's pip settings (PIP_*). The
# dependencies are requirements.txt's, their hashes checked again; then oomscope's wheel alone.
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PIP_CONFIG_FILE=/dev/null "$@"; }
in_root /usr/bin/python3 -m venv --system-site-packages /opt/oomscope/venv
in_root /opt/oomscope/venv/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels \
    --require-hashes -r /tmp/wheels/requirements.txt
in_root /opt/oomscope/venv/bin/pip install -q --disable-pip-version-check --no-index --no-deps "/tmp/wheels/$wheel"
# pip and setuptools are not needed to run, nor the packages that made the virtualenv, nor the
# test suites that numpy and pandas ship inside their packages (73 MiB, measured)
in_root /opt/oomscope/venv/bin/pip uninstall -q -y pip setuptools
rm -rf "$R"/opt/oomscope/venv/lib/python*/site-packages/pandas/tests "$R"/opt/oomscope/venv/lib/python*/site-packages/numpy/*/tests \
       "$R"/opt/oomscope/venv/lib/python*/site-packages/numpy/tests
chroot "$R" dpkg --purge python3-venv "python${OOMSCOPE_PYVER}-venv" python3-pip-whl python3-setuptools-whl >/dev/null
rm -rf "$R/tmp/wheels"
ln -sf /opt/oomscope/venv/bin/oomscope "$R/usr/local/bin/oomscope"
in_root /bin/sh -c 'cd / && /opt/oomscope/venv/bin/python -c "import bcc, oomscope.cli, oomscope.bpf, sys; sys.exit(not oomscope.__file__.startswith(\"/opt/oomscope/venv/\"))"' \
    || { log "oomscope or bcc does not import in the image"; exit 1; }

# Kernel headers: bcc compiles the BPF C at start and needs headers. A node's own are used when it
# has them (/lib/modules/<release>/build and /usr/src, mounted by the DaemonSet). For nodes without,
# the distribution's generic headers are shipped here, outside /usr/src (which the node's mount
# hides): the -common tree, then the architecture's tree over it, as real files (setup.sh links
# into /usr/src instead). Only include/ and arch/<arch>/include are kept: bcc compiles with -I of
# those (bcc src/cc/frontends/clang/kbuild_helper.cc); the programs read only tracepoint
# arguments and helpers, so headers of another kernel version are enough (docs/kernel-facts.md, "Headers need not match").
# Their dependencies (kbuild, gcc) are not installed: nothing here builds modules.
arch="$(chroot "$R" dpkg --print-architecture)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true  # apt downloads as _apt where it can
flavour="$(APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-cache depends "linux-headers-$arch" | awk '/Depends: linux-headers-/ {print $2; exit}')"
[ -n "$flavour" ] || { log "linux-headers-$arch depends on no linux-headers-<version> package"; exit 1; }
version="${flavour#linux-headers-}"
common="$(APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-cache depends "$flavour" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')"
(cd "$tmp" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -q=2 "$flavour" ${common:+"$common"})
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
src_arch="$tmp/x/usr/src/$flavour"
karch="$(basename "$(ls -d "$src_arch"/arch/*/ | head -n 1)")"
target="$R$OOMSCOPE_HEADERS_IN_IMAGE/$version"
mkdir -p "$target/arch/$karch"
for tree in ${common:+"$tmp/x/usr/src/$common"} "$src_arch"; do
    [ -d "$tree/include" ] && cp -a "$tree/include" "$target/"
    [ -d "$tree/arch/$karch/include" ] && cp -a "$tree/arch/$karch/include" "$target/arch/$karch/"
done
[ -f "$target/include/linux/kconfig.h" ] && [ -d "$target/arch/$karch/include/generated" ] \
    || { log "the merged headers in $target lack include/linux/kconfig.h or the generated headers"; exit 1; }
find "$target" -xtype l -print -quit | grep -q . && { log "dangling links in the merged headers: $(find "$target" -xtype l | head -3)"; exit 1; }
printf '%s\n' "$flavour" ${common:+"$common"} > "$target/.packages"
log "kernel headers $version: $(du -sm "$target" | cut -f1) MiB in $OOMSCOPE_HEADERS_IN_IMAGE/$version"

# Nothing else left behind that the image does not need.
rm -rf "$R"/var/log/apt/* "$R"/var/log/dpkg.log "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old
