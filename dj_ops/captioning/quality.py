"""The quality gate's checks: pure functions from a candidate caption to a list of flags.

Each check looks for one way captioning models are seen to fail (Qwen3-VL users report each):

- ``empty``: nothing but whitespace;
- ``repetition``: a loop at the end (:mod:`dj_ops.captioning.repetition` finds it), or one the
  backend already trimmed;
- ``truncated``: the token limit was hit mid-sentence (text mode) or mid-document (json mode);
- ``refusal``: a refusal phrase (``"I'm sorry"``, ``"as an AI"``, ...), case-insensitive;
- ``garbage``: Unicode replacement characters (U+FFFD: bytes that did not decode), or a share
  of non-letter characters no prose has (``"!!!!"``, ``"1 1 1 1"``);
- ``invalid_json`` (json mode): not strict JSON, or not valid under the schema.

In json mode the prose checks (repetition, refusal, garbage) read the document's string values
joined, not its braces and quotes. Every threshold is a field of :class:`QualityThresholds`, with
its default and the reason for it. :data:`RETRY_SAMPLING` is how a failed candidate is sampled
again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dj_ops.captioning.generation import GenerationSettings
from dj_ops.captioning.repetition import (
    DEFAULT_MIN_LOOP_TOKENS,
    DEFAULT_MIN_REPEATS,
    SENTENCE_END,
    trim_repetition,
)
from dj_ops.captioning.structured import JsonSchema, parse_strict

EMPTY = "empty"
REPETITION = "repetition"
TRUNCATED = "truncated"
REFUSAL = "refusal"
GARBAGE = "garbage"
INVALID_JSON = "invalid_json"
FLAGS = (EMPTY, REPETITION, TRUNCATED, REFUSAL, GARBAGE, INVALID_JSON)

# Phrases with which chat models decline or hedge instead of describing; matched as whole words,
# case-insensitive, with typographic apostrophes read as plain ones. None of them belongs in a
# description of what a video shows.
REFUSAL_PHRASES = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "i cannot",
    "i can't",
    "i can not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "as an ai",
    "as a language model",
    "unable to view",
    "unable to watch",
    "cannot view the video",
    "can't view the video",
)

# A sentence may close inside quotes or brackets: 'He says "hello."' ends a sentence.
_CLOSERS = "\"')]}»”’"

# Retried candidates are sampled, never greedy (greedy decoding would give the same failure
# again): a moderate temperature, a wide nucleus cut to the 20 likeliest tokens (the top_k Qwen's
# model cards recommend) against the tail where garbage lives, and a mild repetition penalty
# against loops (strong penalties make a describer avoid the nouns it must repeat).
RETRY_TEMPERATURE = 0.6
RETRY_TOP_P = 0.95
RETRY_TOP_K = 20
RETRY_REPETITION_PENALTY = 1.05
RETRY_SAMPLING = GenerationSettings(
    do_sample=True,
    temperature=RETRY_TEMPERATURE,
    top_p=RETRY_TOP_P,
    top_k=RETRY_TOP_K,
    repetition_penalty=RETRY_REPETITION_PENALTY,
)


def retry_settings(base: GenerationSettings) -> GenerationSettings:
    """``base`` (its token limits and stop strings kept) with :data:`RETRY_SAMPLING`'s
    sampling."""
    return replace(base, do_sample=RETRY_SAMPLING.do_sample,
                   temperature=RETRY_SAMPLING.temperature, top_p=RETRY_SAMPLING.top_p,
                   top_k=RETRY_SAMPLING.top_k,
                   repetition_penalty=RETRY_SAMPLING.repetition_penalty)


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds of the gate, each with its default and why.

    :param min_repeats: copies of a unit at the end of a caption that make a loop (3, as the
        repetition trimmer: two copies happen in prose, three in a row at the very end do not).
    :param min_loop_tokens: tokens a loop must span (6: "very very very" is English).
    :param max_replacement_chars: U+FFFD characters allowed (0: each is a byte sequence that did
        not decode, never something the video shows).
    :param max_non_letter_share: the largest share of non-letter characters among the
        non-space ones (0.5: English prose has about 3-5% punctuation and digits; a caption
        full of timestamps stays well under half; "!!!!" and "1 1 1" are 100%).
    :param min_chars_for_share: the share is judged only on texts with this many non-space
        characters (4: "OK." is short, not garbage; an empty text is flagged ``empty``).
    :param refusal_phrases: see :data:`REFUSAL_PHRASES`.
    """

    min_repeats: int = DEFAULT_MIN_REPEATS
    min_loop_tokens: int = DEFAULT_MIN_LOOP_TOKENS
    max_replacement_chars: int = 0
    max_non_letter_share: float = 0.5
    min_chars_for_share: int = 4
    refusal_phrases: tuple[str, ...] = REFUSAL_PHRASES

    def __post_init__(self):
        if self.min_repeats < 2:
            raise ValueError(f"min_repeats must be >= 2, got {self.min_repeats}")
        if self.max_replacement_chars < 0:
            raise ValueError(
                f"max_replacement_chars must be >= 0, got {self.max_replacement_chars}")
        if not 0 < self.max_non_letter_share <= 1:
            raise ValueError(
                f"max_non_letter_share must be in (0, 1], got {self.max_non_letter_share}")


