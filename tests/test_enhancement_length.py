"""The rewrite presets and the length bound in a target tokenizer (pure; the tokenizer is the
T5-like Unigram one built offline, loaded through ``AutoTokenizer``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dj_ops.captioning.quality import ends_sentence
from dj_ops.enhancement.length import (
    CUT_SENTENCE,
    CUT_TOKEN,
    CUT_WORD,
    HFTargetTokens,
    fit_to_tokens,
    load_target,
)
from dj_ops.enhancement.presets import (
    PRESETS,
    fill_instruction,
    max_words,
    resolve_rewrite,
)
from dj_ops.testing.tiny_text import build_t5_like_tokenizer


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> HFTargetTokens:
    return load_target(build_t5_like_tokenizer(tmp_path_factory.mktemp("t5") / "tok"))


# ---- presets ----

def test_the_table_has_the_three_styles_and_only_the_video_style_is_bounded():
    assert {"detailed", "short", "video_generation"} <= set(PRESETS)
    video = PRESETS["video_generation"]
    assert (video.max_target_tokens, video.target_tokenizer) == (226, "google/t5-v1_1-xxl")
    assert "{max_words}" in video.instruction
    assert all(p.max_target_tokens is None for name, p in PRESETS.items()
               if name != "video_generation")


def test_a_recipe_prompt_replaces_the_instruction_and_keeps_the_bound():
    spec = resolve_rewrite("video_generation", "Make it vivid in {max_words} words.",
                           max_target_tokens=100, target_tokenizer="tok")
    assert spec.instruction == f"Make it vivid in {max_words(100)} words."
    assert (spec.preset, spec.custom_prompt, spec.max_target_tokens) == (
        "video_generation", True, 100)
    plain = resolve_rewrite("detailed", "Braces {like this} stay.")
    assert plain.instruction == "Braces {like this} stay." and not plain.bounded


@pytest.mark.parametrize("args, message", [
    (("nope",), "choose one of"),
    (("detailed", "  "), "prompt is empty"),
    (("detailed", None, 50), "set target_tokenizer"),
    (("detailed", None, None, "tok"), "set max_target_tokens"),
    (("detailed", "at most {max_words} words"), "no length bound is set"),
])
def test_bad_rewrite_settings_name_the_fix(args, message):
    with pytest.raises(ValueError, match=message):
        resolve_rewrite(*args)


def test_max_words_follows_the_bound():
    assert max_words(226) == 169 and max_words(1) == 1 and max_words(None) is None
    assert fill_instruction("no field", None) == "no field"


# ---- the bound ----

def test_a_text_within_the_bound_is_kept_whole(t5):
    text = "A dog runs on the beach."
    fitted = fit_to_tokens(text, t5, t5.count(text))
    assert (fitted.text, fitted.cut, fitted.tokens) == (text, "", t5.count(text))


def test_a_sentence_end_is_preferred_then_a_word_end(t5):
    first = "A woman in a red coat walks her dog through a quiet park."
    text = first + " The camera slowly tracks a cyclist along the coastal road at golden hour."
    whole = t5.count(text)
    fitted = fit_to_tokens(text, t5, whole - 2)  # the second sentence cannot stay whole
    assert fitted.cut == CUT_WORD and text.startswith(fitted.text)  # the first sentence is
    # less than half of what fits: a word cut keeps more
    short = fit_to_tokens(text, t5, t5.count(first) + 3)
    assert (short.text, short.cut) == (first, CUT_SENTENCE)


def test_one_long_word_is_cut_at_a_token_boundary(t5):
    text = "waves" * 40
    fitted = fit_to_tokens(text, t5, 7)
    assert fitted.cut == CUT_TOKEN and fitted.tokens <= 7 and text.startswith(fitted.text)
    assert len(fitted.text) in {end for end in t5.ends(text)}  # at a token end


def test_a_budget_below_one_is_refused(t5):
    with pytest.raises(ValueError, match=">= 1"):
        fit_to_tokens("a", t5, 0)


PIECES = list("abcdefghijklmnopqrstuvwxyzQZ!?.,;'é漢 \n\t\ufffd🙂") + ["ing ", "own", ". ", "  "]
GIBBERISH = st.lists(st.sampled_from(PIECES), max_size=150).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=GIBBERISH, budget=st.integers(1, 80))
def test_the_bound_is_never_exceeded(t5, text, budget):
    """Random-weight gibberish, unknown characters, emoji, runs of spaces: whatever the text,
    the fitted one counts at most ``budget`` tokens (special tokens included), is a prefix of
    the text, and says how it was cut."""
    fitted = fit_to_tokens(text, t5, budget)
    assert t5.count(fitted.text) == fitted.tokens <= budget
    assert text.startswith(fitted.text)
    if t5.count(text) <= budget:
        assert fitted == fit_to_tokens(text, t5, budget) and fitted.cut == ""
    else:
        assert fitted.cut in (CUT_SENTENCE, CUT_WORD, CUT_TOKEN)
        if fitted.cut == CUT_SENTENCE:
            assert ends_sentence(fitted.text)


class Erratic:
    """A counter whose counts do not grow with the text (tokenizers need not be additive):
    prefixes of even length count one token more."""

    def count(self, text: str) -> int:
        return len(text.split()) + len(text) % 2 + 1

    def ends(self, text: str) -> list[int]:
        return list(range(1, len(text) + 1))


@settings(max_examples=100, deadline=None)
@given(text=GIBBERISH, budget=st.integers(1, 30))
def test_counts_that_do_not_grow_with_the_text_still_never_exceed(text, budget):
    fitted = fit_to_tokens(text, Erratic(), budget)
    assert Erratic().count(fitted.text) <= budget and text.startswith(fitted.text)


def test_a_slow_tokenizer_is_cut_at_characters_then_words(t5):
    class Slow:
        is_fast = False

        def __call__(self, text, **kwargs):
            return {"input_ids": text.split() + ["</s>"]}

    counter = HFTargetTokens(Slow())
    assert counter.ends("ab cd") == [1, 2, 3, 4, 5]
    fitted = fit_to_tokens("one two three four", counter, 3)
    assert (fitted.text, fitted.cut) == ("one two", CUT_WORD)


def test_a_missing_tokenizer_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="target_tokenizer=.*cannot be loaded"):
        load_target(str(tmp_path / "missing"))


def test_the_readme_shows_every_preset_as_the_table_has_it():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name, preset in PRESETS.items():
        bound = (f"{preset.max_target_tokens} tokens of `{preset.target_tokenizer}`"
                 if preset.max_target_tokens else "none")
        assert (f"| `{name}` | {preset.instruction} | {preset.max_new_tokens} | {bound} |"
                in readme), f"the README's row of preset {name!r} is stale"


@pytest.mark.parametrize("model_type, text_only", [
    ("qwen3", True), ("llama", True), ("qwen2", True), ("qwen3_vl", False),
    ("qwen2_5_vl", False), ("llava_onevision", False), ("gemma3", False),
    ("phi4_multimodal", False), ("cogvlm2", False), ("not_a_model", False)])
def test_transformers_tables_tell_text_only_models(model_type, text_only):
    from dj_ops.adapters import resolve_adapter
    from dj_ops.adapters.text_only import TextOnlyAdapter, is_text_only

    assert is_text_only([model_type]) is text_only
    adapter = resolve_adapter("unused", {"model_type": "text"})  # forced, for a served model
    assert isinstance(adapter, TextOnlyAdapter)


def test_a_text_only_model_takes_text_and_refuses_video():
    import numpy as np

    from dj_ops.adapters.text_only import TextOnlyAdapter
    from dj_ops.backends.base import CaptionRequest, text_request

    adapter = TextOnlyAdapter()
    assert adapter.model_class == "AutoModelForCausalLM"
    assert adapter.messages(text_request("A dog.", "Rewrite.")) == [
        {"role": "system", "content": "Rewrite."}, {"role": "user", "content": "A dog."}]
    video = CaptionRequest(np.zeros((2, 32, 32, 3), np.uint8), {}, "Describe.")
    with pytest.raises(ValueError, match="cannot caption videos"):
        adapter.messages(video)
