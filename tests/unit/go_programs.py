"""Go programs the Go tests build from source with the installed Go (Debian's golang-go), once per
test session, into a scratch folder: no binary is committed. ``./setup.sh test`` installs Go; by
hand a missing one skips (tests/requires.py)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from importlib import resources

from ..requires import require_tool

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


def go() -> str:
    return require_tool("go", package="golang-go")


def _env(scratch: str) -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "GOCACHE": os.path.join(scratch, "cache"),
            "GOPATH": os.path.join(scratch, "gopath"), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}


@functools.lru_cache(maxsize=None)
def build(name: str, ldflags: str = "", buildmode: str = "") -> str:
    """The path of program ``name`` ("leaklab": the lab's workload; "dwarfdump") built with
    ``ldflags`` ("-s -w": stripped) and ``buildmode`` ("pie": position-independent)."""
    tool = go()
    scratch = _scratch()
    src = os.path.join(scratch, f"{name}.go")
    if name == "leaklab":
        with resources.files("oomscope").joinpath("workloads_go", "leaklab.go").open("rb") as f:
            text = f.read()
    else:
        text = DWARF_DUMP.encode()
    with open(src, "wb") as f:
        f.write(text)
    out = os.path.join(scratch, f"{name}{'-' + str(abs(hash(ldflags))) if ldflags else ''}{'-' + buildmode if buildmode else ''}")
    cmd = ([tool, "build", "-o", out] + (["-ldflags", ldflags] if ldflags else [])
           + ([f"-buildmode={buildmode}"] if buildmode else []) + [src])
    subprocess.run(cmd, check=True, timeout=300, env=_env(scratch), cwd=scratch, capture_output=True)
    return out


def go_version_of(path: str) -> str:
    """What `go version <binary>` says of a binary ("go1.19.8")."""
    out = subprocess.run([go(), "version", path], check=True, timeout=60, capture_output=True, text=True,
                         env=_env(_scratch())).stdout
    return out.strip().rsplit(": ", 1)[1]


def nm(path: str) -> dict:
    """Symbol -> address, as `go tool nm` gives them."""
    out = subprocess.run([go(), "tool", "nm", path], check=True, timeout=60, capture_output=True, text=True,
                         env=_env(_scratch())).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms
