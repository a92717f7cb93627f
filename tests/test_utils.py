import os
import stat
import subprocess
import sys

import pytest

from mp3net.utils import atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in p.parent.iterdir()] == ["f.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    from mp3net.utils import atomic_write

    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_uses_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


HEAP_CHILD = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from mp3net.utils import keep_freed_memory
    assert keep_freed_memory()
def heap_mib():
    maps = open("/proc/self/maps").read().splitlines()
    spans = [line.split()[0].split("-") for line in maps if line.endswith("[heap]")]
    return sum(int(hi, 16) - int(lo, 16) for lo, hi in spans) >> 20
for i in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2**20)  # 256 MiB, well over glibc's mmap threshold
    del x
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, heap_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_keep_freed_memory_keeps_freed_blocks_in_the_heap():
    def rounds(mode: str) -> list[tuple[int, int]]:
        cmd = [sys.executable, "-c", HEAP_CHILD, mode]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return [(int(f), int(h)) for f, h in (line.split() for line in out.splitlines())]

    # by default every 256 MiB block is mapped afresh (outside the heap), unmapped on free, and faulted in
    # again 4 KiB at a time on the next allocation
    default = rounds("default")
    assert all(faults > 30_000 and heap < 256 for faults, heap in default)

    # kept: the block comes from the heap and stays mapped there after it is freed, ready for reuse. Whether
    # a reuse then costs no faults depends on the kernel too (its own reclaim, DAMON on these machines, may
    # page a freed heap out between rounds), so the mapping is what is asserted.
    kept = rounds("keep")
    assert all(heap >= 256 for _, heap in kept)


def test_derive_seed_is_the_seedsequence_rule_and_separates_streams():
    import numpy as np

    from mp3net.utils import derive_seed

    # the rule saved runs were seeded with: resuming one must re-derive the same streams
    for parts in [(0,), (7, 0, 0), (7, 1, 0), (7, 0, 1), (123, 2**31 - 1), (5, 3, 10**6, 2)]:
        want = int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)
        assert derive_seed(*parts) == want
        assert 0 <= derive_seed(*parts) < 2**63
    seeds = {derive_seed(7, rank, step) for rank in range(4) for step in range(50)}
    assert len(seeds) == 200  # no two (rank, step) pairs share a stream
    assert derive_seed(np.int64(7), 1) == derive_seed(7, 1)
