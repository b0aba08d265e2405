"""decode_video on real clips (generated stand-ins when ../shared is absent) and on
generated edge cases: odd sizes, tiny videos, variable frame rate, rotation, broken files."""

import os

import numpy as np
import pytest

from dj_ops.testing import clips
from dj_ops.testing.clips import (
    make_clip,
    read_frame_index,
    sample_videos,
    sample_videos_dir,
    write_bytes,
)
from dj_ops.video import DecodedVideo, FrameSettings, VideoError, decode_video
from dj_ops.video.decode_process import DecodeProcess, decoding_as

DEFAULT = FrameSettings()
QWEN3 = FrameSettings(size_factor=32)
METADATA_KEYS = {
    "total_num_frames", "fps", "duration", "frames_indices", "width", "height", "video_backend",
}  # fmt: skip


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def short_gop_clip(clip_dir):
    """10 s at 10 fps, a keyframe every 5 frames, with B-frames."""
    return make_clip(clip_dir / "short_gop.mp4", 10.0, 10, 64, 48, gop=5)


def assert_well_formed(video: DecodedVideo, settings: FrameSettings) -> None:
    """Shape, dtype, sizes and timestamps every decode must satisfy."""
    frames, factor = video.frames, settings.size_factor
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
    assert frames.shape[0] % settings.temporal_factor == 0
    assert frames.shape[1] % factor == 0 and frames.shape[2] % factor == 0
    assert frames.shape[1] * frames.shape[2] <= settings.max_pixels
    assert len(video.frame_indices) == len(video.timestamps) == frames.shape[0]
    assert video.timestamps == sorted(video.timestamps)
    assert all(0 <= i < video.total_frames for i in video.frame_indices)
    assert set(video.transformers_metadata()) == METADATA_KEYS


def assert_frames_are(video: DecodedVideo) -> None:
    """Generated clips carry their frame index in the picture: check each one."""
    assert [read_frame_index(f) for f in video.frames] == [i % 256 for i in video.frame_indices]


# --- sample clips --------------------------------------------------------------------------


@pytest.mark.parametrize("number", range(1, 6))
def test_sample_clip_decodes(number):
    video = decode_video(str(sample_videos()[number - 1]), DEFAULT)
    assert_well_formed(video, DEFAULT)
    assert 4 <= len(video.frame_indices) <= 32
    expected = [i / video.source_fps for i in video.frame_indices]
    assert video.timestamps == pytest.approx(expected, abs=1e-3)
    assert video.duration == pytest.approx(video.total_frames / video.source_fps, abs=0.1)
    metadata = video.transformers_metadata()
    assert metadata["frames_indices"] == video.frame_indices
    assert metadata["video_backend"] == "pyav"


def test_sample_clip_seek_and_sequential_agree():
    path = str(sample_videos()[0])
    sequential = decode_video(path, DEFAULT, method="sequential")
    seeking = decode_video(path, DEFAULT, method="seek")
    assert sequential.frame_indices == seeking.frame_indices
    assert sequential.timestamps == seeking.timestamps
    assert np.array_equal(sequential.frames, seeking.frames)


def test_generated_stand_ins_when_shared_clips_are_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(clips, "SHARED_VIDEOS_DIR", tmp_path / "absent")
    monkeypatch.setattr(clips, "GENERATED_VIDEOS_DIR", tmp_path / "generated")
    assert sample_videos_dir() == tmp_path / "generated"
    for path in sample_videos():
        video = decode_video(str(path), DEFAULT)
        assert_well_formed(video, DEFAULT)
        assert_frames_are(video)


# --- seek vs sequential --------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [DEFAULT, FrameSettings(strategy="uniform", num_frames=6), FrameSettings(video_start=4.0)],
)
def test_seek_and_sequential_give_identical_frames(short_gop_clip, settings):
    sequential = decode_video(short_gop_clip, settings, method="sequential")
    seeking = decode_video(short_gop_clip, settings, method="seek")
    assert (sequential.method, seeking.method) == ("sequential", "seek")
    assert sequential.frame_indices == seeking.frame_indices
    assert sequential.timestamps == seeking.timestamps
    assert np.array_equal(sequential.frames, seeking.frames)
    assert_frames_are(seeking)


