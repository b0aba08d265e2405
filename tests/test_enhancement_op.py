"""The enhancement op on the transformers backend, chained after the real captioning op: the
original caption kept, the rewrite beside it with its provenance, every output mode, the
length bound, json mode, the quality gate, on_error, np > 1, and construction errors."""

from __future__ import annotations

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.quality import TRUNCATED
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.structured import DEFAULT_SCHEMA, validation_error
from dj_ops.enhancement.length import load_target
from dj_ops.enhancement.presets import PRESETS
from dj_ops.ops.enhancement_rows import EnhancementError
from dj_ops.ops.quality_gate import LOW_QUALITY
from tests.conftest import run_op
from tests.enhancement_support import (
    WINDOWS,
    V,
    captioned,
    make_enhancer,
    record_of,
    video_rows,
)

pytest_plugins = ("tests.enhancement_fixtures",)  # its fixtures

GENERATED = {"status", "model", "backend", "preset", "custom_prompt", "prompt", "generation",
             "target_tokenizer", "max_target_tokens", "rewrites"}


@pytest.fixture(scope="module")
def text_rows(qwen3, videos):
    return captioned(qwen3, video_rows(videos[:3]))


@pytest.fixture(scope="module")
def field_rows(qwen3, videos):
    return captioned(qwen3, video_rows(videos[:3]), caption_key="caption")


def without(row: dict, *keys: str) -> dict:
    meta = {k: v for k, v in (row.get(Fields.meta) or {}).items() if k not in keys}
    return {**{k: v for k, v in row.items() if k not in keys}, Fields.meta: meta}


def test_generated_samples_keep_their_text_and_get_a_rewrite_with_provenance(
        text_rows, text_model):
    out = run_op(make_enhancer(text_model), text_rows)
    assert len(out) == len(text_rows)
    rewritten = 0
    for before, after in zip(text_rows, out):
        # the text (special tokens and original captions), videos and captioning record stay
        assert without(after, "caption_enhanced", "caption_enhancement") == without(before)
        record = record_of(after)
        if before[Fields.meta][META_KEY] is None:  # originals, no videos: passed through
            assert record is None and after["caption_enhanced"] == []
            continue
        rewritten += 1
        assert set(record) == GENERATED and record["status"] == "enhanced"
        assert (record["model"], record["backend"], record["preset"]) == (
            text_model, "transformers", "detailed")
        assert record["prompt"] == PRESETS["detailed"].instruction
        assert record["generation"]["max_new_tokens"] == 12 and record["generation"]["seed"] == 0
        videos = after["videos"]
        assert len(after["caption_enhanced"]) == len(videos) == len(record["rewrites"])
        for v, (text, entry) in enumerate(zip(after["caption_enhanced"], record["rewrites"])):
            assert text and (entry["video"], entry["candidate"], entry["window"]) == (v, 0, -1)
            assert 2 <= entry["generated_tokens"] <= 12 and entry["attempts"] == 1
            assert (entry["target_tokens"], entry["cut"], entry["from_store"]) == (-1, "", False)
    assert rewritten == 4  # three one-video rows and the two-video row


def test_a_caption_field_gets_its_rewrite_field_and_the_same_model_can_rewrite(
        field_rows, qwen3):
    """The captioning VLM itself, given text only, rewrites (no second model needed)."""
    out = run_op(make_enhancer(qwen3, caption_key="caption", preset="short"), field_rows)
    for before, after in zip(field_rows, out):
        assert after["caption"] == before["caption"]
        assert len(after["caption_enhanced"]) == len(before["caption"])
        if before["videos"]:
            assert all(after["caption_enhanced"]) and record_of(after)["preset"] == "short"
        else:
            assert after["caption_enhanced"] == [] and record_of(after) is None


def test_mode_all_rewrites_every_candidate_in_the_fields_shape(qwen3, videos, text_model):
    rows = captioned(qwen3, video_rows(videos[:2]), caption_key="caption", caption_num=2,
                     keep_candidate_mode="all")
    out = run_op(make_enhancer(text_model, caption_key="caption",
                               enhanced_key="prompt_for_t2v"), rows)
    two = next(r for r in out if len(r["videos"]) == 2)
    assert [len(c) for c in two["prompt_for_t2v"]] == [2, 2]
    places = [(e["video"], e["candidate"]) for e in record_of(two)["rewrites"]]
    assert places == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_rewrites_are_reproducible_and_batching_does_not_change_them(text_rows, text_model):
    one = run_op(make_enhancer(text_model, generation_batch_size=1), text_rows)
    many = run_op(make_enhancer(text_model, generation_batch_size=8), text_rows, batch_size=3)
    assert [r["caption_enhanced"] for r in one] == [r["caption_enhanced"] for r in many]


