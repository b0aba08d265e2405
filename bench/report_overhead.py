"""What the run report costs: the op with frame strips and timing on, and building a report.

Two measures:

- ``plain`` vs ``report``: the op without and with what ``report_path`` turns on (``thumbnails``
  1: a strip for every video, made from its decoded frames; ``record_timing``), over the same
  unseen videos, in one process, rounds interleaved with the order alternating so that the
  machine's load hits both alike. The ratio of their wall times per round and of the op
  process's CPU seconds; and ``report_own``: the seconds spent making strips and timing records
  (timed around those calls) as a share of the ``report`` mode's wall time, the figure least
  disturbed by load. Target: at most 2%.
- ``build``: building a report of 10,000 synthetic rows (``dj_ops.testing.report_rows``: 5%
  failed, 10% flagged, a noise strip on every captioned row: the largest JPEGs), read from a
  jsonl export as ``dj-ops-report`` reads it; its size, and the gallery's bound.

``python -m bench.report_overhead [--requests N] [--rounds R]``
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from bench.measure import time_calls
from bench.overhead import compare, ratio_fields, run
from bench.overhead import main as bench_main
from bench.workload import Workload, request_paths
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.ops.report_fields import ReportFields
from dj_ops.report.build import ReportOptions, build_report, export_rows
from dj_ops.testing.report_rows import synthetic_rows

TARGET_SHARE = 0.02
BUILD_ROWS = 10_000


def op_overhead(requests: int, rounds: int, folder: Path) -> dict:
    workload = Workload(requests=requests, caption_num=1, new_tokens=16)
    ops = {"plain": VLMVideoCaptioningMapper(**workload.op_params()),
           "report": VLMVideoCaptioningMapper(**workload.op_params(), thumbnails=1.0,
                                              record_timing=True)}
    spent = [0.0]
    time_calls(ReportFields, ("decoded", "generated", "finished", "window", "windows_done"),
               spent)
    warm = request_paths(4, folder / "warm")
    for op in ops.values():
        run(op, warm)
    spent[0] = 0.0
    timed = compare(ops, requests, rounds, folder)
    for op in ops.values():
        op.close()
    return {"workload": workload.describe() | {"rounds": rounds},
            **ratio_fields(timed, "report_over_plain"),
            "report_own_seconds": round(spent[0], 3),
            "report_own_share_of_op": round(spent[0] / timed["wall"]["report"], 5),
            "target_share": TARGET_SHARE,
            "load_avg_1m_during": timed["load"]}


def build_time(rows: int, folder: Path) -> dict:
    export = folder / "export.jsonl"
    with export.open("w") as f:
        for row in synthetic_rows(rows):
            f.write(json.dumps(row, default=lambda a: a.tolist() if isinstance(
                a, np.ndarray) else str(a)) + "\n")
    options = ReportOptions()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    report = build_report(export_rows(export), folder / "report.html", source=str(export),
                          options=options)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 2), "export_mb": round(
                export.stat().st_size / 1e6, 1),
            "report_mb": round(report.size / 1e6, 2), "shown": len(report.shown.entries),
            "gallery_limit": options.limit, "gallery_max_mb": options.max_bytes / 1e6,
            "load_avg_1m_before": round(load, 2)}


def measure(requests: int, rounds: int, folder: Path) -> dict:
    return {**op_overhead(requests, rounds, folder), "build": build_time(BUILD_ROWS, folder)}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, measure, requests=32, rounds=4, save_as="report_overhead",
                      argv=argv)


if __name__ == "__main__":
    main()
