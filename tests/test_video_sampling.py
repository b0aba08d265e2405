"""Frame sampling, resizing and settings validation: pure functions, exact values."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dj_ops.adapters.qwen import QWEN3_VL_PATCH_FACTOR, QWEN25_VL_PATCH_FACTOR
from dj_ops.video import SAMPLERS, FrameSettings, frame_pixel_budget, sample_frame_indices
from dj_ops.video.sampling import (
    TIME_EPSILON,
    choose_decode_method,
    keyframe_interval,
    sample_fps,
    sample_uniform,
    smart_resize,
)
from dj_ops.video.settings import MAX_PIXELS, MIN_PIXELS, STRATEGIES

DEFAULT = FrameSettings()
VFR_TIMES = [0.0, 0.1, 0.15, 0.4, 1.0, 1.05, 1.1, 2.0]


def uniform(num_frames, **fields):
    return FrameSettings(strategy="uniform", num_frames=num_frames, **fields)


# --- fps strategy --------------------------------------------------------------------------


def test_fps_two_per_second_spread_like_linspace_round():
    # 10 s at 10 fps: 20 frames, linspace(0, 99, 20).round()
    assert sample_fps(100, 10.0, None, DEFAULT) == [
        0, 5, 10, 16, 21, 26, 31, 36, 42, 47, 52, 57, 63, 68, 73, 78, 83, 89, 94, 99,
    ]  # fmt: skip


def test_fps_real_clip_shape_rounds_to_temporal_factor():
    # 282 frames at 24 fps = 11.75 s -> 23.5 frames -> rounded to 24 (a multiple of 2)
    indices = sample_fps(282, 24.0, None, DEFAULT)
    assert len(indices) == 24
    assert indices[:6] == [0, 12, 24, 37, 49, 61] and indices[-1] == 281


@pytest.mark.parametrize(
    ("total", "expected_count"),
    [(73, 14), (75, 16), (70, 14)],  # 14.6 -> 14, 15.0 -> 16 (ties to even), 14 -> 14
)
def test_fps_count_rounded_to_factor(total, expected_count):
    assert len(sample_fps(total, 10.0, None, DEFAULT)) == expected_count


def test_fps_clamped_to_max_frames_on_long_video():
    indices = sample_fps(3600, 30.0, None, DEFAULT)  # 2 minutes would be 240 frames
    assert len(indices) == 32
    assert indices[:4] == [0, 116, 232, 348] and indices[-1] == 3599


def test_fps_raised_to_min_frames_on_short_video():
    assert sample_fps(5, 10.0, None, DEFAULT) == [0, 1, 3, 4]  # 0.5 s -> 1 -> min 4


@pytest.mark.parametrize(
    ("total", "expected"), [(1, [0]), (2, [0, 1]), (3, [0, 2]), (4, [0, 1, 2, 3])]
)
def test_fps_never_more_than_available_floored_to_factor(total, expected):
    assert sample_fps(total, 10.0, None, DEFAULT) == expected


def test_fps_odd_bounds_are_moved_onto_the_factor():
    odd = FrameSettings(min_frames=5, max_frames=9)
    assert len(sample_fps(10, 10.0, None, odd)) == 6  # min 5 -> 6
    assert len(sample_fps(1000, 10.0, None, odd)) == 8  # max 9 -> 8


def test_fps_window_selects_frames_between_start_and_end_inclusive():
    window = FrameSettings(video_start=2.0, video_end=5.0)
    assert sample_fps(100, 10.0, None, window) == [20, 26, 32, 38, 44, 50]


def test_window_bounds_tolerate_float_error():
    # 0.1 s * 30 fps = 3.0000000000000004 must still start at frame 3
    window = FrameSettings(video_start=0.1, video_end=0.3)
    assert sample_fps(100, 30.0, None, window) == [3, 5, 7, 9]


def test_window_past_the_end_is_an_error():
    with pytest.raises(ValueError, match="holds no frame"):
        sample_fps(100, 10.0, None, FrameSettings(video_start=20.0))


def test_fps_with_vfr_timestamps_picks_frames_nearest_even_times():
    # targets 0, 0.67, 1.33, 2.0 s -> frames at 0, 0.4, 1.1, 2.0 s
    assert sample_fps(8, 3.5, VFR_TIMES, DEFAULT) == [0, 3, 6, 7]
    assert sample_fps(8, 3.5, VFR_TIMES, FrameSettings(video_start=1.0)) == [4, 5, 6, 7]


def test_vfr_nearest_collisions_are_made_unique():
    clumped = [0.0, 0.01, 0.02, 0.03, 5.0, 10.0]
    assert sample_uniform(6, 1.0, clumped, uniform(4)) == [0, 3, 4, 5]


def test_timestamps_must_match_frames_and_not_decrease():
    with pytest.raises(ValueError, match="3 timestamps for 4 frames"):
        sample_fps(4, 1.0, [0.0, 1.0, 2.0], DEFAULT)
    with pytest.raises(ValueError, match="non-decreasing"):
        sample_fps(3, 1.0, [0.0, 2.0, 1.0], DEFAULT)


@pytest.mark.parametrize(("total", "fps"), [(0, 10.0), (10, 0.0)])
def test_sampler_rejects_empty_video_or_zero_fps(total, fps):
    with pytest.raises(ValueError, match="must be"):
        sample_fps(total, fps, None, DEFAULT)


# --- uniform strategy ----------------------------------------------------------------------


def test_uniform_exact_count():
    assert sample_uniform(100, 10.0, None, uniform(8)) == [0, 14, 28, 42, 57, 71, 85, 99]


def test_uniform_with_fewer_frames_than_asked():
    assert sample_uniform(5, 10.0, None, uniform(8)) == [0, 1, 3, 4]


def test_uniform_with_window():
    window = uniform(4, video_start=1.0, video_end=2.0)
    assert sample_uniform(100, 10.0, None, window) == [10, 13, 17, 20]


def test_registry_dispatch():
    assert set(SAMPLERS) == {"fps", "uniform", "chat", "base"}
    assert sample_frame_indices(100, 10.0, None, uniform(8)) == sample_uniform(
        100, 10.0, None, uniform(8)
    )


# --- resizing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "qwen25", "qwen3"),
    [
        (360, 640, (336, 588), (320, 576)),
        (2160, 3840, (336, 588), (320, 576)),  # 4K down to the 448*448 budget
        (480, 640, (364, 504), (384, 512)),
        (448, 448, (448, 448), (448, 448)),  # already fits: unchanged
        (117, 203, (252, 420), (256, 448)),  # odd and small: scaled up to min_pixels
        (10, 10, (336, 336), (320, 320)),  # tiny
    ],
)
def test_smart_resize_exact(height, width, qwen25, qwen3):
    assert smart_resize(height, width, QWEN25_VL_PATCH_FACTOR, MIN_PIXELS, MAX_PIXELS) == qwen25
    assert smart_resize(height, width, QWEN3_VL_PATCH_FACTOR, MIN_PIXELS, MAX_PIXELS) == qwen3


def test_smart_resize_rejects_extreme_aspect_and_empty():
    with pytest.raises(ValueError, match="aspect ratio must be <= 200"):
        smart_resize(1, 201, 28, MIN_PIXELS, MAX_PIXELS)
    with pytest.raises(ValueError, match=">= 1"):
        smart_resize(0, 10, 28, MIN_PIXELS, MAX_PIXELS)


def test_total_pixels_budget_lowers_per_frame_max():
    assert frame_pixel_budget(DEFAULT, 32) == MAX_PIXELS  # no budget
    budget = FrameSettings(total_pixels=4_000_000)
    assert frame_pixel_budget(budget, 32) == 125_000
    assert frame_pixel_budget(budget, 4) == MAX_PIXELS  # never above max_pixels
    assert frame_pixel_budget(FrameSettings(total_pixels=1_000_000), 32) == MIN_PIXELS
    h, w = smart_resize(360, 640, 28, MIN_PIXELS, frame_pixel_budget(budget, 32))
    assert 32 * h * w <= 4_000_000


# --- decode planning -----------------------------------------------------------------------


def test_keyframe_interval_is_the_longest_run_including_the_tail():
    # keyframes of the shared video3.mp4 (decode times, shifted by -2 frames), 1190 frames
    seconds = [(i - 2) / 24 for i in (0, 103, 353, 603, 853, 1103)]
    assert keyframe_interval(seconds, 24.0, 1190) == 250
    assert keyframe_interval([0.0, 1.0], 10.0, 100) == 90  # tail after the last keyframe
    assert keyframe_interval([0.0], 10.0, 100) == 100  # one keyframe: never seek
    assert keyframe_interval([], 10.0, 100) == 100


def test_choose_decode_method_seeks_across_gaps_over_half_an_interval():
    assert choose_decode_method([0, 10, 20], 30) == "sequential"
    assert choose_decode_method([0, 16, 32], 30) == "seek"
    assert choose_decode_method([0, 29, 58], 250) == "sequential"
    assert choose_decode_method([500, 505], 250) == "seek"  # a far window start
    assert choose_decode_method([0], 1) == "sequential"


# --- settings validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"strategy": "bogus"},
            r"strategy must be one of \['base', 'chat', 'fps', 'uniform'\], got 'bogus'",
        ),
        ({"fps": 0}, "fps must be > 0"),
        ({"min_frames": 10, "max_frames": 4}, r"min_frames \(10\) must be <= max_frames \(4\)"),
        ({"min_frames": 0}, "min_frames must be >= 1"),
        ({"min_frames": 1, "max_frames": 1}, r"max_frames must be >= temporal_factor \(2\)"),
        ({"strategy": "uniform"}, "strategy 'uniform' needs num_frames"),
        ({"num_frames": 5}, r"multiple of temporal_factor \(2\), got 5"),
        ({"video_start": -1.0}, "video_start must be >= 0 seconds"),
        ({"video_end": 0.0}, "video_end must be > 0 seconds"),
        (
            {"video_start": 2.0, "video_end": 1.0},
            r"video_end \(1.0\) must be greater than video_start \(2.0\)",
        ),
        ({"min_pixels": 10, "max_pixels": 5}, r"min_pixels \(10\) must be <= max_pixels"),
        ({"min_pixels": 1, "max_pixels": 100}, r"max_pixels must be >= size_factor\*\*2"),
        ({"total_pixels": 10}, "total_pixels must be >= min_pixels"),
        ({"temporal_factor": 0}, "temporal_factor must be >= 1"),
    ],
)
def test_settings_validation_names_allowed_values(fields, message):
    with pytest.raises(ValueError, match=message):
        FrameSettings(**fields)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.fps = 1.0  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------


@st.composite
def videos(draw):
    """(total frames, fps, timestamps or None) with optionally irregular timestamps."""
    total = draw(st.integers(1, 3000))
    fps = draw(st.floats(1.0, 60.0))
    if not draw(st.booleans()):
        return total, fps, None
    gaps = draw(st.lists(st.floats(0.001, 2.0), min_size=total - 1, max_size=total - 1))
    times = [0.0]
    for gap in gaps:
        times.append(times[-1] + gap)
    return total, fps, times


@settings(max_examples=150, deadline=None)
@given(videos(), st.sampled_from(["fps", "uniform"]), st.integers(1, 16))
def test_indices_sorted_unique_in_range_and_factor_aligned(video, strategy, half_count):
    total, fps, times = video
    config = FrameSettings(strategy=strategy, num_frames=2 * half_count)
    indices = sample_frame_indices(total, fps, times, config)
    assert indices == sorted(set(indices))
    assert 0 <= indices[0] and indices[-1] < total
    assert len(indices) % 2 == 0 or indices == [0] == list(range(total))
    if strategy == "uniform" and total >= 2 * half_count:
        assert len(indices) == 2 * half_count


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.sampled_from([QWEN25_VL_PATCH_FACTOR, QWEN3_VL_PATCH_FACTOR]),
)
def test_smart_resize_multiples_of_factor_within_budget(height, width, factor):
    if max(height, width) / min(height, width) > 200:
        return
    h, w = smart_resize(height, width, factor, MIN_PIXELS, MAX_PIXELS)
    assert h % factor == 0 and w % factor == 0
    assert MIN_PIXELS <= h * w <= MAX_PIXELS


@settings(max_examples=100, deadline=None)
@given(videos(), st.floats(0.0, 30.0), st.floats(0.1, 30.0))
def test_window_indices_lie_inside_the_window(video, start, length):
    total, fps, times = video
    times = times or [index / fps for index in range(total)]
    window = FrameSettings(video_start=start, video_end=start + length)
    low, high = start - TIME_EPSILON, start + length + TIME_EPSILON
    if not any(low <= t <= high for t in times):
        with pytest.raises(ValueError, match="holds no frame"):
            sample_fps(total, fps, times, window)
        return
    for index in sample_fps(total, fps, times, window):
        assert low <= times[index] <= high


def test_every_strategy_has_its_sampler():
    assert sorted(SAMPLERS) == sorted(STRATEGIES)