def test_auto_seeks_only_when_frames_are_far_apart_relative_to_keyframes(clip_dir):
    sparse = FrameSettings(strategy="uniform", num_frames=4)
    assert decode_video(make_clip(clip_dir / "k5.mp4", 10, 10, gop=5), sparse).method == "seek"
    long_gop = make_clip(clip_dir / "k250.mp4", 10, 10, gop=250)
    assert decode_video(long_gop, sparse).method == "sequential"


@pytest.mark.parametrize(
    ("suffix", "codec", "auto_method"),
    [
        (".mkv", "libx264", "seek"),  # no frame count stored: packets are scanned
        (".webm", "libvpx-vp9", "seek"),
        (".ts", "libx264", "seek"),  # starts at 0.2 s; seeks land after the time asked
        (".avi", "mpeg4", "seek"),
    ],
)
def test_other_containers(clip_dir, suffix, codec, auto_method):
    path = make_clip(clip_dir / f"gop5{suffix}", 6.0, 10, 64, 48, gop=5, codec=codec)
    sparse = FrameSettings(strategy="uniform", num_frames=6)
    sequential = decode_video(path, sparse, method="sequential")
    seeking = decode_video(path, sparse, method="seek")
    assert sequential.frame_indices == seeking.frame_indices == [0, 12, 24, 35, 47, 59]
    assert sequential.timestamps == pytest.approx([0.0, 1.2, 2.4, 3.5, 4.7, 5.9])
    assert np.array_equal(sequential.frames, seeking.frames)
    assert_frames_are(sequential)
    assert decode_video(path, sparse).method == auto_method


# --- skipping unreferenced frames ------------------------------------------------------------


def _decoded_count(path, settings, method, skip):
    """How many frames the decoder produced (not only those kept) for one decode."""
    import av

    counted = []
    real_decode = av.Packet.decode

    def counting(packet):
        frames = real_decode(packet)
        counted.extend(frames)
        return frames

    av.Packet.decode = counting
    try:
        video = decode_video(path, settings, method=method, skip_unreferenced=skip)
    finally:
        av.Packet.decode = real_decode
    return video, len(counted)


def assert_skipping_keeps_frames(path, settings, method="auto") -> DecodedVideo:
    full = decode_video(path, settings, method=method, skip_unreferenced=False)
    skipped = decode_video(path, settings, method=method)
    assert skipped.frame_indices == full.frame_indices, path
    assert skipped.timestamps == full.timestamps, path
    assert np.array_equal(skipped.frames, full.frames), path
    return skipped


@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_unreferenced_frames_keeps_the_frames_of_the_sample_clips(threads):
    with decoding_as(DecodeProcess(threads=threads)):
        for path in sample_videos():
            for settings in (QWEN3, FrameSettings(strategy="uniform", num_frames=6)):
                assert_skipping_keeps_frames(str(path), settings)


@pytest.fixture(scope="module")
def b_frame_clip(clip_dir):
    """6 s at 24 fps, a keyframe every 48 frames, 3 unreferenced B-frames per P-frame."""
    return str(make_clip(clip_dir / "bframes.mp4", 6.0, 24, 96, 64, gop=48, bframes=3))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["sequential", "seek"])
@pytest.mark.parametrize(
    "settings", [DEFAULT, FrameSettings(strategy="uniform", num_frames=6),
                 FrameSettings(video_start=2.5, video_end=4.0)]
)
def test_skipping_unreferenced_frames_keeps_the_same_frames(b_frame_clip, threads, method,
                                                           settings):
    with decoding_as(DecodeProcess(threads=threads)):
        assert_frames_are(assert_skipping_keeps_frames(b_frame_clip, settings, method))


