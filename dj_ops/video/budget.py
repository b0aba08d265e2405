"""A frame budget that fits the model's context (pure): fewer frames first, then fewer pixels.

Given how many visual tokens a video may take (what is left of the engine's context after the
text, or a ``max_visual_tokens`` setting), :func:`fit_frames` lowers the frame count, down to
``min_frames``, and only then the pixels per frame, down to ``min_pixels``, until the video's
tokens fit; None when even ``min_frames`` frames of ``min_pixels`` do not.

Why frames first: the sampler spreads the remaining frames over the whole span, so the caption
still sees the whole video at a coarser pace (at the default 2 fps, neighbouring frames of a
short clip are near duplicates), while every frame keeps the detail the model reads text, faces
and small objects from; shrinking frames below what the model was trained on costs recognition
on every frame at once. Pixels are cut only when the frame count is at its floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dj_ops.video.sampling import ceil_by_factor, floor_by_factor, smart_resize
from dj_ops.video.settings import FrameSettings

# visual tokens of (frames, height, width) after resizing
TokenCount = Callable[[int, int, int], int]


def qwen_visual_tokens(settings: FrameSettings) -> TokenCount:
    """Qwen-VL's count: one token per ``size_factor`` x ``size_factor`` patch (patch size times
    the 2x2 merge: 28 for Qwen2.5-VL, 32 for Qwen3-VL) per ``temporal_factor`` frames."""
    def count(frames: int, height: int, width: int) -> int:
        groups = -(-frames // settings.temporal_factor)
        return groups * (height // settings.size_factor) * (width // settings.size_factor)
    return count


@dataclass(frozen=True)
class Fit:
    """What a video is sampled at to fit: frame count, frame size, its tokens, what was cut
    (``none``, ``frames`` or ``pixels``: recorded in the provenance)."""

    frames: int
    height: int
    width: int
    tokens: int
    reduced: str


def fit_frames(frames: int, height: int, width: int, settings: FrameSettings, max_tokens: int,
               tokens: TokenCount) -> Fit | None:
    """The largest sampling of ``frames`` frames of a ``height`` x ``width`` video (resized as
    ``settings`` says) whose visual tokens are at most ``max_tokens``; None when none is.

    :param frames: the frames the sampler would take without a budget.
    """
    factor, step = settings.size_factor, settings.temporal_factor
    size = smart_resize(height, width, factor, settings.min_pixels, settings.max_pixels)
    if tokens(frames, *size) <= max_tokens:
        return Fit(frames, *size, tokens(frames, *size), "none")
    floor = min(frames, ceil_by_factor(settings.min_frames, step))
    per_group = tokens(step, *size)
    fitting = floor_by_factor(max_tokens // max(per_group, 1) * step, step)
    if fitting >= floor:
        return Fit(fitting, *size, tokens(fitting, *size), "frames")
    pixels = size[0] * size[1]
    while pixels > settings.min_pixels:  # each step a factor x factor patch row smaller
        pixels = max(settings.min_pixels, pixels - factor * factor * max(1, pixels // 20 //
                                                                          (factor * factor)))
        smaller = smart_resize(height, width, factor, settings.min_pixels, pixels)
        if tokens(floor, *smaller) <= max_tokens:
            return Fit(floor, *smaller, tokens(floor, *smaller), "pixels")
    return None
