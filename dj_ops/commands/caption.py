"""dj-ops-caption: caption a folder (or a list file) of videos into a jsonl, in one line.

    dj-ops-caption VIDEOS_DIR -o captions.jsonl --model PATH_OR_ID [--prompt ...] [--caption-num N]

Underneath it builds a Data-Juicer dataset (one row per video) and runs the captioning op on it
the way ``dj-process`` does (``Mapper.run``: batches, worker processes, a progress bar). Each
output line is one video's row in Data-Juicer's layout with its captions in a ``caption`` field
(``caption_key`` output: one caption, or ``caption_num`` candidates with ``--keep all``) and the
provenance or error record under ``__dj__meta__``, so it feeds ``dj-process`` recipes and
``dj-ops-export-cogvideox`` as it is. A summary and the output's path end the run.

Data-Juicer and torch are imported only once the arguments are parsed, so ``--help`` and
argument errors answer at once; Data-Juicer's INFO logs are hidden unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dj_ops.captioning.records import STATUS_CAPTIONED, STATUS_ERROR
from dj_ops.commands.enhance_option import (
    add_enhance_options,
    build_enhancement_ops,
    enhanced_line,
)

CAPTION_KEY = "caption"
# The op's own defaults, repeated here so that --help can show them without importing the op
# (tests/test_caption_command.py checks that they agree).
DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
DEFAULT_BACKEND = "transformers"
DEFAULT_ON_ERROR = "keep"
DEFAULT_GENERATION_BATCH_SIZE = 8
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".ts"})


def find_videos(source: str | Path) -> list[str]:
    """Absolute paths of the videos to caption: the video files under a folder (recursively,
    sorted), or the lines of a list file (relative lines are relative to the list's folder).

    :raises FileNotFoundError: when ``source`` does not exist.
    """
    source = Path(source)
    if source.is_dir():
        found = (p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        return sorted(str(p.resolve()) for p in found if p.is_file())
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a folder of videos nor a list file")
    lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
    return [str((source.parent / line).resolve()) for line in lines if line]


def build_samples(videos: list[str], video_token: str, eoc_token: str) -> list[dict]:
    """One Data-Juicer row per video: a video token ended by eoc, and the path."""
    from dj_ops.captioning.samples import one_video_sample

    return [one_video_sample(v, video_token, eoc_token) for v in videos]


def op_params(args: argparse.Namespace) -> dict:
    """The op's parameters from the command line (options left unset keep the op's defaults)."""
    params = {"hf_model": args.model, "caption_key": CAPTION_KEY, "caption_num": args.caption_num,
              "keep_candidate_mode": args.keep, "seed": args.seed,
              "generation_batch_size": args.generation_batch_size,
              "backend": args.backend, "on_error": args.on_error}
    optional = {"prompt": args.prompt, "max_frames": args.max_frames, "num_proc": args.num_proc}
    params.update({k: v for k, v in optional.items() if v is not None})
    if args.max_new_tokens is not None:
        params["sampling_params"] = {"max_new_tokens": args.max_new_tokens}
    if args.api_base is not None:
        params["model_params"] = {"api_base": args.api_base}
    store = store_path(args)
    if store is not None:
        params["result_store"] = str(store)
    return params


def store_path(args: argparse.Namespace) -> Path | None:
    """The result store: ``--store``, else ``OUTPUT.store.sqlite`` beside the output (so the
    same command run again resumes); None with ``--no-store``."""
    if args.no_store:
        return None
    return Path(args.store) if args.store else Path(f"{args.output}.store.sqlite")


def summarize(rows: list[dict], seconds: float) -> dict:
    """Counts of captioned and failed videos (one row per video), wall time, and captioned
    videos per second (failed videos are not throughput)."""
    from dj_ops.captioning.summary import record_of
    from dj_ops.captioning.summary import summarize as count_outcomes

    outcomes = count_outcomes(rows)
    captioned = outcomes.by_status[STATUS_CAPTIONED]
    # rows, not record entries: in mode 'all' a record lists each kept candidate of a video
    reused = sum(1 for row in rows if (record := record_of(row)) and record["status"] ==
                 STATUS_CAPTIONED and all(v["from_store"] for v in record["videos"]))
    return {"captioned": captioned, "failed": outcomes.by_status[STATUS_ERROR],
            "reused": reused,
            "error_kinds": dict(sorted(outcomes.error_kinds.items())),
            "seconds": round(seconds, 2),
            "videos_per_second": round(captioned / seconds, 3) if seconds else 0.0}


def build_op(params: dict):
    """The captioning op; a bad setting fails here, with the fix in the message."""
    from dj_ops.ops.vlm_video_captioning_mapper import VLMVideoCaptioningMapper

    return VLMVideoCaptioningMapper(**params)


def caption_videos(videos: list[str], output: str | Path, op, *after) -> list[dict]:
    """Caption ``videos`` with ``op`` (then the ops ``after`` it: ``--enhance``); write the
    jsonl; return its rows."""
    import json

    from data_juicer.core.data import NestedDataset
    from data_juicer.utils.mm_utils import SpecialTokens

    samples = build_samples(videos, SpecialTokens.video, SpecialTokens.eoc)
    dataset = op.run(NestedDataset.from_list(samples))
    for later in after:
        dataset = later.run(dataset)
    rows = dataset.to_list()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except where there is none (the help then says why)."""

    def _get_help_string(self, action):
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dj-ops-caption", formatter_class=_ShowDefaults,
        description="Caption a folder (or a list file) of videos into a jsonl: one row per "
                    "video, its captions in the 'caption' field and its provenance or error "
                    "record under __dj__meta__.")
    parser.add_argument("videos", help="a folder of videos (searched recursively) or a text "
                                       "file with one video path per line")
    parser.add_argument("-o", "--output", required=True, help="the jsonl to write")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id or local folder")
    parser.add_argument("--backend", default=DEFAULT_BACKEND,
                        choices=["transformers", "vllm", "openai"], help="generation backend")
    parser.add_argument("--api-base", help="the server's API root for --backend openai, e.g. "
                                           "http://localhost:8000/v1")
    parser.add_argument("--prompt", help="the captioning prompt (default: the op's)")
    parser.add_argument("--caption-num", type=int, default=1, help="candidates per video")
    parser.add_argument("--keep", default="random_any",
                        choices=["random_any", "similar_one_simhash", "all"],
                        help="which candidates to keep (keep_candidate_mode)")
    parser.add_argument("--on-error", default=DEFAULT_ON_ERROR, choices=["keep", "drop", "raise"],
                        help="a video that cannot be captioned: keep its row with an error "
                             "record, drop the row, or stop")
    parser.add_argument("--max-new-tokens", type=int,
                        help="caption length limit in tokens (default: the op's, 256)")
    parser.add_argument("--max-frames", type=int,
                        help="most frames sampled per video (default: the op's, 32)")
    parser.add_argument("--generation-batch-size", type=int,
                        default=DEFAULT_GENERATION_BATCH_SIZE, help="videos per generate call")
    parser.add_argument("--num-proc", type=int,
                        help="worker processes, each with its own model (default: one per GPU; "
                             "on CPU as many as cores and memory allow)")
    parser.add_argument("--seed", type=int, default=0, help="seed for reproducible output")
    parser.add_argument("--store", help="result store: videos captioned into it before (same "
                                        "model, prompt and settings) are reused, so the same "
                                        "command run again resumes (default: OUTPUT.store.sqlite)")
    parser.add_argument("--no-store", action="store_true",
                        help="no result store: caption every video again")
    add_enhance_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Data-Juicer's and the op's INFO logs")
    return parser.parse_args(argv)


