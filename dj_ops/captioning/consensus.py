"""``keep_candidate_mode: consensus``: minimum Bayes risk selection among a video's candidates.

Of ``k`` candidates, keep the one with the highest mean similarity to the ``k - 1`` others: the
candidate the others agree with most, so a lone hallucination, a loop or a refusal loses to the
description most samples share. No original text is needed (``similar_one_simhash`` compares
with one; a bare video list has none).

Similarity: the Jaccard index of the sets of word unigrams and bigrams (lower-cased, punctuation
stripped), chosen over simhash because

- captions are short (tens to a few hundred words): a 64-bit simhash of so few shingles is
  noisy, and its Hamming distance only estimates the overlap that Jaccard computes exactly;
- ``k`` is small (``caption_num``, a handful), so the exact ``k²/2`` set comparisons cost
  microseconds; nothing needs hashing;
- bigrams add word order (who does what to whom) to the bag of words; unigrams keep short
  captions comparable.

Ties (equal mean similarity, k = 2 always) go to the candidate with the most distinct n-grams
(more content said the same way), then to the smallest text in code-point order, then to the
lowest index: the kept text never depends on the order of the candidates.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from fractions import Fraction

_WORD = re.compile(r"\w+")


def ngram_set(text: str) -> frozenset[tuple[str, ...]]:
    """Word unigrams and bigrams of ``text``, lower-cased, punctuation stripped."""
    words = _WORD.findall(text.lower())
    return frozenset([(w,) for w in words] + list(zip(words, words[1:])))


def jaccard(a: frozenset, b: frozenset) -> Fraction:
    """``|a ∩ b| / |a ∪ b|``, exact; 0 when both are empty (two empty captions agree on
    nothing). Exact fractions make the means, and so the choice, independent of the order in
    which they are summed."""
    union = len(a | b)
    return Fraction(len(a & b), union) if union else Fraction(0)


def mean_similarities(candidates: Sequence[str]) -> list[Fraction]:
    """For each candidate, its mean similarity to the others (0 for a lone candidate)."""
    grams = [ngram_set(c) for c in candidates]
    k = len(grams)
    totals = [Fraction(0)] * k
    for i in range(k):
        for j in range(i + 1, k):
            s = jaccard(grams[i], grams[j])
            totals[i] += s
            totals[j] += s
    return [t / (k - 1) if k > 1 else Fraction(0) for t in totals]


def consensus_index(candidates: Sequence[str]) -> int:
    """Index of the candidate most similar on average to the others (see the module's doc for
    ties).

    :raises ValueError: on no candidates.
    """
    if not candidates:
        raise ValueError("consensus needs at least one candidate")
    means = mean_similarities(candidates)
    sizes = [len(ngram_set(c)) for c in candidates]
    return min(range(len(candidates)),
               key=lambda i: (-means[i], -sizes[i], candidates[i], i))


def select_consensus(candidates: Sequence[str], reference: str, rng: random.Random) -> list[int]:
    """The ``keep_candidate_mode`` selector (``selection.SELECTORS``'s signature): keep the
    consensus candidate; ``reference`` and ``rng`` are not used."""
    return [consensus_index(candidates)]
