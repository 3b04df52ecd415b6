"""The Debian archive this host's apt already uses, for tests/vm/run-matrix.sh.

The kernel matrix fetches Debian's newest kernel from a suite the host does not follow
(trixie-backports), with apt lists of its own. Which mirror to ask is not written anywhere in
the project: it is the one whose entry in the host's own sources serves the host's own release
(the suite named VERSION_CODENAME in /etc/os-release, or its -updates), read from
/etc/apt/sources.list, /etc/apt/sources.list.d/*.list (one-line) and *.sources (deb822).

    python3 tests/vm/debian_mirror.py      prints "URI KEYRING", or says why not and exits 1

Standard library only: it runs with the host's python3, before any virtualenv exists.
"""

import glob
import os
import re
import sys
from typing import Iterable, List, NamedTuple, Optional

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Source(NamedTuple):
    uri: str
    suites: List[str]
    signed_by: Optional[str]   # a keyring file, when the entry names one


def one_line_entries(text: str) -> List[Source]:
    """`deb [opt=value ...] URI SUITE COMPONENT...` lines; deb-src and comments left out."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
        if not m:
            continue
        opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
        out.append(Source(m.group(2), [m.group(3)], opts.get("signed-by")))
    return out


def deb822_entries(text: str) -> List[Source]:
    """Paragraphs of Types/URIs/Suites/Signed-By; `Enabled: no` and deb-src-only ones left out.
    A Signed-By holding the key itself (an indented block) names no file: None."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for raw in para.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += "\n" + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed = fields.get("signed-by") or None
        if signed and ("\n" in signed or not signed.startswith("/")):
            signed = None
        for uri in fields.get("uris", "").split():
            out.append(Source(uri, fields.get("suites", "").split(), signed))
    return out


def pick_mirror(sources: Iterable[Source], codename: str) -> Optional[Source]:
    """The entry serving the host's release itself (`bookworm`), else its -updates; never the
    security archive (a different tree) nor a third party's suite."""
    sources = list(sources)
    for wanted in (codename, f"{codename}-updates"):
        for s in sources:
            if wanted in s.suites:
                return s
    return None


def host_codename(os_release: str) -> Optional[str]:
    """VERSION_CODENAME of a Debian host; None elsewhere (Ubuntu's archive has no Debian suites)."""
    vals = {k: (quoted or bare) for k, quoted, bare in re.findall(r'^(\w+)=(?:"([^"]*)"|(\S*))', os_release, re.M)}
    if vals.get("ID") != "debian":
        return None
    return vals.get("VERSION_CODENAME") or None


def host_sources(etc: str = "/etc/apt") -> List[Source]:
    out = []
    for path in [os.path.join(etc, "sources.list")] + sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list"))):
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                out += one_line_entries(f.read())
    for path in sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources"))):
        with open(path, errors="replace") as f:
            out += deb822_entries(f.read())
    return out


def main() -> int:
    try:
        with open("/etc/os-release") as f:
            codename = host_codename(f.read())
    except OSError:
        codename = None
    if codename is None:
        print("debian_mirror: this host is not Debian (/etc/os-release): no Debian mirror in its apt sources", file=sys.stderr)
        return 1
    src = pick_mirror(host_sources(), codename)
    if src is None:
        print(f"debian_mirror: no apt source of this host serves {codename} (or {codename}-updates)", file=sys.stderr)
        return 1
    keyring = src.signed_by if src.signed_by and os.path.isfile(src.signed_by) else DEFAULT_KEYRING
    print(src.uri.rstrip("/"), keyring)
    return 0


if __name__ == "__main__":
    sys.exit(main())
