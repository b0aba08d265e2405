"""The frame budget: frames cut first, then pixels, never past the minimums."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.video.budget import (
    budget_tokens,
    budgeted_indices,
    fit_frames,
    frames_record,
    qwen_visual_tokens,
)
from dj_ops.video.errors import VideoError
from dj_ops.video.sampling import smart_resize
from dj_ops.video.settings import FrameSettings

SETTINGS = FrameSettings(size_factor=32, min_frames=4, max_frames=64, min_pixels=64 * 32 * 32,
                         max_pixels=448 * 448)
TOKENS = qwen_visual_tokens(SETTINGS)
SIZE = smart_resize(480, 640, 32, SETTINGS.min_pixels, SETTINGS.max_pixels)  # 384 x 512


def test_a_video_that_fits_is_left_alone():
    fit = fit_frames(16, 480, 640, SETTINGS, 10_000, TOKENS)
    assert (fit.frames, fit.reduced) == (16, "none") and fit.tokens == TOKENS(16, *SIZE)


def test_frames_are_cut_before_pixels():
    full = TOKENS(64, *SIZE)
    fit = fit_frames(64, 480, 640, SETTINGS, full // 4, TOKENS)
    assert fit.reduced == "frames" and fit.frames == 16 and (fit.height, fit.width) == SIZE


def test_pixels_are_cut_at_the_frame_floor_then_none():
    fit = fit_frames(64, 480, 640, SETTINGS, TOKENS(4, *SIZE) // 2, TOKENS)
    assert fit.reduced == "pixels" and fit.frames == 4
    assert fit.height * fit.width < SIZE[0] * SIZE[1]
    assert fit_frames(64, 480, 640, SETTINGS, 10, TOKENS) is None


@given(frames=st.integers(2, 128).map(lambda n: n - n % 2), height=st.integers(64, 2160),
       width=st.integers(64, 3840), budget=st.integers(1, 50_000))
def test_a_fit_always_fits_and_keeps_the_minimums(frames, height, width, budget):
    fit = fit_frames(frames, height, width, SETTINGS, budget, TOKENS)
    if fit is None:
        floor = min(frames, 4)
        smallest = smart_resize(height, width, 32, SETTINGS.min_pixels, SETTINGS.min_pixels)
        assert TOKENS(floor, *smallest) > budget  # nothing could have fitted
        return
    assert fit.tokens == TOKENS(fit.frames, fit.height, fit.width) <= budget
    assert fit.frames <= frames and fit.frames >= min(frames, 4)
    assert fit.reduced != "pixels" or fit.frames == min(frames, 4)  # pixels only at the floor


# ---- fitting a sampling (what every decoder runs) ----


def _budgeted(settings, total=300, fps=30.0, size=(480, 640)):
    return budgeted_indices(total, fps, None, lambda: size, settings)


def test_fewer_frames_still_span_the_whole_video():
    settings = FrameSettings(size_factor=32, max_frames=32, min_frames=4,
                             max_visual_tokens=TOKENS(8, *SIZE) + 1)
    full = _budgeted(FrameSettings(size_factor=32, max_frames=32, min_frames=4))
    fitted = _budgeted(settings)
    assert len(full.wanted) == 20 and len(fitted.wanted) == 8
    assert (fitted.wanted[0], fitted.wanted[-1]) == (full.wanted[0], full.wanted[-1]) == (0, 299)
    assert fitted.record == {"max_visual_tokens": settings.max_visual_tokens,
                             "visual_tokens": TOKENS(8, *SIZE), "reduced": "frames"}


def test_cut_pixels_are_what_the_decoder_resizes_to():
    settings = FrameSettings(size_factor=32, min_frames=4, min_pixels=32 * 32,
                             max_visual_tokens=TOKENS(4, *SIZE) // 3)
    fitted = _budgeted(settings)
    assert fitted.record["reduced"] == "pixels" and len(fitted.wanted) == 4
    s = fitted.settings
    resized = smart_resize(480, 640, 32, s.min_pixels, s.max_pixels)
    assert TOKENS(4, *resized) == fitted.record["visual_tokens"] <= settings.max_visual_tokens


def test_uniform_sampling_is_fitted_by_its_frame_count():
    settings = FrameSettings(strategy="uniform", num_frames=16, size_factor=32, min_frames=4,
                             max_visual_tokens=TOKENS(6, *SIZE))
    fitted = _budgeted(settings)
    assert len(fitted.wanted) == 6 and fitted.settings.num_frames == 6


def test_timestamp_text_counts_against_the_budget():
    settings = FrameSettings(size_factor=32, frame_text_tokens=12, max_visual_tokens=10_000)
    assert budget_tokens(settings)(8, *SIZE) == TOKENS(8, *SIZE) + 4 * 12  # 4 groups of 2


def test_strategies_without_a_token_count_and_no_budget_are_left_alone():
    for settings in (FrameSettings(size_factor=32),
                     FrameSettings(strategy="chat", size_factor=32, max_visual_tokens=1)):
        budgeted = _budgeted(settings)
        assert budgeted.settings is settings and budgeted.record == {}


def test_a_video_that_cannot_fit_is_a_context_length_error():
    with pytest.raises(VideoError, match="budget of 3") as raised:
        _budgeted(FrameSettings(size_factor=32, max_visual_tokens=3))
    assert raised.value.kind == "context_length"


def test_the_frames_record_has_one_shape_with_or_without_a_budget():
    plain, fitted = frames_record((4, 96, 128, 3), {}), frames_record(
        (4, 96, 128, 3), {"max_visual_tokens": 30, "visual_tokens": 24, "reduced": "frames"})
    assert plain.keys() == fitted.keys()
    assert [type(v) for v in plain.values()] == [type(v) for v in fitted.values()]
    assert plain["max_visual_tokens"] == -1 and fitted["reduced"] == "frames"
