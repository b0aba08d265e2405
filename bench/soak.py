"""Soak figures: 1,000 requests (one in ten a bad input) through the op on the tiny Qwen3-VL.

Writes ``bench/results/soak.json``: requests, time, open file descriptors and resident memory
after warm-up and at the end, outcome counts. Run from the repository root:
``python bench/soak.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dj_ops.ops import VLMVideoCaptioningMapper  # noqa: E402
from dj_ops.testing.soak import SOAK_PARAMS, run_soak  # noqa: E402
from dj_ops.testing.tiny_models import tiny_model_path  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "soak.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--batch-size", type=int, default=50, help="rows per op.process call")
    parser.add_argument("--warmup-batches", type=int, default=3)
    args = parser.parse_args()
    op = VLMVideoCaptioningMapper(hf_model=tiny_model_path("qwen3_vl"), **SOAK_PARAMS)
    with tempfile.TemporaryDirectory() as folder:
        figures = run_soak(op, folder, requests=args.requests, batch_size=args.batch_size,
                           warmup_batches=args.warmup_batches)
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}
    figures["params"] = SOAK_PARAMS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
