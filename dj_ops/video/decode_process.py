"""How decoders behave in this process: threads per video, and where frames are stacked.

A decoder left to itself (FFmpeg's ``AUTO`` threading) decodes one video on every core: the
lowest latency for a video decoded in the caller's thread, but 25 to 40% more CPU time per video
(frame threads wait on each other). In the decoding pool the parallelism comes from decoding
several videos at once, beside the model's own threads, so its workers decode each video in one
thread, and stack the frames straight into shared memory (handed to the op uncopied, see
:mod:`dj_ops.video.transport`). The worker's entry point (:func:`dj_ops.video.worker.serve`) says
so once, with :func:`decoding_as`; every other process keeps :data:`IN_PROCESS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeProcess:
    """How this process's decoders run.

    :param threads: threads per video; 0: the decoder's own choice.
    :param shared_frames: stack frames into shared-memory files (a process that hands them on).
    """

    threads: int = 0
    shared_frames: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be a thread count >= 0 (0: automatic), "
                             f"got {self.threads!r}")


IN_PROCESS = DecodeProcess()
POOL_WORKER = DecodeProcess(threads=1, shared_frames=True)

_current = IN_PROCESS


def current() -> DecodeProcess:
    """How decoders run in this process now."""
    return _current


@contextmanager
def decoding_as(role: DecodeProcess) -> Iterator[None]:
    """Decode as ``role`` within the block (a decoding worker's whole life), then restore."""
    global _current
    before, _current = _current, role
    try:
        yield
    finally:
        _current = before
