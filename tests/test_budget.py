"""The frame budget: frames cut first, then pixels, never past the minimums."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dj_ops.video.budget import fit_frames, qwen_visual_tokens
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
