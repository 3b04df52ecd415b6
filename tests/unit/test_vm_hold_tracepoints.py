"""tests/vm/hold-tracepoints.sh must hold every tracepoint oomscope attaches to and detaches from
while the VM's tests run: one left out is patched at each attach and detach, which under the VMs'
software emulation panicked 6.12 (docs/kernel-facts.md, "The test VMs"). Read from the code, so a
tracepoint added to bpf/ or oomscope/probes.py without the script fails here."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: attached once at start-up for a few seconds (probes.py ``_learn``: the memcg slots learnt on kernels
#: without data symbols, 6.13+), never toggled while tests run; held on, each would run its trace
#: event for every memcg statistic the emulated guest updates, on the charge path of every test
LEARNT_ONCE = {"mod_memcg_state", "mod_memcg_lruvec_state"}


def held() -> set:
    text = (ROOT / "tests/vm/hold-tracepoints.sh").read_text()
    loop = re.search(r"for ev in (.*?); do", text, re.S)
    assert loop, "hold-tracepoints.sh: the loop over events is not where this test reads it"
    return set(loop.group(1).replace("\\\n", " ").split())


def attached() -> dict:
    """{event name: category or None (a raw tracepoint names no category)}"""
    found: dict = {}
    for c in (ROOT / "bpf").glob("*.c"):
        for cat, name in re.findall(r"TRACEPOINT_PROBE\((\w+),\s*(\w+)\)", c.read_text()):
            found[name] = cat
    probes = (ROOT / "oomscope/probes.py").read_text()
    for cat, name in re.findall(r'attach_tracepoint\(tp=b"(\w+):(\w+)"', probes):
        found[name] = cat
    for name in re.findall(r'attach_raw_tracepoint\(tp=b"(\w+)"', probes):
        found.setdefault(name, None)
    for names in re.findall(r"for tp in \(([^)]*)\):\s*\n\s*self\.bpf\.attach_raw_tracepoint\(tp=tp\.encode\(\)", probes):
        for name in re.findall(r'"(\w+)"', names):
            found.setdefault(name, None)
    return found


def test_every_tracepoint_oomscope_attaches_is_held_in_the_vms():
    hold = held()
    by_name = {ev.split("/")[1]: ev.split("/")[0] for ev in hold}
    code = attached()
    # what the code reads: at least the fault hook, the reclaim pair, the kill's and the learnt ones
    assert {"page_fault_user", "mm_vmscan_memcg_reclaim_begin", "mark_victim", "signal_generate"} <= code.keys()
    assert LEARNT_ONCE <= code.keys(), "a learnt-once tracepoint is no longer attached: drop it from LEARNT_ONCE"
    missing = sorted(n for n in code if n not in by_name and n not in LEARNT_ONCE)
    assert not missing, f"attached by oomscope, not held in tests/vm/hold-tracepoints.sh: {missing}"
    wrong = sorted(n for n, cat in code.items() if cat and n in by_name and by_name[n] != cat)
    assert not wrong, f"held under another category: {wrong}"


def test_the_vms_hold_nothing_oomscope_does_not_attach():
    code = attached()
    stale = sorted(ev for ev in held() if ev.split("/")[1] not in code)
    assert not stale, f"held in tests/vm/hold-tracepoints.sh, attached by nothing: {stale}"
