"""Torch's intra-op threads while the op generates on CPU, beside its decoding processes.

Torch's default is one thread per core. Beside decoding processes that keep cores busy, that
loses time: torch's threads wait for each other at every operator, so one core taken by a decoder
stalls all of them, while decoding processes share cores without waiting on anything. On 2 cores
(tiny Qwen3-VL, ``caption_num`` 4, 128 tokens) one torch thread beside two decoding processes
captioned 13% faster than two threads (``bench/results``). The op sets its count only while it
generates and restores the caller's after, so other ops of the process keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def generation_threads(cores: int, decode_workers: int, on_gpu: bool,
                       requested: int | None = None) -> int | None:
    """Torch threads for generating: ``requested`` if given; else on CPU beside decoding
    processes half the op process's ``cores`` (at least one); else None (torch's own setting).

    >>> generation_threads(2, 2, on_gpu=False), generation_threads(16, 16, on_gpu=True)
    (1, None)
    """
    if requested is not None:
        return requested
    if on_gpu or decode_workers == 0:
        return None
    return max(1, cores // 2)


@contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (None: unchanged), then restore."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
