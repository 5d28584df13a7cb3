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
    before = rss_mb()
    pieces = [np.ones(16_000) for _ in range(12_000)]  # ~1.5 GB in 128 KB pieces: below mmap's threshold once grown
    pieces = pieces[::2]  # half freed, the heap fragmented by the rest
    del pieces
    kept = rss_mb()  # glibc keeps ~650 MB of it resident here
    assert release_free_memory() is True
    assert rss_mb() < before + 150 < kept, (before, kept, rss_mb())
