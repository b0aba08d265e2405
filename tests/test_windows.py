"""Windows of a long video and the frames each takes from one decoding pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dj_ops.video.settings import FrameSettings
from dj_ops.video.windows import (
    frames_to_decode,
    plan_windows,
    window_frame_indices,
)


@settings(deadline=None)  # an hour in 1-second windows is thousands of windows
@given(duration=st.floats(0.1, 3600), window=st.floats(1, 600), share=st.floats(0, 0.9))
def test_windows_cover_the_video_in_order_with_the_overlap(duration, window, share):
    overlap = window * share
    windows = plan_windows(duration, window, overlap)
    assert windows[0].start == 0 and windows[-1].end == pytest.approx(duration, abs=1e-5)
    assert [w.index for w in windows] == list(range(len(windows)))
    for w in windows:
        assert 0 < w.end - w.start <= window + 1e-6
    for before, after in zip(windows, windows[1:]):
        assert after.start == pytest.approx(before.start + window - overlap, abs=1e-5)
        assert after.end > before.end  # each window adds time past the one before
        assert before.end - after.start == pytest.approx(overlap, abs=1e-5)


@pytest.mark.parametrize("duration, window, overlap, message", [
    (10, 0, 0, "window_seconds"), (10, 5, 5, "window_overlap"), (10, 5, -1, "window_overlap"),
    (0, 5, 0, "duration")])
def test_bad_windows_are_refused(duration, window, overlap, message):
    with pytest.raises(ValueError, match=message):
        plan_windows(duration, window, overlap)


def test_ten_minutes_in_one_pass_at_two_frames_per_second():
    """A 10-minute 30 fps video in 60 s windows overlapping 10 s: each window gets its own
    fps-sampled frames within its span; one pass decodes their union, shared frames once."""
    fps, total = 30.0, 10 * 60 * 30
    windows = plan_windows(total / fps, 60.0, 10.0)
    assert len(windows) == 12 and windows[-1].end == 600.0
    settings = FrameSettings(fps=0.5, min_frames=4, max_frames=64)
    per_window = window_frame_indices(total, fps, None, settings, windows)
    for window, indices in zip(windows, per_window):
        times = [i / fps for i in indices]
        assert window.start - 1e-6 <= times[0] and times[-1] <= window.end + 1e-6
        assert len(indices) == 30 or window.index == len(windows) - 1  # 60 s at 0.5 fps
    union = frames_to_decode(per_window)
    assert len(union) <= sum(len(i) for i in per_window) and union == sorted(set(union))