def quiet_logs(verbose: bool) -> None:
    """Hide INFO and DEBUG logs (Data-Juicer's and the op's) unless ``verbose``: warnings,
    errors and the progress bar stay. Data-Juicer's import resets loguru to INFO, so this
    imports it first."""
    if verbose:
        return
    import data_juicer  # noqa: F401  (its import installs an INFO handler: replaced below)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        videos = find_videos(args.videos)
    except FileNotFoundError as error:
        print(f"dj-ops-caption: {error}", file=sys.stderr)
        return 2
    if not videos:
        print(f"dj-ops-caption: no video found in {args.videos} (looked for "
              f"{', '.join(sorted(VIDEO_SUFFIXES))})", file=sys.stderr)
        return 1
    quiet_logs(args.verbose)
    started = time.perf_counter()
    try:
        op = build_op(op_params(args))
        after = build_enhancement_ops(args, op_params(args), CAPTION_KEY)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"dj-ops-caption: {error}", file=sys.stderr)  # the message names the fix
        return 2
    rows = caption_videos(videos, args.output, op, *after)
    summary = summarize(rows, time.perf_counter() - started)  # the model's loading included
    print(f"captioned: {summary['captioned']}  failed: {summary['failed']}  "
          f"time: {summary['seconds']} s  videos/s: {summary['videos_per_second']}")
    store = store_path(args)
    if store is not None:
        print(f"store: {store} ({summary['reused']} videos reused from it, "
              f"{summary['captioned'] - summary['reused']} generated)")
    if after:
        print(enhanced_line(rows))
    if summary["error_kinds"]:
        kinds = ", ".join(f"{kind} {n}" for kind, n in summary["error_kinds"].items())
        print(f"errors: {kinds} (each failed row's __dj__meta__ says why)")
    print(f"output: {Path(args.output).resolve()}")
    return 0 if summary["captioned"] else 1


if __name__ == "__main__":
    sys.exit(main())
