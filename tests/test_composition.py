"""The op's features used together, pair by pair (docs/composition.md is written from the
``composes`` markers here and in the other test files). Each test asserts the effect of every
feature it names, so it fails when any of them is lost in the combination.

Clips are generated (4 s and 12 s, 64x48) so that every window, range and budget below is known.
"""

from __future__ import annotations

import re

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.backends.openai_payload import STRUCTURED_OUTPUT_IGNORED
from dj_ops.captioning.quality import TRUNCATED, ends_sentence
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.structured import validation_error
from dj_ops.testing.clips import make_clip
from dj_ops.testing.openai_server import CompletionServer
from tests.conftest import make_op, run_op

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")

MODES = ("random_any", "similar_one_simhash", "all", "consensus")
# A small schema: every document ends within 100 tokens, whatever the weights.
TINY_SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["calm", "busy"]},
                   "what": {"type": "string", "minLength": 1, "maxLength": 12}},
    "required": ["mood", "what"],
    "additionalProperties": False,
}
WHOLE_DOCUMENT = {"max_new_tokens": 100}
# Six tokens, never fewer: the random model's text is cut by the limit (mid-sentence, mostly).
CUT = {"max_new_tokens": 6, "min_new_tokens": 6}
# FAST_FRAMES take 4 frames of a 64x48 clip at 64x64 (2x2 patches of 32): 8 visual tokens; a
# budget of 6 fits 2 frames (4 tokens).
BUDGET = 6
RANGE = {"video_start": 0.5, "video_end": 3.0}
# 5 s windows overlapping 1 s at 1 fps: 12 s -> [0, 5] [4, 9] [8, 12]; 4 s: one window.
WINDOWS = {"window_seconds": 5.0, "window_overlap": 1.0, "fps": 1.0}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("composition")
    return [str(make_clip(folder / f"clip{i}.mp4", seconds=4.0, fps=10)) for i in range(3)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> str:
    return str(make_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=12.0, fps=4))


def rows_of(paths_per_row: list[list[str]]) -> list[dict]:
    return [{"text": "", "videos": paths} for paths in paths_per_row]


def record(row: dict) -> dict:
    return row[Fields.meta][META_KEY]


def check_field(row: dict, mode: str, caption_num: int) -> list:
    """The caption field holds one caption per video, a list of them in mode 'all'."""
    captions = row["caption"]
    assert len(captions) == len(row["videos"])
    for per_video in captions:
        if mode == "all":
            assert 1 <= len(per_video) <= caption_num and all(per_video)
        else:
            assert isinstance(per_video, str) and per_video
    return captions


def check_gate(entry: dict, retries: int, text: str | None = None) -> bool:
    """The gate checked the caption: its attempts, each attempt's flags, the kept one's; a text
    cut mid-sentence by the token limit is flagged. Whether ``text`` was cut so."""
    attempts = entry["attempts"]
    assert 1 <= attempts <= retries + 1
    assert len(entry["attempt_flags"]) == attempts
    assert ",".join(entry["quality_flags"]) == entry["attempt_flags"][-1]
    if attempts > 1:
        assert all(entry["attempt_flags"][:-1])  # only a failing caption is generated again
    cut = text is not None and entry["hit_token_limit"] and not ends_sentence(text)
    if cut:
        assert TRUNCATED in entry["quality_flags"] and attempts == retries + 1
    return cut


def check_budget(frames: dict) -> None:
    assert frames["max_visual_tokens"] == BUDGET
    assert (frames["count"], frames["reduced"]) == (2, "frames")
    assert 0 < frames["visual_tokens"] <= BUDGET


@pytest.mark.composes("transformers", *MODES, "caption_key", "json", "gate", "frame_budget",
                      "video_range", "result_store")
