"""Every registered decoder on generated clips whose frames carry their index: same frames as
PyAV, time windows and CogVLM2 strategies honoured, errors of the right kind; and bounded
output for a 4K clip and a 10-minute clip whatever the strategy."""

from __future__ import annotations

import numpy as np
import pytest

from dj_ops.testing.clips import make_clip, read_frame_index, write_bytes
from dj_ops.video import FrameSettings, VideoError, decode_video
from dj_ops.video.decoders import resolve_decoder
from dj_ops.video.frames import timestamps_if_variable
from dj_ops.video.sampling import smart_resize
from dj_ops.video.settings import MAX_PIXELS

OPTIONAL = {"torchcodec": "torchcodec.decoders", "decord": "decord"}
STRATEGIES = [
    FrameSettings(),
    FrameSettings(strategy="uniform", num_frames=6),
    FrameSettings(video_start=2.0, video_end=5.0),
    FrameSettings(strategy="chat"),
    FrameSettings(strategy="base"),
    FrameSettings(strategy="chat", video_start=3.0),
]


@pytest.fixture(params=["pyav", "torchcodec", "decord"])
def decoder(request):
    if request.param in OPTIONAL:
        pytest.importorskip(OPTIONAL[request.param])
    return resolve_decoder(request.param)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("decoder_clips")


@pytest.fixture(scope="module")
def short_gop(clip_dir):
    return str(make_clip(clip_dir / "gop5.mp4", 10.0, 10, 64, 48, gop=5))


def frame_numbers(video) -> list[int]:
    return [read_frame_index(frame) for frame in video.frames]


@pytest.mark.parametrize("settings", STRATEGIES)
def test_same_frames_as_pyav(decoder, short_gop, settings):
    video = decoder(short_gop, settings)
    reference = decode_video(short_gop, settings)
    assert video.frame_indices == reference.frame_indices
    assert video.timestamps == pytest.approx(reference.timestamps, abs=1e-3)
    assert frame_numbers(video) == video.frame_indices
    assert video.frames.shape == reference.frames.shape
    metadata = video.transformers_metadata()
    assert metadata["frames_indices"] == video.frame_indices
    assert (metadata["total_num_frames"], metadata["fps"]) == (100, 10.0)


def test_repeated_frames_of_the_chat_strategy_are_decoded(decoder, clip_dir):
    path = str(make_clip(clip_dir / "gap.mp4", fps=10, frame_times=[0.0, 0.1, 3.0]))
    video = decoder(path, FrameSettings(strategy="chat"))
    assert video.frame_indices == [0, 1, 2, 2]
    assert frame_numbers(video) == [0, 1, 2, 2]


def test_shorter_than_a_second(decoder, clip_dir):
    path = str(make_clip(clip_dir / "short.mp4", 0.5, 10))
    chat = decoder(path, FrameSettings(strategy="chat"))
    assert chat.frame_indices == [0, 0]  # one frame, repeated up to the temporal factor
    base = decoder(path, FrameSettings(strategy="base"))
    assert base.frame_indices == np.linspace(0, 4, 24, dtype=int).tolist()
    assert frame_numbers(base) == base.frame_indices


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda d: d / "missing.mp4", "missing_file"),
        (lambda d: write_bytes(d / "text.mp4", b"not a video\n" * 50), "not_a_video"),
        (lambda d: write_bytes(d / "cut.mp4", make_clip(d / "whole.mp4", 2.0).read_bytes()[:600]),
         "decode_error"),
    ],
)
def test_failures_are_video_errors_of_the_right_kind(decoder, tmp_path, make, kind):
    with pytest.raises(VideoError) as caught:
        decoder(str(make(tmp_path)), FrameSettings())
    assert caught.value.kind == kind


def test_timestamps_if_variable():
    assert timestamps_if_variable([0.5, 0.6, 0.7, 0.8], 10.0) is None
    assert timestamps_if_variable([0.0, 0.1, 0.15, 0.4], 10.0) == [0.0, 0.1, 0.15, 0.4]
    assert timestamps_if_variable([1.0, 1.1, 1.6], 10.0) == pytest.approx([0.0, 0.1, 0.6])


# --- size limits -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_4k(clip_dir):
    return str(make_clip(clip_dir / "4k.mp4", 0.4, 10, 3840, 2160))


@pytest.fixture(scope="module")
def ten_minutes(clip_dir):
    return str(make_clip(clip_dir / "10min.mp4", 600.0, 2, 64, 48, gop=250))


@pytest.mark.parametrize("factor", [28, 32])
def test_4k_frames_are_resized_to_the_pixel_budget(decoder, clip_4k, factor):
    video = decoder(clip_4k, FrameSettings(size_factor=factor))
    assert video.frames.shape == (4, *smart_resize(2160, 3840, factor, 128 * 28 * 28,
                                                    MAX_PIXELS), 3)
    assert video.frames.shape[1] * video.frames.shape[2] <= MAX_PIXELS
    assert frame_numbers(video) == video.frame_indices == [0, 1, 2, 3]


def test_total_pixels_caps_a_whole_4k_video(decoder, clip_4k):
    budget = 4 * 200 * 200
    video = decoder(clip_4k, FrameSettings(total_pixels=budget, min_pixels=28 * 28))
    assert video.frames.shape[0] == 4
    assert video.frames.shape[0] * video.frames.shape[1] * video.frames.shape[2] <= budget


@pytest.mark.parametrize(
    ("settings", "count", "last_second"),
    [
        (FrameSettings(), 32, 600),  # fps: 2 per second, capped at max_frames
        (FrameSettings(strategy="uniform", num_frames=16), 16, 600),
        (FrameSettings(strategy="chat"), 24, 23),  # seconds 0..23
        (FrameSettings(strategy="base"), 24, 60),  # the first minute only
        (FrameSettings(video_start=300.0, video_end=310.0), 20, 310),
    ],
)
def test_ten_minute_video_stays_within_the_frame_budget(decoder, ten_minutes, settings, count,
                                                        last_second):
    video = decoder(ten_minutes, settings)
    assert video.total_frames == 1200
    assert video.frames.shape[0] == count
    assert video.frames.nbytes <= count * settings.max_pixels * 3
    assert video.timestamps[-1] <= last_second
    assert frame_numbers(video) == [i % 256 for i in video.frame_indices]
