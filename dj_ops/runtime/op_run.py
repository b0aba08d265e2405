"""The op's run in the job's main process (``Mapper.run``, called by ``dj-process`` and
``dj-ops-caption``): progress, stopping, and the lines that end the run.

:class:`OpRun` is entered around Data-Juicer's run: it opens the :class:`ProgressBoard` the op
processes report to, turns SIGTERM into a clean stop (:func:`stop_on_signals`), and times the
run. For ``dj-process`` (a run with an exporter) it prints the end of the run last, once the
process exits (after Data-Juicer's export and its own closing lines, so nothing follows it):
the counts, the store and where the output is, or for a stopped run what the store kept. A run
without an exporter (``dj-ops-caption``) prints its own end.
"""

from __future__ import annotations

import atexit
import signal
import sys
import time

from loguru import logger

from dj_ops.captioning.summary import record_of
from dj_ops.runtime.lifetime import JobStopped, stop_on_signals, stop_requested
from dj_ops.runtime.progress import ProgressBoard, count_videos
from dj_ops.runtime.run_summary import (
    RunTotals,
    count_stored,
    failure_lines,
    stop_lines,
    summary_lines,
)


class OpRun:
    """One run of the op in the job's main process.

    :param name: the op's name (a header of the end lines; the bar's label).
    :param dataset: the input (its videos are the progress's total).
    :param video_key: the field listing each row's videos.
    :param store: the result store's path (None without one).
    :param target: Data-Juicer's ``ExportTarget`` (``dj_ops.ops.export_notice``), or None:
        then the caller says how the run ended.
    """

    def __init__(self, name: str, dataset, video_key: str, store: str | None, target=None):
        self.name, self.store, self.target = name, store, target
        self.total = count_videos(dataset, video_key)
        self.board: ProgressBoard | None = None
        self._signals = stop_on_signals()
        self._started = 0.0
        self._stored_before = 0

    @property
    def board_address(self) -> str | None:
        return self.board.address if self.board is not None else None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> OpRun:
        self._started = time.monotonic()
        self._stored_before = count_stored(self.store)
        self.board = ProgressBoard(self.name, self.total)
        self._signals.__enter__()
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        self._signals.__exit__(kind, error, traceback)
        self.board.close()
        if error is None:
            return False
        stop = stop_requested(error)
        if stop is None:  # failed: the error first, then what the store kept
            if self.target is not None:
                self._print_at_exit(failure_lines(error, self.seconds, self.store,
                                                  count_stored(self.store), self._stored_before))
            return False
        lines = stop_lines(stop, self.seconds, self.store, count_stored(self.store),
                           self._stored_before)
        if self.target is not None:
            for line in lines:
                logger.warning(f"{self.name}: {line}")
            self._print_at_exit(lines)
        if stop == "SIGINT":
            raise KeyboardInterrupt from None
        raise JobStopped(signal.Signals[stop]) from None

    def finish(self, dataset, meta_field: str, report: str | None = None) -> RunTotals:
        """The run ended with ``dataset`` (its rows' records under ``meta_field``): its totals;
        with an exporter, printed when the process exits (``report``: the run report written,
        named last)."""
        rows = dataset.select_columns([meta_field]) if meta_field in dataset.column_names else []
        totals = RunTotals.of((record_of(row, meta_field) for row in rows), self.seconds)
        if self.target is not None:
            note = "records in it" if self.target.keeps_meta else (
                f"records in {self.target.stats_path}" if self.target.stats_path
                else "records not written")
            self._print_at_exit(summary_lines(totals, f"{self.target.export_path} ({note})",
                                              self.store, report))
        return totals

    def _print_at_exit(self, lines: list[str]) -> None:
        block = "\n".join([f"== {self.name} ==", *lines])

        def print_block() -> None:
            logger.complete()  # Data-Juicer's log lines still queued come first
            # the real stderr: Data-Juicer redirects sys.stderr into its logger
            print(block, file=sys.__stderr__, flush=True)

        atexit.register(print_block)