@pytest.mark.parametrize("mode", MODES)
def test_keep_modes_with_field_json_gate_budget_range_and_store(qwen3, clips, tmp_path, mode):
    params = dict(caption_num=2, keep_candidate_mode=mode, caption_key="caption",
                  caption_format="json", json_schema=TINY_SCHEMA, sampling_params=WHOLE_DOCUMENT,
                  max_retries=1, max_visual_tokens=BUDGET, **RANGE,
                  result_store=str(tmp_path / "store.sqlite"))
    samples = rows_of([clips[:1], clips[1:]])
    first = run_op(make_op(qwen3, **params), samples)
    assert len(first) == len(samples)
    for row in first:
        assert record(row)["status"] == "captioned"
        check_field(row, mode, 2)
        assert len(row["caption_lengths"]) == len(row["videos"])
        for video in record(row)["videos"]:
            assert validation_error(video["caption_json"], TINY_SCHEMA) is None
            check_gate(video, retries=1)
            check_budget(video["frames"])
            assert all(RANGE["video_start"] <= t <= RANGE["video_end"]
                       for t in video["timestamps"])
            assert not video["from_store"]
    again = run_op(make_op(qwen3, **params), samples)  # every video reused from the store
    assert [row["caption"] for row in again] == [row["caption"] for row in first]
    assert all(v["from_store"] for row in again for v in record(row)["videos"])


@pytest.mark.composes("transformers", *MODES, "windows", "result_store", "gate", "frame_budget",
                      "caption_key")
