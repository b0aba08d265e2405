"""Candidate reduction modes."""

import random

from dj_ops.captioning.selection import SELECTORS, select_per_sample, text_simhash


def test_all_keeps_every_candidate_in_order_per_sample():
    picks = select_per_sample(
        "all", [["a0", "a1", "a2"], ["b0", "b1", "b2"]], ["", ""], random.Random(0)
    )
    assert picks == [[0, 0], [1, 1], [2, 2]]


def test_random_any_keeps_one_per_video_reproducibly():
    cands = [["a0", "a1", "a2", "a3"]] * 3
    first = select_per_sample("random_any", cands, [""] * 3, random.Random(7))
    again = select_per_sample("random_any", cands, [""] * 3, random.Random(7))
    assert first == again and len(first) == 1 and len(first[0]) == 3
    assert all(0 <= i < 4 for i in first[0])


def test_random_any_uses_every_candidate_eventually():
    rng = random.Random(1)
    seen = {SELECTORS["random_any"](["a", "b", "c"], "", rng)[0] for _ in range(100)}
    assert seen == {0, 1, 2}


def test_similar_one_simhash_picks_the_nearest_candidate():
    reference = "a brown dog runs across the green park chasing a red ball"
    candidates = [
        "stock market prices fell sharply on tuesday afternoon trading",
        "a brown dog runs across the green park chasing a ball",
        "the chef slices onions in a busy restaurant kitchen tonight",
    ]
    assert SELECTORS["similar_one_simhash"](candidates, reference, random.Random(0)) == [1]


def test_simhash_is_deterministic_and_case_insensitive():
    assert text_simhash("A Dog Runs") == text_simhash("a dog runs")
    assert text_simhash("a dog runs") != text_simhash("a cat sleeps soundly")
    assert isinstance(text_simhash(""), int)


def test_no_videos_gives_no_samples():
    assert select_per_sample("all", [], [], random.Random(0)) == []
