"""GPU benchmark: a Qwen2.5-VL-7B-shaped model (random weights, built locally), 24 frames of about
448 x 448 pixels per video, exactly 128 new tokens per caption; the op's batched transformers
backend against the sequential baseline. Reports videos/s, generated tokens/s and model FLOP/s
as a fraction of the GPU's peak bf16 rate.

``python -m bench.gpu --device cuda`` (about 17 GB of weights are written to ``--checkpoint``
once). ``--device cpu --shape smoke --requests 4 --baseline-requests 2 --tokens 8`` runs the same
code path on a CPU with a small model of the same layout.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from bench.flops import VideoPrompt, caption_flops, peak_bf16_tflops
from bench.measure import rate, save, timed
from bench.model_shapes import SHAPES, build_shaped_checkpoint
from bench.throughput import Runner
from bench.workload import PROMPT, Workload, request_paths
from dj_ops.captioning.requests import CaptionRequest
from dj_ops.video import decode_video

FRAMES = {"frame_strategy": "uniform", "num_frames": 24, "max_pixels": 448 * 448}


def video_prompts(runner: Runner, paths: list[str]) -> dict[str, VideoPrompt]:
    """Patch grid and prompt length of each distinct source video among ``paths``."""
    backend = runner.baseline.backend
    prompts = {}
    for source in {str(Path(p).resolve()) for p in paths}:
        video = decode_video(source, runner.frame_settings)
        request = CaptionRequest(video.frames, video.transformers_metadata(), PROMPT)
        inputs = backend.encode([request])
        t, h, w = inputs["video_grid_thw"][0].tolist()
        prompts[source] = VideoPrompt(t, h, w, int(inputs["input_ids"].shape[1]))
    return prompts


def measure_mode(runner: Runner, mode: str, paths: list[str], flops_per_video: dict,
                 peak: float | None) -> dict:
    """One mode over ``paths``: rates, model FLOP/s and its fraction of ``peak`` (TFLOP/s)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    runner.seen[mode] = {"frames": [], "tokens": []}
    _, seconds = timed(lambda: runner.run(mode, paths))
    seen = runner.seen[mode]
    workload = runner.workload
    tokens = len(paths) * workload.caption_num * workload.new_tokens
    flops = sum(flops_per_video[str(Path(p).resolve())] for p in paths)
    tflops = rate(flops, seconds) / 1e12
    return {
        "videos": len(paths), "seconds": round(seconds, 3),
        "videos_per_s": round(rate(len(paths), seconds), 4),
        "generated_tokens_per_s": round(rate(tokens, seconds), 1),
        "model_tflops_per_s": float(f"{tflops:.4g}"),
        "fraction_of_peak_bf16": round(tflops / peak, 4) if peak else None,
        "frames_per_video": sorted(set(seen["frames"])),
        "tokens_per_caption": sorted(set(seen["tokens"])),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
    }  # fmt: skip


def run(workload: Workload, shape: dict, baseline_requests: int, peak: float | None) -> dict:
    """Op then baseline (on the first ``baseline_requests`` videos) over ``workload``."""
    runner = Runner(workload, threads=torch.get_num_threads())  # on a GPU threads hardly matter
    paths = request_paths(workload.requests)
    prompts = video_prompts(runner, paths)
    flops = {source: caption_flops(shape, prompt, workload.caption_num, workload.new_tokens)
             for source, prompt in prompts.items()}
    runner.run("op", paths[:2])  # warm-up (kernels, allocator)
    runner.run("baseline", paths[:1])
    op = measure_mode(runner, "op", paths, flops, peak)
    baseline = measure_mode(runner, "baseline", paths[:baseline_requests], flops, peak)
    return {"workload": workload.describe(), "op": op, "baseline": baseline,
            "speedup_vs_baseline": round(op["videos_per_s"] / baseline["videos_per_s"], 3),
            "prompt_tokens": sorted({p.prompt_tokens for p in prompts.values()}),
            "visual_patches": sorted({p.patches for p in prompts.values()})}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shape", default="qwen2_5_vl_7b", choices=sorted(SHAPES))
    parser.add_argument("--checkpoint", type=Path, help="where the random checkpoint is kept")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--caption-num", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--generation-batch-size", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, help="peak bf16 TFLOP/s (default: by name)")
    parser.add_argument("--save", default="gpu", help="results name ('' to not save)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible")
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    folder = args.checkpoint or Path(tempfile.gettempdir()) / f"dj_ops_bench_{args.shape}"
    model = build_shaped_checkpoint(args.shape, folder, args.device, dtype)
    peak = args.peak_tflops or (peak_bf16_tflops(torch.cuda.get_device_name(0))
                                if args.device == "cuda" else None)
    base = Workload(requests=args.requests, new_tokens=args.tokens, frames=dict(FRAMES),
                    generation_batch_size=args.generation_batch_size, model=model)
    results = {"shape": args.shape, "device": args.device, "peak_bf16_tflops": peak,
               "caption_num": {}}
    for caption_num in args.caption_num:
        result = run(replace(base, caption_num=caption_num), SHAPES[args.shape],
                     args.baseline_requests, peak)
        results["caption_num"][str(caption_num)] = result
        print(f"caption_num={caption_num}: op {result['op']}\n  baseline {result['baseline']}\n"
              f"  speedup {result['speedup_vs_baseline']}x", flush=True)
    if args.save:
        print(f"saved {save(args.save, results)}")
    return results


if __name__ == "__main__":
    main()
