"""The captioning op's running tally of outcomes, logged so that no failure goes unnoticed.

Each process keeps its own counts (its :class:`~dj_ops.ops.captioner.Captioner` owns one): a
DEBUG line per batch, an INFO line with the totals every ``every`` batches and when the
captioner closes (pool workers, which Data-Juicer uses even with ``np: 1``, are terminated by
their pool: their last totals are the latest periodic line). After a Data-Juicer run,
:func:`log_dataset_outcomes` logs the counts over the whole output.
"""

from __future__ import annotations

import os

from data_juicer.utils.constant import Fields
from loguru import logger

from dj_ops.captioning.records import STATUS_CAPTIONED, STATUS_ERROR
from dj_ops.captioning.summary import OutcomeSummary, summarize

DEFAULT_LOG_EVERY = 50  # batches between two INFO lines with the totals


class OutcomeLog:
    """Counts the records of every batch of one op instance, per process.

    :param name: shown in the log lines (the op's name).
    :param every: log the totals at INFO every this many batches.
    """

    def __init__(self, name: str, every: int = DEFAULT_LOG_EVERY):
        self.name = name
        self.every = every
        self.total = OutcomeSummary()
        self.batches = 0

    def add_batch(self, records: list[dict | None]) -> OutcomeSummary:
        """Count one batch (one record or None per input row) and log it; returns its counts."""
        batch = OutcomeSummary()
        for record in records:
            batch.add(record)
        self.total.merge(batch)
        self.batches += 1
        logger.debug(f"{self.name} batch {self.batches}: {batch.format()}")
        if self.batches % self.every == 0:
            self.log_total()
        return batch

    def log_total(self) -> None:
        """Log the totals of this process at INFO (nothing before the first batch)."""
        if not self.batches:
            return
        logger.info(
            f"{self.name} totals in process {os.getpid()} after {self.batches} batches: "
            f"{self.total.format()}"
        )


def log_dataset_outcomes(name: str, dataset, meta_field: str, note: str = "") -> OutcomeSummary:
    """Log at INFO the counts over a whole output dataset (every worker's rows).

    :param dataset: a Hugging Face ``Dataset`` (Data-Juicer's default executor).
    :param note: appended to the line (e.g. that dropped rows are not in the output).
    """
    if meta_field in dataset.column_names:
        summary = summarize(dataset.select_columns([meta_field]), meta_field)
    else:
        summary = summarize({} for _ in range(len(dataset)))
    logger.info(f"{name} output: {summary.format()}{note}")
    return summary


def warn_records_elsewhere(name: str, target) -> None:
    """Before a run: a warning when the export will not hold the op's records."""
    if target and target.records_elsewhere():
        logger.warning(f"{name}: {target.records_elsewhere()}")


def log_run_outcomes(name: str, dataset, target, dropped: bool) -> OutcomeSummary:
    """After a run: the counts over the whole output, then where the output and the records
    went (a warning when rows failed and the export drops their records).

    :param target: the run's ``ExportTarget`` (``dj_ops.ops.export_notice``), or None.
    :param dropped: failed rows were dropped (``on_error: drop``).
    """
    note = " (failed rows were dropped: see the workers' counts)" if dropped else ""
    outcomes = log_dataset_outcomes(name, dataset, Fields.meta, note)
    if target:
        failed = outcomes.by_status[STATUS_ERROR]
        line = f"{name}: {target.summary(outcomes.by_status[STATUS_CAPTIONED], failed)}"
        (logger.warning if failed and not target.keeps_meta else logger.info)(line)
    return outcomes
