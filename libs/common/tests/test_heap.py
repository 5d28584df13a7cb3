"""Freed heap memory goes back to the OS after a large job (glibc's malloc_trim)."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from ctrops_common.heap import release_free_memory


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_memory_freed_in_small_pieces_is_returned():
    release_free_memory()  # what earlier work in this process freed is not counted
    before = rss_mb()
    # ~1 GB in 32 KB pieces (far below any mmap threshold: they live in the heap), every other one freed:
    # holes glibc keeps for reuse, as a batch job's freed chunks are.
    pieces = [np.ones(4_000) for _ in range(32_000)][::2]
    kept = rss_mb()
    del pieces
    held = rss_mb()
    assert held > before + 200, (before, kept, held)  # glibc holds the freed holes
    assert release_free_memory() is True
    assert rss_mb() < before + 100, (before, kept, held, rss_mb())
