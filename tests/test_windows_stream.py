"""A long video's windows streamed by a decoding worker process: read one by one, each from
the same pass; the time the op spends on a window does not count against ``decode_timeout``; a
stream given up midway frees its worker for the next video."""

from __future__ import annotations

import time

import pytest

from dj_ops.testing.clips import make_clip
from dj_ops.video.decode_windows import WindowedFrames, stream_windowed
from dj_ops.video.pool import DecodePool
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import StreamingSource

JOB = WindowedFrames(FrameSettings(fps=1.0, max_frames=4, min_pixels=32 * 32,
                                   max_pixels=64 * 64, size_factor=32), 4.0, 1.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """13 s: 4 windows of 4 s, 3 s apart."""
    return str(make_clip(tmp_path_factory.mktemp("stream") / "long.mp4", seconds=13, fps=2))


@pytest.fixture
def source():
    pool = DecodePool(stream_windowed, 1, timeout_s=2.0)  # killed past 2 s + 1 s of grace
    yield StreamingSource(pool)
    pool.close()


def test_windows_arrive_in_order_and_waiting_for_the_op_is_not_decoding_time(source, clip):
    stream = source.result(source.submit(clip, JOB))
    windows = []
    for window in stream:
        if not windows:
            time.sleep(3.5)  # the op captioning the first window: past the kill deadline
        windows.append(window)
    assert [w.window.index for w in windows] == [0, 1, 2, 3]
    assert all(w.error is None and len(w.frames) == 4 for w in windows)


def test_a_stream_given_up_midway_frees_its_worker(source, clip):
    stream = source.result(source.submit(clip, JOB))
    first = next(iter(stream))
    assert first.more and first.window.index == 0
    stream.close()  # the worker waits for the go-ahead: it is told to stop
    again = list(source.result(source.submit(clip, JOB)))  # the same (only) worker
    assert [w.window.index for w in again] == [0, 1, 2, 3]