def test_two_processes_give_the_rows_of_one(text_rows, text_model):
    op = make_enhancer(text_model)
    assert [r["caption_enhanced"] for r in run_op(op, text_rows, batch_size=3, num_proc=2)] == [
        r["caption_enhanced"] for r in run_op(make_enhancer(text_model), text_rows)]


def test_the_video_generation_preset_never_exceeds_its_bound(text_rows, text_model,
                                                              t5_tokenizer):
    """Random weights write gibberish; 40 new tokens of it never fit 12 target tokens: every
    rewrite is cut, counted, and fits."""
    target = load_target(t5_tokenizer)
    op = make_enhancer(text_model, preset="video_generation", target_tokenizer=t5_tokenizer,
                       max_target_tokens=12, sampling_params={"max_new_tokens": 40,
                                                              "min_new_tokens": 40})
    out = run_op(op, text_rows)
    entries = [(text, e) for r in out if record_of(r)
               for text, e in zip(r["caption_enhanced"], record_of(r)["rewrites"])]
    assert entries
    for text, entry in entries:
        assert target.count(text) == entry["target_tokens"] <= 12
        assert entry["cut"] in ("sentence", "word", "token")
    record = record_of(next(r for r in out if record_of(r)))
    assert (record["target_tokenizer"], record["max_target_tokens"]) == (t5_tokenizer, 12)
    assert "at most 9 words" in record["prompt"]  # the bound's word budget, told to the model


def test_window_and_merged_captions_are_rewritten(qwen3, long_clip, text_model):
    rows = captioned(qwen3, [{"text": f"{V}", "videos": [long_clip]}], caption_key="caption",
                     **WINDOWS)
    (row,) = run_op(make_enhancer(text_model, caption_key="caption", windows=True), rows)
    windows = row[Fields.meta][META_KEY]["videos"][0]["windows"]
    assert len(row["caption_enhanced"]) == 1 and row["caption_enhanced"][0]  # the merge's
    assert len(row["caption_enhanced_windows"][0]) == len(windows) == 4
    assert all(row["caption_enhanced_windows"][0])
    assert row["caption_windows"] == rows[0]["caption_windows"]  # the originals stay
    assert [e["window"] for e in record_of(row)["rewrites"]] == [-1, 0, 1, 2, 3]


def test_json_mode_rewrites_into_valid_documents(field_rows, text_model):
    op = make_enhancer(text_model, caption_key="caption", caption_format="json",
                       sampling_params={"max_new_tokens": 1500})
    (row,) = run_op(op, field_rows[:1])
    (entry,) = record_of(row)["rewrites"]
    assert validation_error(entry["caption_json"], DEFAULT_SCHEMA) is None
    assert row["caption_enhanced"] == [entry["captions_by_length"]["long"]]
    assert row["caption_enhanced_lengths"] == [entry["captions_by_length"]]
    assert record_of(row)["generation"]["caption_format"] == "json"
    assert entry["decoding"] == "generate_json_schema"


CUT = {"max_new_tokens": 4, "min_new_tokens": 4}


def test_the_gate_checks_rewrites_and_retries_them(text_rows, text_model):
    out = run_op(make_enhancer(text_model, sampling_params=CUT, max_retries=2), text_rows)
    entries = [e for r in out if record_of(r) for e in record_of(r)["rewrites"]]
    assert entries and any(e["attempts"] > 1 for e in entries)  # four tokens rarely end one
    for entry in entries:
        flags = list(entry["attempt_flags"])
        assert len(flags) == entry["attempts"] <= 3 and all(flags[:-1])
        if flags[-1]:
            assert TRUNCATED in entry["quality_flags"] and entry["attempts"] == 3


def test_low_quality_rewrites_follow_on_error_and_no_row_is_lost(text_rows, text_model):
    params = dict(sampling_params=CUT, max_retries=0, on_low_quality="error")
    kept = run_op(make_enhancer(text_model, **params), text_rows)
    failed = [r for r in kept if record_of(r) and record_of(r)["status"] == "error"]
    assert failed and len(kept) == len(text_rows)
    for row in failed:
        bad = [e for e in record_of(row)["rewrites"] if e["error_kind"]]
        assert bad and all(e["error_kind"] == LOW_QUALITY for e in bad)
        assert row["text"] == next(r["text"] for r in text_rows if r["text"] == row["text"])
    dropped = run_op(make_enhancer(text_model, **params, on_error="drop"), text_rows)
    assert len(dropped) == len(text_rows) - len(failed)
    with pytest.raises(Exception, match=LOW_QUALITY) as raised:
        run_op(make_enhancer(text_model, **params, on_error="raise"), text_rows)
    assert EnhancementError.__name__ in repr(raised.value) or LOW_QUALITY in str(raised.value)


