"""keep_candidate_mode consensus: minimum Bayes risk selection, with no original text."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.consensus import (
    consensus_index,
    jaccard,
    mean_similarities,
    ngram_set,
    select_consensus,
)

AGREEING = [
    "A brown dog runs along the beach as waves roll in.",
    "A brown dog runs on the beach while the waves roll in.",
    "A brown dog runs along a sandy beach, waves rolling in.",
]
OUTLIERS = ["I'm sorry, I cannot describe videos.", "!!!! !!!! !!!!",
            "A red car drives through a city at night."]


def test_the_agreeing_candidate_wins_over_outliers():
    candidates = [OUTLIERS[0], AGREEING[0], OUTLIERS[1], AGREEING[1], OUTLIERS[2], AGREEING[2]]
    assert candidates[consensus_index(candidates)] in AGREEING


def test_k1_and_k2():
    assert consensus_index(["anything"]) == 0
    assert select_consensus(["anything"], "", random.Random(0)) == [0]
    # k = 2: similarity is symmetric, a tie: the candidate saying more, then the smaller text
    short, long = "A dog runs.", "A dog runs on the beach."
    assert consensus_index([short, long]) == 1 and consensus_index([long, short]) == 0
    assert consensus_index(["b dog", "a cat"]) == 1 and consensus_index(["a cat", "b dog"]) == 0


def test_no_candidates_and_empty_ones():
    with pytest.raises(ValueError):
        consensus_index([])
    assert jaccard(ngram_set(""), ngram_set("")) == 0
    assert consensus_index(["", "", "a dog"]) == 2  # empties tie at 0, the one with content wins


def test_needs_no_reference_and_ignores_it():
    candidates = [*AGREEING, *OUTLIERS]
    picks = {select_consensus(candidates, ref, random.Random(seed))[0]
             for ref, seed in [("", 0), ("A red car drives.", 1), ("x", 2)]}
    assert len(picks) == 1


def test_similarity_counts_word_order():
    assert jaccard(ngram_set("dog bites man"), ngram_set("man bites dog")) < 1
    assert jaccard(ngram_set("Dog, bites man!"), ngram_set("dog bites man")) == 1


texts = st.lists(st.text(alphabet="abc .", max_size=20), min_size=1, max_size=6)


@given(candidates=texts, seed=st.integers(0, 1000))
def test_the_kept_text_does_not_depend_on_candidate_order(candidates, seed):
    shuffled = list(candidates)
    random.Random(seed).shuffle(shuffled)
    assert shuffled[consensus_index(shuffled)] == candidates[consensus_index(candidates)]


@given(candidates=texts, favourite=st.text(alphabet="abcd ", min_size=3, max_size=20))
def test_a_duplicated_candidate_wins_over_distinct_outliers(candidates, favourite):
    """Two copies of one caption among captions sharing no word with it or each other: a copy
    wins."""
    outliers, seen = [], set(ngram_set(favourite))
    for c in candidates:
        if not ngram_set(c) & seen:
            outliers.append(c)
            seen |= ngram_set(c)
    pool = [*outliers, favourite, favourite]
    if ngram_set(favourite):
        assert pool[consensus_index(pool)] == favourite


@given(candidates=texts)
def test_means_are_similarities(candidates):
    means = mean_similarities(candidates)
    assert len(means) == len(candidates) and all(0 <= m <= 1 for m in means)
