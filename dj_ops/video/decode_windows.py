"""All windows of a long video from one decoding pass, then split into one video per window.

The decoding worker runs :func:`decode_windowed` (the pool's decoder when the op has windows):
it plans the windows from the container's duration (:func:`~dj_ops.video.windows.plan_windows`),
lets the op's sampler pick each window's frames over that window's own span, and decodes their
union once (PyAV, :func:`~dj_ops.video.decode.decode_video` with a frame plan). With a frame
budget (``max_visual_tokens``, the engine's context) each window is fitted to it on its own
(:func:`~dj_ops.video.budget.budgeted_windows`: fewer frames, then fewer pixels); a window that
cannot fit is that window's ``context_length`` error. A video no longer
than one window is decoded as usual (``parts`` None). The op's process then cuts the union into
one :class:`DecodedVideo` per window (:func:`split_windows`): each keeps its true frame indices,
so its timestamps (and Qwen3-VL's prompt) are the window's times in the whole video.

Memory: one pass holds the union of the windows' frames, at the resized size (frames shared by
overlapping windows once), never the video's other frames; splitting copies one window's frames
per request, so a video costs at most about twice its windows' frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from dj_ops.video.budget import budgeted_windows
from dj_ops.video.decode import DecodedVideo, decode_video
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.windows import PartsPlan, Window, plan_windows


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


def decode_windowed(path: str, job: WindowedFrames, *,
                    timeout_s: float | None = None) -> DecodedVideo:
    """Decode every window of ``path`` in one pass (see the module's docstring)."""
    return decode_video(path, job.frames, timeout_s=timeout_s, plan=partial(_plan, job))


def _plan(job: WindowedFrames, *args):
    return job.plan(*args)


def split_windows(video: DecodedVideo,
                  job: WindowedFrames) -> list[tuple[Window, DecodedVideo | VideoError]]:
    """One video per window of ``video`` decoded by :func:`decode_windowed` (its own frames,
    indices and timestamps), or the window's error."""
    if video.parts is None:
        raise ValueError("the video was decoded as one part; it has no windows")
    position = {index: at for at, index in enumerate(video.frame_indices)}
    windows = job.windows(video.duration)
    if len(windows) != len(video.parts):
        raise ValueError(f"{len(video.parts)} decoded parts for {len(windows)} windows")
    budgets = video.part_budgets or [{}] * len(windows)
    out: list[tuple[Window, DecodedVideo | VideoError]] = []
    for window, part, budget in zip(windows, video.parts, budgets, strict=True):
        if isinstance(part, VideoError):
            out.append((window, part))
            continue
        at = [position[index] for index in part]
        out.append((window, replace(video, frames=video.frames[at], frame_indices=list(part),
                                    timestamps=[video.timestamps[i] for i in at], parts=None,
                                    frame_budget=budget, part_budgets=None)))
    return out
