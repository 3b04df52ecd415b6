"""Go programs the Go tests build from source, once per test session and Go release, into a
scratch folder: no binary is committed. Each release of goruntime.py's table is built by its own
Go: the installed one (Debian 12's golang-go, 1.19) for its release, else a toolchain of Debian's
that tests/go-toolchains.sh fetched and unpacked into OOMSCOPE_GO_TOOLCHAINS (default
/var/lib/oomscope/go-toolchains/go1.X, a GOROOT). ``./setup.sh test`` installs and fetches them; by
hand a missing one skips, under OOMSCOPE_STRICT_SKIPS=1 it fails (tests/requires.py)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from importlib import resources

from ..requires import missing, require_tool

TOOLCHAINS_ENV = "OOMSCOPE_GO_TOOLCHAINS"
TOOLCHAINS = "/var/lib/oomscope/go-toolchains"

#: prints the offsets of the runtime's structs as the binary's DWARF gives them (Go's debug/dwarf):
#: "<struct> size=<n>" then "  <field> <offset>" lines
DWARF_DUMP = r"""
package main

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	d, err := f.DWARF()
	if err != nil {
		panic(err)
	}
	want := map[string]bool{}
	for _, n := range os.Args[2:] {
		want[n] = true
	}
	r := d.Reader()
	for len(want) > 0 {
		e, err := r.Next()
		if err != nil {
			panic(err)
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !want[name] {
			r.SkipChildren()
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			panic(err)
		}
		st := t.(*dwarf.StructType)
		fmt.Printf("%s size=%d\n", name, st.ByteSize)
		for _, fl := range st.Field {
			fmt.Printf("  %s %d\n", fl.Name, fl.ByteOffset)
		}
		delete(want, name)
		r.SkipChildren()
	}
}
"""

_SCRATCH = []


def _scratch() -> str:
    if not _SCRATCH:
        d = tempfile.mkdtemp(prefix="oomscope-go-")
        atexit.register(shutil.rmtree, d, True)
        _SCRATCH.append(d)
    return _SCRATCH[0]


def _release(version: str) -> str:
    return ".".join(version.split(".")[:2])


@functools.lru_cache(maxsize=None)
def go(release: str = "") -> str:
    """The go command building ``release`` ("go1.22"; "": the installed Go)."""
    tool = require_tool("go", package="golang-go")
    if not release:
        return tool
    out = subprocess.run([tool, "version"], check=True, timeout=60, capture_output=True, text=True,
                         env=_env(_scratch())).stdout
    if _release(out.split()[2]) == release:
        return tool
    fetched = os.path.join(os.environ.get(TOOLCHAINS_ENV) or TOOLCHAINS, release, "bin", "go")
    if not os.access(fetched, os.X_OK):
        minor = release[2:]
        missing(f"Go {minor} ({fetched})", f"Debian package golang-{minor}-go and -src",
                "tests/go-toolchains.sh fetches and unpacks it; ./setup.sh test runs it")
    return fetched


def _env(scratch: str, tool: str = "") -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "GOCACHE": os.path.join(scratch, "cache"),
           "GOPATH": os.path.join(scratch, "gopath"), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           # never a toolchain download (go.mod's toolchain line, GOTOOLCHAIN=auto): the Go given only
           "GOTOOLCHAIN": "local"}
    if tool:  # a fetched toolchain's GOROOT is where it lies, not the /usr/lib/go-1.X it was built for
        env["GOROOT"] = os.path.dirname(os.path.dirname(tool))
        env["GOCACHE"] = os.path.join(scratch, "cache-" + os.path.basename(env["GOROOT"]))
    return env


@functools.lru_cache(maxsize=None)
def build(name: str, ldflags: str = "", buildmode: str = "", release: str = "") -> str:
    """The path of program ``name`` ("leaklab": the lab's workload; "dwarfdump") built by the Go of
    ``release`` ("": the installed Go) with ``ldflags`` ("-s -w": stripped) and ``buildmode``
    ("pie": position-independent)."""
    tool = go(release)
    scratch = _scratch()
    src = os.path.join(scratch, f"{name}.go")
    if name == "leaklab":
        with resources.files("oomscope").joinpath("workloads_go", "leaklab.go").open("rb") as f:
            text = f.read()
    else:
        text = DWARF_DUMP.encode()
    with open(src, "wb") as f:
        f.write(text)
    out = os.path.join(scratch, f"{name}{'-' + str(abs(hash(ldflags))) if ldflags else ''}{'-' + buildmode if buildmode else ''}"
                                f"{'-' + release if release else ''}")
    cmd = ([tool, "build", "-o", out] + (["-ldflags", ldflags] if ldflags else [])
           + ([f"-buildmode={buildmode}"] if buildmode else []) + [src])
    subprocess.run(cmd, check=True, timeout=300, env=_env(scratch, "" if tool == go() else tool), cwd=scratch,
                   capture_output=True)
    return out


def go_version_of(path: str, release: str = "") -> str:
    """What `go version <binary>` says of a binary ("go1.19.8")."""
    tool = go(release)
    out = subprocess.run([tool, "version", path], check=True, timeout=60, capture_output=True, text=True,
                         env=_env(_scratch(), "" if tool == go() else tool)).stdout
    return out.strip().rsplit(": ", 1)[1]


def nm(path: str, release: str = "") -> dict:
    """Symbol -> address, as `go tool nm` gives them."""
    tool = go(release)
    out = subprocess.run([tool, "tool", "nm", path], check=True, timeout=60, capture_output=True, text=True,
                         env=_env(_scratch(), "" if tool == go() else tool)).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms
