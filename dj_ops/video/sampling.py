"""Pure frame-sampling and resizing math for video captioning (no I/O).

A sampler picks which frames of a video to decode. Every sampler has the signature
``(num_frames_total, fps, timestamps, settings) -> list[int]`` and returns sorted frame
indices inside the ``video_start``/``video_end`` window; samplers are chosen by name from
:data:`SAMPLERS`. ``fps`` and ``uniform`` follow qwen-vl-utils (``smart_nframes`` /
``smart_resize``, unique indices, the defaults Qwen-VL models use); ``chat`` and ``base`` are
the CogVLM2-Llama3-Caption model card's (24 frames at most, repeats possible).
The choice between seeking and decoding through (:func:`choose_decode_method`) lives here
too, being pure arithmetic on frame indices.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

# Type only: this module imports nothing of dj_ops when it runs (the CogVLM2 server links it
# into its own environment, servers/cogvlm2).
if TYPE_CHECKING:
    from dj_ops.video.settings import FrameSettings

MAX_ASPECT_RATIO = 200
# Tolerance when comparing a window bound (seconds) with frame times, so that
# e.g. 0.1 s * 30 fps = 3.0000000000000004 still selects frame 3.
TIME_EPSILON = 1e-6
# Seek to a wanted frame lying more than this many keyframe intervals past the last one.
SEEK_GAP_RATIO = 0.5
# The two strategies of the CogVLM2-Llama3-Caption model card's ``load_video`` (its adapter
# reads them from here).
COGVLM2_NUM_FRAMES = 24
COGVLM2_BASE_SECONDS = 60

Sampler = Callable[[int, float, "Sequence[float] | None", "FrameSettings"], list[int]]


def round_by_factor(value: float, factor: int) -> int:
    """Closest multiple of ``factor`` to ``value`` (ties to even, like ``round``)."""
    return round(value / factor) * factor


def ceil_by_factor(value: float, factor: int) -> int:
    """Smallest multiple of ``factor`` that is >= ``value``."""
    return math.ceil(value / factor) * factor


def floor_by_factor(value: float, factor: int) -> int:
    """Largest multiple of ``factor`` that is <= ``value``."""
    return math.floor(value / factor) * factor


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Size ``(h, w)`` close to ``(height, width)``: same aspect ratio, both sides multiples
    of ``factor``, and ``h * w`` within ``[min_pixels, max_pixels]``.

    Same arithmetic as qwen-vl-utils and transformers' Qwen2-VL processor, so frames
    resized here are left at this size by those processors given the same bounds.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio must be <= {MAX_ASPECT_RATIO}, got {height}x{width}")
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, floor_by_factor(height / beta, factor))
        w_bar = max(factor, floor_by_factor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def frame_pixel_budget(settings: FrameSettings, n_frames: int) -> int:
    """Per-frame ``max_pixels`` once the per-video ``total_pixels`` budget is applied.

    Lowered so that ``n_frames * h * w <= total_pixels``, but never below ``min_pixels``
    (a budget too small for ``n_frames`` frames of ``min_pixels`` is then exceeded).
    """
    if settings.total_pixels is None or n_frames < 1:
        return settings.max_pixels
    share = settings.total_pixels // n_frames
    return max(settings.min_pixels, min(settings.max_pixels, share))


def _frame_times(num_frames_total: int, fps: float, timestamps: Sequence[float] | None):
    """Time in seconds of every frame: ``timestamps`` if given, else ``index / fps``."""
    if num_frames_total < 1:
        raise ValueError(f"num_frames_total must be >= 1, got {num_frames_total}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if timestamps is None:
        return [index / fps for index in range(num_frames_total)]
    if len(timestamps) != num_frames_total:
        raise ValueError(f"got {len(timestamps)} timestamps for {num_frames_total} frames")
    if any(later < earlier for earlier, later in pairwise(timestamps)):
        raise ValueError("timestamps must be non-decreasing")
    return list(timestamps)


def _window(times: list[float], settings: FrameSettings) -> tuple[int, int]:
    """First and last frame index whose time lies in ``[video_start, video_end]``."""
    first, last = 0, len(times) - 1
    if settings.video_start is not None:
        first = bisect_left(times, settings.video_start - TIME_EPSILON)
    if settings.video_end is not None:
        last = bisect_right(times, settings.video_end + TIME_EPSILON) - 1
    if first > last:
        raise ValueError(
            f"window [{settings.video_start}, {settings.video_end}] s holds no frame; "
            f"the video has {len(times)} frames from {times[0]:.3f} s to {times[-1]:.3f} s"
        )
    return first, last


def _fit_to_available(n: int, available: int, factor: int) -> int:
    """``n`` frames, or as many as available floored to ``factor`` (at least 1)."""
    if n <= available:
        return n
    return max(1, floor_by_factor(available, factor))


def _strictly_increasing(indices: list[int], last: int) -> list[int]:
    """Make sorted indices unique by nudging duplicates forward, staying <= ``last``."""
    count = len(indices)
    result: list[int] = []
    for position, index in enumerate(indices):
        lowest = result[-1] + 1 if result else index
        result.append(min(max(index, lowest), last - (count - 1 - position)))
    return result


def _spread(times: list[float], first: int, last: int, n: int, by_time: bool) -> list[int]:
    """``n`` frame indices spread evenly over ``[first, last]``.

    Evenly in index space (``linspace(first, last, n).round()``, as qwen-vl-utils) or,
    when ``by_time`` (variable frame rate), the frames nearest to evenly spaced times.
    """
    if first == last:
        return [first]
    if not by_time:
        picked = np.linspace(first, last, n).round().astype(int).tolist()
        return _strictly_increasing(picked, last)
    picked = []
    for target in np.linspace(times[first], times[last], n).tolist():
        after = min(max(bisect_left(times, target), first + 1), last)
        before = after - 1
        closer = before if target - times[before] <= times[after] - target else after
        picked.append(closer)
    return _strictly_increasing(picked, last)


def sample_fps(
    num_frames_total: int,
    fps: float,
    timestamps: Sequence[float] | None,
    settings: FrameSettings,
) -> list[int]:
    """Qwen-VL sampling: ``settings.fps`` frames per second of the window, clamped to
    ``[min_frames, max_frames]`` and rounded to a multiple of ``temporal_factor``.

    With fewer frames than that, all of them floored to the factor (or ``[i]`` for a
    single frame: the decoder repeats it up to the factor).
    """
    factor = settings.temporal_factor
    times = _frame_times(num_frames_total, fps, timestamps)
    first, last = _window(times, settings)
    duration = times[last] - times[first] + 1.0 / fps
    wanted = round_by_factor(duration * settings.fps, factor)
    low = ceil_by_factor(settings.min_frames, factor)
    high = max(factor, floor_by_factor(settings.max_frames, factor))
    wanted = min(max(wanted, low), high)
    n = _fit_to_available(wanted, last - first + 1, factor)
    return _spread(times, first, last, n, by_time=timestamps is not None)


def sample_uniform(
    num_frames_total: int,
    fps: float,
    timestamps: Sequence[float] | None,
    settings: FrameSettings,
) -> list[int]:
    """Exactly ``settings.num_frames`` frames spread evenly over the window (fewer only
    when the window holds fewer frames: then all of them, floored to the factor)."""
    if settings.num_frames is None:
        raise ValueError("strategy 'uniform' needs num_frames")
    times = _frame_times(num_frames_total, fps, timestamps)
    first, last = _window(times, settings)
    n = _fit_to_available(settings.num_frames, last - first + 1, settings.temporal_factor)
    return _spread(times, first, last, n, by_time=timestamps is not None)


def _nearest_index(times: list[float], target: float) -> int:
    """Index of the time nearest to ``target``; on a tie the earlier one, and of equal times
    the first (what ``times.index(min(times, key=lambda t: abs(t - target)))`` gives)."""
    after = bisect_left(times, target)
    if after == len(times):
        after -= 1
    elif after > 0 and target - times[after - 1] <= times[after] - target:
        after -= 1
    return bisect_left(times, times[after])


def sample_chat(
    num_frames_total: int,
    fps: float,
    timestamps: Sequence[float] | None,
    settings: FrameSettings,
) -> list[int]:
    """CogVLM2-Llama3-Caption's ``chat`` strategy: for each whole second ``s`` from 0 to
    ``round(last frame time) + 1`` (exclusive), the frame whose time is nearest to ``s``;
    at most 24 frames. A frame may be picked twice (variable frame rate), as in the card.

    Times count from ``video_start`` when set; frames outside the window are never picked.
    """
    times = _frame_times(num_frames_total, fps, timestamps)
    first, last = _window(times, settings)
    origin = settings.video_start or 0.0
    window = [t - origin for t in times[first : last + 1]]
    seconds = min(round(window[-1]) + 1, COGVLM2_NUM_FRAMES)
    return [first + _nearest_index(window, second) for second in range(seconds)]


def sample_base(
    num_frames_total: int,
    fps: float,
    timestamps: Sequence[float] | None,
    settings: FrameSettings,
) -> list[int]:
    """CogVLM2-Llama3-Caption's ``base`` strategy: 24 frame indices spread over the first 60
    seconds (``int(60 * fps)`` frames) of the window, ``linspace(..., dtype=int)``; shorter
    videos get repeated frames, as in the card."""
    times = _frame_times(num_frames_total, fps, timestamps)
    first, last = _window(times, settings)
    end = min(last + 1, first + int(COGVLM2_BASE_SECONDS * fps))
    return np.linspace(first, end - 1, COGVLM2_NUM_FRAMES, dtype=int).tolist()


def keyframe_interval(keyframe_seconds: Sequence[float], fps: float, total_frames: int) -> int:
    """Longest run of frames from a keyframe to the next (or to the end); the whole video
    when fewer than two keyframes are known (so that seeking is never chosen)."""
    if len(keyframe_seconds) < 2:
        return total_frames
    starts = [round((t - keyframe_seconds[0]) * fps) for t in keyframe_seconds]
    return max(later - earlier for earlier, later in pairwise([*starts, total_frames]))


def seek_threshold(interval: int) -> int:
    """How far past the decoder's position a wanted frame must lie to be worth a seek: a
    seek decodes about half a keyframe interval to reach its frame, decoding on the gap."""
    return int(interval * SEEK_GAP_RATIO)


def choose_decode_method(wanted: Sequence[int], interval: int) -> str:
    """``seek`` when some wanted frame lies more than :func:`seek_threshold` past the
    previous one (or past the start), else ``sequential``."""
    gaps = (later - earlier for earlier, later in pairwise([0, *wanted]))
    return "seek" if max(gaps, default=0) > seek_threshold(interval) else "sequential"


# One sampler per name of settings.STRATEGIES (tests/test_video_sampling.py checks both agree).
SAMPLERS: dict[str, Sampler] = {
    "fps": sample_fps,
    "uniform": sample_uniform,
    "chat": sample_chat,
    "base": sample_base,
}


def sample_frame_indices(
    num_frames_total: int,
    fps: float,
    timestamps: Sequence[float] | None,
    settings: FrameSettings,
) -> list[int]:
    """Run the sampler named by ``settings.strategy``."""
    return SAMPLERS[settings.strategy](num_frames_total, fps, timestamps, settings)
