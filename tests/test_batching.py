"""Micro-batch planning and order restoration."""

import pytest

from dj_ops.captioning.batching import plan_micro_batches, run_in_micro_batches


def test_most_expensive_first_then_input_order_on_ties():
    assert plan_micro_batches([1, 5, 3, 5], 2) == [[1, 3], [2, 0]]


def test_results_come_back_in_input_order():
    items = ["a", "bbb", "cc", "dddd", "e"]
    calls = []

    def run(batch):
        calls.append(batch)
        return [s.upper() for s in batch]

    assert run_in_micro_batches(items, [len(s) for s in items], 2, run) == [
        "A",
        "BBB",
        "CC",
        "DDDD",
        "E",
    ]
    assert calls == [["dddd", "bbb"], ["cc", "a"], ["e"]]


def test_a_batch_returning_the_wrong_count_is_an_error():
    with pytest.raises(RuntimeError, match="returned 1 results"):
        run_in_micro_batches([1, 2], [1, 1], 2, lambda batch: batch[:1])


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError):
        plan_micro_batches([1], 0)