def test_skipping_decodes_fewer_frames_only_where_b_frames_allow(clip_dir, b_frame_clip):
    sparse = FrameSettings(strategy="uniform", num_frames=4)
    full, decoded_full = _decoded_count(b_frame_clip, sparse, "sequential", skip=False)
    skipped, decoded_skipping = _decoded_count(b_frame_clip, sparse, "sequential", skip=True)
    assert decoded_full == full.total_frames == 144
    # 3 of every 4 frames after the keyframes are unreferenced B-frames, 4 of them wanted
    assert decoded_skipping < 0.4 * decoded_full
    assert np.array_equal(skipped.frames, full.frames)
    assert_frames_are(skipped)
    # without B-frames there is nothing to skip: every frame is decoded
    no_b = str(make_clip(clip_dir / "skip_no_b.mp4", 6.0, 24, 96, 64, gop=48, bframes=0))
    video, decoded = _decoded_count(no_b, sparse, "sequential", skip=True)
    assert decoded == video.total_frames == 144
    # MPEG-4 part 2 is not in SKIP_NONREF_CODECS: every frame is decoded
    mpeg4 = str(make_clip(clip_dir / "skip_mpeg4.avi", 3.0, 10, 64, 48, gop=5, codec="mpeg4"))
    video, decoded = _decoded_count(mpeg4, sparse, "sequential", skip=True)
    assert decoded == video.total_frames == 30
    assert_frames_are(video)


def test_skipping_on_hevc_variable_frame_rate_and_scanned_streams(clip_dir):
    times = [0.05 * i + (0.5 if i > 20 else 0.0) for i in range(40)]
    paths = [make_clip(clip_dir / "skip_vfr.mp4", fps=10, frame_times=times, bframes=3),
             make_clip(clip_dir / "skip_scanned.mkv", 6.0, 10, 64, 48, gop=30, bframes=3),
             make_clip(clip_dir / "skip_hevc.mp4", 4.0, 12, 64, 48, codec="libx265")]
    for path in paths:
        for method in ("sequential", "seek"):
            assert_frames_are(assert_skipping_keeps_frames(path, DEFAULT, method))


def test_raw_stream_without_timestamps(clip_dir):
    path = make_clip(clip_dir / "raw.h264", 6.0, 10, 64, 48, gop=5)
    video = decode_video(path, FrameSettings(strategy="uniform", num_frames=6))
    assert video.method == "sequential"  # not seekable
    assert (video.total_frames, video.source_fps, video.duration) == (60, 10.0, 6.0)
    assert video.frame_indices == [0, 12, 24, 35, 47, 59]
    assert video.timestamps == pytest.approx([0.0, 1.2, 2.4, 3.5, 4.7, 5.9])
    assert_frames_are(video)


# --- generated edge cases ------------------------------------------------------------------


def test_one_frame_video_is_repeated_to_the_temporal_factor(clip_dir):
    video = decode_video(make_clip(clip_dir / "one.mp4", 0.1, 10), DEFAULT)
    assert video.frame_indices == [0, 0] and video.total_frames == 1
    assert np.array_equal(video.frames[0], video.frames[1])


def test_half_second_video(clip_dir):
    video = decode_video(make_clip(clip_dir / "half.mp4", 0.5, 10), DEFAULT)
    assert video.frame_indices == [0, 1, 3, 4]
    assert video.timestamps == pytest.approx([0.0, 0.1, 0.3, 0.4])
    assert_frames_are(video)


@pytest.mark.parametrize("settings", [DEFAULT, QWEN3])
def test_odd_size_is_resized_to_factor_multiples(clip_dir, settings):
    video = decode_video(make_clip(clip_dir / "odd.mp4", 1.0, 10, 203, 117), settings)
    assert (video.width, video.height) == (203, 117)
    expected = (252, 420) if settings.size_factor == 28 else (256, 448)
    assert video.frames.shape[1:3] == expected
    assert_well_formed(video, settings)
    assert_frames_are(video)


