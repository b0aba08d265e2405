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


BLOCKS_PER_REPLICA = 4  # the last wave of blocks leaves replicas idle a quarter block at most
MAX_BLOCK_ROWS = 1000  # Data-Juicer's own bundle (its path conversion's batch)


@dataclass(frozen=True)
class SpreadPlan:
    """How the rows are cut: blocks (each one task) and batches (each one ``process`` call).

    :param rows: rows of the dataset.
    :param replicas: copies of the op the cluster runs at once.
    :param rows_per_block: rows of every block but the last.
    :param batch_size: rows per batch (``map_batches``' batch_size): the op's, or fewer where
        one batch per replica would leave a replica without work.
    """

    rows: int
    replicas: int
    rows_per_block: int
    batch_size: int

    @property
    def blocks(self) -> int:
        return math.ceil(self.rows / self.rows_per_block)


def plan_spread(rows: int, replicas: int, batch_size: int) -> SpreadPlan:
    """At least one block per replica, and for larger datasets about
    :data:`BLOCKS_PER_REPLICA` each (so that the last blocks leave little idle), of at least
    one batch and at most :data:`MAX_BLOCK_ROWS` rows (each task sets the op up once: fewer,
    larger blocks cost less; a lost node redoes its block's rows not yet in the result store).

    >>> plan_spread(32, 2, 128)  # a small dataset: one block and batch per replica
    SpreadPlan(rows=32, replicas=2, rows_per_block=16, batch_size=16)
    >>> plan_spread(32, 2, 4).blocks  # small batches: four blocks per replica
    8
    >>> plan_spread(10_000, 8, 128).rows_per_block
    313
    >>> p = plan_spread(1_000_000, 8, 128); (p.rows_per_block, p.blocks, p.batch_size)
    (1000, 1000, 128)
    >>> plan_spread(3, 8, 128).blocks  # more replicas than rows: one row each
    3
    """
    replicas = max(1, replicas)
    per_replica = max(1, rows // replicas)  # floor: the blocks outnumber the replicas
    batch = max(1, min(batch_size, per_replica))
    balanced = math.ceil(rows / (replicas * BLOCKS_PER_REPLICA))
    rows_per_block = min(per_replica, max(batch, min(balanced, MAX_BLOCK_ROWS)))
    return SpreadPlan(rows, replicas, rows_per_block, batch)


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
    """``data`` (a Ray dataset) cut into the blocks of :func:`plan_spread`, and ``op``'s
    ``batch_size`` set to the plan's: every block is at least one batch, so Ray Data runs
    each block as one task (it bundles blocks until a task holds ``batch_size`` rows) and
    every replica gets work. Counting the rows runs the steps before the op once more
    (reading the input, converting paths): cheap beside captioning."""
    rows = data.count()
    if not rows:
        return data
    # the recipe's batch_size, also when partitions (ray_partitioned) each call this in turn
    requested = op.__dict__.setdefault("_requested_batch_size", op.batch_size)
    plan = plan_spread(rows, replicas(op), requested)
    logger.info(f"{op._name}: {rows} rows in {plan.blocks} blocks of {plan.rows_per_block} "
                f"for {plan.replicas} replicas (batch_size {requested} -> {plan.batch_size})")
    op.batch_size = plan.batch_size
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
