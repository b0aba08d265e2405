"""Prepare the offline demo: a tiny local model and a dataset of sample videos.

``python -m dj_ops.demo prepare`` writes, under ``outputs/demo/`` (relative to the current
directory, the repository root):

- ``model/``: a tiny random-weight Qwen3-VL checkpoint built locally (no download);
- ``videos.jsonl``: one sample per video, in Data-Juicer's layout (text with a video token, a
  list of paths), from the project's sample clips (``shared/data/videos`` beside the
  repository, in a full checkout) when they exist, else from clips generated here.

Then ``dj-process --config recipes/demo.yaml`` captions them. Captions from random weights are
gibberish: the demo shows the pipeline, not caption quality.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.samples import one_video_sample
from dj_ops.testing.clips import SHARED_VIDEOS_DIR, sample_video_paths
from dj_ops.testing.tiny_models import build_tiny_model
from dj_ops.testing.tiny_text import build_t5_like_tokenizer

DEMO_DIR = Path("outputs/demo")
DEMO_FAMILY = "qwen3_vl"


def write_dataset(videos: list[str], path: Path) -> None:
    """One Data-Juicer sample per video: a video token ended by eoc, and the video's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for video in videos:
            sample = one_video_sample(video, SpecialTokens.video, SpecialTokens.eoc)
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")


def prepare(out_dir: Path = DEMO_DIR, videos_dir: Path | None = None) -> dict[str, str]:
    """Build the tiny model and the demo dataset; return their paths.

    :param videos_dir: the ``.mp4`` clips to caption; None: the project's sample clips where
        the repository sits beside its ``shared/`` folder, else five clips generated into
        ``out_dir/clips``.
    """
    model = build_tiny_model(DEMO_FAMILY, out_dir / "model")
    # the target tokenizer of recipes/caption_enhance.yaml's bound, offline (T5's is a download)
    tokenizer = build_t5_like_tokenizer(out_dir / "t5_like_tokenizer")
    videos = sample_video_paths(videos_dir or SHARED_VIDEOS_DIR, out_dir / "clips")
    dataset = out_dir / "videos.jsonl"
    write_dataset([str(Path(v).resolve()) for v in videos], dataset)
    return {"model": model, "dataset": str(dataset), "videos": str(len(videos)),
            "target_tokenizer": tokenizer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dj_ops.demo",
        description="Prepare the offline demo: build a tiny random-weight Qwen3-VL (no download) "
                    "and a Data-Juicer dataset of sample videos; then run "
                    "`dj-process --config recipes/demo.yaml` to caption them on CPU.")
    parser.add_argument("command", choices=["prepare"],
                        help="prepare: write OUT/model and OUT/videos.jsonl (the only command)")
    parser.add_argument("--out", type=Path, default=DEMO_DIR,
                        help="folder to write into (default: %(default)s, which "
                             "recipes/demo.yaml reads; relative to the current folder)")
    parser.add_argument("--videos", type=Path, default=None,
                        help="a folder of .mp4 clips to caption (default: the project's sample "
                             "clips in a full checkout, else five small clips generated into "
                             "OUT/clips)")
    args = parser.parse_args(argv)
    for name, value in prepare(args.out, args.videos).items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
