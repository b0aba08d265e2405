"""Pure request batching: order requests by cost, cut micro-batches, restore the order.

Requests are sorted most expensive first (so an out-of-memory error shows at once, and videos of
similar size share a micro-batch and waste little padding), then every result is written back to
the slot of its request; a slot left empty or filled twice is a bug and raises.

:func:`run_splitting` retries a micro-batch that fails with a recoverable error (out of memory)
as two halves, down to single requests, which then get a per-request failure: a bounded number
of calls (at most ``2 * len(batch) - 1``), never an endless retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def plan_micro_batches(costs: Sequence[float], batch_size: int) -> list[list[int]]:
    """Indices of the requests grouped in micro-batches of at most ``batch_size``.

    >>> plan_micro_batches([1, 5, 3], 2)
    [[1, 2], [0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def run_in_micro_batches(
    items: Sequence[T],
    costs: Sequence[float],
    batch_size: int,
    run_batch: Callable[[list[T]], list[R]],
) -> list[R]:
    """Run ``run_batch`` over micro-batches of ``items``; results come back in input order."""
    results: list[R | None] = [None] * len(items)
    filled = [False] * len(items)
    for batch in plan_micro_batches(costs, batch_size):
        outputs = run_batch([items[i] for i in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"a micro-batch of {len(batch)} returned {len(outputs)} results")
        for index, output in zip(batch, outputs):
            if filled[index]:
                raise RuntimeError(f"request {index} received two results")
            results[index], filled[index] = output, True
    missing = [i for i, done in enumerate(filled) if not done]
    if missing:
        raise RuntimeError(f"requests {missing} received no result")
    return results  # type: ignore[return-value]


def run_splitting(
    batch: list[T],
    run_batch: Callable[[list[T]], list[R]],
    should_split: Callable[[BaseException], bool],
    fail_item: Callable[[T, str], R],
    on_failure: Callable[[int, str], None] | None = None,
) -> list[R]:
    """``run_batch(batch)``; when it raises an error ``should_split`` accepts, run each half
    the same way, and give a request that fails alone ``fail_item(request, message)``.

    :param should_split: which errors to recover from (others propagate unchanged).
    :param on_failure: called with the failed batch's size and the error message after the
        error is released (its traceback may hold large tensors): free memory, log.
    :return: one result per request, in the order of ``batch``.
    """
    try:
        return run_batch(batch)
    except Exception as error:  # noqa: BLE001 - filtered by should_split, re-raised otherwise
        if not should_split(error):
            raise
        message = f"{type(error).__name__}: {error}"
    # Out of the except block: the error and its traceback are released here.
    if on_failure is not None:
        on_failure(len(batch), message)
    if len(batch) == 1:
        return [fail_item(batch[0], message)]
    half = (len(batch) + 1) // 2
    return [
        *run_splitting(batch[:half], run_batch, should_split, fail_item, on_failure),
        *run_splitting(batch[half:], run_batch, should_split, fail_item, on_failure),
    ]
