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
from dataclasses import dataclass, replace

from dj_ops.video.errors import CONTEXT_LENGTH, VideoError
from dj_ops.video.sampling import (
    ceil_by_factor,
    floor_by_factor,
    frame_pixel_budget,
    sample_frame_indices,
    smart_resize,
)
from dj_ops.video.settings import FrameSettings
from dj_ops.video.windows import PartsPlan, Window

# visual tokens of (frames, height, width) after resizing
TokenCount = Callable[[int, int, int], int]


def vision_tokens(frames: int, height: int, width: int, factor: int, temporal: int) -> int:
    """Qwen-VL's count, the one formula (the adapters' ``qwen_video_tokens`` and the budget use
    it): one token per ``factor`` x ``factor`` patch (patch size times the 2x2 merge: 28 for
    Qwen2.5-VL, 32 for Qwen3-VL) per ``temporal`` frames (rounded up).

    >>> vision_tokens(5, 256, 320, 32, 2)
    240
    """
    return -(-frames // temporal) * (height // factor) * (width // factor)


def qwen_visual_tokens(settings: FrameSettings) -> TokenCount:
    """:func:`vision_tokens` with ``settings``' patch and temporal factors."""
    def count(frames: int, height: int, width: int) -> int:
        return vision_tokens(frames, height, width, settings.size_factor,
                             settings.temporal_factor)
    return count


@dataclass(frozen=True)
class Fit:
    """What a video is sampled at to fit: frame count, frame size, its tokens, what was cut
    (``none``, ``frames`` or ``pixels``: recorded in the provenance), and the ``max_pixels``
    that ``smart_resize`` gives that size with (0: the settings' own)."""

    frames: int
    height: int
    width: int
    tokens: int
    reduced: str
    max_pixels: int = 0


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
            return Fit(floor, *smaller, tokens(floor, *smaller), "pixels", pixels)
    return None


def budget_tokens(settings: FrameSettings) -> TokenCount:
    """What a video costs against ``settings.max_visual_tokens``: Qwen's vision tokens plus
    ``frame_text_tokens`` per temporal group (Qwen3-VL's timestamp text in an engine's prompt)."""
    vision = qwen_visual_tokens(settings)

    def count(frames: int, height: int, width: int) -> int:
        groups = -(-frames // settings.temporal_factor)
        return vision(frames, height, width) + groups * settings.frame_text_tokens
    return count


@dataclass(frozen=True)
class Budgeted:
    """The frames a decoder takes under the budget: the indices, the settings they are resized
    with (``max_pixels`` lowered when pixels were cut) and the record of the fit (provenance:
    ``max_visual_tokens``, ``visual_tokens``, ``reduced``; empty without a budget)."""

    wanted: list[int]
    settings: FrameSettings
    record: dict


def fit_sampling(wanted: list[int], height: int, width: int, settings: FrameSettings,
                 resample: Callable[[FrameSettings], list[int]]) -> Budgeted:
    """``wanted`` (the sampler's frames of a ``height`` x ``width`` video) cut to fit
    ``settings.max_visual_tokens`` before anything is decoded: fewer frames, re-sampled by
    ``resample(settings)`` so they still span the whole window, then smaller frames.

    :raises VideoError: ``context_length`` when even ``min_frames`` frames of ``min_pixels`` do
        not fit.
    """
    budget = settings.max_visual_tokens
    if budget is None or settings.strategy not in ("fps", "uniform"):
        return Budgeted(wanted, settings, {})
    # the per-frame size the decoder would use (total_pixels spread over the frames)
    sized = replace(settings, max_pixels=frame_pixel_budget(settings, len(wanted)))
    count = budget_tokens(settings)
    fit = fit_frames(len(wanted), height, width, sized, budget, count)
    if fit is None:
        smallest = smart_resize(height, width, settings.size_factor, settings.min_pixels,
                                settings.min_pixels)
        floor = min(len(wanted), settings.min_frames)
        raise VideoError(
            CONTEXT_LENGTH,
            f"even {floor} frames of {smallest[1]}x{smallest[0]} take "
            f"{count(floor, *smallest)} tokens, over the budget of {budget} visual tokens: "
            "lower min_frames / min_pixels, shorten the prompt or raise the context "
            "(model_params.max_model_len, max_visual_tokens)")
    record = {"max_visual_tokens": budget, "visual_tokens": fit.tokens, "reduced": fit.reduced}
    if fit.reduced == "none":
        return Budgeted(wanted, settings, record)
    frames = max(fit.frames, settings.temporal_factor)
    fitted = replace(
        settings, max_frames=frames, min_frames=min(settings.min_frames, frames),
        num_frames=frames if settings.num_frames is not None else None,
        max_pixels=fit.max_pixels or sized.max_pixels, total_pixels=None)
    return Budgeted(resample(fitted)[: fit.frames], fitted, record)


def budgeted_indices(total_frames: int, fps: float, timestamps: list[float] | None,
                     size: Callable[[], tuple[int, int]], settings: FrameSettings) -> Budgeted:
    """What every decoder samples: ``sample_frame_indices``, then :func:`fit_sampling` when
    ``settings`` carry a budget (``size()``, the source's ``(height, width)``, is asked only
    then).

    :raises VideoError: ``context_length`` (see :func:`fit_sampling`).
    """
    def sample(chosen: FrameSettings) -> list[int]:
        return sample_frame_indices(total_frames, fps, timestamps, chosen)

    wanted = sample(settings)
    if settings.max_visual_tokens is None:
        return Budgeted(wanted, settings, {})
    return fit_sampling(wanted, *size(), settings, sample)


def budgeted_windows(total_frames: int, fps: float, timestamps: list[float] | None,
                     size: Callable[[], tuple[int, int]], settings: FrameSettings,
                     windows: list[Window]) -> PartsPlan:
    """Each window's frames under the budget, as :func:`budgeted_indices` picks a whole video's,
    over the window's own span (fewer frames, then fewer pixels): a window that cannot fit gets
    its ``context_length`` error, the others are kept. The pass resizes every frame once, to
    the smallest size any window was fitted to (a frame shared by two windows is one array),
    so each window's tokens stay within the budget."""
    parts: list[list[int] | VideoError] = []
    records: list[dict] = []
    pixels: list[int] = []
    for window in windows:
        spanned = replace(settings, video_start=window.start, video_end=window.end)
        try:
            fitted = budgeted_indices(total_frames, fps, timestamps, size, spanned)
        except VideoError as error:
            parts.append(error)
            records.append({})
            continue
        parts.append(fitted.wanted)
        records.append(fitted.record)
        pixels.append(frame_pixel_budget(fitted.settings, len(fitted.wanted)))
    return PartsPlan(parts, min(pixels, default=settings.max_pixels), records)


def frames_record(frames_shape: tuple[int, ...], fit: dict) -> dict:
    """A video's provenance (``frames`` in its record): the ``(T, H, W, C)`` frames it was
    decoded at and its :class:`Budgeted` ``record`` (-1 / empty without a budget)."""
    count, height, width = frames_shape[:3]
    return {"count": int(count), "height": int(height), "width": int(width),
            "visual_tokens": int(fit.get("visual_tokens", -1)),
            "max_visual_tokens": int(fit.get("max_visual_tokens", -1)),
            "reduced": fit.get("reduced", "")}
