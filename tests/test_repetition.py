"""Repetition loops at the end of a caption: found, trimmed to one copy, exact values."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.repetition import Trimmed, find_loop, trim_repetition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a sentence repeated until the token limit, the last copy cut short
        ("A dog runs. A dog runs. A dog runs. A dog", "A dog runs."),
        # cut inside a word
        ("A dog runs. A dog runs. A dog runs. A do", "A dog runs."),
        # text before the loop is kept
        (
            "A man walks in. The dog barks. The dog barks. The dog barks. The dog barks.",
            "A man walks in. The dog barks.",
        ),
        # an n-gram loop without punctuation
        (
            "the cat sat on the mat the cat sat on the mat the cat sat on the mat the",
            "the cat sat on the mat",
        ),
        # a loop entered mid-sentence: one complete copy is kept, ending on its full stop
        ("I see the dog runs. A dog runs. A dog runs. A dog runs. A", "I see the dog runs."),
        ("I see that dog runs. A dog runs. A dog runs. A dog runs.", "I see that dog runs."),
        # Chinese: characters are tokens
        ("一只狗在草地上跑。一只狗在草地上跑。一只狗在草地上跑。一只", "一只狗在草地上跑。"),
        ("视频里有一只猫，猫，猫，猫，猫，猫，猫", "视频里有一只猫，"),
        # Japanese full-width punctuation
        ("犬が走る！犬が走る！犬が走る！犬が", "犬が走る！"),
        # a single word over and over
        ("The sky is blue blue blue blue blue blue blue", "The sky is blue"),
    ],
)
def test_loops_are_trimmed_to_one_copy(text, expected):
    assert trim_repetition(text) == Trimmed(expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A dog runs across a green field while a child throws a ball.",
        "A dog runs. A dog runs.",  # two copies: not a loop yet
        "very very very good",  # three short repeats in the middle are English
        "red red red red red red red car",  # a repeat not at the end is left alone
        "ha ha ha",  # too short to be a loop
        "哈哈哈",
        "一个人在厨房里切菜，然后把菜放进锅里。",
        "Scene 1. Scene 2. Scene 3. Scene 4.",
    ],
)
def test_text_without_a_trailing_loop_is_unchanged(text):
    assert trim_repetition(text) == Trimmed(text, False)


def test_find_loop_prefers_the_longest_loop_then_the_shortest_period():
    tokens = "x a b a b a b a b".split()
    assert find_loop(tokens) == (1, 2)  # period 4 spans as far but is not repeated 3 times
    assert find_loop(["a"] * 6) == (0, 1)
    assert find_loop(["a"] * 5) is None  # under the minimum loop length
    assert find_loop("a b a b".split(), min_repeats=2, min_loop_tokens=4) == (0, 2)


def test_thresholds_are_parameters():
    assert trim_repetition("A dog runs. A dog runs.", min_repeats=2).text == "A dog runs."
    assert not trim_repetition("go go go go go go", min_loop_tokens=7).trimmed


WORD = st.sampled_from(["a", "dog", "runs.", "the", "cat", "狗", "跑。", "，"])


@given(st.lists(WORD, max_size=12), st.lists(WORD, min_size=1, max_size=4),
       st.integers(3, 8), st.integers(0, 3))
def test_trimming_removes_only_copies_of_the_loop(prefix, unit, copies, partial):
    text = " ".join(prefix + unit * copies + unit[:partial])
    result = trim_repetition(text)
    assert text.startswith(result.text)
    assert result.trimmed == (result.text != text)
    if len(unit) * copies >= 6:
        assert result.trimmed and result.text
        assert set(text[len(result.text):].split()) <= set(unit)
