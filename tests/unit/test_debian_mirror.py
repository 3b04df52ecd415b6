"""tests/vm/debian_mirror.py: the kernel matrix asks the Debian mirror the host's own apt sources
use, whichever format they are written in (names below are made up: example hosts)."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "vm" / "debian_mirror.py"
_spec = importlib.util.spec_from_file_location("debian_mirror", _PATH)
dm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dm)

# The shape of this project's machines: security first, the release and -updates in one paragraph,
# a snapshot address in a comment, a third party's repository in another file.
DEB822 = """Types: deb
# http://snapshot.example/archive/debian-security/20250520T000000Z
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
THIRD_PARTY = """Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
"""
ONE_LINE = """# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://one.example/debian/ bookworm main contrib
deb http://one.example/debian-security bookworm-security main
"""


def test_the_entry_serving_the_hosts_release_is_the_mirror_and_its_keyring_comes_with_it():
    sources = dm.deb822_entries(DEB822) + dm.deb822_entries(THIRD_PARTY)
    got = dm.pick_mirror(sources, "bookworm")
    assert got == dm.Source("http://mirror.example/debian", ["bookworm", "bookworm-updates"],
                            "/usr/share/keyrings/debian-archive-keyring.gpg")


def test_one_line_sources_with_options_and_deb_src_left_out():
    sources = dm.one_line_entries(ONE_LINE)
    assert [s.uri for s in sources] == ["http://one.example/debian/", "http://one.example/debian-security"]
    assert dm.pick_mirror(sources, "bookworm").signed_by == "/etc/apt/keyrings/x.gpg"


def test_updates_only_and_disabled_and_inline_keys():
    updates_only = "Types: deb\nURIs: http://u.example/debian\nSuites: bookworm-updates\n"
    assert dm.pick_mirror(dm.deb822_entries(updates_only), "bookworm").uri == "http://u.example/debian"
    disabled = "Enabled: no\n" + updates_only
    assert dm.pick_mirror(dm.deb822_entries(disabled), "bookworm") is None
    inline_key = ("Types: deb deb-src\nURIs: http://k.example/debian\nSuites: trixie\nSigned-By:\n"
                  " -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n xsFNBF...\n")
    got = dm.pick_mirror(dm.deb822_entries(inline_key), "trixie")
    assert got.uri == "http://k.example/debian" and got.signed_by is None


@pytest.mark.parametrize("os_release,want", [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n', "bookworm"),
    ('ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n', None),   # Ubuntu's archive has no Debian suites
    ('ID=debian\n', None),                                            # sid without a codename
])
def test_only_a_debian_host_has_a_debian_mirror(os_release, want):
    assert dm.host_codename(os_release) == want


def test_this_hosts_sources_name_a_mirror():
    try:
        codename = dm.host_codename(pathlib.Path("/etc/os-release").read_text())
    except OSError:
        codename = None
    if codename is None:
        pytest.skip("not a Debian host: the kernel matrix runs on Debian only")
    assert dm.pick_mirror(dm.host_sources(), codename) is not None
