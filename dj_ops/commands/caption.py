"""``dj-ops-caption``: caption a folder (or a list file) of videos into a jsonl, in one line.

    dj-ops-caption VIDEOS_DIR -o captions.jsonl --model PATH_OR_ID [--prompt ...] [--caption-num N]

Underneath it builds a Data-Juicer dataset (one row per video) and runs the captioning op on it
the way ``dj-process`` does (``Mapper.run``: batches, worker processes, a progress bar). Each
output line is one video's row in Data-Juicer's layout with its captions in a ``caption`` field
(``caption_key`` output: one caption, or ``caption_num`` candidates with ``--keep all``) and the
provenance or error record under ``__dj__meta__``, so it feeds ``dj-process`` recipes and
``dj-ops-export-cogvideox --caption-key caption`` as it is. A summary ends the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from data_juicer.core.data import NestedDataset
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from dj_ops.ops.vlm_video_captioning_mapper import DEFAULT_MODEL, VLMVideoCaptioningMapper

CAPTION_KEY = "caption"
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


def build_samples(videos: list[str]) -> list[dict]:
    """One Data-Juicer row per video: a video token ended by eoc, and the path."""
    return [{"text": f"{SpecialTokens.video} {SpecialTokens.eoc}", "videos": [v]}
            for v in videos]


def op_params(args: argparse.Namespace) -> dict:
    """The op's parameters from the command line (options left unset keep the op's defaults)."""
    params = {"hf_model": args.model, "caption_key": CAPTION_KEY, "caption_num": args.caption_num,
              "keep_candidate_mode": args.keep, "seed": args.seed,
              "generation_batch_size": args.generation_batch_size}
    optional = {"prompt": args.prompt, "max_frames": args.max_frames, "num_proc": args.num_proc}
    params.update({k: v for k, v in optional.items() if v is not None})
    if args.max_new_tokens is not None:
        params["sampling_params"] = {"max_new_tokens": args.max_new_tokens}
    return params


def summarize(rows: list[dict], seconds: float) -> dict:
    """Counts of captioned and failed videos, wall time and throughput."""
    statuses = Counter(((r.get(Fields.meta) or {}).get(META_KEY) or {}).get("status")
                       for r in rows)
    videos = sum(len(r.get("videos") or []) for r in rows)
    return {"captioned": statuses["captioned"], "failed": statuses["error"],
            "seconds": round(seconds, 2), "videos_per_second": round(videos / seconds, 3)}


def caption_videos(videos: list[str], output: str | Path, params: dict) -> dict:
    """Caption ``videos`` with the op built from ``params``; write the jsonl; return the summary."""
    start = time.perf_counter()
    op = VLMVideoCaptioningMapper(**params)
    rows = op.run(NestedDataset.from_list(build_samples(videos))).to_list()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summarize(rows, time.perf_counter() - start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dj-ops-caption", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", help="a folder of videos (searched recursively) or a text "
                                       "file with one video path per line")
    parser.add_argument("-o", "--output", required=True, help="the jsonl to write")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id or local path")
    parser.add_argument("--prompt", help="the captioning prompt (default: the op's)")
    parser.add_argument("--caption-num", type=int, default=1, help="candidates per video")
    parser.add_argument("--keep", default="random_any",
                        choices=["random_any", "similar_one_simhash", "all"],
                        help="which candidates to keep (keep_candidate_mode)")
    parser.add_argument("--max-new-tokens", type=int, help="caption length limit in tokens")
    parser.add_argument("--max-frames", type=int, help="most frames sampled per video")
    parser.add_argument("--generation-batch-size", type=int, default=8,
                        help="videos per generate call")
    parser.add_argument("--num-proc", type=int,
                        help="worker processes, each with its own model (default: one per GPU; "
                             "on CPU as many as cores and memory allow)")
    parser.add_argument("--seed", type=int, default=0, help="seed for reproducible output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    videos = find_videos(args.videos)
    if not videos:
        print(f"no video found in {args.videos}", file=sys.stderr)
        return 1
    summary = caption_videos(videos, args.output, op_params(args))
    print(f"captioned: {summary['captioned']}  failed: {summary['failed']}  "
          f"time: {summary['seconds']} s  videos/s: {summary['videos_per_second']}")
    print(f"wrote {args.output}")
    return 0 if summary["captioned"] else 1


if __name__ == "__main__":
    sys.exit(main())
