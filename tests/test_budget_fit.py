"""The frame budget through the op, on the transformers backend (``max_visual_tokens``) and the
openai backend (a loopback server advertising ``max_model_len`` in ``/v1/models``): videos are
fitted before any request is built, what reaches the model fits, each record says what was
used, and only a video that cannot fit at ``min_frames`` / ``min_pixels`` gets ``context_length``.
(vLLM's engine: tests/test_budget_vllm.py.)"""

from __future__ import annotations

import base64
import tempfile

import av
import pytest
from data_juicer.utils.constant import Fields

from dj_ops.adapters.qwen import Qwen3VLAdapter, qwen_prompt, qwen_video_tokens
from dj_ops.backends.openai_models import context_from_listing
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.records import META_KEY
from dj_ops.testing.clips import make_clip
from dj_ops.testing.openai_server import DATA_URL_PREFIX, CompletionServer, read_messages
from tests.conftest import FAST_SAMPLING, make_op, run_op
from tests.test_op import single_video_samples

PROMPT = "Describe the video."
# A 10 s clip at 2 fps wants 20 frames: capped at 8, 4 temporal groups of (256x320 -> 3 x 4
# patches of 32 at max_pixels 112*112) 12 Qwen3-VL tokens: 48 visual tokens without a budget.
FRAMES = {"max_frames": 8, "min_frames": 2, "max_pixels": 112 * 112, "min_pixels": 64 * 64}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("budget") / "ten_seconds.mp4"
    make_clip(path, seconds=10, fps=10, width=320, height=240)
    return str(path)


def _records(rows: list[dict]) -> list[dict]:
    return [row[Fields.meta][META_KEY]["videos"][0] for row in rows]


def _video_token_counts(monkeypatch) -> list[int]:
    """The ``<|video_pad|>`` tokens of every input the transformers backend encodes (its real
    processor output, recorded as it is built)."""
    counts: list[int] = []
    encode = TransformersBackend.encode

    def recording(self, requests):
        inputs = encode(self, requests)
        pad = self.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        counts.extend(int((ids == pad).sum()) for ids in inputs["input_ids"])
        return inputs

    monkeypatch.setattr(TransformersBackend, "encode", recording)
    return counts


@pytest.mark.parametrize("budget, reduced, frames", [(1000, "none", 8), (30, "frames", 4),
                                                     (10, "pixels", 2)])
def test_transformers_inputs_fit_max_visual_tokens(qwen3, long_clip, monkeypatch, budget,
                                                   reduced, frames):
    counts = _video_token_counts(monkeypatch)
    op = make_op(qwen3, **FRAMES, max_visual_tokens=budget, keep_original_sample=False)
    record = _records(run_op(op, single_video_samples([long_clip])))[0]
    assert record["error_kind"] == "" and counts  # (fast decoding may encode more than once)
    used = record["frames"]
    assert used["reduced"] == reduced and used["count"] == frames
    assert used["max_visual_tokens"] == budget
    # what the processor built is what the record says, and it fits
    assert set(counts) == {used["visual_tokens"]} and counts[0] <= budget
    assert counts[0] == qwen_video_tokens((used["count"], used["height"], used["width"]), 32)
    if reduced == "pixels":
        assert used["height"] * used["width"] < 96 * 128  # smaller than max_pixels gave
    else:
        assert (used["height"], used["width"]) == (96, 128)
    # fewer frames still span the whole clip
    assert record["timestamps"][0] == 0 and record["timestamps"][-1] > 9


def test_transformers_video_that_cannot_fit_gets_context_length(qwen3, long_clip, videos,
                                                                monkeypatch):
    counts = _video_token_counts(monkeypatch)
    # 2 frames at min_pixels (64x64 -> 32x64 after flooring to the factor) are 2 tokens
    op = make_op(qwen3, **FRAMES, max_visual_tokens=1, keep_original_sample=False)
    records = _records(run_op(op, single_video_samples([long_clip])))
    assert records[0]["error_kind"] == "context_length"
    assert "over the budget of 1 visual tokens" in records[0]["error_message"]
    assert counts == []  # nothing was sent to the model


