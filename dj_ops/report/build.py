"""Build a run report: rows in, one HTML file out.

One pass over the rows counts every video (:class:`~dj_ops.report.stats.RunStats`) and keeps
the videos the gallery may show (:class:`~dj_ops.report.sampling.GallerySample`); then the charts
are drawn and the page written. Rows come from an export (:func:`export_rows`: a jsonl file or a
Ray shard folder, with Data-Juicer's ``_stats.jsonl`` beside it when the export lacks the meta
field) or from the op's output dataset at the end of a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, zip_longest
from pathlib import Path

from dj_ops.export.dj_output import read_rows
from dj_ops.report.charts import all_charts
from dj_ops.report.entries import META_FIELD, TextLayout, iter_entries
from dj_ops.report.page import DEFAULT_MAX_BYTES, PageParts, render_page, settings_text
from dj_ops.report.runlog import RunLog
from dj_ops.report.sampling import DEFAULT_LIMIT, DEFAULT_PROBLEM_LIMIT, GallerySample, Shown
from dj_ops.report.stats import RunStats


@dataclass(frozen=True)
class ReportOptions:
    """How much a report shows.

    :param limit: most videos in the gallery.
    :param problem_limit: of which failed or flagged, at most (shown first).
    :param seed: fixes the random choice of the others.
    :param max_bytes: most bytes of gallery cards (cards past it are left out, and counted).
    """

    limit: int = DEFAULT_LIMIT
    problem_limit: int = DEFAULT_PROBLEM_LIMIT
    seed: int = 0
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Report:
    """A written report: where, its size, and what it counted and showed."""

    path: Path
    size: int
    stats: RunStats
    shown: Shown


def stats_file(export: str | Path) -> Path | None:
    """Data-Juicer's ``<export>_stats.jsonl`` beside a jsonl export (where the meta field goes
    without ``keep_stats_in_res_ds``), when there is one."""
    export = Path(export)
    candidate = export.with_name(export.stem + "_stats.jsonl")
    return candidate if export.is_file() and candidate.is_file() else None


def export_rows(export: str | Path, meta_field: str = META_FIELD) -> Iterator[dict]:
    """The rows of an export, each with its meta field: from the export itself, or joined line
    by line from the ``_stats.jsonl`` beside it (the exporter writes both in the same order)."""
    stats = stats_file(export)
    rows = read_rows(export)
    first = next(rows, None)
    if first is None:
        return
    if meta_field in first or stats is None:
        yield first
        yield from rows
        return
    for row, meta in zip_longest(chain([first], rows), read_rows(stats)):
        if row is None or meta is None:
            raise ValueError(f"{export} and {stats} differ in length: not one run's export")
        yield {**row, meta_field: meta.get(meta_field)}


def collect(rows: Iterable[dict], layout: TextLayout,
            options: ReportOptions) -> tuple[RunStats, GallerySample]:
    """Count every video of ``rows`` and keep the gallery's candidates (one pass)."""
    stats = RunStats()
    sample = GallerySample(options.limit, options.problem_limit, options.seed)
    for entry in iter_entries(rows, layout):
        stats.add(entry)
        sample.offer(entry)
    return stats, sample


def summary_counts(stats: RunStats, log: RunLog | None) -> list[tuple[str, object]]:
    """The summary's headline numbers."""
    seconds = log.duration_s if log and log.duration_s else stats.span_s
    rate = stats.videos / seconds if seconds else 0.0
    return [("videos", stats.videos), ("captioned", stats.captioned), ("failed", stats.failed),
            ("reused from store", stats.reused), ("generated", stats.captioned - stats.reused),
            ("flagged", stats.flagged), ("at token limit", stats.hit_token_limit),
            ("seconds" + (" (job)" if log and log.duration_s else " (first to last result)"),
             round(seconds, 1)), ("videos / s", round(rate, 3))]


def summary_settings(stats: RunStats, log: RunLog | None, store: dict | None,
                     source: str) -> list[tuple[str, str]]:
    """The summary's table: what ran, with which settings, and where its parts are."""
    rows = [("export", source),
            ("model", ", ".join(stats.models) or "-"),
            ("backend", ", ".join(stats.backends) or "-"),
            ("prompt", " | ".join(stats.prompts) or "-"),
            ("generation", settings_text(stats.runs.get("generation", {}))),
            ("keep_candidate_mode", settings_text(stats.runs.get("keep_candidate_mode", ""))),
            ("failed by kind", settings_text(dict(stats.error_kinds.most_common())) or "-"),
            ("quality flags", settings_text(dict(stats.flags.most_common()))),
            ("thumbnails kept", str(stats.thumbnails))]
    if log is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(log.started)) \
            if log.started else "-"
        rows += [("run log", log.work_dir), ("job", f"{log.status or '-'}, started {started}, "
                                                   f"{log.duration_s:.1f} s"),
                 ("op parameters (recipe)", settings_text(log.op_params))]
    if store:
        rows.append(("result store", f"{store['path']}: {store['results']} results"))
    return rows


def build_report(rows: Iterable[dict], out: str | Path, *, source: str,
                 layout: TextLayout | None = None, log: RunLog | None = None,
                 store: dict | None = None, options: ReportOptions = ReportOptions()) -> Report:
    """Write the report of ``rows`` (the op's output rows) to ``out``."""
    stats, sample = collect(rows, layout or TextLayout(), options)
    shown = sample.result()
    parts = PageParts(title=Path(source).name, source=source,
                      counts=summary_counts(stats, log),
                      settings=summary_settings(stats, log, store, source),
                      charts=all_charts(stats),
                      warnings=log.warnings if log else [],
                      warning_count=log.warning_count if log else 0)
    html = render_page(parts, shown, options.max_bytes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return Report(out, out.stat().st_size, stats, shown)
