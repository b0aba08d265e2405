"""caption_format json through the op on the transformers backend: a random-weight Qwen3-VL under
constrained decoding gives a strictly schema-valid document for every video, rendered at the
named lengths; bad parameters are refused at construction; the result store keys json apart."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.backends.openai_payload import sampling_fields
from dj_ops.backends.transformers_backend import JSON_SCHEMA_DECODING
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.rendering import count_words
from dj_ops.captioning.structured import DEFAULT_SCHEMA, validation_error
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.ops.structured_config import DEFAULT_CAPTION_LENGTHS
from tests.conftest import make_op, run_op

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")

V = SpecialTokens.video
SPECIAL = list(get_special_tokens().values())
# A small user schema: an enum, a bounded string, a bounded array of bounded strings.
USER_SCHEMA = {
    "type": "object",
    "title": "Tiny caption",
    "properties": {
        "mood": {"enum": ["calm", "busy", "tense"]},
        "summary": {"type": "string", "minLength": 1, "maxLength": 40},
        "objects": {"type": "array", "maxItems": 3,
                    "items": {"type": "string", "minLength": 1, "maxLength": 12}},
    },
    "required": ["mood", "summary", "objects"],
    "additionalProperties": False,
}
# Whole documents: the default schema's take 300-900 tokens on the random model (its bound is
# DEFAULT_SCHEMA_MAX_TOKENS); the user schema's under 200.
DEFAULT_SCHEMA_TOKENS = 1500
USER_SCHEMA_TOKENS = 400


def json_op(model: str, max_new_tokens: int, **params):
    return make_op(model, caption_format="json",
                   sampling_params={"max_new_tokens": max_new_tokens}, **params)


def check_rows(rows: list[dict], schema: dict, lengths: dict[str, int],
               decoding: str = JSON_SCHEMA_DECODING) -> int:
    """Every generated row's documents are strictly valid and rendered within their budgets;
    the text after each video token is the first length's. Returns the documents checked."""
    checked = 0
    for row in rows:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned", record
        assert record["generation"]["caption_format"] == "json"
        captions = captions_after_video_tokens(row["text"], V, SPECIAL)
        for video, caption in zip(record["videos"], captions):
            assert validation_error(video["caption_json"], schema) is None
            by_length = video["captions_by_length"]
            assert list(by_length) == list(lengths)
            for name, budget in lengths.items():
                assert 0 < count_words(by_length[name]) <= budget
            assert caption == by_length[next(iter(lengths))]
            assert video["decoding"] == decoding
            checked += 1
    return checked


def test_default_schema_every_caption_valid(qwen3, videos):
    samples = [{"text": f"{V} clip {i}", "videos": [v]} for i, v in enumerate(videos[:3])]
    rows = run_op(json_op(qwen3, DEFAULT_SCHEMA_TOKENS, keep_original_sample=False,
                          caption_num=2, keep_candidate_mode="all"), samples)
    assert len(rows) == 6
    assert check_rows(rows, DEFAULT_SCHEMA, DEFAULT_CAPTION_LENGTHS) == 6


def test_user_schema_file_and_lengths(qwen3, videos, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(USER_SCHEMA))
    lengths = {"tiny": 6, "full": 60}
    samples = [{"text": f"{V}{V} two", "videos": videos[:2]},
               {"text": f"{V} one", "videos": videos[2:3]}]
    rows = run_op(json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=str(path),
                          caption_lengths=lengths, keep_original_sample=False), samples)
    assert check_rows(rows, USER_SCHEMA, lengths) == 3
    # the caption field mode: the default length in the field, every length beside it (and in
    # the record); blank for a failed sample, [] for a sample without videos
    rows = run_op(json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA,
                          caption_lengths=lengths, caption_key="caption"),
                  [*samples, {"text": "none", "videos": []},
                   {"text": V, "videos": ["/no/such/video.mp4"]}])
    for row in rows[:2]:
        videos_ = row[Fields.meta][META_KEY]["videos"]
        assert row["caption"] == [v["captions_by_length"]["tiny"] for v in videos_]
        assert row["caption_lengths"] == [v["captions_by_length"] for v in videos_]
        assert all(count_words(c["full"]) <= 60 for c in row["caption_lengths"])
    assert rows[2]["caption"] == [] and rows[2]["caption_lengths"] == []
    assert rows[3]["caption"] == [""] and rows[3]["caption_lengths"] == [{"tiny": "",
                                                                          "full": ""}]
    # a mode that keeps every candidate: a list per video
    (row,) = run_op(json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA,
                            caption_lengths=lengths, caption_key="caption", caption_num=2,
                            keep_candidate_mode="all"), samples[1:])
    assert len(row["caption"][0]) == len(row["caption_lengths"][0]) == 2
    assert [c["tiny"] for c in row["caption_lengths"][0]] == row["caption"][0]


def test_a_cut_document_is_an_invalid_json_error_not_a_caption(qwen3, videos):
    rows = run_op(json_op(qwen3, 5, json_schema=USER_SCHEMA), [{"text": V, "videos": videos[:1]}])
    (row,) = rows
    record = row[Fields.meta][META_KEY]
    assert record["status"] == "error"
    (video,) = record["videos"]
    assert video["error_kind"] == "invalid_json"
    assert video["caption_json"] == "" and video["captions_by_length"] == {"long": "",
                                                                            "short": ""}


