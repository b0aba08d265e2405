"""Long videos: windows decoded in one pass, captioned with their true timestamps, merged into one
caption per video; a window that fails alone. On generated clips (pytest's tmp, never committed):
a 40 s clip in the default tests, a 10-minute one in a ``slow`` test."""

from __future__ import annotations

import av
import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.backends.base import build_backend
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.ops.config import TextLayout
from dj_ops.ops.sample_builder import SampleBuilder, VideoSlot
from dj_ops.ops.window_config import WindowConfig
from dj_ops.ops.windowed import WindowedCaptioning
from dj_ops.testing.clips import make_clip
from dj_ops.video.decode import decode_video
from dj_ops.video.decode_windows import WindowedFrames, WindowVideo, stream_windowed
from dj_ops.video.decoders import open_source
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import StreamingSource
from dj_ops.video.windows import plan_windows, window_frame_indices
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
SPECIAL = list(get_special_tokens().values())
# 15 s windows overlapping 5 s at 1 frame per second, 4 frames at most per window: 40 s -> 4
# windows ([0, 15], [10, 25], [20, 35], [30, 40]: the last one short).
WINDOWS = {"window_seconds": 15.0, "window_overlap": 5.0, "fps": 1.0, "max_frames": 4}
SPANS = [(0.0, 15.0), (10.0, 25.0), (20.0, 35.0), (30.0, 40.0)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> str:
    """40 s at 2 fps, 64x48, its index first (a truncated copy still says how long it is)."""
    folder = tmp_path_factory.mktemp("long")
    return str(make_clip(folder / "long.mp4", seconds=40, fps=2, faststart=True))


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> str:
    return str(make_clip(tmp_path_factory.mktemp("short") / "short.mp4", seconds=6, fps=2))


@pytest.fixture(scope="module")
def truncated_clip(long_clip, tmp_path_factory) -> str:
    """The long clip cut at 80% of its bytes: its last windows' frames are missing."""
    path = tmp_path_factory.mktemp("truncated") / "truncated.mp4"
    data = open(long_clip, "rb").read()
    path.write_bytes(data[: int(len(data) * 0.8)])
    return str(path)


def job(**frames) -> WindowedFrames:
    settings = FrameSettings(fps=1.0, max_frames=4, min_pixels=32 * 32, max_pixels=64 * 64,
                             size_factor=32, **frames)
    return WindowedFrames(settings, 15.0, 5.0)


def record(row: dict) -> dict:
    return row[Fields.meta][META_KEY]


@pytest.fixture
def opened_files(monkeypatch) -> list[str]:
    """Every file PyAV opens in this process (decoding in the op's own thread)."""
    opened, real_open = [], av.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    return opened


def test_windows_boundaries_overlap_and_the_last_short_window(long_clip):
    windows = list(stream_windowed(long_clip, job()))
    assert [(w.window.start, w.window.end) for w in windows] == SPANS
    assert [w.window_count for w in windows] == [4] * 4
    assert [w.more for w in windows] == [True, True, True, False]
    expected = window_frame_indices(80, 2.0, None, job().frames, plan_windows(40.0, 15.0, 5.0))
    for part, indices in zip(windows, expected, strict=True):
        assert part.error is None
        assert part.frame_indices == indices and len(part.frames) == 4
        assert part.window.start - 1e-6 <= part.timestamps[0] < part.timestamps[-1] \
            <= part.window.end
        # true times in the whole video: frame index / 2 fps
        assert part.timestamps == [index / 2.0 for index in part.frame_indices]
    # overlapping windows share frames (decoded once, kept for the next window)
    assert set(expected[0]) & set(expected[1])


def test_a_video_no_longer_than_one_window_is_decoded_as_without_windows(short_clip):
    (video,) = list(stream_windowed(short_clip, job()))
    plain = decode_video(short_clip, job().frames)
    assert not isinstance(video, WindowVideo) and video.frame_indices == plain.frame_indices


def test_truncated_tail_fails_its_windows_alone(truncated_clip):
    parts = [part.error or part for part in stream_windowed(truncated_clip, job())]
    assert len(parts) == 4 and not isinstance(parts[0], VideoError)
    assert isinstance(parts[-1], VideoError) and parts[-1].kind == "decode_error"
    assert "truncated or corrupt" in parts[-1].message


def test_window_parameters_are_checked_at_construction(qwen3):
    cases = [({"window_seconds": 10, "window_overlap": 10}, "window_overlap"),
             ({"window_overlap": 2}, "needs window_seconds"),
             ({"window_seconds": 10, "merge_model": "other"}, "merge_model"),
             ({"window_seconds": 10, "video_start": 1.0}, "video_start"),
             ({"window_seconds": 10, "merge_prompt": " "}, "merge_prompt is empty")]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            make_op(qwen3, **params)


def test_one_decode_pass_per_long_video(qwen3, long_clip, short_clip, opened_files):
    op = make_op(qwen3, decode_workers=0, caption_key="caption", **WINDOWS)
    rows = run_op(op, [{"text": "", "videos": [long_clip]}, {"text": "", "videos": [short_clip]}])
    windows = rows[0]["caption_windows"][0]
    assert [(w["start"], w["end"]) for w in windows] == SPANS  # 4 windows ...
    with_windows = opened_files.count(long_clip)
    opened_files.clear()
    decode_video(long_clip, job().frames)  # the video decoded once, without windows
    # ... opened once, as for one plain decode, not once per window
    assert with_windows == opened_files.count(long_clip) == 1


def test_windows_and_merged_caption_in_the_record_and_the_text(qwen3, long_clip, short_clip):
    op = make_op(qwen3, **WINDOWS)
    samples = [{"text": f"{V} {E}", "videos": [long_clip]},
               {"text": f"{V} {E}", "videos": [short_clip]}]
    rows = [r for r in run_op(op, samples) if Fields.meta in r and record(r)]
    long_row, short_row = (next(r for r in rows if r["videos"] == [p])
                           for p in (long_clip, short_clip))
    (merged,) = captions_after_video_tokens(long_row["text"], V, SPECIAL)
    video = record(long_row)["videos"][0]
    assert record(long_row)["status"] == "captioned" and merged.strip()
    assert [(w["start"], w["end"]) for w in video["windows"]] == SPANS
    assert all(w["caption"] and not w["error_kind"] for w in video["windows"])
    assert merged not in [w["caption"] for w in video["windows"]]  # the merge's own answer
    # a video no longer than one window: captioned as without windows, its one window's caption
    (caption,) = captions_after_video_tokens(short_row["text"], V, SPECIAL)
    (window,) = record(short_row)["videos"][0]["windows"]
    assert (window["start"], window["end"], window["caption"]) == (0.0, 6.0, caption)


class RecordingBackend:
    """The real backend, its requests kept for the test to read."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def generate(self, requests):
        self.calls.append(list(requests))
        return self.backend.generate(requests)

    def generate_text(self, requests):  # the merge
        self.calls.append(list(requests))
        return self.backend.generate_text(requests)


@pytest.fixture(scope="module")
def qwen3_backend(qwen3):
    op = make_op(qwen3, **WINDOWS)
    return build_backend("transformers", op.config.model)


def caption_with_windows(backend, path: str) -> tuple[SampleBuilder, RecordingBackend]:
    builder = SampleBuilder({"text": [""], "videos": [[path]]}, TextLayout(), windowed=True)
    windowed = WindowedCaptioning(WindowConfig(seconds=15.0, overlap=5.0), job().frames,
                                  batch_size=4)
    source = StreamingSource(open_source(stream_windowed, 0, None))
    stream = source.result(source.submit(path, windowed.job))
    slot = VideoSlot(0, 0, path, "Describe the video.")
    recording = RecordingBackend(backend)
    windowed.caption_group(builder, recording, {path: stream}, {path: [slot]}, None)
    return builder, recording


def test_window_requests_carry_true_timestamps_into_qwen3_prompt(qwen3_backend, long_clip):
    _, recording = caption_with_windows(qwen3_backend, long_clip)
    window_requests, (merge,) = recording.calls
    assert len(window_requests) == 4
    for request, (start, _) in zip(window_requests, SPANS, strict=True):
        indices = request.metadata["frames_indices"]
        assert indices[0] / 2.0 >= start  # true frame indices, 2 fps
        text = qwen3_backend.tokenizer.decode(qwen3_backend.encode([request])["input_ids"][0])
        first_pair = (indices[0] + indices[1]) / 2 / 2.0  # Qwen3-VL: a time per 2 frames
        assert f"<{first_pair:.1f} seconds>" in text
    # the merge: text only, the window captions as timestamped lines
    assert merge.frames is None
    assert "[10.0 s - 25.0 s]" in merge.prompt and "same words" in merge.prompt
    assert "<|video_pad|>" not in qwen3_backend.tokenizer.decode(
        qwen3_backend.encode([merge])["input_ids"][0])


def test_a_failed_window_is_recorded_and_the_rest_merged(qwen3, truncated_clip):
    op = make_op(qwen3, caption_key="caption", **WINDOWS)
    (row,) = run_op(op, [{"text": "", "videos": [truncated_clip]}])
    windows = row["caption_windows"][0]
    failed = [w for w in windows if w["error_kind"]]
    assert failed and failed[-1] == windows[-1] and windows[0]["caption"]
    assert all(not w["caption"] for w in failed)
    assert record(row)["status"] == "captioned" and row["caption"][0].strip()
    assert record(row)["videos"][0]["windows"] == windows


def test_a_video_whose_every_window_fails_gets_an_error_record(qwen3, tmp_path):
    path = make_clip(tmp_path / "long.mp4", seconds=40, fps=2, faststart=True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.05)])  # the index, hardly any frame
    op = make_op(qwen3, caption_key="caption", **WINDOWS)
    (row,) = run_op(op, [{"text": "", "videos": [str(path)]}])
    assert record(row)["status"] == "error" and row["caption"] == [""]
    assert record(row)["videos"][0]["error_kind"]


@pytest.mark.slow
def test_ten_minute_clip_in_one_pass(qwen3, tmp_path, opened_files):
    path = str(make_clip(tmp_path / "ten_minutes.mp4", seconds=600, fps=1, faststart=True))
    opened_files.clear()  # the clip was written: count from here
    op = make_op(qwen3, decode_workers=0, caption_key="caption", window_seconds=60.0,
                 window_overlap=10.0, fps=0.1, max_frames=4)
    (row,) = run_op(op, [{"text": "", "videos": [path]}])
    windows = row["caption_windows"][0]
    assert len(windows) == 12 and windows[-1]["end"] == 600.0
    assert all(w["caption"] for w in windows) and row["caption"][0].strip()
    with_windows = opened_files.count(path)
    opened_files.clear()
    decode_video(path, FrameSettings())
    assert with_windows == opened_files.count(path) < len(windows)


def test_long_videos_recipe_through_dj_process(tmp_path, qwen3, long_clip, short_clip):
    from tests.test_recipes import run_offline

    rows = run_offline("caption_long_videos.yaml", tmp_path, qwen3,
                       [{"text": "", "videos": [long_clip]}, {"text": "", "videos": [short_clip]}],
                       op_overrides={"window_seconds": 15.0, "window_overlap": 5.0,
                                     "max_frames": 4})
    by_video = {row["videos"][0]: row for row in rows}
    windows = by_video[long_clip]["caption_windows"][0]
    assert [(w["start"], w["end"]) for w in windows] == SPANS
    assert by_video[long_clip]["caption"][0].strip()
    assert record(by_video[long_clip])["videos"][0]["windows"] == windows
    assert len(by_video[short_clip]["caption_windows"][0]) == 1


@pytest.mark.composes("openai", "windows", "caption_key")
def test_merge_model_on_the_same_openai_server(qwen3, long_clip):
    """Windows go to the captioning model with their frames; the merge goes to ``merge_model``
    on the same server, as a message without a video part."""
    from dj_ops.testing.openai_server import CompletionServer

    with CompletionServer(qwen3) as server:
        op = make_op(qwen3, backend="openai", caption_key="caption", merge_model="text-merger",
                     model_params={"api_base": server.url}, **WINDOWS)
        (row,) = run_op(op, [{"text": "", "videos": [long_clip]}])
        payloads = list(server.received)
    parts = [[p["type"] for p in body["messages"][-1]["content"]] for body in payloads]
    merges = [body for body, kinds in zip(payloads, parts, strict=True) if kinds == ["text"]]
    assert len(payloads) == 5 and len(merges) == 1  # 4 windows, 1 merge
    assert merges[0]["model"] == "text-merger"
    assert all(body["model"] == qwen3 for body in payloads if body is not merges[0])
    assert "[30.0 s - 40.0 s]" in merges[0]["messages"][-1]["content"][0]["text"]
    assert row["caption"][0].strip() and len(row["caption_windows"][0]) == 4
