"""The rewrite presets: one table of instructions, and how a recipe's choice becomes one.

A rewrite is one text-only chat request per caption, as NeMo Curator's and cosmos-curate's
enhancement stages send it: the preset's instruction as the system message, the caption as the
user message. A preset also sets the default token limit of the rewrite and, for the
video-generation style, a length bound in the *target* tokenizer's tokens (the text encoder
of the generator that will read the caption: CogVideoX's T5 takes 226 tokens, its ``</s>``
included). The bound is enforced after generation (``enhancement/length.py``); the instruction
also tells the model a word budget derived from it, so that a good model rarely needs the cut.

A recipe's ``prompt`` replaces the preset's instruction (``{max_words}`` in it, if any, is filled
in the same way); the preset's limits stay.
"""

from __future__ import annotations

from dataclasses import dataclass

# English prose takes about 1.3 T5 tokens a word (measured on CogVideoX's example prompts in
# docs/findings.md): a word budget the model is asked for that fits the token bound.
WORDS_PER_TARGET_TOKEN = 0.75
MAX_WORDS_FIELD = "{max_words}"

_KEEP_FACTS = (
    "Keep every fact the caption states, and add no person, object, event or detail that it "
    "does not state or clearly imply. Answer with the rewritten caption only: no preamble, no "
    "list, no quotes.")


@dataclass(frozen=True)
class Preset:
    """One rewrite style.

    :param instruction: the system message (may hold ``{max_words}``).
    :param max_new_tokens: the rewrite's token limit when ``sampling_params`` sets none.
    :param max_target_tokens: the bound in the target tokenizer's tokens (None: no bound).
    :param target_tokenizer: the tokenizer the bound counts in (a Hugging Face id or folder).
    :param summary: one line for the README and the command line's help.
    """

    instruction: str
    max_new_tokens: int
    summary: str
    max_target_tokens: int | None = None
    target_tokenizer: str | None = None


PRESETS: dict[str, Preset] = {
    "detailed": Preset(
        instruction=(
            "You improve captions of short videos. The user message is a caption of one video. "
            "Rewrite it as one richer, more detailed paragraph: describe the subjects and how "
            "they look, what they do in order, the setting, the light and the camera, in clear "
            "present-tense prose. " + _KEEP_FACTS),
        max_new_tokens=512,
        summary="a richer, more detailed paragraph (as NeMo Curator's and cosmos-curate's "
                "enhancement)"),
    "short": Preset(
        instruction=(
            "You shorten captions of short videos. The user message is a caption of one video. "
            "Rewrite it as one sentence of at most 25 words naming the main subject, its action "
            "and the setting. " + _KEEP_FACTS),
        max_new_tokens=64,
        summary="one sentence of at most 25 words"),
    "video_generation": Preset(
        instruction=(
            "You write prompts for a text-to-video generation model. The user message is a "
            "caption of one video. Rewrite it as a single paragraph of at most {max_words} "
            "words that a video generator can render: start with the main subject, then its "
            "appearance, its actions in the order they happen, the setting and background, "
            "the lighting and colours, and the camera's shot and movement, in concrete visual "
            "present-tense words. Say nothing about sound or about the video itself. "
            + _KEEP_FACTS),
        max_new_tokens=320,
        max_target_tokens=226,
        target_tokenizer="google/t5-v1_1-xxl",
        summary="a text-to-video prompt bounded in the generator's text-encoder tokens "
                "(226 T5 tokens, CogVideoX's)"),
}
DEFAULT_PRESET = "detailed"


@dataclass(frozen=True)
class RewriteSpec:
    """What one op instance rewrites with: the preset's name, the instruction sent (the
    preset's, or the recipe's own: ``custom_prompt``), the default token limit, and the length
    bound."""

    preset: str
    instruction: str
    max_new_tokens: int
    max_target_tokens: int | None = None
    target_tokenizer: str | None = None
    custom_prompt: bool = False

    @property
    def bounded(self) -> bool:
        return self.max_target_tokens is not None


def max_words(max_target_tokens: int | None) -> int | None:
    """The word budget an instruction asks for under a token bound.

    >>> max_words(226)
    169
    """
    if max_target_tokens is None:
        return None
    return max(1, int(max_target_tokens * WORDS_PER_TARGET_TOKEN))


def fill_instruction(instruction: str, max_target_tokens: int | None) -> str:
    """``instruction`` with ``{max_words}`` replaced (only that field: other braces are text).

    :raises ValueError: when it asks for a word budget but no bound is set.
    """
    if MAX_WORDS_FIELD not in instruction:
        return instruction
    words = max_words(max_target_tokens)
    if words is None:
        raise ValueError(f"the prompt holds {MAX_WORDS_FIELD} but no length bound is set: set "
                         "max_target_tokens (and target_tokenizer)")
    return instruction.replace(MAX_WORDS_FIELD, str(words))


def resolve_rewrite(preset: str, prompt: str | None = None,
                    max_target_tokens: int | None = None,
                    target_tokenizer: str | None = None) -> RewriteSpec:
    """The rewrite a recipe asks for: ``preset`` from :data:`PRESETS`, its instruction replaced
    by ``prompt`` when given, its bound and target tokenizer replaced by the recipe's.

    :raises ValueError: naming the fix, for an unknown preset, an empty prompt, or a bound
        without a tokenizer to count it in (or a tokenizer without a bound).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not a rewrite preset; choose one of "
                         f"{sorted(PRESETS)}, or give your own prompt")
    chosen = PRESETS[preset]
    if prompt is not None and not prompt.strip():
        raise ValueError("prompt is empty; give an instruction or leave it unset for the "
                         "preset's")
    bound = max_target_tokens if max_target_tokens is not None else chosen.max_target_tokens
    tokenizer = target_tokenizer or chosen.target_tokenizer
    if bound is not None and not tokenizer:
        raise ValueError("max_target_tokens counts in a target tokenizer: set target_tokenizer "
                         "(a Hugging Face id or local folder, e.g. the generator's text encoder's)")
    if tokenizer and bound is None:
        raise ValueError(f"target_tokenizer={tokenizer!r} is set without a bound: set "
                         "max_target_tokens, or remove target_tokenizer")
    instruction = fill_instruction(prompt if prompt is not None else chosen.instruction, bound)
    return RewriteSpec(preset=preset, instruction=instruction,
                       max_new_tokens=chosen.max_new_tokens, max_target_tokens=bound,
                       target_tokenizer=tokenizer, custom_prompt=prompt is not None)
