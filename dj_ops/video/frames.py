"""Steps every decoder shares once it has RGB frames: resize to the ``smart_resize`` size
(with FFmpeg's scaler, as the PyAV path), repeat the last frame up to the temporal factor,
and pack the result as a :class:`DecodedVideo`."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from dj_ops.video.decode import RESIZE_INTERPOLATION, DecodedVideo, pad_to_factor
from dj_ops.video.sampling import frame_pixel_budget, smart_resize
from dj_ops.video.settings import FrameSettings

# Timestamps further than this many frame durations from index / fps: variable frame rate.
VFR_SLACK_FRAMES = 0.5


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


def assemble(path: str, wanted: list[int], images: dict[int, np.ndarray],
             seconds: dict[int, float], settings: FrameSettings, **metadata) -> DecodedVideo:
    """A :class:`DecodedVideo` of the ``wanted`` frames (repeats allowed), given each distinct
    frame's full-size ``images[index]`` and ``seconds[index]``.

    :param metadata: the remaining :class:`DecodedVideo` fields (``source_fps``,
        ``total_frames``, ``duration``, ``width``, ``height``, ``method``, ``decoder``).
    """
    max_pixels = frame_pixel_budget(settings, len(wanted))
    resized = {index: resize_rgb(image, settings, max_pixels) for index, image in images.items()}
    indices = pad_to_factor(list(wanted), settings.temporal_factor)
    return DecodedVideo(
        path=path,
        frames=np.stack([resized[index] for index in indices]),
        frame_indices=indices,
        timestamps=[seconds[index] for index in indices],
        **metadata,
    )
