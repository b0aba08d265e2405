"""Pure detection and trimming of repetition loops at the end of a generated caption.

A model stuck in a loop repeats the same sentence or n-gram until the token limit:
``"A dog runs. A dog runs. A dog runs. A dog"``. :func:`trim_repetition` finds the longest
periodic tail of the text (a unit of tokens repeated at least ``min_repeats`` times, the last
copy possibly cut short) and keeps the text before it plus one copy of the unit, or, when the
unit holds a sentence end, the text through the first sentence end inside the loop.

Tokens are whitespace-separated words (punctuation attached), and single characters for
scripts written without spaces (Chinese, Japanese, Korean), so loops are found in both.
Only tails are trimmed: a loop is what runs into the token limit, and a repeated phrase in
the middle of a caption is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Scripts written without spaces, CJK punctuation and full-width forms: one token per character.
_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
SENTENCE_END = tuple(".!?。！？…")

DEFAULT_MIN_REPEATS = 3
# A loop must also span this many tokens: "very very very" is English, six of them is a loop.
DEFAULT_MIN_LOOP_TOKENS = 6


@dataclass(frozen=True)
class Trimmed:
    """A caption after :func:`trim_repetition`.

    :param text: the caption, with a trailing loop reduced to one copy of its unit.
    :param trimmed: whether a loop was found and removed.
    """

    text: str
    trimmed: bool


def _periodic_tail_start(tokens: list[str], period: int) -> int:
    """Start of the longest tail of ``tokens`` in which every token equals the one ``period``
    later; the last token may be a cut-short copy (a prefix) of its counterpart."""
    n = len(tokens)
    start = n - period
    for j in range(n - period - 1, -1, -1):
        later = tokens[j + period]
        if tokens[j] == later or (j + period == n - 1 and tokens[j].startswith(later)):
            start = j
        else:
            break
    return start


def find_loop(
    tokens: list[str],
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_loop_tokens: int = DEFAULT_MIN_LOOP_TOKENS,
) -> tuple[int, int] | None:
    """``(start, period)`` of the longest trailing loop, or None.

    A loop is a tail of at least ``min_repeats * period`` and ``min_loop_tokens`` tokens with
    period ``period``. The longest loop wins, then the shortest period.

    >>> find_loop("A dog runs. A dog runs. A dog runs. A dog".split())
    (0, 3)
    """
    n, best = len(tokens), None
    for period in range(1, n // min_repeats + 1):
        start = _periodic_tail_start(tokens, period)
        length = n - start
        if length >= max(min_repeats * period, min_loop_tokens) and (
            best is None or start < best[0]
        ):
            best = (start, period)
    return best


def _cut_index(tokens: list[str], start: int, period: int) -> int:
    """Tokens to keep: through the first sentence end within the loop's first period (the
    sentence the loop started in is complete, no copy of the loop is left), else one copy of
    the unit."""
    for cut in range(start + 1, start + period + 1):
        if tokens[cut - 1].endswith(SENTENCE_END):
            return cut
    return start + period


def trim_repetition(
    text: str,
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_loop_tokens: int = DEFAULT_MIN_LOOP_TOKENS,
) -> Trimmed:
    """Reduce a trailing repetition loop of ``text`` to one copy of the repeated unit.

    >>> trim_repetition("A dog runs. A dog runs. A dog runs. A dog")
    Trimmed(text='A dog runs.', trimmed=True)
    >>> trim_repetition("A dog runs.")
    Trimmed(text='A dog runs.', trimmed=False)
    """
    matches = list(_TOKEN.finditer(text))
    tokens = [m.group() for m in matches]
    loop = find_loop(tokens, min_repeats, min_loop_tokens)
    if loop is None:
        return Trimmed(text, False)
    return Trimmed(text[: matches[_cut_index(tokens, *loop) - 1].end()], True)
