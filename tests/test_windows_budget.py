"""The frame budget applied to each window of a long video, through the op on the transformers
backend (``max_visual_tokens``): frames are cut first, then pixels, per window; what the
processor builds for each window's request fits and is what the window's record says; a window
that cannot fit gets ``context_length`` in its entry and the others are still captioned.
(Windows without a budget: tests/test_long_videos.py; vLLM's engine: tests/test_windows_vllm.py.)
"""

from __future__ import annotations

import pytest

from dj_ops.adapters.qwen import qwen_video_tokens
from dj_ops.testing.clips import make_clip
from tests.conftest import make_op, run_op
from tests.test_budget_fit import FRAMES, _records, _video_token_counts
from tests.test_op import single_video_samples

# 10 s windows, no overlap, 1 frame per second: each full window wants 10 frames, capped at 8;
# 4 temporal groups of 12 Qwen3-VL tokens (96x128 at max_pixels 112*112): 48 tokens without a
# budget.
WINDOWS = {**FRAMES, "window_seconds": 10.0, "fps": 1.0, "keep_original_sample": False}


@pytest.fixture(scope="module")
def thirty_seconds(tmp_path_factory) -> str:
    """30 s at 2 fps, 320x240: three full windows."""
    return str(make_clip(tmp_path_factory.mktemp("wbudget") / "thirty.mp4", seconds=30, fps=2,
                         width=320, height=240))


@pytest.fixture(scope="module")
def twenty_one_seconds(tmp_path_factory) -> str:
    """21 s: two full windows and a last one of 1 s (2 frames after padding)."""
    return str(make_clip(tmp_path_factory.mktemp("wbudget") / "short_tail.mp4", seconds=21,
                         fps=2, width=320, height=240))


@pytest.mark.parametrize("budget, reduced, frames", [(1000, "none", 8), (30, "frames", 4),
                                                     (10, "pixels", 2)])
def test_each_window_request_fits_max_visual_tokens(qwen3, thirty_seconds, monkeypatch, budget,
                                                    reduced, frames):
    counts = _video_token_counts(monkeypatch)
    op = make_op(qwen3, **WINDOWS, max_visual_tokens=budget)
    record = _records(run_op(op, single_video_samples([thirty_seconds])))[0]
    windows = record["windows"]
    assert record["error_kind"] == "" and len(windows) == 3
    for window in windows:
        used = window["frames"]
        assert window["error_kind"] == "" and window["caption"]
        assert (used["reduced"], used["count"], used["max_visual_tokens"]) == \
            (reduced, frames, budget)
        assert used["visual_tokens"] == qwen_video_tokens(
            (used["count"], used["height"], used["width"]), 32) <= budget
        if reduced == "pixels":
            assert used["height"] * used["width"] < 96 * 128
        else:
            assert (used["height"], used["width"]) == (96, 128)
    # the processor's own video tokens of the window requests (the merge has none; fast
    # decoding may encode a request more than once): as recorded
    video_counts = [count for count in counts if count]
    assert len(video_counts) >= 3
    assert set(video_counts) == {window["frames"]["visual_tokens"] for window in windows}


def test_a_window_that_cannot_fit_alone_gets_context_length(qwen3, twenty_one_seconds,
                                                           monkeypatch):
    counts = _video_token_counts(monkeypatch)
    # min_frames 4 at min_pixels are 4 tokens, over a budget of 3: the full windows cannot fit;
    # the 1 s tail has 2 frames (below min_frames), which fit once their pixels are cut
    op = make_op(qwen3, **{**WINDOWS, "min_frames": 4}, max_visual_tokens=3)
    record = _records(run_op(op, single_video_samples([twenty_one_seconds])))[0]
    windows = record["windows"]
    assert [w["error_kind"] for w in windows] == ["context_length", "context_length", ""]
    assert "over the budget of 3 visual tokens" in windows[0]["error_message"]
    assert [w["frames"]["count"] for w in windows] == [0, 0, 2]
    tail = windows[2]["frames"]
    assert tail["reduced"] == "pixels" and tail["visual_tokens"] <= 3
    assert windows[2]["caption"] and record["error_kind"] == ""  # merged from the tail alone
    assert {count for count in counts if count} == {tail["visual_tokens"]}


def test_a_video_none_of_whose_windows_fits_gets_an_error_record(qwen3, thirty_seconds,
                                                                  monkeypatch):
    counts = _video_token_counts(monkeypatch)
    op = make_op(qwen3, **{**WINDOWS, "min_frames": 4}, max_visual_tokens=3)
    record = _records(run_op(op, single_video_samples([thirty_seconds])))[0]
    assert record["error_kind"] == "context_length" and counts == []
