"""Frame arrays in anonymous shared memory, so a decoding worker hands them over uncopied.

A decoding worker process (``shared_frames`` in :mod:`dj_ops.video.decode_process`, set by
its entry point :func:`dj_ops.video.worker.serve`) stacks a video's frames straight into a Linux
``memfd_create`` file; :mod:`dj_ops.video.transport` then sends that file's descriptor instead
of copying the frames into a new one (about 20 ms per 17 MB video on one core). Elsewhere, and
where ``memfd_create`` is missing, frames are stacked into ordinary memory.
"""

from __future__ import annotations

import mmap
import os
import sys
import weakref
from collections.abc import Sequence

import numpy as np

from dj_ops.video import decode_process

AVAILABLE = hasattr(os, "memfd_create")
# Before Python 3.13 a mapping keeps a duplicate of its descriptor until it is freed.
_NO_FD_KEPT = {"trackfd": False} if sys.version_info >= (3, 13) else {}


class _SharedBuffer(mmap.mmap):
    """A mapping of a ``memfd`` file that keeps the file's descriptor open while it lives."""

    fd: int


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array filling a new ``memfd`` file of its exact size."""
    size = int(np.prod(shape)) * dtype.itemsize
    fd = os.memfd_create("dj_ops_frames", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        buffer = _SharedBuffer(fd, size)
    except BaseException:
        os.close(fd)
        raise
    buffer.fd = fd
    weakref.finalize(buffer, os.close, fd)
    return np.ndarray(shape, dtype, buffer=buffer)


def stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``np.stack(arrays)``; in a shared-memory file in a process that hands frames over."""
    if not (AVAILABLE and decode_process.current().shared_frames) or not len(arrays):
        return np.stack(arrays)
    out = empty((len(arrays), *arrays[0].shape), np.result_type(*arrays))
    return np.stack(arrays, out=out)


def copy(array: np.ndarray) -> np.ndarray:
    """``array`` copied into a new shared-memory file."""
    out = empty(array.shape, array.dtype)
    np.copyto(out, array)
    return out


def descriptor(array: np.ndarray) -> int | None:
    """The descriptor of the ``memfd`` file that ``array`` fills exactly, else None."""
    buffer = array.base
    if not isinstance(buffer, _SharedBuffer) or not array.flags.c_contiguous:
        return None
    return buffer.fd if array.nbytes == len(buffer) else None


def attach(fd: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The array filling the shared-memory file ``fd`` (received from another process),
    mapped, not copied; ``fd`` is closed."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        memory = mmap.mmap(fd, size, **_NO_FD_KEPT)
    finally:
        os.close(fd)
    return np.frombuffer(memory, dtype=dtype).reshape(shape)