@pytest.mark.parametrize("mode", MODES)
def test_windows_with_store_gate_budget_and_field(qwen3, long_clip, clips, tmp_path, mode):
    """The gate checks every window and every merge (cut captions flagged, retried once); each
    window is fitted to the budget; the video's frames are its one pass's; a video captioned
    before is reused from the store with its windows, the rest generated (a killed run resumes:
    whole videos, windows included)."""
    params = dict(caption_num=2, keep_candidate_mode=mode, caption_key="caption",
                  sampling_params=CUT, max_retries=1, max_visual_tokens=BUDGET, **WINDOWS,
                  result_store=str(tmp_path / "store.sqlite"))
    (first,) = run_op(make_op(qwen3, **params), rows_of([[long_clip]]))
    both = run_op(make_op(qwen3, **params), rows_of([[long_clip], clips[:1]]))
    for row in [first, *both]:
        assert record(row)["status"] == "captioned"
        check_field(row, mode, 2)
    kept = record(first)["videos"]  # mode 'all': one entry per kept candidate
    video = kept[0]
    windows = video["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 5.0), (4.0, 9.0), (8.0, 12.0)]
    cut = 0
    for window in windows:
        assert window["caption"] and window["generated_tokens"] == 6
        cut += check_gate(window, retries=1, text=window["caption"])
        check_budget(window["frames"])
    merged = first["caption"][0] if mode != "all" else first["caption"][0]
    for i, entry in enumerate(kept):  # the merge, checked as every window
        assert entry["generated_tokens"] == 6
        cut += check_gate(entry, retries=1, text=merged[i] if mode == "all" else merged)
    assert cut  # six tokens of the random model: some caption is cut mid-sentence
    assert video["frames"]["count"] == len(video["timestamps"]) > 0
    assert video["frames"]["visual_tokens"] == sum(w["frames"]["visual_tokens"] for w in windows)
    reused, generated = (record(row)["videos"][0] for row in both)
    assert reused["from_store"] and not generated["from_store"]
    assert reused["windows"] == windows and both[0]["caption"] == first["caption"]
    assert both[0]["caption_windows"] == first["caption_windows"]
    assert [w["start"] for w in generated["windows"]] == [0.0]  # one window: no merge


@pytest.fixture(scope="module")
def server(qwen3):
    with CompletionServer(qwen3) as running:
        yield running


@pytest.mark.composes("openai", *MODES, "caption_key", "gate", "frame_budget", "video_range",
                      "result_store")
@pytest.mark.parametrize("mode", MODES)
def test_openai_with_modes_field_gate_budget_range_and_store(qwen3, clips, server, tmp_path,
                                                             mode):
    params = dict(backend="openai", model_params={"api_base": server.url}, caption_num=2,
                  keep_candidate_mode=mode, caption_key="caption", sampling_params=CUT,
                  max_retries=1, max_visual_tokens=BUDGET, **RANGE,
                  result_store=str(tmp_path / "store.sqlite"))
    samples = rows_of([clips[:1], clips[1:]])
    first = run_op(make_op(qwen3, **params), samples)
    for row in first:
        assert record(row)["status"] == "captioned" and record(row)["backend"] == "openai"
        check_field(row, mode, 2)
        for video in record(row)["videos"]:
            check_gate(video, retries=1)
            check_budget(video["frames"])
            assert all(RANGE["video_start"] <= t <= RANGE["video_end"]
                       for t in video["timestamps"])
            assert not video["from_store"]
    sent = len(server.received)
    again = run_op(make_op(qwen3, **params), samples)
    assert len(server.received) == sent  # every video reused: nothing sent
    assert [row["caption"] for row in again] == [row["caption"] for row in first]


# ---- json mode with candidates cut by the token limit ----

@pytest.mark.composes("transformers", "json", "all", "caption_key")
def test_valid_documents_are_delivered_and_cut_ones_recorded(qwen3, clips):
    """A candidate cut by ``max_new_tokens`` (not a whole document) is left out and listed in
    ``dropped_candidates`` with its token facts; the valid ones are delivered. The limit is set
    between the shortest and the longest whole document of a first run (seeded: the same
    tokens up to the limit), so some are cut and some not."""
    params = dict(caption_num=4, keep_candidate_mode="all", caption_key="caption",
                  caption_format="json", json_schema=TINY_SCHEMA)
    samples = rows_of([[clip] for clip in clips])
    whole = run_op(make_op(qwen3, sampling_params=WHOLE_DOCUMENT, **params), samples)
    lengths = sorted(v["generated_tokens"] for row in whole for v in record(row)["videos"])
    assert lengths[0] < lengths[-1], lengths  # documents of different lengths
    limit = lengths[0]
    rows = run_op(make_op(qwen3, sampling_params={"max_new_tokens": limit}, **params), samples)
    delivered = dropped = 0
    for row in rows:
        rec = record(row)
        if rec["status"] == "error":  # every candidate cut: the token facts stay
            (video,) = rec["videos"]
            assert video["error_kind"] == "invalid_json" and video["hit_token_limit"]
            assert video["generated_tokens"] == limit
            dropped += len(video["dropped_candidates"])
            continue
        delivered += len(row["caption"][0])
        for video in rec["videos"]:
            assert validation_error(video["caption_json"], TINY_SCHEMA) is None
        lost = rec["videos"][0]["dropped_candidates"]
        assert len(row["caption"][0]) + len(lost) == 4
        assert all("invalid_json" in d and f"({limit} tokens, token limit hit)" in d
                   for d in lost)
        dropped += len(lost)
    assert delivered and dropped  # some delivered, some cut and recorded


# ---- a server that does not enforce the schema ----

def test_a_server_ignoring_the_schema_is_detected_with_the_fix(qwen3, clips, server):
    """The loopback server ignores ``response_format`` (as vLLM's server without structured
    outputs does): its free text is detected, and the record names the fix."""
    op = make_op(qwen3, backend="openai", model_params={"api_base": server.url},
                 caption_format="json", json_schema=TINY_SCHEMA, sampling_params=CUT,
                 caption_key="caption")
    rows = run_op(op, rows_of([clips[:1], clips[1:2]]))
    for row in rows:
        (video,) = record(row)["videos"]
        assert record(row)["status"] == "error"
        assert video["error_kind"] == STRUCTURED_OUTPUT_IGNORED
        assert "--structured-outputs-config" in video["error_message"]
        assert "guidance" in video["error_message"]
        assert (video["generated_tokens"], video["hit_token_limit"]) == (6, True)  # kept


def test_what_an_enforcing_server_may_answer():
    from dj_ops.backends.openai_payload import could_be_enforced
    from dj_ops.captioning.requests import Candidate

    assert could_be_enforced(Candidate('{"mood":"calm","what":"a dog"}', 9, False))
    assert could_be_enforced(Candidate('{"mood":"calm","wh', 6, True))  # cut by the limit
    assert not could_be_enforced(Candidate('{"mood":"calm"', 5, False))  # stopped, incomplete
    assert not could_be_enforced(Candidate("A dog runs", 6, True))  # free text
    assert not could_be_enforced(Candidate('{"what":"a\x01dog"}', 6, True))  # raw control


# ---- refused pairs ----

# the parameters that turn a feature on, for the refused pairs
FEATURE_PARAMS = {"windows": {"window_seconds": 10.0}, "video_range": {"video_start": 1.0}}


def test_every_refused_pair_is_refused_when_the_op_is_built(qwen3):
    from dj_ops.ops.composition import REFUSED

    for pair, reason in REFUSED.items():
        params = {k: v for feature in pair for k, v in FEATURE_PARAMS[feature].items()}
        with pytest.raises(ValueError, match=re.escape(reason)):
            make_op(qwen3, **params)


# ---- np > 1: worker processes, each with its own captioner ----

@pytest.mark.composes("np", "transformers", "windows", "result_store", "gate", "frame_budget",
                      "caption_key", "all")
def test_two_worker_processes_with_windows_store_gate_budget_and_field(qwen3, long_clip, clips,
                                                                       tmp_path):
    params = dict(caption_num=2, keep_candidate_mode="all", caption_key="caption",
                  sampling_params=CUT, max_retries=1, max_visual_tokens=BUDGET, **WINDOWS,
                  result_store=str(tmp_path / "store.sqlite"))
    samples = rows_of([[long_clip], clips[:1], [long_clip], clips[1:2]])
    first = run_op(make_op(qwen3, **params), samples, batch_size=2, num_proc=2)
    assert len(first) == len(samples)
    for row in first:
        assert record(row)["status"] == "captioned"
        check_field(row, "all", 2)
        video = record(row)["videos"][0]
        check_gate(video, retries=1)
        for window in video["windows"]:
            check_gate(window, retries=1, text=window["caption"])
            check_budget(window["frames"])
    assert len(record(first[0])["videos"][0]["windows"]) == 3
    again = run_op(make_op(qwen3, **params), samples, batch_size=2, num_proc=2)
    assert all(v["from_store"] for row in again for v in record(row)["videos"])
    assert [row["caption_windows"] for row in again] == [row["caption_windows"] for row in first]


@pytest.mark.composes("np", "transformers", "json", "video_range", "random_any",
                      "similar_one_simhash", "consensus")
@pytest.mark.parametrize("mode", ["random_any", "similar_one_simhash", "consensus"])
def test_two_worker_processes_with_json_range_and_modes(qwen3, clips, mode):
    params = dict(caption_num=2, keep_candidate_mode=mode, caption_format="json",
                  json_schema=TINY_SCHEMA, sampling_params=WHOLE_DOCUMENT, **RANGE,
                  keep_original_sample=False)
    samples = [{"text": f"<__dj__video> clip {i}", "videos": [clip]}
               for i, clip in enumerate(clips + clips[:1])]
    rows = run_op(make_op(qwen3, **params), samples, batch_size=2, num_proc=2)
    assert len(rows) == len(samples)
    for row in rows:
        (video,) = record(row)["videos"]
        assert record(row)["status"] == "captioned"
        assert validation_error(video["caption_json"], TINY_SCHEMA) is None
        assert all(RANGE["video_start"] <= t <= RANGE["video_end"] for t in video["timestamps"])


@pytest.mark.composes("np", "openai", "random_any", "gate", "result_store", "video_range",
                      "frame_budget", "caption_key")
def test_two_worker_processes_against_one_server(qwen3, clips, server, tmp_path):
    params = dict(backend="openai", model_params={"api_base": server.url}, caption_num=2,
                  caption_key="caption", sampling_params=CUT, max_retries=1,
                  max_visual_tokens=BUDGET, **RANGE, result_store=str(tmp_path / "s.sqlite"))
    samples = rows_of([[clip] for clip in clips] + [clips[:1]])
    rows = run_op(make_op(qwen3, **params), samples, batch_size=2, num_proc=2)
    assert len(rows) == len(samples)
    for row in rows:
        (video,) = record(row)["videos"]
        assert record(row)["status"] == "captioned"
        check_gate(video, retries=1, text=row["caption"][0])
        check_budget(video["frames"])
    sent = len(server.received)
    again = run_op(make_op(qwen3, **params), samples, batch_size=2, num_proc=2)
    assert len(server.received) == sent and [r["caption"] for r in again] == [
        r["caption"] for r in rows]