DEFAULT_THRESHOLDS = QualityThresholds()


def is_empty(text: str) -> bool:
    return not text.strip()


def has_repetition_loop(text: str, thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> bool:
    """Whether ``text`` ends in a loop (see :func:`dj_ops.captioning.repetition.find_loop`)."""
    return trim_repetition(text, thresholds.min_repeats, thresholds.min_loop_tokens).trimmed


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a sentence end, possibly inside closing quotes or brackets."""
    return text.rstrip().rstrip(_CLOSERS).endswith(SENTENCE_END)


def is_truncated(text: str, hit_token_limit: bool) -> bool:
    """The token limit stopped generation mid-sentence (a limit hit right after a sentence end
    lost nothing said so far)."""
    return hit_token_limit and not ends_sentence(text)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())


def refusal_phrase(text: str, phrases: tuple[str, ...] = REFUSAL_PHRASES) -> str | None:
    """The first of ``phrases`` that ``text`` holds as whole words (case-insensitive), or None."""
    normal = _normalise(text)
    for phrase in phrases:
        if re.search(rf"(?<!\w){re.escape(_normalise(phrase))}(?!\w)", normal):
            return phrase
    return None


def non_letter_share(text: str) -> float:
    """Share of non-letter characters among the non-space characters of ``text`` (0 for a text
    of spaces only). Letters are Unicode letters of any script (``str.isalpha``)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(not c.isalpha() for c in chars) / len(chars)


def is_garbage(text: str, thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> bool:
    """Replacement characters above the allowance, or a non-letter share above the threshold
    (on texts long enough to judge)."""
    if text.count("\ufffd") > thresholds.max_replacement_chars:
        return True
    if sum(not c.isspace() for c in text) < thresholds.min_chars_for_share:
        return False
    return non_letter_share(text) > thresholds.max_non_letter_share


def string_values(document: Any) -> list[str]:
    """The string values of a parsed JSON document, depth first in document order (keys and
    enum-like values included as they stand)."""
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [s for v in document.values() for s in string_values(v)]
    if isinstance(document, list):
        return [s for v in document for s in string_values(v)]
    return []


def quality_flags(
    text: str,
    hit_token_limit: bool,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    schema: JsonSchema | None = None,
    repetition_trimmed: bool = False,
) -> list[str]:
    """The flags of one candidate, in the order of :data:`FLAGS`; an empty list passes.

    :param text: the candidate's text as stored (after any repetition trimming).
    :param hit_token_limit: whether generation stopped at the token limit.
    :param schema: the JSON schema in json mode; None in text mode.
    :param repetition_trimmed: whether the backend already trimmed a loop off this text.
    """
    if is_empty(text):
        return [EMPTY, INVALID_JSON] if schema is not None else [EMPTY]
    prose, invalid = text, False
    if schema is not None:
        invalid = schema.error(text) is not None
        if not invalid:
            prose = " ".join(string_values(parse_strict(text)))
    checks = {
        REPETITION: repetition_trimmed or has_repetition_loop(prose, thresholds),
        # json mode: a document cut by the limit is invalid; a complete one lost nothing.
        TRUNCATED: hit_token_limit and invalid if schema is not None
        else is_truncated(text, hit_token_limit),
        REFUSAL: refusal_phrase(prose, thresholds.refusal_phrases) is not None,
        # The share of non-letters means nothing in raw JSON text: an invalid document is judged
        # on its replacement characters only.
        GARBAGE: text.count("\ufffd") > thresholds.max_replacement_chars if invalid
        else is_garbage(prose, thresholds),
        INVALID_JSON: invalid,
    }
    return [flag for flag in FLAGS if checks.get(flag)]
