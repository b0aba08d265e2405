"""Out-of-memory handling shared by in-process backends: recognise the error, free memory.

A micro-batch that runs out of memory is split and retried (see
:func:`dj_ops.captioning.batching.run_splitting`); a single request that still does not fit
gets a per-sample error of kind :data:`OUT_OF_MEMORY`.
"""

from __future__ import annotations

import gc

import torch

OUT_OF_MEMORY = "out_of_memory"
# Messages of allocators that report running out as a plain RuntimeError.
OOM_MESSAGES = ("out of memory", "DefaultCPUAllocator: can't allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means an allocation failed (GPU or CPU), so a smaller batch may fit.

    >>> is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:121] "
    ...                               "DefaultCPUAllocator: can't allocate memory"))
    True
    >>> is_out_of_memory(ValueError("out of memory"))
    False
    """
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in OOM_MESSAGES)


def free_memory() -> None:
    """Collect garbage and return cached GPU blocks, so a retry starts from a clean slate."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
