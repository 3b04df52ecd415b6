#!/usr/bin/env bash
# The oomscope container image, built without a container registry: a root filesystem from
# Debian's packages (mmdebstrap, from the mirror this host's apt uses), oomscope installed into it
# as a built package (a wheel of this checkout), Debian's generic kernel headers for nodes that
# have none, packed as an OCI image with umoci.
#
#   packaging/image/build.sh        -> $OOMSCOPE_IMAGE_CACHE/oci, image "oomscope" (tag "latest")
#
# Idempotent: every run starts from an empty root filesystem; the .debs, pip's downloads and the
# wheels are kept in the cache directory (default /var/cache/oomscope-image, never inside the
# checkout), and when nothing that goes into the image changed (these scripts, the wheels' files,
# the apt sources) the image is left as it is. OOMSCOPE_IMAGE_REBUILD=1 rebuilds anyway.
# Needs root, mmdebstrap and umoci (apt-get install mmdebstrap umoci), python3-venv.
#
# Run it as packaging/kubernetes/daemonset.yaml does: tests/system/test_image.py.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${OOMSCOPE_IMAGE_CACHE:-/var/cache/oomscope-image}"
TAG="${OOMSCOPE_IMAGE_TAG:-latest}"
HEADERS_IN_IMAGE=/opt/oomscope/kernel-headers

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap --mode=root, chroot)"
for tool in mmdebstrap umoci; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install mmdebstrap umoci)"
done
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
case "$CACHE/" in "$ROOT"/*) die "the cache directory $CACHE is inside the checkout: choose one outside (OOMSCOPE_IMAGE_CACHE)";; esac

# The image's Debian release and mirror are the host's: every Debian "deb" source apt uses here
# for this architecture (apt-get indextargets reads .list and .sources alike), one line each.
# A Debian host only: on another distribution this stops here, saying so.
. /etc/os-release
SUITE="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
ARCH="$(dpkg --print-architecture)"
mapfile -t SOURCES < <(apt-get indextargets --format '$(ORIGIN)|$(TARGET_OF)|$(IDENTIFIER)|$(ARCHITECTURE)|$(REPO_URI)|$(RELEASE)|$(COMPONENT)' \
    | awk -F'|' -v arch="$ARCH" '$1 == "Debian" && $2 == "deb" && $3 == "Packages" && $4 == arch {print "deb " $5 " " $6 " " $7}' | sort -u)
printf '%s\n' "${SOURCES[@]}" | grep -q " $SUITE " \
    || die "apt on this host has no Debian source for $SUITE (apt-get update first?): ${SOURCES[*]:-none}"

# The checkout's files (tracked and new, not ignored), copied apart: the wheel is built from them,
# and pip's in-tree build leaves nothing in the checkout.
SRC="$CACHE/src"
rm -rf "$SRC" && mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        [ ! -e "$f" ] || printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$SRC")  # not files deleted here
else
    cp -a "$ROOT/." "$SRC/" && rm -rf "$SRC/.git"
fi

# The wheels: oomscope's, built from the checkout, and its dependencies', for the host's python3,
# which is the image's (same Debian release; checked in the chroot). The dependencies are exactly
# requirements.txt's versions, each file checked against its hashes there (--require-hashes: pip
# refuses an unlisted hash and a dependency not pinned there), wheels only; oomscope's wheel is
# built with build-requirements.txt's setuptools, pinned and checked the same way, installed in the
# build virtualenv (--no-build-isolation: no build environment fetched unpinned).
log "building the wheels"
if [ ! -x "$CACHE/buildvenv/bin/pip" ]; then
    rm -rf "$CACHE/buildvenv"
    /usr/bin/python3 -m venv "$CACHE/buildvenv" || die "/usr/bin/python3 -m venv failed (apt-get install python3-venv)"
fi
rm -rf "$CACHE/wheels"
# (this host's pip settings apply: its index; their warnings about absent local folders are dropped)
pip_quiet() { PIP_CACHE_DIR="$CACHE/pip" timeout 900 "$CACHE/buildvenv/bin/pip" "$@" -q --disable-pip-version-check 2>&1 \
    | { grep -v -e "is ignored: it is" >&2 || true; }; }
pip_quiet download --require-hashes --only-binary=:all: -r "$HERE/requirements.txt" --dest "$CACHE/wheels"
pip_quiet install --require-hashes -r "$HERE/build-requirements.txt"
pip_quiet wheel --no-deps --no-build-isolation --wheel-dir "$CACHE/wheels" "$SRC"
ls "$CACHE/wheels"/oomscope-*.whl >/dev/null || die "no oomscope wheel was built"
PYVER="$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# What goes into the image: the release and its sources, these scripts and pins, and the wheels' contents
# (each wheel's RECORD lists every file with its hash; the zip files themselves carry build times).
INPUTS="$( { printf '%s\n' "$SUITE" "${SOURCES[@]}"; (cd "$HERE" && sha256sum build.sh customize.sh requirements.txt build-requirements.txt);
            /usr/bin/python3 -c 'import sys, zipfile
for w in sorted(sys.argv[1:]):
    z = zipfile.ZipFile(w)
    print(w.rsplit("/", 1)[-1], *sorted(z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/RECORD")))' "$CACHE/wheels"/*.whl; } \
          | sha256sum | cut -d' ' -f1)"
if [ -z "${OOMSCOPE_IMAGE_REBUILD:-}" ] && [ -f "$CACHE/oci/index.json" ] && [ "$(cat "$CACHE/oci.inputs" 2>/dev/null)" = "$INPUTS" ]; then
    log "up to date: $CACHE/oci:$TAG (nothing that goes into it changed)"
    exit 0
fi

log "building the root filesystem ($SUITE, $ARCH)"
mkdir -p "$CACHE/debs"
ROOTFS_TAR="$CACHE/rootfs.tar"
rm -f "$ROOTFS_TAR"
# minbase: the essential packages and apt; no Recommends; no documentation, manual pages or
# translations (copyright files are kept). /usr merged by mmdebstrap's hook (usr-is-merged), not
# by the usrmerge package, which would bring perl (47 MiB, measured). The .debs are kept in the
# cache between runs.
OOMSCOPE_WHEELS="$CACHE/wheels" OOMSCOPE_PYVER="$PYVER" OOMSCOPE_HEADERS_IN_IMAGE="$HEADERS_IN_IMAGE" \
timeout 1800 mmdebstrap --mode=root --variant=minbase --format=tar --quiet \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --include=python3,python3-venv,python3-bpfcc \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $CACHE/debs /var/cache/apt/archives/" \
    --customize-hook="$HERE/customize.sh \"\$1\"" \
    --customize-hook="sync-out /var/cache/apt/archives $CACHE/debs" \
    "$SUITE" "$ROOTFS_TAR" "${SOURCES[@]}"

log "packing the OCI image"
rm -rf "$CACHE/oci.new"
umoci init --layout "$CACHE/oci.new"
umoci new --image "$CACHE/oci.new:$TAG"
umoci raw add-layer --image "$CACHE/oci.new:$TAG" "$ROOTFS_TAR"
# The entrypoint and the default command of packaging/Dockerfile; the DaemonSet gives its own
# arguments (metrics on the pod's IP). Metrics default to the loopback only.
umoci config --image "$CACHE/oci.new:$TAG" \
    --config.entrypoint /usr/local/bin/oomscope \
    --config.cmd record --config.cmd --output --config.cmd /var/lib/oomscope/kills --config.cmd --keep --config.cmd 30d \
    --config.cmd --metrics-addr --config.cmd 127.0.0.1:9847 --config.cmd --log-format --config.cmd json \
    --config.env PATH=/opt/oomscope/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env "OOMSCOPE_HEADERS_DIR=$HEADERS_IN_IMAGE" \
    --config.workingdir / \
    --config.label "org.opencontainers.image.title=oomscope" \
    --config.label "org.opencontainers.image.description=OOM-kill forensics: a post-mortem of every OOM kill" \
    --config.label "org.opencontainers.image.version=$(cd "$SRC" && /usr/bin/python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
    --config.label "org.oomscope.debian-suite=$SUITE"
umoci gc --layout "$CACHE/oci.new"
rm -rf "$CACHE/oci" && mv "$CACHE/oci.new" "$CACHE/oci"
echo "$INPUTS" > "$CACHE/oci.inputs"

# Sizes: the layer as stored and shipped (gzip), and unpacked.
layer_bytes=$(find "$CACHE/oci/blobs" -type f -size +1M -printf '%s\n' | awk '{s += $1} END {print s}')
unpacked=$(tar -tvf "$ROOTFS_TAR" | awk '{s += $3} END {print s}')
log "done: $CACHE/oci:$TAG, compressed $((layer_bytes / 1048576)) MiB, unpacked $((unpacked / 1048576)) MiB"
rm -f "$ROOTFS_TAR"
