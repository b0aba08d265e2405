"""The quality gate's checks, each alone, then together; property tests for the repetition and
garbage measures."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.generation import GenerationSettings, to_hf_generate_kwargs
from dj_ops.captioning.quality import (
    DEFAULT_THRESHOLDS,
    EMPTY,
    GARBAGE,
    INVALID_JSON,
    REFUSAL,
    REPETITION,
    RETRY_SAMPLING,
    TRUNCATED,
    QualityThresholds,
    has_repetition_loop,
    is_garbage,
    is_truncated,
    non_letter_share,
    quality_flags,
    refusal_phrase,
    retry_settings,
)
from dj_ops.captioning.structured import DEFAULT_SCHEMA, JsonSchema

SCHEMA = JsonSchema(DEFAULT_SCHEMA)  # the one schema object the gate is given

GOOD = "A brown dog runs along a sandy beach while waves roll in behind it."
DOCUMENT = {
    "summary": "A dog runs on a beach.",
    "subjects": [{"name": "dog", "appearance": "brown, short fur", "action": "runs"}],
    "scene": "A sandy beach at the sea.",
    "camera": {"shot_type": "wide", "angle": "eye level", "motion": "tracking"},
    "lighting": "Soft evening sun.",
    "style": "Live action.",
    "timeline": [{"start": 0, "end": 2.5, "event": "The dog enters from the left."}],
}


def test_a_good_caption_passes():
    assert quality_flags(GOOD, hit_token_limit=False) == []
    assert quality_flags(json.dumps(DOCUMENT), False, schema=SCHEMA) == []


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty(text):
    assert quality_flags(text, False) == [EMPTY]
    assert quality_flags(text, False, schema=SCHEMA) == [EMPTY, INVALID_JSON]


def test_repetition_loop_and_a_trimmed_one():
    looping = "A dog runs. " + "The waves roll. " * 4
    assert quality_flags(looping, False) == [REPETITION]
    assert quality_flags(GOOD, False, repetition_trimmed=True) == [REPETITION]
    # "very very very" is English: below min_loop_tokens
    assert not has_repetition_loop("The dog is very very very fast.")


def test_token_limit_mid_sentence():
    assert quality_flags("A dog runs along the", hit_token_limit=True) == [TRUNCATED]
    assert quality_flags("A dog runs.", hit_token_limit=True) == []  # lost nothing said
    assert quality_flags("A dog runs along the", hit_token_limit=False) == []  # stopped itself
    assert not is_truncated('He says "hello."', True)
    assert not is_truncated("He runs (fast).", True)
    assert is_truncated("他在跑", True) and not is_truncated("他在跑。", True)


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't describe this video.",
    "I\u2019m unable to view videos.",
    "AS AN AI, I do not see.",
    "I cannot determine what happens.",
])
def test_refusal(text):
    assert REFUSAL in quality_flags(text, False)


def test_refusal_is_whole_words():
    assert refusal_phrase("The pianist cannot stop; Ai cannot either.") is None
    assert refusal_phrase("A man says: I am sorry.") == "i am sorry"


@pytest.mark.parametrize("text", ["!!!!!!!!!!!!", "1 1 1 1 1 1 1 2", "A dog \ufffd runs.",
                                  "?? -- ## ** a"])
def test_garbage(text):
    assert GARBAGE in quality_flags(text, False)


def test_garbage_threshold_and_short_texts():
    assert not is_garbage("OK.")  # too short to judge a share
    assert not is_garbage("From 0s to 2.5s, a dog runs; from 2.5s to 4s, it sits.")
    strict = QualityThresholds(max_non_letter_share=0.05)
    assert is_garbage("From 0s to 2.5s, a dog runs.", strict)
    assert not is_garbage("A \ufffd", QualityThresholds(max_replacement_chars=1))


def test_invalid_json_and_truncated_document():
    text = json.dumps(DOCUMENT)
    assert quality_flags(text[:-5], False, schema=SCHEMA) == [INVALID_JSON]
    assert quality_flags(text[:-5], True, schema=SCHEMA) == [TRUNCATED, INVALID_JSON]
    wrong = json.dumps({**DOCUMENT, "camera": {**DOCUMENT["camera"], "motion": "spinning"}})
    assert quality_flags(wrong, False, schema=SCHEMA) == [INVALID_JSON]
    raw_control = text.replace("A dog runs", "A dog\x01 runs")
    assert quality_flags(raw_control, False, schema=SCHEMA) == [INVALID_JSON]


def test_json_mode_judges_the_prose_not_the_braces():
    refusing = json.dumps({**DOCUMENT, "summary": "I'm sorry, I cannot see the video."})
    assert quality_flags(refusing, False, schema=SCHEMA) == [REFUSAL]
    # a document of short values: its braces and quotes alone exceed the non-letter share
    terse = {**DOCUMENT, "subjects": [], "timeline": [], "scene": "x", "lighting": "y",
             "style": "z", "summary": "A dog runs."}
    strict = QualityThresholds(max_non_letter_share=0.3)
    assert is_garbage(json.dumps(terse), strict)
    assert quality_flags(json.dumps(terse), False, strict, schema=SCHEMA) == []
    # the limit hit right after a complete document lost nothing
    assert quality_flags(json.dumps(DOCUMENT), True, schema=SCHEMA) == []


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="max_non_letter_share"):
        QualityThresholds(max_non_letter_share=0)
    with pytest.raises(ValueError, match="min_repeats"):
        QualityThresholds(min_repeats=1)


def test_retry_sampling_defaults_translate_to_generate():
    base = GenerationSettings(max_new_tokens=77, stop=("\n\n",))
    retry = retry_settings(base)
    assert (retry.max_new_tokens, retry.stop) == (77, ("\n\n",))
    assert retry.sampled and (retry.temperature, retry.top_p, retry.top_k,
                              retry.repetition_penalty) == (0.6, 0.95, 20, 1.05)
    kwargs = to_hf_generate_kwargs(retry, 2)
    assert kwargs["do_sample"] and kwargs["top_k"] == 20 and kwargs["num_return_sequences"] == 2
    assert RETRY_SAMPLING.sampled


# --- property tests -------------------------------------------------------------------------

words = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
units = st.lists(words, min_size=1, max_size=4).map(" ".join)


@given(unit=units, k=st.integers(min_value=1, max_value=8))
def test_a_unit_repeated_k_times_is_a_loop_from_the_threshold_on(unit, k):
    tokens = len(unit.split())
    text = " ".join([unit] * k)
    t = DEFAULT_THRESHOLDS
    if k >= t.min_repeats and k * tokens >= t.min_loop_tokens:
        assert has_repetition_loop(text)
    if k < 2:  # one copy can still hold a loop of its own ("a a a a a a"), never more
        assert has_repetition_loop(text) == has_repetition_loop(unit)


@given(prefix=st.text(min_size=0, max_size=40), unit=units, k=st.integers(3, 6))
def test_a_loop_stays_a_loop_after_any_prefix(prefix, unit, k):
    text = prefix + " " + " ".join([unit] * max(k, 6))
    assert has_repetition_loop(text)


@given(text=st.text(min_size=1, max_size=60), letters=st.text(
    alphabet=st.characters(categories=("Lu", "Ll")), min_size=1, max_size=20))
def test_adding_letters_never_increases_the_non_letter_share(text, letters):
    assert non_letter_share(text + letters) <= non_letter_share(text)


@given(text=st.text(max_size=80))
def test_the_share_is_a_fraction_and_letters_only_score_zero(text):
    share = non_letter_share(text)
    assert 0 <= share <= 1
    only_letters = "".join(c for c in text if c.isalpha() or c.isspace())
    assert non_letter_share(only_letters) == 0


@given(text=st.text(max_size=60), n=st.integers(1, 5))
def test_replacement_characters_are_always_garbage(text, n):
    assert is_garbage(text + "\ufffd" * n)
