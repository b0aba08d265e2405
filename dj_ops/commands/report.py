"""dj-ops-report: one self-contained HTML report of a captioning run, from its export.

    dj-ops-report EXPORT [-o REPORT.html] [--work-dir DIR] [--store FILE] [--caption-key KEY]

``EXPORT`` is what ``dj-process`` (or ``dj-ops-caption``) wrote: a jsonl file, or the folder of
json shards of a Ray job. Found beside it when not given: Data-Juicer's ``_stats.jsonl`` (the
records, when the recipe did not keep them in the export), the job's work folder (its event log,
recipe and warnings: the latest job whose event log names this export), and the result store
(the recipe's ``result_store``, or ``dj-ops-caption``'s ``EXPORT.store.sqlite``). The report
opens offline: its styles, script, charts and frame strips are all inside the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dj_ops.report.build import ReportOptions, build_report, export_rows
from dj_ops.report.entries import TextLayout
from dj_ops.report.page import DEFAULT_MAX_BYTES
from dj_ops.report.runlog import find_work_dir, read_run_log, read_store
from dj_ops.report.sampling import DEFAULT_LIMIT, DEFAULT_PROBLEM_LIMIT

STORE_SUFFIX = ".store.sqlite"  # dj-ops-caption's store beside its output


def default_output(export: Path) -> Path:
    """``captions.jsonl`` -> ``captions.report.html``; a shard folder -> ``FOLDER.report.html``."""
    name = export.name if export.is_dir() else export.stem
    return export.with_name(name + ".report.html")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dj-ops-report", description=__doc__.split("\n")[0])
    parser.add_argument("export", type=Path, help="a jsonl export or a Ray export folder")
    parser.add_argument("-o", "--output", type=Path, help="the report (default: beside the "
                        "export, EXPORT.report.html)")
    parser.add_argument("--work-dir", type=Path, help="the job's work folder (default: found "
                        "beside the export by its event log)")
    parser.add_argument("--store", type=Path, help="the result store (default: the recipe's "
                        "result_store, or EXPORT.store.sqlite)")
    parser.add_argument("--caption-key", help="the field holding the captions (the op's "
                        "caption_key; default: 'caption' when rows have it, else the text)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"most videos in the gallery (default {DEFAULT_LIMIT})")
    parser.add_argument("--problem-limit", type=int, default=DEFAULT_PROBLEM_LIMIT,
                        help="of which failed or flagged, at most, shown first (default "
                             f"{DEFAULT_PROBLEM_LIMIT})")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 1e6,
                        help="most MB of gallery cards (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="fixes the random choice")
    return parser.parse_args(argv)


def find_store(args: argparse.Namespace, op_params: dict) -> Path | None:
    """The result store: ``--store``, the recipe's ``result_store``, or the one beside."""
    for candidate in (args.store, op_params.get("result_store"),
                      Path(str(args.export) + STORE_SUFFIX)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def caption_key(args: argparse.Namespace, export: Path, op_params: dict) -> str | None:
    """``--caption-key``, the recipe's ``caption_key``, or ``caption`` when rows have it."""
    if args.caption_key or op_params.get("caption_key"):
        return args.caption_key or op_params["caption_key"]
    first = next(export_rows(export), {})
    return "caption" if "caption" in first else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.export.exists():
        print(f"dj-ops-report: no export at {args.export}", file=sys.stderr)
        return 2
    work_dir = args.work_dir or find_work_dir(args.export)
    log = read_run_log(work_dir) if work_dir else None
    op_params = log.op_params if log else {}
    store = find_store(args, op_params)
    from data_juicer.utils.constant import Fields  # after parsing: --help answers at once
    from data_juicer.utils.mm_utils import SpecialTokens  # (a recipe may override them)

    layout = TextLayout(SpecialTokens.video, SpecialTokens.eoc,
                        caption_key(args, args.export, op_params), Fields.meta)
    options = ReportOptions(args.limit, args.problem_limit, args.seed, int(args.max_mb * 1e6))
    report = build_report(export_rows(args.export), args.output or default_output(args.export),
                          source=str(args.export), layout=layout, log=log,
                          store=read_store(store) if store else None, options=options)
    stats = report.stats
    print(f"report: {report.path} ({report.size / 1e6:.1f} MB); {stats.videos} videos: "
          f"{stats.captioned} captioned, {stats.failed} failed, {stats.flagged} flagged; "
          f"{len(report.shown.entries)} shown"
          f"{'; run log ' + str(work_dir) if work_dir else ''}"
          f"{'; store ' + str(store) if store else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
