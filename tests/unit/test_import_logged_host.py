"""importer/kills.py logged_host finds the lines it reads by a search in one text of the report's
lines; _logged_host_each tries each line in turn, as it did before (issue 29, eighth pass). The
two give the same facts: on every report of the log fixtures, on reports changed at random, and on
lines made to sit on the edges of what is read (a fact's first line not matching, a sign in the
middle of a line, lines holding a newline or a carriage return, several Node lines)."""

import random

import pytest

from oomscope.importer.kills import _logged_host_each, logged_host
from oomscope.kernel.oom_report import OomReport

from .test_import_regions import _logs, _mutants, _read_by_regions


def _reports(text: str, tmp_path, name: str):
    return [i.report for i in _read_by_regions(text, tmp_path, name)]


@pytest.mark.parametrize("name", sorted(_logs()))
def test_every_fixture_report_gives_the_same_host(tmp_path, name):
    reps = _reports(_logs()[name], tmp_path, "log")
    assert reps
    for rep in reps:
        assert logged_host(rep) == _logged_host_each(rep)


def test_reports_changed_at_random_give_the_same_host(tmp_path):
    n = 0
    for seed in range(4):
        for i, text in enumerate(_mutants(seed)):
            for rep in _reports(text, tmp_path, f"m{seed}-{i}"):
                assert logged_host(rep) == _logged_host_each(rep)
                n += 1
    assert n > 300


_EDGES = [
    "CPU: 1 PID: 7 Comm: x",  # a CPU line without a release, then one with
    "CPU: 0 UID: 0 PID: 27307 Comm: py thon Not tainted 6.18.44-fc #1",
    "CPU: 3 PID: 9 Comm: y Tainted: G        W  5.10.0-arm64 #1",
    "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)  ",
    "Hardware name: second",
    "Node 0 active_anon:1000kB inactive_anon:24kB active_file:0kB",
    "Node 1 active_anon:7kB inactive_anon:1kB",
    "Node x active_anon:7kB inactive_anon:1kB",
    "Node 2 active_anon:5kB",
    "RIP: 0033:0x7f045bb940ba",
    "x RIP: 0033:0x7f045bb940ba",
    " asm_exc_page_fault+0x22/0x30",
    " page_faulty",
    "pc : do_thing+0x10/0x20",
    "lr : 0xffff",
    " el0_svc+0x1/0x2",
    "NIP [c000] x",
    "LR [c000] y",
    "Krnl PSW 0704",
    "EIP: 0060:[<c1>]",
    "EAX: 00000000 EBX",
    "R12: 0000000000000000 R13: 00007f045b8eb850",
    "R10: 00000000000000zz",
    "Call Trace:",
    "",
    "CPU: 2 PID: 1 Comm: a\nCPU: 2 PID: 1 Comm: b Not tainted 4.19.0 #1",
    "Node 0 active_anon:4kB\nNode 0 active_anon:4kB inactive_anon:4kB",
    "tail\r",
    "Hardware name: with a newline\nafter it",
    "RIP\n RIP: 0010:x",
]


def test_lines_on_the_edges_give_the_same_host():
    rng = random.Random(29)
    for _ in range(3000):
        lines = [rng.choice(_EDGES) for _ in range(rng.randrange(0, 9))]
        rep = OomReport(lines=lines)
        if rng.random() < 0.5:
            rep.mem_info = {"active_anon": rng.choice((0, 256, 257)), "inactive_anon": rng.choice((0, 6, 64)), "ram_pages": 10}
        assert logged_host(rep) == _logged_host_each(rep), lines


def test_the_search_is_taken_unless_a_line_holds_a_newline(monkeypatch):
    from oomscope.importer import kills

    each = []
    real = kills._logged_host_each
    monkeypatch.setattr(kills, "_logged_host_each", lambda rep: each.append(1) or real(rep))
    rep = OomReport(lines=["CPU: 0 PID: 1 Comm: a Not tainted 6.1.0-amd64 #1", "RIP: 0033:0x1"])
    got = kills.logged_host(rep)
    assert (got.kernel_release, got.arch, each) == ("6.1.0-amd64", "x86_64", [])
    got = kills.logged_host(OomReport(lines=["CPU: 0 PID: 1 Comm: a\nb Not tainted 6.1.0 #1"]))
    assert each == [1]