def test_captions_not_found_get_an_error_record(field_rows, text_model):
    one_video = [r for r in field_rows if len(r["videos"]) == 1]  # texts without words
    out = run_op(make_enhancer(text_model), one_video)  # caption_key not given
    failed = [r for r in out if record_of(r)]
    assert len(failed) == len(one_video)
    assert all(record_of(r)["status"] == "error" for r in failed)
    (entry,) = record_of(failed[0])["rewrites"]
    assert entry["error_kind"] == "no_caption" and "caption_key" in entry["error_message"]
    assert all(r["caption"] == b["caption"] for r, b in zip(out, one_video))


@pytest.mark.parametrize("params, message", [
    ({"preset": "poem"}, "choose one of"),
    ({"max_target_tokens": 10}, "set target_tokenizer"),
    ({"target_tokenizer": "/no/such/tokenizer", "max_target_tokens": 5}, "cannot be loaded"),
    ({"caption_key": "caption", "enhanced_key": "caption"}, "name another field"),
    ({"enhanced_key": "text"}, "name another field"),
    ({"caption_key": "caption", "enhanced_key": "caption_windows"}, "name another field"),
    ({"caption_key": "videos"}, "caption field"),
    ({"json_schema": {"type": "object"}}, "caption_format: json"),
    ({"sampling_params": {"beams": 2}}, "unknown sampling_params"),
    ({"model_params": {"no_such": 1}}, "unknown model_params"),
    ({"on_low_quality": "later"}, "on_low_quality"),
])
def test_bad_parameters_fail_at_construction(text_model, params, message):
    with pytest.raises(Exception, match=message):
        make_enhancer(text_model, **params)


@pytest.mark.parametrize("captioning", [
    {"caption_num": 2, "keep_candidate_mode": "all", "keep_original_sample": False},
    {"caption_num": 2, "keep_candidate_mode": "similar_one_simhash"},
    {"caption_num": 2, "keep_candidate_mode": "consensus", "caption_key": "caption"},
    {"caption_format": "json", "caption_key": "caption",
     "sampling_params": {"max_new_tokens": 1500}},
    {"video_start": 0.5, "video_end": 2.0, "max_visual_tokens": 64, "caption_key": "caption"},
], ids=["text_rows_all", "simhash", "consensus", "json_captions", "range_and_budget"])
def test_every_captioning_output_is_rewritten(qwen3, videos, text_model, captioning):
    """Whatever the captioning op's mode, every captioned row gets one rewrite per caption it
    holds, and nothing the captioning op wrote changes."""
    rows = captioned(qwen3, video_rows(videos[:2]), **captioning)
    key = captioning.get("caption_key")
    out = run_op(make_enhancer(text_model, caption_key=key), rows)
    assert len(out) == len(rows)
    enhanced = 0
    for before, after in zip(rows, out):
        assert without(after, "caption_enhanced", "caption_enhancement") == without(before)
        if before[Fields.meta][META_KEY] is None:
            continue
        enhanced += 1
        record = record_of(after)
        assert record["status"] == "enhanced"
        assert len(record["rewrites"]) == len(after["videos"]) == len(after["caption_enhanced"])
        assert all(after["caption_enhanced"])
    assert enhanced == len([r for r in rows if r[Fields.meta][META_KEY]]) > 0


def test_the_continuous_path_keeps_its_bound_and_retries(text_rows, text_model):
    """On a server (the loopback one, serving the text model), the rewrites are fed
    continuously: exactly ``max_in_flight`` requests open at once (the server holds the first
    two until both are there), retries sent with the retry sampling, seeded per attempt."""
    from dj_ops.captioning.quality import RETRY_TEMPERATURE
    from dj_ops.captioning.text import captions_after_video_tokens
    from dj_ops.testing.openai_server import CompletionServer, Faults
    from tests.enhancement_support import V as VIDEO

    with CompletionServer(text_model, faults=Faults(hold_first=2)) as server:
        op = make_enhancer(text_model, backend="openai", max_in_flight=2, seed=7,
                           model_params={"api_base": server.url}, sampling_params=CUT,
                           max_retries=1)
        out = run_op(op, text_rows)
        received, peak = list(server.received), server.max_in_flight
    assert peak == 2
    captions, retried = set(), set()
    for row in out:
        if record_of(row):
            texts = captions_after_video_tokens(row["text"], VIDEO, [VIDEO, "<|__dj__eoc|>"])
            for entry in record_of(row)["rewrites"]:
                captions.add(texts[entry["video"]])
                if entry["attempts"] == 2:
                    retried.add(texts[entry["video"]])
                assert entry["decoding"] == "engine"
    first = [p for p in received if p["temperature"] == 0.0]
    retries = [p for p in received if p["temperature"] == RETRY_TEMPERATURE]
    assert len(first) == len(captions) and len(retries) == len(retried) >= 1
    assert {p["seed"] for p in first} == {7} and {p["seed"] for p in retries} == {8}
