"""Structured captions: the default schema, loading users' schemas, strict validation, and
rendering text captions at named lengths."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer

from dj_ops.captioning.rendering import (
    caption_sentences,
    count_words,
    parse_caption_lengths,
    render_caption,
    render_lengths,
    token_counter,
)
from dj_ops.captioning.structured import (
    DEFAULT_SCHEMA,
    DEFAULT_SCHEMA_MAX_TOKENS,
    load_schema,
    validation_error,
)
from tests.test_quality import DOCUMENT


def test_the_default_schema_is_valid_and_accepts_a_full_caption():
    assert load_schema(None) is DEFAULT_SCHEMA
    assert load_schema(DEFAULT_SCHEMA) == DEFAULT_SCHEMA
    assert validation_error(json.dumps(DOCUMENT), DEFAULT_SCHEMA) is None
    assert set(DEFAULT_SCHEMA["required"]) == {"summary", "subjects", "scene", "camera",
                                               "lighting", "style", "timeline"}
    assert DEFAULT_SCHEMA_MAX_TOKENS > len(json.dumps(DOCUMENT))


@pytest.mark.parametrize(("change", "where"), [
    ({"camera": {"shot_type": "wide", "angle": "eye level"}}, "camera"),
    ({"extra": 1}, "the top"),
    ({"timeline": [{"start": -1, "end": 2, "event": "x"}]}, "timeline/0/start"),
    ({"summary": "x" * 201}, "summary"),
    ({"subjects": [{"name": "a", "appearance": "b", "action": "c"}] * 4}, "subjects"),
])
def test_schema_violations_name_where(change, where):
    error = validation_error(json.dumps({**DOCUMENT, **change}), DEFAULT_SCHEMA)
    assert error is not None and where in error


@pytest.mark.parametrize("text", [
    '{"summary": "a\x01b"}',  # raw control character: json.loads(strict=False) would accept
    '{"summary": NaN}', '{"summary": "a"', "", "not json",
])
def test_strict_parsing_refuses(text):
    assert validation_error(text, {"type": "object"}).startswith("not strict JSON")


def test_infinite_numbers_are_refused():
    assert "not finite" in validation_error('{"a": 1e999}', {"type": "object"})


def test_user_schema_inline_file_and_errors(tmp_path):
    schema = {"type": "object", "properties": {"mood": {"type": "string"}},
              "required": ["mood"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    assert load_schema(schema) == schema
    assert load_schema(str(path)) == schema
    assert validation_error('{"mood": "calm"}', load_schema(path)) is None
    with pytest.raises(ValueError, match="cannot be read"):
        load_schema(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{type: object")
    with pytest.raises(ValueError, match="is not JSON"):
        load_schema(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        load_schema({"type": "object", "properties": {"a": {"type": "strng"}}})
    with pytest.raises(ValueError, match="must describe an object"):
        load_schema({"type": "array"})
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_schema(["type", "object"])


# --- rendering --------------------------------------------------------------------------

def test_sentences_follow_the_priority_order():
    sentences = caption_sentences(DOCUMENT)
    assert sentences == [
        "A dog runs on a beach.",
        "Dog, brown, short fur, runs.",
        "Scene: A sandy beach at the sea.",
        "Wide shot at eye level with tracking camera.",
        "Lighting: Soft evening sun.",
        "Style: Live action.",
        "From 0s to 2.5s, The dog enters from the left.",
    ]


def test_render_is_deterministic_and_drops_low_priority_first():
    full = render_caption(DOCUMENT, 1000)
    assert full == " ".join(caption_sentences(DOCUMENT))
    assert render_caption(DOCUMENT, 1000) == full
    short = render_caption(DOCUMENT, 12)
    assert short.startswith("A dog runs on a beach.") and count_words(short) <= 12
    assert "2.5s" not in short
    # the summary alone does not fit: its words are cut to the budget, never empty
    assert render_caption(DOCUMENT, 3) == "A dog runs"
    lengths = render_lengths(DOCUMENT, {"short": 10, "long": 220})
    assert lengths["long"] == full and count_words(lengths["short"]) <= 10


def test_other_schemas_render_generically():
    document = {"mood": "calm", "colours": ["red", "blue"], "scene": "a park",
                "extra": {"weather": "rain"}}
    assert caption_sentences(document) == ["Scene: a park.", "Mood: calm.",
                                           "Colours: red, blue.", "Extra: weather: rain."]


def test_token_budgets(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3_vl"])
    count = token_counter(tokenizer)
    for budget in (5, 20, 77):
        text = render_caption(DOCUMENT, budget, count)
        assert text and count(text) <= budget
    assert render_caption(DOCUMENT, 10_000, count) == render_caption(DOCUMENT, 10_000)


def test_caption_lengths_are_checked():
    assert parse_caption_lengths({"short": 40, "long": 220}) == {"short": 40, "long": 220}
    for bad in (None, {}, {"short": 0}, {"short": "40"}, {"short": True}, {"": 3}):
        with pytest.raises(ValueError, match="caption_lengths"):
            parse_caption_lengths(bad)


values = st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), max_size=60)
documents = st.fixed_dictionaries({
    "summary": values, "scene": values, "lighting": values, "style": values,
    "subjects": st.lists(st.fixed_dictionaries(
        {"name": values, "appearance": values, "action": values}), max_size=3),
    "camera": st.fixed_dictionaries({"shot_type": st.sampled_from(["wide", "close-up"]),
                                     "angle": st.just("eye level"),
                                     "motion": st.just("static")}),
    "timeline": st.lists(st.fixed_dictionaries(
        {"start": st.floats(0, 100), "end": st.floats(0, 100), "event": values}), max_size=6),
})


@given(document=documents, budget=st.integers(1, 300))
def test_rendering_never_exceeds_the_budget_and_grows_with_it(document, budget):
    text = render_caption(document, budget)
    assert count_words(text) <= budget
    sentences = caption_sentences(document)
    assert text or not sentences
    if sentences:  # the first sentence, whole or cut, always leads
        first = sentences[0].split()
        assert text.split()[: len(first)] == first[: min(len(first), budget)]
    if count_words(" ".join(sentences)) <= budget:
        assert text == " ".join(sentences)
