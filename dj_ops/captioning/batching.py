"""Pure request batching: order requests by cost, cut micro-batches, restore the order.

Requests are sorted most expensive first (so an out-of-memory error shows at once, and videos of
similar size share a micro-batch and waste little padding), then every result is written back to
the slot of its request; a slot left empty or filled twice is a bug and raises. Requests with
different batch keys (a family whose processor stacks videos needs one frame count per call)
never share a micro-batch.

:func:`run_splitting` retries a micro-batch that fails: as two halves when a smaller batch may
succeed (out of memory), else request by request; a request that fails alone gets a per-request
failure. A bounded number of calls (at most ``2 * len(batch) - 1`` halving, ``len(batch) + 1``
one by one), never an endless retry.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
D = TypeVar("D")

HALVES = "halves"  # retry a failed batch as two halves (a smaller batch may fit)
SINGLES = "singles"  # retry each request of a failed batch alone


def plan_micro_batches(costs: Sequence[float], batch_size: int,
                       keys: Sequence[Hashable] | None = None) -> list[list[int]]:
    """Indices of the requests grouped in micro-batches of at most ``batch_size``, most
    expensive first; requests whose ``keys`` differ are never in one micro-batch.

    >>> plan_micro_batches([1, 5, 3], 2)
    [[1, 2], [0]]
    >>> plan_micro_batches([1, 5, 3, 4], 2, keys=[8, 6, 8, 6])
    [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    groups: dict[Hashable, list[int]] = {}
    for index in order:  # each group keeps the cost order; groups ordered by their dearest
        groups.setdefault(None if keys is None else keys[index], []).append(index)
    return [group[start : start + batch_size] for group in groups.values()
            for start in range(0, len(group), batch_size)]


def run_in_micro_batches(
    items: Sequence[T],
    costs: Sequence[float],
    batch_size: int,
    run_batch: Callable[[list[T]], list[R]],
    keys: Sequence[Hashable] | None = None,
) -> list[R]:
    """Run ``run_batch`` over micro-batches of ``items`` (see :func:`plan_micro_batches`);
    results come back in input order."""
    results: list[R | None] = [None] * len(items)
    filled = [False] * len(items)
    for batch in plan_micro_batches(costs, batch_size, keys):
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
    classify: Callable[[Exception], tuple[str, D] | None],
    fail_item: Callable[[T, D], R],
    on_failure: Callable[[int, D, str], None] | None = None,
    mark_retried: Callable[[R], R] | None = None,
) -> list[R]:
    """``run_batch(batch)``; when it raises, retry as ``classify`` says and give a request that
    fails alone ``fail_item(request, detail)``.

    :param classify: ``error -> (HALVES or SINGLES, detail)``, or None to let the error
        propagate unchanged. ``detail`` (e.g. the error's kind and message) is taken while the
        error is alive; the error itself and its traceback (which may hold large tensors) are
        released before any retry.
    :param on_failure: called with the failed batch's size, the detail and how it is retried
        (after the error is released): free memory, log.
    :param mark_retried: applied to each result obtained by a retry (provenance).
    :return: one result per request, in the order of ``batch``.
    """
    try:
        return run_batch(batch)
    except Exception as error:  # noqa: BLE001 - classify decides; re-raised when it declines
        decided = classify(error)
        if decided is None:
            raise
    # Out of the except block: the error and its traceback are released here.
    how, detail = decided
    if on_failure is not None:
        on_failure(len(batch), detail, how)
    if len(batch) == 1:
        return [fail_item(batch[0], detail)]
    size = (len(batch) + 1) // 2 if how == HALVES else 1
    results = []
    for start in range(0, len(batch), size):
        part = run_splitting(batch[start : start + size], run_batch, classify, fail_item,
                             on_failure, mark_retried)
        results.extend(part if mark_retried is None else [mark_retried(r) for r in part])
    return results
