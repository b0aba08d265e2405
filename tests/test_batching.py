"""Micro-batch planning and order restoration."""

import pytest

from dj_ops.captioning.batching import (
    HALVES,
    SINGLES,
    plan_micro_batches,
    run_in_micro_batches,
    run_splitting,
)


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


class FakeOutOfMemory(RuntimeError):
    pass


def splitting_run(limit):
    """A batch runner that runs out of memory above ``limit`` items; records batch sizes."""
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        if len(batch) > limit:
            raise FakeOutOfMemory(f"{len(batch)} > {limit}")
        return [f"ok:{item}" for item in batch]

    return run, sizes


def out_of_memory_halves(error):
    """Halve on FakeOutOfMemory (detail: its message); let anything else propagate."""
    if isinstance(error, FakeOutOfMemory):
        return HALVES, f"{type(error).__name__}: {error}"
    return None


def split_all(items, limit, on_failure=None):
    run, sizes = splitting_run(limit)
    results = run_splitting(
        items, run, out_of_memory_halves,
        lambda item, message: f"failed:{item}:{message}", on_failure,
    )
    return results, sizes


def test_out_of_memory_batches_are_halved_until_they_fit():
    results, sizes = split_all(list(range(8)), limit=2)
    assert results == [f"ok:{i}" for i in range(8)]
    assert sizes == [8, 4, 2, 2, 4, 2, 2]


def test_uneven_halves_and_a_fitting_batch_is_run_once():
    assert split_all(list(range(5)), limit=2)[1] == [5, 3, 2, 1, 2]
    assert split_all(list(range(5)), limit=5)[1] == [5]


def test_a_single_request_that_does_not_fit_fails_alone_without_retrying():
    failures = []
    results, sizes = split_all(["a", "b", "c"], limit=0,
                              on_failure=lambda n, m, how: failures.append(n))
    assert results == [
        "failed:a:FakeOutOfMemory: 1 > 0",
        "failed:b:FakeOutOfMemory: 1 > 0",
        "failed:c:FakeOutOfMemory: 1 > 0",
    ]
    assert sizes == [3, 2, 1, 1, 1]  # 2 * 3 - 1 calls: bounded, never an endless retry
    assert failures == [3, 2, 1, 1, 1]


def test_other_errors_propagate_unchanged():
    def run(batch):
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        run_splitting([1, 2], run, out_of_memory_halves, lambda i, m: m)


def test_splitting_inside_micro_batches_keeps_the_input_order():
    run, sizes = splitting_run(limit=1)

    def run_batch(batch):
        return run_splitting(batch, run, lambda e: (HALVES, str(e)), lambda item, message: "x")

    items = ["a", "bbb", "cc", "dddd", "e"]
    results = run_in_micro_batches(items, [len(s) for s in items], 4, run_batch)
    assert results == [f"ok:{s}" for s in items]
    assert sizes == [4, 2, 1, 1, 2, 1, 1, 1]


def test_other_failures_are_retried_one_by_one_and_only_the_bad_request_fails():
    """A batch-level error (not memory) is retried request by request: the request that fails
    alone gets its failure with the detail, the others their results, marked as retried."""
    calls = []

    def run(batch):
        calls.append(list(batch))
        if len(batch) > 1 or batch == ["bad"]:
            raise ValueError(f"cannot stack {batch}")
        return [f"ok:{item}" for item in batch]

    results = run_splitting(
        ["a", "bad", "c"], run, lambda e: (SINGLES, f"{type(e).__name__}: {e}"),
        lambda item, detail: f"failed:{item}:{detail}", mark_retried=lambda r: r + "*")
    assert results == ["ok:a*", "failed:bad:ValueError: cannot stack ['bad']*", "ok:c*"]
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]  # len + 1 calls


def test_micro_batches_never_mix_keys_and_keep_the_cost_order():
    plan = plan_micro_batches([3, 9, 5, 7, 1, 8], 2, keys=["x", "y", "x", "y", "x", "z"])
    assert plan == [[1, 3], [5], [2, 0], [4]]
    assert sorted(i for batch in plan for i in batch) == list(range(6))