def test_without_a_budget_the_record_says_so(qwen3, long_clip):
    record = _records(run_op(make_op(qwen3, **FRAMES, keep_original_sample=False),
                             single_video_samples([long_clip])))[0]
    assert record["frames"] == {"count": 8, "height": 96, "width": 128, "visual_tokens": -1,
                                "max_visual_tokens": -1, "reduced": ""}


# ---- the openai backend: the server's advertised context ----

def _sent_videos(server: CompletionServer) -> list[tuple[int, int, int]]:
    """``(frames, height, width)`` of each video the server received (decoded from the MP4)."""
    shapes = []
    for payload in server.received:
        _, url, _ = read_messages(payload["messages"])
        with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
            file.write(base64.b64decode(url[len(DATA_URL_PREFIX):]))
            file.flush()
            with av.open(file.name) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        shapes.append((len(frames), *frames[0].shape[:2]))
    return shapes


def _openai_rows(qwen3, clip, max_model_len, transport="mp4"):
    with CompletionServer(qwen3, max_model_len=max_model_len) as server:
        op = make_op(qwen3, backend="openai", **FRAMES, prompt=PROMPT, keep_original_sample=False,
                     model_params={"api_base": server.url, "video_transport": transport})
        rows = run_op(op, single_video_samples([clip]))
        return _records(rows), _sent_videos(server) if transport == "mp4" else []


def _text_bound() -> int:
    """The openai backend's bound on the prompt's text and the answer: the prompt's bytes in
    Qwen's chat format (less the video placeholder's one token), then ``max_new_tokens``."""
    return len(qwen_prompt(PROMPT, None).encode()) - 1 + FAST_SAMPLING["max_new_tokens"]


def test_openai_frames_sent_fit_the_advertised_context(qwen3, long_clip):
    per_group = len(Qwen3VLAdapter.frame_text.encode())  # the timestamps' bound, in bytes
    budget = 2 * (12 + per_group) + 1  # 2 of the 4 temporal groups fit
    records, sent = _openai_rows(qwen3, long_clip, _text_bound() + budget)
    used = records[0]["frames"]
    assert records[0]["error_kind"] == "" and used["max_visual_tokens"] == budget
    assert (used["reduced"], used["count"]) == ("frames", 4)
    assert len(sent) == 1 and sent[0] == (used["count"], used["height"], used["width"])
    cost = qwen_video_tokens(sent[0], 32) + 2 * per_group
    assert cost == used["visual_tokens"] <= budget


def test_openai_video_that_cannot_fit_is_never_sent(qwen3, long_clip):
    records, sent = _openai_rows(qwen3, long_clip, _text_bound() + 30)
    assert records[0]["error_kind"] == "context_length" and sent == []


def test_openai_without_an_advertised_context_sends_every_frame(qwen3, long_clip):
    records, sent = _openai_rows(qwen3, long_clip, None)
    assert records[0]["frames"]["reduced"] == "" and sent[0][0] == 8


def test_openai_path_transport_leaves_sampling_to_the_server(qwen3, long_clip):
    # the server decodes the file itself: no budget is fitted on this side, none refused
    records, _ = _openai_rows(qwen3, long_clip, _text_bound() + 30, transport="path")
    assert records[0]["error_kind"] == "" and records[0]["frames"]["reduced"] == ""


@pytest.mark.parametrize("listing, expected", [
    ({"data": [{"id": "m", "max_model_len": 4096}]}, 4096),
    ({"data": [{"id": "other", "max_model_len": 4096}]}, 4096),  # the only model served
    ({"data": [{"id": "a", "max_model_len": 1}, {"id": "b", "max_model_len": 2}]}, None),
    ({"data": [{"id": "m"}]}, None),  # a server that does not say
    ({"data": [{"id": "m", "max_model_len": "big"}]}, None),
    ({}, None),
])
def test_context_from_a_model_listing(listing, expected):
    assert context_from_listing(listing, "m") == expected
