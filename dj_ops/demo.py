"""Prepare the offline demo: a tiny local model and a dataset of sample videos.

``python -m dj_ops.demo prepare`` writes, under ``outputs/demo/`` (relative to the current
directory, the repository root):

- ``model/``: a tiny random-weight Qwen3-VL checkpoint built locally (no download);
- ``videos.jsonl``: one sample per video, in Data-Juicer's layout (text with a video token, a
  list of paths), from ``../shared/data/videos`` when it exists, else from clips generated here.

Then ``dj-process --config recipes/demo.yaml`` captions them. Captions from random weights are
gibberish: the demo shows the pipeline, not caption quality.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.testing.clips import sample_video_paths
from dj_ops.testing.tiny_models import build_tiny_model

DEMO_DIR = Path("outputs/demo")
SHARED_VIDEOS = Path("../shared/data/videos")
DEMO_FAMILY = "qwen3_vl"


def write_dataset(videos: list[str], path: Path) -> None:
    """One Data-Juicer sample per video: a video token ended by eoc, and the video's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for video in videos:
            sample = {"text": f"{SpecialTokens.video} {SpecialTokens.eoc}", "videos": [video]}
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")


def prepare(out_dir: Path = DEMO_DIR, videos_dir: Path = SHARED_VIDEOS) -> dict[str, str]:
    """Build the tiny model and the demo dataset; return their paths."""
    model = build_tiny_model(DEMO_FAMILY, out_dir / "model")
    videos = sample_video_paths(videos_dir, out_dir / "clips")
    dataset = out_dir / "videos.jsonl"
    write_dataset([str(Path(v).resolve()) for v in videos], dataset)
    return {"model": model, "dataset": str(dataset), "videos": str(len(videos))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("--out", type=Path, default=DEMO_DIR)
    parser.add_argument("--videos", type=Path, default=SHARED_VIDEOS,
                        help="folder of .mp4 clips (default ../shared/data/videos; "
                             "generated clips are used when it does not exist)")
    args = parser.parse_args(argv)
    for name, value in prepare(args.out, args.videos).items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
