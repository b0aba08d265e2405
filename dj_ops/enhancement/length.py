"""A rewrite's length bound in the target tokenizer's tokens, enforced after generation.

The generator's text encoder (CogVideoX's T5: 226 tokens, its ``</s>`` included) cuts whatever
is longer, mid-word if need be. A model asked for "at most 169 words" is not bound by it, least
of all a random-weight one; so every rewrite is counted in the target tokenizer, exactly as the
encoder will count it (special tokens included), and one that is longer is cut here:

1. the longest prefix that ends at a token boundary and fits (a binary search over the token
   ends, each candidate counted again: tokenizers are not additive, ``"ab"`` may take fewer
   tokens than ``"a"`` and ``"b"``);
2. within it, preferably the last sentence end (the one decision of what ends a sentence:
   :func:`dj_ops.captioning.quality.ends_sentence`), else the last word end, as long as that
   keeps at least :data:`MIN_KEEP_SHARE` of the prefix (a 200-token prompt is not cut to its
   first 10-word sentence); else the token prefix itself.

Whatever is returned was counted and fits: the bound is never exceeded. How it was cut
(``sentence``, ``word``, ``token``; ``""`` when it fitted) goes in the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dj_ops.captioning.quality import ends_sentence

MIN_KEEP_SHARE = 0.5  # a sentence or word cut keeps at least this share of the fitting prefix
CUT_SENTENCE, CUT_WORD, CUT_TOKEN = "sentence", "word", "token"


class TargetTokens(Protocol):
    """Counts text the way the target encoder will, and says where its tokens end."""

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the encoder takes it (special tokens included)."""

    def ends(self, text: str) -> list[int]:
        """Character offsets at which a token of ``text`` ends, ascending."""


@dataclass(frozen=True)
class Fitted:
    """A text within the bound: its tokens, and how it was cut ("" when it fitted whole)."""

    text: str
    tokens: int
    cut: str = ""


def _longest_fitting_end(text: str, ends: list[int], counter: TargetTokens,
                         budget: int) -> int:
    """The largest token end whose prefix fits (0 when none does)."""
    low, high = 0, len(ends)  # ends[:low] fit (as far as the search assumes), ends[high:] not
    while low < high:
        mid = (low + high) // 2
        if counter.count(text[:ends[mid]].rstrip()) <= budget:
            low = mid + 1
        else:
            high = mid
    for index in range(low - 1, -1, -1):  # checked again: counts need not grow with length
        if counter.count(text[:ends[index]].rstrip()) <= budget:
            return ends[index]
    return 0


def _word_ends(text: str, end: int) -> list[int]:
    """Offsets ``<= end`` where a word of ``text`` ends (before whitespace, or at ``end`` when a
    word ends there), descending."""
    found = [i for i in range(end, 0, -1)
             if not text[i - 1].isspace() and (i == len(text) or text[i].isspace())]
    return found


def fit_to_tokens(text: str, counter: TargetTokens, budget: int) -> Fitted:
    """``text`` within ``budget`` tokens of ``counter`` (see the module's doc).

    :raises ValueError: for a budget below 1.
    """
    if budget < 1:
        raise ValueError(f"a token budget must be >= 1, got {budget}")
    tokens = counter.count(text)
    if tokens <= budget:
        return Fitted(text, tokens)
    end = _longest_fitting_end(text, counter.ends(text), counter, budget)
    prefix = text[:end].rstrip()
    floor = MIN_KEEP_SHARE * len(prefix)
    word_ends = [i for i in _word_ends(text, end) if i >= floor]
    options = ([(text[:i], CUT_SENTENCE) for i in word_ends if ends_sentence(text[:i])][:1]
               + [(text[:i], CUT_WORD) for i in word_ends[:1]] + [(prefix, CUT_TOKEN)])
    for candidate, how in options:
        candidate = candidate.rstrip()
        counted = counter.count(candidate)
        if counted <= budget:
            return Fitted(candidate, counted, how)
    return Fitted("", counter.count(""), CUT_TOKEN)  # not even one token fits


class HFTargetTokens:
    """:class:`TargetTokens` of a Hugging Face tokenizer (loaded by :func:`load_target`).

    Token ends come from a fast tokenizer's offsets; a slow one (no offsets) is cut at any
    character, then at a sentence or word end as above.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def ends(self, text: str) -> list[int]:
        if not getattr(self.tokenizer, "is_fast", False):
            return list(range(1, len(text) + 1))
        offsets = self.tokenizer(text, add_special_tokens=False,
                                 return_offsets_mapping=True)["offset_mapping"]
        return sorted({end for _, end in offsets if end > 0})


def load_target(name: str) -> HFTargetTokens:
    """The target tokenizer ``name`` (a Hugging Face id or local folder).

    :raises ValueError: naming the fix, when it cannot be loaded.
    """
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"target_tokenizer={name!r} cannot be loaded: {error}. Give the generator's text "
            "encoder's tokenizer as a Hugging Face id (downloaded or reachable) or a local "
            "folder") from None
    return HFTargetTokens(tokenizer)
