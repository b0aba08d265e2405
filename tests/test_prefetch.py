"""The prefetching caption pipeline: what is decoded when, how many decoded videos are held at
once (counted by a test decoder whose results count themselves), identical output with prefetch
on or off, each video decoded once, and error records for videos that fail."""

from __future__ import annotations

import os
import time

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.captioning.records import META_KEY
from dj_ops.ops.config import TextLayout
from dj_ops.ops.pipeline import caption_batch, plan_groups
from dj_ops.ops.sample_builder import SampleBuilder
from dj_ops.runtime.lifetime import JobStopped
from dj_ops.testing.clips import make_clip, write_bytes
from dj_ops.testing.decoders import TRACKED
from dj_ops.video import FrameSettings
from dj_ops.video.decoders import DECODERS, open_decode_source
from tests.conftest import FAST_FRAMES, make_op, run_op

TRACKED_DECODER = ("dj_ops.testing.decoders:tracked_decode", "")
SETTINGS = FrameSettings(**FAST_FRAMES, size_factor=32)  # Qwen3-VL's patch factor


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("prefetch_clips")
    return [str(make_clip(folder / f"c{i}.mp4", 1.0 + i / 10, 10, 64, 48)) for i in range(7)]


@pytest.fixture
def tracked(monkeypatch):
    monkeypatch.setitem(DECODERS, "tracked", TRACKED_DECODER)
    TRACKED.reset()
    return "tracked"


def samples_of(paths: list[str]) -> list[dict]:
    return [{"text": f"{SpecialTokens.video} clip {i}", "videos": [p]} for i, p in enumerate(paths)]


def builder_of(samples: list[dict]) -> SampleBuilder:
    columns = {key: [s[key] for s in samples] for key in samples[0]}
    layout = TextLayout(meta_key=Fields.meta, video_token=SpecialTokens.video,
                        eoc_token=SpecialTokens.eoc,
                        special_tokens=tuple(get_special_tokens().values()), prompt="Describe.")
    return SampleBuilder(columns, layout)


class Recording:
    """Forwards to a real decoding source or backend, logging each call."""

    def __init__(self, target, log: list[str], fail_generate: bool = False):
        self.target, self.log, self.fail_generate = target, log, fail_generate

    def submit(self, path, settings):
        self.log.append(f"decode {os.path.basename(path)[:-4]}")
        return self.target.submit(path, settings)

    def result(self, ticket):
        return self.target.result(ticket)

    def discard(self, tickets):
        self.target.discard(tickets)

    def generate(self, requests):
        self.log.append(f"generate {len(requests)}")
        if self.fail_generate:  # what SIGTERM raises (an exception would be isolated per video)
            raise JobStopped(15)  # SIGTERM
        return self.target.generate(requests)


def test_plan_groups():
    assert plan_groups(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert plan_groups([], 3) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        plan_groups(["a"], 0)


@pytest.mark.parametrize(
    ("prefetch", "expected"),
    [
        (0, ["decode c0", "decode c1", "generate 2", "decode c2", "decode c3", "generate 2",
             "decode c4", "generate 1"]),
        (1, ["decode c0", "decode c1", "decode c2", "decode c3", "generate 2", "decode c4",
             "generate 2", "generate 1"]),
        (5, ["decode c0", "decode c1", "decode c2", "decode c3", "decode c4", "generate 2",
             "generate 2", "generate 1"]),
    ],
)
def test_next_groups_are_decoding_while_the_model_generates(qwen3, clips, prefetch, expected):
    log: list[str] = []
    backend = make_op(qwen3).model_key()
    builder = builder_of(samples_of(clips[:5]))
    pool = open_decode_source("pyav", 2, 30.0)
    try:
        caption_batch(builder, Recording(backend, log), Recording(pool, log), SETTINGS,
                      batch_size=2, prefetch=prefetch)
    finally:
        pool.close()
    assert log == expected


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_decoded_videos_held_at_once_never_exceed_the_bound(qwen3, clips, tracked, prefetch):
    paths = clips + clips[:3]  # 7 distinct videos, 3 listed twice
    op = make_op(qwen3, decoder=tracked, decode_workers=2, prefetch=prefetch,
                 generation_batch_size=2, keep_original_sample=False)
    rows = run_op(op, samples_of(paths))
    assert len(rows) == len(paths)
    assert all(r[Fields.meta][META_KEY]["status"] == "captioned" for r in rows)
    assert TRACKED.created == len(clips)  # each distinct video decoded once
    assert 2 <= TRACKED.peak <= (prefetch + 1) * 2
    assert TRACKED.alive == 0  # nothing kept once the batch is done


def test_output_is_the_same_with_prefetch_on_or_off_and_any_workers(qwen3, clips):
    samples = samples_of(clips + clips[:2])
    outputs = [
        run_op(make_op(qwen3, generation_batch_size=3, keep_original_sample=False, **params),
               samples)
        for params in ({"prefetch": 0, "decode_workers": 0}, {"prefetch": 1, "decode_workers": 2},
                       {"prefetch": True, "decode_workers": 1}, {"prefetch": 3})
    ]
    for other in outputs[1:]:
        assert other == outputs[0]


def test_failing_videos_get_error_records_and_the_rest_is_captioned(qwen3, clips, tmp_path):
    text = write_bytes(tmp_path / "notes.mp4", b"not a video\n" * 50)
    cut = write_bytes(tmp_path / "cut.mp4", open(clips[3], "rb").read()[:500])
    paths = [clips[0], str(tmp_path / "missing.mp4"), str(text), clips[1], str(cut), clips[2]]
    rows = run_op(make_op(qwen3, generation_batch_size=2, prefetch=1,
                          keep_original_sample=False), samples_of(paths))
    records = [r[Fields.meta][META_KEY] for r in rows]
    assert [r["videos"][0]["error_kind"] for r in records] == [
        "", "missing_file", "not_a_video", "", "decode_error", ""]
    assert [r["status"] for r in records] == [
        "captioned", "error", "error", "captioned", "error", "captioned"]


def test_a_stop_while_generating_leaves_no_decoded_video_behind(qwen3, clips):
    pool = open_decode_source("pyav", 2, 30.0)
    backend = Recording(make_op(qwen3).model_key(), [], fail_generate=True)
    try:
        with pytest.raises(JobStopped):
            caption_batch(builder_of(samples_of(clips)), backend, pool, SETTINGS, batch_size=2,
                          prefetch=2)
        assert pool.result(pool.submit(clips[0], SETTINGS)).frame_indices  # still works
        deadline = time.monotonic() + 30
        while pool.held and time.monotonic() < deadline:  # jobs running when it stopped
            time.sleep(0.05)
        assert pool.held == 0
    finally:
        pool.close()


@pytest.mark.parametrize(("value", "depth"), [(True, 2), (False, 0), (0, 0), (3, 3)])
def test_prefetch_parameter(qwen3, value, depth):
    assert make_op(qwen3, prefetch=value).prefetch == depth
