"""Steps the batch decoders (torchcodec, decord) share: fetch frames a few at a time, resize
each to its ``smart_resize`` size (with FFmpeg's scaler, as the PyAV path), repeat the last
frame up to the temporal factor, and pack the result as a :class:`DecodedVideo`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import av
import numpy as np

from dj_ops.video import shared_memory
from dj_ops.video.decode import RESIZE_INTERPOLATION, DecodedVideo, pad_to_factor
from dj_ops.video.sampling import frame_pixel_budget, smart_resize
from dj_ops.video.settings import FrameSettings

# Timestamps further than this many frame durations from index / fps: variable frame rate.
VFR_SLACK_FRAMES = 0.5
# Frames a batch decoder (torchcodec, decord) returns at full size per call: 4 4K frames are
# 100 MB, where all 32 frames of a video at once would be 800 MB.
FETCH_CHUNK = 4

Fetch = Callable[[list[int]], tuple[np.ndarray, Sequence[float]]]


def timestamps_if_variable(times: Sequence[float], fps: float) -> list[float] | None:
    """``times`` (seconds from the first frame) when they stray from ``index / fps``, else
    None: samplers then work on indices, exactly as for a constant-rate video."""
    start = times[0] if len(times) else 0.0
    slack = VFR_SLACK_FRAMES / fps
    if all(abs(t - start - i / fps) <= slack for i, t in enumerate(times)):
        return None
    return [t - start for t in times]


def resize_rgb(image: np.ndarray, settings: FrameSettings, max_pixels: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 ``image`` at its ``smart_resize`` size."""
    height, width = image.shape[:2]
    out_h, out_w = smart_resize(height, width, settings.size_factor, settings.min_pixels,
                                max_pixels)
    if (out_h, out_w) == (height, width):
        return np.ascontiguousarray(image)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=out_w, height=out_h, format="rgb24",
                          interpolation=RESIZE_INTERPOLATION).to_ndarray()


def fetch_resized(fetch: Fetch, indices: list[int], settings: FrameSettings, n_wanted: int
                  ) -> tuple[dict[int, np.ndarray], dict[int, float], tuple[int, int]]:
    """Decode the distinct ``indices`` with ``fetch`` a few at a time, resizing each frame at
    once, so that at most :data:`FETCH_CHUNK` full-size frames (4K ones included) are held.

    :param fetch: ``indices -> ((N, H, W, 3) uint8 frames, N times in seconds)``.
    :param n_wanted: how many frames the video will have (for the ``total_pixels`` budget).
    :returns: the resized frame and the time of each index, and the source ``(height, width)``.
    """
    max_pixels = frame_pixel_budget(settings, n_wanted)
    images, seconds, size = {}, {}, (0, 0)
    for start in range(0, len(indices), FETCH_CHUNK):
        chunk = indices[start : start + FETCH_CHUNK]
        frames, times = fetch(chunk)
        size = frames.shape[1:3]
        for index, frame, time in zip(chunk, frames, times):
            images[index] = resize_rgb(frame, settings, max_pixels)
            seconds[index] = float(time)
    return images, seconds, size


def assemble(path: str, wanted: list[int], images: dict[int, np.ndarray],
             seconds: dict[int, float], settings: FrameSettings, **metadata) -> DecodedVideo:
    """A :class:`DecodedVideo` of the ``wanted`` frames (repeats allowed), given each distinct
    frame's resized ``images[index]`` and ``seconds[index]``.

    :param metadata: the remaining :class:`DecodedVideo` fields (``source_fps``,
        ``total_frames``, ``duration``, ``width``, ``height``, ``method``, ``decoder``).
    """
    indices = pad_to_factor(list(wanted), settings.temporal_factor)
    return DecodedVideo(
        path=path,
        frames=shared_memory.stack([images[index] for index in indices]),
        frame_indices=indices,
        timestamps=[seconds[index] for index in indices],
        **metadata,
    )
