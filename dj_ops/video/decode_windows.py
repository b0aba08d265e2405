"""A long video's windows from one decoding pass, handed over one by one as they are decoded.

The decoding worker runs :func:`stream_windowed` (the pool's decoder when the op has windows):
it plans the windows from the container's duration (:func:`~dj_ops.video.windows.plan_windows`),
lets the op's sampler pick each window's frames over that window's own span, and decodes the
video once, forward (PyAV, :func:`~dj_ops.video.decode.stream_parts`; the file is read once
where :mod:`dj_ops.video.decode` says it is, B-frames skipped or not): each window is handed
over as soon as its last frame is decoded, as its own :class:`WindowVideo` (its frames in its
own shared-memory file, its true frame indices, so its timestamps and Qwen3-VL's prompt are the
window's times in the whole video). A video no longer than one window is decoded as usual.
With a frame budget (``max_visual_tokens``, the engine's context) each window is fitted to it
on its own (:func:`~dj_ops.video.budget.budgeted_windows`: fewer frames, then fewer pixels); a
window that cannot fit is that window's ``context_length`` error.

Memory: the worker keeps one window's frames and those that later windows share with it (an
overlap), and waits for the op to take a window before decoding the next
(:mod:`dj_ops.video.streams`), so neither process holds a whole long video's frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dj_ops.video.budget import budgeted_windows
from dj_ops.video.decode import DecodedVideo, stream_parts
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import Part
from dj_ops.video.windows import PartsPlan, Window, plan_windows

NO_FRAMES = np.zeros((0, 0, 0, 3), dtype=np.uint8)


@dataclass(frozen=True)
class WindowedFrames:
    """What the decoding worker is sent per video when the op has windows: the op's frame
    settings (applied to each window) and the windows' length and overlap in seconds."""

    frames: FrameSettings
    seconds: float
    overlap: float = 0.0

    def windows(self, duration: float) -> list[Window]:
        return plan_windows(duration, self.seconds, self.overlap)

    def plan(self, total_frames: int, fps: float, timestamps, duration: float,
             size) -> PartsPlan | None:
        """Each window's frames, fitted to the frame budget of ``frames`` when it has one
        (``size()``: the source's ``(height, width)``); None for a video no longer than one
        window."""
        windows = self.windows(duration)
        if len(windows) < 2:
            return None
        return budgeted_windows(total_frames, fps, timestamps, size, self.frames, windows)


@dataclass
class WindowVideo(DecodedVideo, Part):
    """One window of a long video, streamed (:func:`stream_windowed`): its own frames, or its
    ``error`` (then no frames), its :class:`Window` and how many windows the video has."""

    window: Window | None = None
    window_count: int = 0
    error: VideoError | None = None

    @property
    def more(self) -> bool:
        return self.window.index < self.window_count - 1


def stream_windowed(path: str, job: WindowedFrames, *,
                    timeout_s: float | None = None) -> Iterator[DecodedVideo]:
    """The windows of ``path`` one by one from one decoding pass, each as soon as its last frame
    is decoded (:class:`WindowVideo`); a video no longer than one window once, whole. The
    decoding worker holds one window's frames and those the next windows share with it, and
    waits for the op to take a window before decoding the next (:mod:`dj_ops.video.streams`):
    memory stays bounded by a window, whatever the video's length. ``timeout_s`` is per window.
    """
    windows: list[Window] = []

    def plan(total_frames, fps, timestamps, duration, size):
        windows[:] = job.windows(duration)
        return job.plan(total_frames, fps, timestamps, duration, size)

    for item in stream_parts(path, job.frames, plan, timeout_s=timeout_s):
        if isinstance(item, DecodedVideo):
            yield item
            continue
        at, outcome = item
        where = {"window": windows[at], "window_count": len(windows)}
        if isinstance(outcome, VideoError):
            # its duration says the video's windows (job.windows), even when none was decoded
            yield WindowVideo(path, NO_FRAMES, [], [], 0.0, 0, windows[-1].end, 0, 0,
                              error=outcome, **where)
        else:
            yield WindowVideo(**vars(outcome), **where)
