"""Pure request batching: order requests by cost, cut micro-batches, restore the order.

Requests are sorted most expensive first (so an out-of-memory error shows at once, and videos of
similar size share a micro-batch and waste little padding), then every result is written back to
the slot of its request; a slot left empty or filled twice is a bug and raises.
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
