# Debian packages of another suite, fetched and unpacked without touching the host's apt set-up.
# Sourced (bash) by tests/vm/run-matrix.sh (its 7.x kernels from trixie-backports) and
# tests/go-toolchains.sh (newer Go toolchains from bookworm-backports and trixie).
#
# apt runs with sources, lists and cache of its own under a folder the caller names, asking the
# Debian mirror the host's own sources use (tests/vm/debian_mirror.py derives it); nothing is
# installed: the .deb files are unpacked with dpkg -x (no maintainer scripts) into a private tree.
#
#   debian_apt_init APT_DIR SUITE...    write APT_DIR/sources.list (main of each suite) and set DAPT,
#                                       the options that make apt-get/apt-cache use APT_DIR only;
#                                       fails when the host's sources name no Debian mirror
#   debian_apt_update APT_DIR           refresh APT_DIR's lists (a few hundred KB to a few MB);
#                                       fails (the reason in APT_DIR/update.err) offline
#   debian_apt TOOL ARGS...             apt-get or apt-cache with DAPT
#   debian_unpack DEST SCRATCH PKG...   download PKG... (PKG or PKG=VERSION) into a folder made in
#                                       SCRATCH and dpkg -x each into DEST (which must not exist);
#                                       prints the MB downloaded; the downloads are removed after

DAPT=()
DEBIAN_MIRROR=""

debian_apt_init() {
    local apt_dir="$1" keyring here suite arch
    shift
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    if ! read -r DEBIAN_MIRROR keyring < <(/usr/bin/python3 "$here/vm/debian_mirror.py"); then
        return 1
    fi
    arch="$(dpkg --print-architecture)"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    : >"$apt_dir/sources.list.new"
    for suite in "$@"; do
        echo "deb [signed-by=$keyring] $DEBIAN_MIRROR $suite main" >>"$apt_dir/sources.list.new"
    done
    mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
    DAPT=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
          -o "APT::Architecture=$arch" -o APT::Sandbox::User=root)
}

debian_apt_update() {
    timeout 300 apt-get "${DAPT[@]}" update -qq >/dev/null 2>"$1/update.err"
}

debian_apt() {
    local tool="$1"; shift
    "$tool" "${DAPT[@]}" "$@"
}

debian_unpack() {
    local dest="$1" scratch="$2" tmp deb
    shift 2
    mkdir -p "$scratch"
    tmp="$(mktemp -d "$scratch/.fetch-XXXXXX")"
    if ! (cd "$tmp" && timeout 1200 apt-get "${DAPT[@]}" download -qq "$@" >/dev/null); then
        rm -rf "$tmp"; return 1
    fi
    echo $(( $(du -sk "$tmp" | cut -f1) / 1024 ))
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest"; done
    rm -rf "$tmp"
}
