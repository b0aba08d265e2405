"""CogVLM2-Llama3-Caption's ``chat`` and ``base`` frame strategies, checked against the model
card's ``load_video`` (restated below as written there) and on exact indices."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dj_ops.video import FrameSettings, sample_frame_indices
from dj_ops.video.sampling import sample_base, sample_chat

CHAT = FrameSettings(strategy="chat")
BASE = FrameSettings(strategy="base")
VFR_TIMES = [0.0, 0.1, 0.15, 0.4, 1.0, 1.05, 1.1, 2.0]


def card_chat(timestamps: list[float]) -> list[int]:
    """The model card's ``strategy == 'chat'`` branch, on decord's frame start times."""
    max_second = round(max(timestamps)) + 1
    frame_id_list = []
    for second in range(max_second):
        closest_num = min(timestamps, key=lambda x: abs(x - second))
        frame_id_list.append(timestamps.index(closest_num))
        if len(frame_id_list) >= 24:
            break
    return frame_id_list


def card_base(total_frames: int, avg_fps: float) -> list[int]:
    """The model card's ``strategy == 'base'`` branch (clip from 0 s to 60 s)."""
    start_frame = int(0 * avg_fps)
    end_frame = min(total_frames, int(60 * avg_fps))
    return np.linspace(start_frame, end_frame - 1, 24, dtype=int).tolist()


def regular(total: int, fps: float) -> list[float]:
    return [i / fps for i in range(total)]


# --- chat ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fps", "expected"),
    [
        (100, 10.0, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]),  # 9.9 s: seconds 0..10
        (900, 30.0, list(range(0, 720, 30))),  # 30 s: capped at 24 frames
        (5, 10.0, [0]),  # 0.4 s: one frame
        (6, 10.0, [0]),  # 0.5 s rounds to 0 (half to even, as Python's round)
        (7, 10.0, [0, 6]),  # 0.6 s rounds to 1: the last frame is nearest to 1 s
        (1, 24.0, [0]),
    ],
)
def test_chat_on_constant_rate(total, fps, expected):
    assert sample_chat(total, fps, None, CHAT) == expected
    assert expected == card_chat(regular(total, fps))


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (VFR_TIMES, [0, 4, 7]),
        ([0.0, 0.1, 3.0], [0, 1, 2, 2]),  # a gap: the same frame is nearest to 2 s and 3 s
        ([0.0, 0.5, 1.5], [0, 1, 2]),  # 1 s is as near to 0.5 as to 1.5: the earlier wins
        ([0.0, 1.0, 1.0, 2.0], [0, 1, 3]),  # equal times: the first of them
        ([0.0, 0.02, 0.3], [0]),  # shorter than a second
    ],
)
def test_chat_on_variable_rate(times, expected):
    assert sample_chat(len(times), 10.0, times, CHAT) == expected
    assert expected == card_chat(times)


def test_chat_window_counts_seconds_from_its_start():
    window = FrameSettings(strategy="chat", video_start=2.0, video_end=5.0)
    assert sample_chat(100, 10.0, None, window) == [20, 30, 40, 50]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.001, 3.0), min_size=0, max_size=80), st.floats(0.0, 1.0))
def test_chat_matches_the_card(gaps, first):
    times = [first]
    for gap in gaps:
        times.append(times[-1] + gap)
    assert sample_chat(len(times), 10.0, times, CHAT) == card_chat(times)


# --- base ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fps", "expected"),
    [
        (100, 10.0, [0, 4, 8, 12, 17, 21, 25, 30, 34, 38, 43, 47, 51, 55, 60, 64, 68, 73, 77, 81,
                     86, 90, 94, 99]),
        (3600, 30.0, [0, 78, 156, 234, 312, 391, 469, 547, 625, 703, 782, 860, 938, 1016, 1095,
                      1173, 1251, 1329, 1407, 1486, 1564, 1642, 1720, 1799]),  # first 60 s only
        (5, 10.0, [0] * 6 + [1] * 6 + [2] * 6 + [3] * 5 + [4]),  # 0.5 s: frames repeat
    ],
)
def test_base_exact(total, fps, expected):
    assert sample_base(total, fps, None, BASE) == expected
    assert expected == card_base(total, fps)


def test_base_uses_indices_and_mean_rate_even_for_variable_rate():
    assert sample_base(8, 3.5, VFR_TIMES, BASE) == card_base(8, 3.5)


def test_base_window_spans_60_seconds_from_its_start():
    window = FrameSettings(strategy="base", video_start=10.0)
    assert sample_base(3600, 30.0, None, window) == [
        300, 378, 456, 534, 612, 691, 769, 847, 925, 1003, 1082, 1160, 1238, 1316, 1395, 1473,
        1551, 1629, 1707, 1786, 1864, 1942, 2020, 2099]  # fmt: skip
    short = FrameSettings(strategy="base", video_start=1.0, video_end=2.0)
    assert sample_base(100, 10.0, None, short) == np.linspace(10, 20, 24, dtype=int).tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.floats(1.0, 60.0))
def test_base_matches_the_card(total, fps):
    assert sample_base(total, fps, None, BASE) == card_base(total, fps)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["chat", "base"]), st.integers(1, 4000), st.floats(1.0, 60.0),
       st.floats(0.0, 100.0), st.floats(0.1, 100.0))
def test_indices_are_sorted_and_inside_the_window(strategy, total, fps, start, length):
    window = FrameSettings(strategy=strategy, video_start=start, video_end=start + length)
    times = regular(total, fps)
    if not any(start - 1e-6 <= t <= start + length + 1e-6 for t in times):
        return  # an empty window is an error, tested with the fps strategy
    indices = sample_frame_indices(total, fps, None, window)
    assert indices == sorted(indices) and 1 <= len(indices) <= 24
    assert all(start - 1e-6 <= times[i] <= start + length + 1e-6 for i in indices)


def test_both_are_in_the_registry():
    assert sample_frame_indices(100, 10.0, None, CHAT) == sample_chat(100, 10.0, None, CHAT)
    assert sample_frame_indices(100, 10.0, None, BASE) == sample_base(100, 10.0, None, BASE)
