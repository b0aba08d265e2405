"""The op's end of the report: checked when the op is built, written when its run ends.

With ``report_path`` set, :meth:`VLMVideoCaptioningMapper.run` (Data-Juicer's default executor,
``dj-ops-caption``) writes the report of its output dataset once every batch is done. Under Ray
the op has no such end: each actor runs batches and Ray Data writes the export, so the op refuses
``report_path`` there, naming the command to run on the export folder instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dj_ops.report.build import Report, build_report
from dj_ops.report.entries import TextLayout
from dj_ops.report.runlog import RunLog


def check_report_path(report_path: str | None) -> None:
    """Refuse ``report_path`` where the op cannot write it (inside a Ray job)."""
    ray = sys.modules.get("ray")
    if report_path and ray is not None and ray.is_initialized():
        raise ValueError(
            "report_path is written at the end of the op's run, which Ray's executor does not "
            "have (its actors run batches and Ray writes the export); leave report_path unset "
            "(set thumbnails: 1 to keep frame strips) and run `dj-ops-report EXPORT_FOLDER` "
            "once the job is done")


def default_thumbnail_share(thumbnails: float | None, report_path: str | None) -> float:
    """The share of videos that keep a frame strip: as set; unset, every video when the op
    writes a report, none otherwise."""
    if thumbnails is not None:
        return float(thumbnails)
    return 1.0 if report_path else 0.0


def write_op_report(dataset, report_path: str, *, layout: TextLayout, source: str,
                    started: float) -> Report:
    """The report of the op's output ``dataset`` (a Hugging Face ``Dataset``), written to
    ``report_path``; ``started``: when the op's run began (Unix seconds)."""
    columns = [c for c in (layout.text_key, layout.caption_key, layout.meta_field)
               if c and c in dataset.column_names]
    rows = dataset.select_columns(columns) if columns else dataset
    log = RunLog(work_dir="(the op's own run)", started=started,
                 duration_s=time.time() - started, status="completed")
    return build_report(iter(rows), Path(report_path), source=source, layout=layout, log=log)
