"""How many threads a decoder may use inside one video, set per process.

A decoder left to itself (FFmpeg's ``AUTO`` threading) decodes one video on every core: the
lowest latency for a video decoded in the caller's thread, but 25 to 40% more CPU time per video
(frame threads wait on each other). In the decoding pool the parallelism comes from decoding
several videos at once, beside the model's own threads, so its workers decode each video in one
thread (``DECODE_THREADS_ENV=1``, set by :class:`dj_ops.video.worker.WorkerProcess`).
"""

from __future__ import annotations

import os

DECODE_THREADS_ENV = "DJ_OPS_DECODE_THREADS"


def decode_threads() -> int:
    """Threads per video for this process's decoders; 0: the decoder's own choice.

    :raises ValueError: when the environment variable is set to something else than a count.
    """
    value = os.environ.get(DECODE_THREADS_ENV, "").strip() or "0"
    if not value.isdigit():
        raise ValueError(f"{DECODE_THREADS_ENV}={value!r} must be a thread count (0: automatic)")
    return int(value)
