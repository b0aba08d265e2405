"""Windows of a long video, and the frames each takes from one decoding pass (pure).

A video longer than one window is cut into windows of ``window_seconds`` that start
``window_seconds - overlap`` apart; the last one ends with the video and may be shorter. A
window that would add nothing past its predecessor's overlap is not made. Each window's frames
are chosen by the op's own sampler over that window's span (``video_start``/``video_end``), and
the union of all windows' frames is what one decoding pass over the video must keep: frames in
an overlap are decoded once and used by both windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from dj_ops.video.errors import VideoError
from dj_ops.video.sampling import sample_frame_indices
from dj_ops.video.settings import FrameSettings


@dataclass(frozen=True)
class Window:
    """Seconds ``[start, end]`` of a video, the ``index``-th window."""

    index: int
    start: float
    end: float


def plan_windows(duration: float, window_seconds: float, overlap: float = 0.0) -> list[Window]:
    """The windows covering ``[0, duration]``.

    >>> [(w.start, w.end) for w in plan_windows(25.0, 10.0, 2.0)]
    [(0.0, 10.0), (8.0, 18.0), (16.0, 25.0)]
    >>> [(w.start, w.end) for w in plan_windows(10.5, 10.0, 2.0)]  # 0.5 s past the overlap
    [(0.0, 10.0), (8.0, 10.5)]
    >>> [(w.start, w.end) for w in plan_windows(6.0, 10.0)]
    [(0.0, 6.0)]
    """
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
    if not 0 <= overlap < window_seconds:
        raise ValueError(f"window_overlap must be in [0, window_seconds={window_seconds}), "
                         f"got {overlap}")
    if not duration > 0:
        raise ValueError(f"the video's duration must be > 0, got {duration}")
    stride = window_seconds - overlap
    windows: list[Window] = []
    start = 0.0
    while True:
        end = min(start + window_seconds, duration)
        windows.append(Window(len(windows), round(start, 6), round(end, 6)))
        if end >= duration:
            return windows
        start += stride


def window_frame_indices(num_frames_total: int, fps: float, timestamps: Sequence[float] | None,
                         settings: FrameSettings, windows: Sequence[Window]) -> list[list[int]]:
    """Per window, the frame indices the sampler picks within it (``settings``' strategy and
    limits applied to each window as if it were the whole video)."""
    return [sample_frame_indices(num_frames_total, fps, timestamps,
                                 replace(settings, video_start=w.start, video_end=w.end))
            for w in windows]


@dataclass(frozen=True)
class PartsPlan:
    """What one decoding pass over a video split in parts (windows) keeps: per part its frame
    indices or why it cannot be captioned (``context_length``: over the frame budget), the
    ``max_pixels`` every kept frame is resized to (one size for the pass: the smallest that any
    part was fitted to), and per part the record of its fit (:class:`~dj_ops.video.budget.
    Budgeted`'s ``record``; empty without a budget)."""

    parts: list[list[int] | VideoError]
    max_pixels: int
    records: list[dict]


def frames_to_decode(per_window: Sequence[Sequence[int] | VideoError]) -> list[int]:
    """The frames one decoding pass keeps: every window's, each once, in order (a window that
    failed before decoding keeps none).

    >>> frames_to_decode([[0, 4, 8], [8, 12], [12, 16]])
    [0, 4, 8, 12, 16]
    """
    return sorted({index for indices in per_window if not isinstance(indices, VideoError)
                   for index in indices})
