"""Rows spread over every replica of a Ray cluster, whatever the dataset's size.

Why by hand: Data-Juicer 1.6.1's Ray executor maps an op over the dataset as its earlier steps
left it, and gives the op no say over it. Its own first step, the path conversion
(``set_dataset_to_absolute_path``: ``map_batches(batch_size=1000)``), is fused by Ray Data
with the op, and Ray Data bundles blocks into one task until the task holds ``batch_size``
rows. So any dataset under about 1000 rows, or under one op batch per replica, was one task on
one node while the other nodes idled (measured: 32 rows, 4 input blocks, 2 worker nodes, one
task; ``num_cpus: 0.5`` stops the fusion but the conversion still hands the op one block).

:func:`install` therefore wraps ``RayDataset._run_single_op`` once, in the driver: an op that
defines ``prepare_ray_dataset(data)`` gets the dataset first (the captioning op answers with
:func:`spread_over_replicas`); every other op runs exactly as before. Where Data-Juicer's
``RayDataset`` has no such method (another version), nothing is wrapped and a warning says
that rows may not spread.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from dataclasses import dataclass

from loguru import logger

RAY_DATASET_MODULE = "data_juicer.core.data.ray_dataset"
_MARK = "_dj_ops_prepares_ray_dataset"


@dataclass(frozen=True)
class SpreadPlan:
    """Rows per block (and per batch): every block one task, at least one per replica."""

    rows: int
    replicas: int
    rows_per_block: int

    @property
    def blocks(self) -> int:
        return math.ceil(self.rows / self.rows_per_block)


def plan_spread(rows: int, replicas: int, batch_size: int) -> SpreadPlan:
    """Blocks of ``batch_size`` rows, fewer rows where that leaves a replica without one.

    >>> plan_spread(32, 2, 128).rows_per_block  # a small dataset: one block per replica
    16
    >>> plan_spread(32, 2, 4).blocks
    8
    >>> plan_spread(31, 2, 128).rows_per_block, plan_spread(31, 2, 128).blocks
    (16, 2)
    >>> p = plan_spread(1_000_000, 8, 128); (p.rows_per_block, p.blocks)
    (128, 7813)
    >>> plan_spread(3, 8, 128).blocks  # more replicas than rows: one row each
    3
    """
    per_replica = math.ceil(rows / max(1, replicas))
    return SpreadPlan(rows, replicas, max(1, min(batch_size, per_replica)))


def replicas(op) -> int:
    """How many copies of ``op`` the cluster runs at once: its actor pool's largest size, or
    for tasks the cluster's CPUs over the CPUs each task takes (capped by ``num_proc``)."""
    import ray

    num_proc = op.num_proc
    if op.use_ray_actor():
        most = num_proc[-1] if isinstance(num_proc, (list, tuple)) else num_proc
        return max(1, int(most or 1))
    fit = int(ray.cluster_resources().get("CPU", 1) // (op.num_cpus or 1))
    if isinstance(num_proc, int) and num_proc > 0:
        fit = min(fit, num_proc)
    return max(1, fit)


def spread_over_replicas(op, data):
    """``data`` (a Ray dataset) cut into blocks of :func:`plan_spread` rows, and ``op``'s
    ``batch_size`` set to the same, so that Ray Data runs each block as one task (its bundles
    hold ``batch_size`` rows) and every replica gets work. Counting the rows runs the steps
    before the op once more (reading the input, converting paths): cheap beside captioning."""
    rows = data.count()
    if not rows:
        return data
    plan = plan_spread(rows, replicas(op), op.batch_size)
    logger.info(f"{op._name}: {rows} rows in {plan.blocks} blocks of {plan.rows_per_block} "
                f"for {plan.replicas} replicas (batch_size {op.batch_size} -> "
                f"{plan.rows_per_block})")
    op.batch_size = plan.rows_per_block
    return data.repartition(target_num_rows_per_block=plan.rows_per_block, strict=True)


def install() -> bool:
    """Wrap ``RayDataset._run_single_op`` (once) when Data-Juicer's Ray dataset is loaded;
    whether it is wrapped."""
    module = sys.modules.get(RAY_DATASET_MODULE)
    if module is None:  # no Ray executor in this process
        return False
    cls = module.RayDataset
    original = getattr(cls, "_run_single_op", None)
    if getattr(original, _MARK, False):
        return True
    if original is None or list(inspect.signature(original).parameters)[:2] != ["self", "op"]:
        logger.warning("Data-Juicer's RayDataset has no _run_single_op(self, op, ...) to hook: "
                       "rows are not spread over the cluster's replicas (a dataset smaller "
                       "than about 1000 rows may run on one node)")
        return False

    @functools.wraps(original)
    def run_single_op(self, op, *args, **kwargs):
        prepare = getattr(op, "prepare_ray_dataset", None)
        if prepare is not None:
            self.data = prepare(self.data)
        return original(self, op, *args, **kwargs)

    setattr(run_single_op, _MARK, True)
    cls._run_single_op = run_single_op
    return True
