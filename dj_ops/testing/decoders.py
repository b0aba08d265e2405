"""Decoders for tests, to register in ``dj_ops.video.decoders.DECODERS`` from a test: one that
hangs or crashes on chosen files, one whose results count themselves while alive, and one that
reports its process's decoding thread setting.

They are module-level functions so that decoding worker processes can import them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, fields

from dj_ops.video.decode import DecodedVideo, decode_video

HANG_MARK = "hang"  # a file whose name holds this makes misbehaving_decode sleep forever
CRASH_MARK = "crash"  # ... makes its decoding process exit at once


def misbehaving_decode(path: str, settings, *, timeout_s: float | None = None) -> DecodedVideo:
    """PyAV decoding, except that it never returns for a file named ``*hang*`` and kills its
    own process for a file named ``*crash*`` (a decoder stuck in C code, or segfaulting)."""
    name = os.path.basename(path)
    if HANG_MARK in name:
        while True:
            time.sleep(3600)
    if CRASH_MARK in name:
        os._exit(3)
    return decode_video(path, settings, timeout_s=timeout_s)


def settings_reporting_decode(path: str, settings, *, timeout_s: float | None = None):
    """Decodes nothing: fails with the process's decoding thread setting and CPU priority as
    the message (``decode_threads=N nice=M``), to see what a decoding worker process was given."""
    import os

    from dj_ops.video.decode_process import current
    from dj_ops.video.errors import DECODE_ERROR, VideoError

    role = current()
    raise VideoError(DECODE_ERROR, f"decode_threads={role.threads} "
                                   f"shared_frames={role.shared_frames} nice={os.nice(0)}", path)


class AliveCounter:
    """How many :class:`TrackedVideo` exist in this process now, and the most at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alive = self.peak = self.created = 0

    def reset(self) -> None:
        with self._lock:
            self.alive = self.peak = self.created = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.alive += delta
            self.created += max(0, delta)
            self.peak = max(self.peak, self.alive)


TRACKED = AliveCounter()


@dataclass
class TrackedVideo(DecodedVideo):
    """A :class:`DecodedVideo` counted in :data:`TRACKED` from creation (also when unpickled in
    the process that receives it from a decoding worker) until it is garbage."""

    def __post_init__(self) -> None:
        TRACKED.add(1)

    def __del__(self) -> None:
        TRACKED.add(-1)

    def __reduce__(self):
        return (_rebuild, (tuple(getattr(self, f.name) for f in fields(self)),))


def _rebuild(values: tuple) -> TrackedVideo:
    return TrackedVideo(*values)


def tracked_decode(path: str, settings, *, timeout_s: float | None = None) -> TrackedVideo:
    """PyAV decoding, returning a :class:`TrackedVideo`."""
    video = decode_video(path, settings, timeout_s=timeout_s)
    return TrackedVideo(**{f.name: getattr(video, f.name) for f in fields(video)})