@pytest.mark.parametrize(("params", "words"), [
    ({"json_schema": USER_SCHEMA}, "caption_format: json"),
    ({"caption_lengths": {"short": 40}}, "caption_format: json"),
    ({"caption_format": "json", "json_schema": {"type": "array"}}, "describe an object"),
    ({"caption_format": "json", "json_schema": "/nonexistent/schema.json"}, "cannot be read"),
    ({"caption_format": "json", "json_schema": {"type": "object", "minProperties": -1}},
     "not a valid JSON Schema"),
    ({"caption_format": "json", "caption_lengths": {"short": 0}}, "positive integer"),
    ({"caption_format": "json", "caption_lengths": {}}, "non-empty mapping"),
])
def test_bad_parameters_are_refused_at_construction(qwen3, params, words):
    with pytest.raises(ValueError, match=words):
        make_op(qwen3, **params)


def test_caption_format_must_be_known(qwen3):
    with pytest.raises(ValueError, match="caption_format"):
        make_op(qwen3, caption_format="yaml")


def test_result_store_key_differs_between_text_and_json(qwen3, videos, tmp_path):
    from dj_ops.ops.captioner import Captioner

    store = str(tmp_path / "results.sqlite")
    keys = {}
    for name, params in (("text", {}), ("json", {"caption_format": "json"}),
                         ("user", {"caption_format": "json", "json_schema": USER_SCHEMA})):
        op = make_op(qwen3, result_store=store, **params)
        session = Captioner(op.config, None, "test")._open_store()
        keys[name] = session.keyer.key(videos[0], "a prompt")
        session.close()
    assert len(set(keys.values())) == 3


def test_openai_payload_asks_for_the_schema(qwen3):
    op = make_op(qwen3, caption_format="json", json_schema=USER_SCHEMA)
    fields = sampling_fields(op.config.model)
    assert fields["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Tiny_caption", "schema": USER_SCHEMA, "strict": True}}
    assert "response_format" not in sampling_fields(make_op(qwen3).config.model)


def test_vllm_engine_gets_the_guidance_backend_in_json_mode_only(qwen3):
    from dj_ops.adapters import resolve_adapter
    from dj_ops.backends.vllm_requests import STRUCTURED_OUTPUTS_CONFIG, engine_kwargs

    def kwargs(model_params=None, **params):  # a vllm recipe's engine arguments
        config = make_op(qwen3, **params).config.model
        config = replace(config, model_params={**config.model_params, **(model_params or {})})
        return engine_kwargs(config, resolve_adapter(config.model, config.params))

    assert kwargs(caption_format="json")["structured_outputs_config"] == \
        STRUCTURED_OUTPUTS_CONFIG == {"backend": "guidance", "disable_any_whitespace": True}
    assert "structured_outputs_config" not in kwargs()
    own = {"backend": "xgrammar"}
    assert kwargs(caption_format="json", model_params={
        "structured_outputs_config": own})["structured_outputs_config"] == own


def test_result_store_reuses_json_documents_and_renders_them_again(qwen3, videos, tmp_path):
    store = str(tmp_path / "results.sqlite")
    samples = [{"text": V, "videos": [v]} for v in videos[:2]]
    first = run_op(json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA,
                           result_store=store, keep_original_sample=False), samples)
    # the same documents, rendered at other lengths: generation is keyed, rendering is not
    again = run_op(json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA,
                           result_store=store, keep_original_sample=False,
                           caption_lengths={"tiny": 5}), samples)
    for before, after in zip(first, again):
        (old,) = before[Fields.meta][META_KEY]["videos"]
        (new,) = after[Fields.meta][META_KEY]["videos"]
        assert new["from_store"] and not old["from_store"]
        assert new["caption_json"] == old["caption_json"]
        assert list(new["captions_by_length"]) == ["tiny"]
        assert count_words(new["captions_by_length"]["tiny"]) <= 5


def test_each_document_is_validated_once_and_the_schema_is_one_object(qwen3, videos,
                                                                       monkeypatch):
    """The gate's check and the rendering read one verdict per candidate; the backends, the
    gate and the rendering hold the same schema object (hashed once, in ``generation``)."""
    from collections import Counter

    from dj_ops.captioning import structured

    calls: Counter = Counter()
    real = structured.validation_error

    def counted(text, schema):
        calls[text] += 1
        return real(text, schema)

    monkeypatch.setattr(structured, "validation_error", counted)
    op = json_op(qwen3, USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA, caption_num=2,
                 keep_candidate_mode="all", keep_original_sample=False)
    assert op.config.model.json_schema is op.config.structured.schema.schema
    rows = run_op(op, [{"text": f"{V} clip", "videos": [v]} for v in videos[:2]])
    assert check_rows(rows, USER_SCHEMA, DEFAULT_CAPTION_LENGTHS) == 4
    assert calls and set(calls.values()) == {1}, calls
    assert op._captioner.gate.schema is op.config.structured.schema