def test_total_pixels_budget_shrinks_frames(short_gop_clip):
    budget = FrameSettings(total_pixels=20 * 120_000)
    video = decode_video(short_gop_clip, budget)
    frames = video.frames
    assert frames.shape[0] * frames.shape[1] * frames.shape[2] <= 20 * 120_000


def test_window_limits_timestamps(short_gop_clip):
    video = decode_video(short_gop_clip, FrameSettings(video_start=2.0, video_end=5.0))
    assert video.frame_indices == [20, 26, 32, 38, 44, 50]
    assert video.timestamps[0] >= 2.0 and video.timestamps[-1] <= 5.0


def test_variable_frame_rate_uses_real_timestamps(clip_dir):
    times = [0.0, 0.1, 0.15, 0.4, 1.0, 1.05, 1.1, 2.0]
    path = make_clip(clip_dir / "vfr.mp4", fps=10, frame_times=times)
    for method in ("sequential", "seek"):
        video = decode_video(path, DEFAULT, method=method)
        assert video.frame_indices == [0, 3, 6, 7]
        assert video.timestamps == pytest.approx([0.0, 0.4, 1.1, 2.0])
        assert video.total_frames == 8
        assert_frames_are(video)


def test_rotation_is_applied_and_recorded(clip_dir):
    video = decode_video(make_clip(clip_dir / "rot.mp4", 1.0, 10, 64, 48, rotation=90), DEFAULT)
    assert video.rotation == 90 and (video.width, video.height) == (64, 48)
    assert video.frames.shape[1] > video.frames.shape[2]  # upright: portrait
    upright = [read_frame_index(np.rot90(f, k=-1)) for f in video.frames]
    assert upright == video.frame_indices


# --- failures ------------------------------------------------------------------------------


def truncated(source, target):
    return write_bytes(target, source.read_bytes()[: source.stat().st_size // 2])


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda d: d / "missing.mp4", "missing_file"),
        (lambda d: "http://example.com/a.mp4", "unsupported_url"),
        (lambda d: "s3://bucket/a.mp4", "unsupported_url"),
        (lambda d: write_bytes(d / "empty.mp4", b""), "empty_file"),
        (lambda d: write_bytes(d / "text.mp4", b"not a video\n" * 50), "not_a_video"),
        (lambda d: d, "not_a_video"),  # a directory
        # index at the end: the container cannot be opened
        (lambda d: truncated(sample_videos()[0], d / "cut_moov.mp4"), "decode_error"),
        # index first: opens, then the frames run out
        (
            lambda d: truncated(make_clip(d / "fs.mp4", 5, 10, faststart=True), d / "cut.mp4"),
            "decode_error",
        ),
    ],
)
def test_failures_raise_video_error_of_the_right_kind(tmp_path, make, kind):
    path = make(tmp_path)
    with pytest.raises(VideoError) as caught:
        decode_video(str(path), DEFAULT)
    assert caught.value.kind == kind
    assert caught.value.message and kind in str(caught.value)


def test_audio_only_file_is_not_a_video(tmp_path):
    import av

    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream") as caught:
        decode_video(str(path), DEFAULT)
    assert caught.value.kind == "not_a_video"


def test_timeout(short_gop_clip):
    with pytest.raises(VideoError) as caught:
        decode_video(short_gop_clip, DEFAULT, timeout_s=0.0)
    assert caught.value.kind == "timeout"


def test_unknown_method_is_rejected(short_gop_clip):
    with pytest.raises(ValueError, match=r"method must be one of \['auto', 'sequential'"):
        decode_video(short_gop_clip, DEFAULT, method="fast")


def test_no_file_descriptor_leak(short_gop_clip, tmp_path):
    broken = truncated(make_clip(tmp_path / "fs.mp4", 5, 10, faststart=True), tmp_path / "b.mp4")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(25):
        decode_video(short_gop_clip, DEFAULT)
        with pytest.raises(VideoError):
            decode_video(broken, DEFAULT)
    assert len(os.listdir("/proc/self/fd")) == before
