"""dj-ops-caption: caption a folder (or a list file) of videos into a jsonl, in one line.

    dj-ops-caption VIDEOS_DIR -o captions.jsonl --model PATH_OR_ID [--prompt ...] [--caption-num N]

Its options are the op's parameters, generated from their table
(:mod:`dj_ops.captioning.parameters`: each parameter has an option or a reason why not).

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
import json
import re
import signal
import sys
import time
import typing
from pathlib import Path

from dj_ops.captioning.parameters import DATA_JUICER_PARAMETERS, PARAMETERS, Parameter
from dj_ops.commands.enhance_option import (
    add_enhance_options,
    build_enhancement_ops,
    enhanced_line,
)

CAPTION_KEY = "caption"
# Where the command's defaults differ from the op's: a seed, so that a command run twice gives
# the same captions (and resumes from its store).
COMMAND_DEFAULTS = {"seed": 0}
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
    """The op's parameters from the command line: every option of the table that is set (its
    default included), the captions in the ``caption`` field, and the shortcuts merged into
    their dicts (``--api-base`` into ``model_params``, ``--max-new-tokens`` into
    ``sampling_params``)."""
    params = {"caption_key": CAPTION_KEY}
    for parameter in cli_parameters():
        value = getattr(args, parameter.name)
        if value is not None and parameter.name != "result_store":
            params[parameter.name] = value
    if args.max_new_tokens is not None:
        params["sampling_params"] = {**params.get("sampling_params", {}),
                                     "max_new_tokens": args.max_new_tokens}
    if args.api_base is not None:
        params["model_params"] = {**params.get("model_params", {}), "api_base": args.api_base}
    store = store_path(args)
    if store is not None:
        params["result_store"] = store
    return params


def store_path(args: argparse.Namespace) -> str | None:
    """The result store: ``--store`` (a path or a store URL, kept as given), else
    ``OUTPUT.store.sqlite`` beside the output (so the same command run again resumes); None
    with ``--no-store``."""
    if args.no_store:
        return None
    return args.result_store or f"{args.output}.store.sqlite"


def build_op(params: dict):
    """The captioning op; a bad setting fails here, with the fix in the message."""
    from dj_ops.ops.vlm_video_captioning_mapper import VLMVideoCaptioningMapper

    return VLMVideoCaptioningMapper(**params)


def caption_videos(videos: list[str], output: str | Path, op, *after) -> list[dict]:
    """Caption ``videos`` with ``op`` (then the ops ``after`` it: ``--enhance``); write the
    jsonl; return its rows."""
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


def cli_parameters() -> list[Parameter]:
    """The parameters with a command-line option (the table says which, and why not)."""
    return [p for p in (*PARAMETERS, *DATA_JUICER_PARAMETERS) if p.flag is not None]


def plain(markdown: str) -> str:
    """A table's markdown text as a terminal shows it: no backticks, links as their text."""
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown).replace("`", "")


def json_object(text: str) -> dict:
    """A JSON object given on the command line."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def json_or_path(text: str) -> dict | str:
    """A JSON object given inline, or the path of a file holding one."""
    return json_object(text) if text.lstrip().startswith("{") else text


def _base_types(annotation) -> set[type]:
    """The plain types an annotation allows (``PositiveInt | None`` -> {int, NoneType})."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is typing.Literal:
        return {str}
    args = typing.get_args(annotation)
    if args:
        return set().union(*(_base_types(a) for a in args))
    return {annotation}


def option_kwargs(parameter: Parameter) -> dict:
    """``add_argument``'s keyword arguments for one parameter of the table."""
    default = COMMAND_DEFAULTS.get(parameter.name, parameter.default)
    shown = plain(parameter.shown) or (None if default is None else str(default))
    kinds = _base_types(parameter.annotation) - {type(None)}
    help_text = plain(parameter.meaning) + (f" (default: {shown})" if shown else "")
    kwargs: dict = {"dest": parameter.name, "default": default, "help": help_text}
    if kinds == {bool}:
        return {**kwargs, "action": "store_true"}
    if parameter.choices:
        return {**kwargs, "choices": list(parameter.choices)}
    kwargs["metavar"] = parameter.name.upper()
    if dict in kinds:
        return {**kwargs, "type": json_or_path if str in kinds else json_object}
    if int in kinds:  # prefetch: bool or int, given as an int
        return {**kwargs, "type": int}
    return {**kwargs, "type": float if float in kinds else str}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dj-ops-caption",
        description="Caption a folder (or a list file) of videos into a jsonl: one row per "
                    "video, its captions in the 'caption' field and its provenance or error "
                    "record under __dj__meta__. The options are the op's parameters "
                    "(vlm_video_captioning_mapper; dicts as JSON).")
    parser.add_argument("videos", help="a folder of videos (searched recursively) or a text "
                                       "file with one video path per line")
    parser.add_argument("-o", "--output", required=True, help="the jsonl to write")
    for parameter in cli_parameters():
        kwargs = option_kwargs(parameter)
        if parameter.name == "result_store":
            kwargs["help"] = ("result store: videos captioned into it before (same model, "
                              "prompt and settings) are reused, so the same command run again "
                              "resumes (default: OUTPUT.store.sqlite; a path, "
                              "file:///shared/folder or s3://bucket/prefix)")
        parser.add_argument(parameter.flag, **kwargs)
    parser.add_argument("--api-base", help="the server's API root for --backend openai, e.g. "
                                           "http://localhost:8000/v1 (model_params.api_base)")
    parser.add_argument("--max-new-tokens", type=int, help="caption length limit in tokens "
                        "(sampling_params.max_new_tokens; default: the op's, 256)")
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
    # and the op's periodic progress line (dj_ops.runtime.progress), as a plain line
    logger.add(sys.stderr, level="INFO", format="{message}",
               filter=lambda record: record["extra"].get("progress", False))


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
    return end_of_run(args, videos, op, started, after)


def end_of_run(args: argparse.Namespace, videos: list[str], op, started: float,
               after: list) -> int:
    """Caption (then the ops ``after`` the captioning op), then the lines that end the run
    (dj_ops.runtime.run_summary); the exit status: 0, 1 when nothing was captioned, 128 + the
    signal's number when stopped."""
    from dj_ops.captioning.summary import record_of
    from dj_ops.runtime.lifetime import JobStopped, stop_requested
    from dj_ops.runtime.run_summary import RunTotals, count_stored, stop_lines, summary_lines

    store = store_path(args)
    stored_before = count_stored(store)
    try:
        rows = caption_videos(videos, args.output, op, *after)
    except (JobStopped, KeyboardInterrupt) as stop:
        signal_name = stop_requested(stop) or "SIGINT"
        print("\n".join(stop_lines(signal_name, time.perf_counter() - started,
                                   None if store is None else str(store), count_stored(store),
                                   stored_before)))
        return 128 + signal.Signals[signal_name]
    # the model's loading included
    totals = RunTotals.of(map(record_of, rows), time.perf_counter() - started)
    lines = summary_lines(totals, str(Path(args.output).resolve()),
                          None if store is None else str(store), args.report_path)
    if after:  # before the output's line
        lines.insert(len(lines) - (2 if args.report_path else 1), enhanced_line(rows))
    print("\n".join(lines))
    return 0 if totals.captioned else 1


if __name__ == "__main__":
    sys.exit(main())
