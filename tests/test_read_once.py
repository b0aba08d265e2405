"""Each video is read once: the bytes a decode reads (the process's I/O counter) against the file's
size, with B-frames being skipped, whole and in windows; the frames kept stay those of a plain
decode, also where the look-ahead that numbers the frames falls short (a second reading, checked
here too) and on an edit-listed cut. Generated clips (pytest's tmp), and the shared real clips
when present."""

import shutil
import subprocess

import av
import numpy as np
import pytest

from dj_ops.testing.clips import make_clip, read_frame_index, sample_videos, write_bytes
from dj_ops.testing.reads import (
    bytes_read,
    make_noisy_clip,
    read_counter_available,
    read_once,
    remux,
)
from dj_ops.video import FrameSettings, decode_video
from dj_ops.video.decode_windows import WindowedFrames, stream_windowed
from dj_ops.video.skipping import LOOKAHEAD_PACKETS, PtsRanks, Unranked, can_skip, ranked_frames

pytestmark = pytest.mark.skipif(not read_counter_available(), reason="needs /proc/self/io")

MAX_READ = 1.05  # bytes read / file size
SPARSE = FrameSettings(strategy="uniform", num_frames=6)
SETTINGS = [FrameSettings(), SPARSE, FrameSettings(fps=4.0, video_end=2.0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two libx264 clips of about 2.5 MB with B-frames: index at the end (as FFmpeg writes by
    default) and at the start (faststart)."""
    folder = tmp_path_factory.mktemp("read_once")
    return [str(make_noisy_clip(folder / "noisy.mp4")),
            str(make_noisy_clip(folder / "noisy_faststart.mp4", faststart=True))]


def has_b_frames(path: str) -> bool:
    with av.open(path) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.size]
        return can_skip(stream) and pts != sorted(pts)


def read_ratio(path: str, call) -> float:
    call()  # anything loaded on first use, loaded
    return bytes_read(call) / (len(open(path, "rb").read()) or 1)


def frame_numbers(frames) -> list[int]:
    return [read_frame_index(frame) for frame in frames]


@pytest.mark.parametrize("settings", SETTINGS, ids=["fps", "uniform", "start"])
def test_a_video_with_b_frames_is_read_once(clips, settings):
    for path in clips:
        assert has_b_frames(path)
        ratio = read_ratio(path, lambda p=path: decode_video(p, settings))
        assert ratio <= MAX_READ, (path, ratio)
        video = decode_video(path, settings)
        assert frame_numbers(video.frames) == video.frame_indices


def test_windows_of_a_video_with_b_frames_are_read_once(clips):
    job = WindowedFrames(FrameSettings(fps=4.0), seconds=1.0, overlap=0.25)
    for path in clips:
        windows = list(stream_windowed(path, job))
        assert len(windows) == 4 and all(w.error is None for w in windows)
        for window in windows:
            assert frame_numbers(window.frames) == window.frame_indices
        assert read_ratio(path, lambda p=path: list(stream_windowed(p, job))) <= MAX_READ


def test_the_sample_clips_are_read_as_a_single_pass_of_ffmpeg_reads_them():
    """Real clips: no more than FFmpeg reads to demux the file once (on a small file whose index
    is at the end that is a little over 1.05x: FFmpeg reads its first 32 kB again after the
    index, and the index again at the end); 1.05x from 1 MB."""
    for path in map(str, sample_videos()):
        size = len(open(path, "rb").read())
        once = read_once(path)
        for settings in (FrameSettings(), SPARSE):
            read = read_ratio(path, lambda p=path, s=settings: decode_video(p, s)) * size
            assert read <= once + 4096, (path, read, once)
            if size >= 1_000_000:
                assert read <= MAX_READ * size, (path, read / size)


def test_the_counter_sees_a_second_reading(tmp_path, clips):
    """A container without a frame count (Matroska) is still read twice: its packets are scanned
    for the frame count and times the sampler needs, then decoded."""
    path = str(remux(clips[0], tmp_path / "noisy.mkv"))
    assert read_ratio(path, lambda: decode_video(path, SPARSE)) > 1.8


@pytest.mark.parametrize(("bframes", "lookahead", "reopens"), [
    (1, 0, True), (2, 1, False), (3, 2, False), (3, 3, False), (3, LOOKAHEAD_PACKETS, False),
])
def test_a_short_look_ahead_falls_back_to_a_plain_decode(tmp_path, bframes, lookahead,
                                                         reopens):
    """The frames are a plain decode's whatever the look-ahead. One too short for the B-frames
    is noticed: before the decoder's first frame the decoding goes on without skipping; after
    it, the frames still to come are decoded from a second opening of the file."""
    path = str(make_noisy_clip(tmp_path / "clip.mp4", frames=48, bframes=bframes))
    with av.open(path) as container:
        plain = [f.to_ndarray() for f in container.decode(video=0)]
    reopened = []

    def again():
        reopened.append(True)
        with av.open(path) as container:
            yield from enumerate(container.decode(video=0))

    for wanted in ({0, 5, 30, 47}, {2, 3, 37, 46}, set(range(1, 48, 7))):
        with av.open(path) as container:
            got = {i: f.to_ndarray() for i, f in ranked_frames(
                container, container.streams.video[0], wanted, again, lookahead=lookahead)}
        assert wanted <= set(got)
        assert all(np.array_equal(got[i], plain[i]) for i in got)
    assert bool(reopened) == reopens


def test_an_edit_listed_cut_skips_and_keeps_the_frames(tmp_path):
    """A stream copy cut mid-GOP: its first packets are marked for discarding (FFmpeg drops
    their frames); they are decoded, not counted, and not read twice."""
    if not shutil.which("ffmpeg"):
        pytest.skip("needs the ffmpeg command line to cut with an edit list")
    source = make_clip(tmp_path / "b.mp4", 6.0, 24, 96, 64, gop=48, bframes=3)
    cut = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "1.3", "-i", str(source), "-c", "copy",
                    str(cut)], check=True)
    with av.open(str(cut)) as container:
        assert any(p.is_discard for p in container.demux(video=0))
    with av.open(str(cut)) as container:
        plain = [f.to_ndarray() for f in container.decode(video=0)]
    wanted = {0, 9, 10, 50, len(plain) - 1}
    with av.open(str(cut)) as container:
        got = dict(ranked_frames(container, container.streams.video[0], wanted,
                                 lambda: pytest.fail("read again")))
    assert wanted <= set(got)
    assert all(np.array_equal(got[i].to_ndarray(), plain[i]) for i in wanted)
    short = FrameSettings(video_end=3.0)  # the container counts the discarded frames too
    assert np.array_equal(decode_video(str(cut), short).frames,
                          decode_video(str(cut), short, skip_unreferenced=False).frames)


def test_a_corrupt_tail_still_ends_in_an_error_record(clips, tmp_path):
    data = open(clips[1], "rb").read()
    path = str(write_bytes(tmp_path / "cut_short.mp4", data[: len(data) * 3 // 4]))
    with pytest.raises(Exception, match="decode_error"):
        decode_video(path, SPARSE)


# --- the ranks, alone ------------------------------------------------------------------------


def test_ranks_number_frames_by_pts_and_check_what_comes_out():
    ranks = PtsRanks()
    for pts in (0, 3, 1, 2):  # decoding order of I P B B
        ranks.add(pts)
    assert [ranks.send(pts, {0, 2}) for pts in (0, 3)] == [True, True]  # nothing out yet
    assert ranks.frame_out(0) == 0
    assert [ranks.send(pts, {0, 2}) for pts in (1, 2)] == [False, True]
    assert ranks.frame_out(2) == 2  # frame 1 was sent to be skipped: it may be missing
    assert ranks.frame_out(3) == 3
    with pytest.raises(Unranked, match="came out after"):
        ranks.frame_out(1)


@pytest.mark.parametrize(("case", "message"), [
    ("late", "read after"), ("duplicate", "two packets"), ("no pts", "without pts"),
    ("dropped", "was to be decoded"), ("unsent", "not sent yet"), ("unknown", "unknown pts"),
])
def test_ranks_refuse_what_they_cannot_number(case, message):
    ranks = PtsRanks()
    for pts in (0, 4, 2):
        ranks.add(pts)
    with pytest.raises(Unranked, match=message):
        if case in ("late", "duplicate", "no pts"):
            ranks.send(0, {0})
            ranks.send(4, {0})
            ranks.add({"late": 3, "duplicate": 4, "no pts": None}[case])
        elif case == "dropped":
            ranks.send(0, set())
            ranks.frame_out(0)
            ranks.send(4, {1})
            ranks.send(2, {1})  # wanted: to be decoded
            ranks.frame_out(4)
        else:
            ranks.send(0, set())
            ranks.frame_out(0)
            ranks.frame_out(4 if case == "unsent" else 5)


def test_frames_the_decoder_drops_before_its_first_frame_are_not_counted():
    ranks = PtsRanks()
    for pts in (10, 20, 30):
        ranks.add(pts)
    for pts in (10, 20, 30):
        assert ranks.send(pts, set()) is True  # everything decoded until a frame comes out
    assert ranks.frame_out(20) == 0  # frame 10 was undecodable: a plain decode drops it too
    assert ranks.frame_out(30) == 1
