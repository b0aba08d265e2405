"""Op throughput against the sequential baseline, measured side by side in one process.

For each scenario the same requests (the sample clips repeated, each under its own path) go
through three modes, interleaved round by round so that the machine's load hits all alike:

- ``op``: ``vlm_video_captioning_mapper`` on Data-Juicer batches (``op.process``);
- ``baseline``: Data-Juicer's loop (:mod:`bench.baseline`) on the same checkpoint, loaded with
  stock transformers parts;
- ``decode_floor``: decoding the needed frames alone (the op's decoder, one video at a time).

Every mode sees the same frames per video and generates exactly ``new_tokens`` per caption.

``python -m bench.throughput [--requests N] [--scenario NAME ...] [--threads T]``
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace

import torch

from bench.baseline import SequentialBaseline
from bench.dj_builtin import try_builtin_op
from bench.measure import rate, save, spread, stopwatch
from bench.workload import Workload, batches, caption_all, request_paths
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.video import decode_video

# name -> (caption_num, new tokens per caption, default number of videos): two rounds of 128
# videos, each one Data-Juicer batch of the op's default size (its pipeline fills and drains once
# per batch, as in a real run), in about 25 minutes on 2 cores.
SCENARIOS = {
    "caption_num=1, 16 tokens": (1, 16, 256),
    "caption_num=1, 128 tokens": (1, 128, 256),
    "caption_num=4, 128 tokens": (4, 128, 256),
}
MODES = ("op", "baseline", "decode_floor")


class Runner:
    """The three modes over one workload, sharing one loaded model."""

    def __init__(self, workload: Workload):
        self.workload = workload
        self.op = VLMVideoCaptioningMapper(**workload.op_params())
        self.baseline = SequentialBaseline(self.op)
        self.frame_settings = self.baseline.frame_settings
        self.seen = {mode: {"frames": [], "tokens": []} for mode in MODES}

    def run_op(self, paths: list[str]) -> None:
        for video in caption_all(self.op, paths):
            self.seen["op"]["frames"].append(len(video["timestamps"]))
            self.seen["op"]["tokens"].append(video["generated_tokens"])

    def run_baseline(self, paths: list[str]) -> None:
        for caption in self.baseline.process(paths):
            self.seen["baseline"]["frames"].append(caption.frames)
            self.seen["baseline"]["tokens"].extend(caption.tokens)

    def run_decode_floor(self, paths: list[str]) -> None:
        for path in paths:
            video = decode_video(path, self.frame_settings)
            self.seen["decode_floor"]["frames"].append(len(video.frames))

    def run(self, mode: str, paths: list[str]) -> None:
        getattr(self, f"run_{mode}")(paths)



def measure(workload: Workload, rounds: int) -> dict:
    """Run the three modes over ``workload`` in ``rounds`` interleaved rounds."""
    runner = Runner(workload)
    paths = request_paths(workload.requests)
    for mode in MODES:  # warm-up: load the model, fill the page cache, first-call costs
        runner.run(mode, paths[:2])
    runner.seen = {mode: {"frames": [], "tokens": []} for mode in MODES}
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ratios, loads = [], []
    size = -(-len(paths) // rounds)
    for index, chunk in enumerate(batches(paths, size)):
        round_wall: dict[str, float] = {}
        order = MODES if index % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            with stopwatch(round_wall, {}, mode), stopwatch(wall, cpu, mode):
                runner.run(mode, chunk)
        ratios.append(round_wall["baseline"] / round_wall["op"])
        loads.append(os.getloadavg()[0])
    result = summarize(workload, runner.seen, wall, cpu, ratios)
    result["load_avg_1m_during"] = round(statistics.mean(loads), 2)
    return result


def summarize(workload: Workload, seen: dict, wall: dict, cpu: dict, ratios: list[float]) -> dict:
    """Per-mode rates and work done, and the ratios between modes.

    ``speedup_if_baseline_decoded_per_call`` is what the speed-up would be against a baseline
    that decoded the video before every ``generate`` call (``caption_num`` decodes per video
    instead of Data-Juicer's one): the measured baseline plus ``caption_num - 1`` more decodes,
    timed by the decode-floor mode.
    """
    n, extra_decodes = workload.requests, workload.caption_num - 1
    modes = {}
    for mode in MODES:
        frames, tokens = seen[mode]["frames"], seen[mode]["tokens"]
        modes[mode] = {
            "seconds": round(wall[mode], 3),
            "cpu_seconds": round(cpu[mode], 3),
            "videos_per_s": round(rate(n, wall[mode]), 4),
            "frames_per_video": round(statistics.mean(frames), 2),
            "tokens_per_caption": [min(tokens), max(tokens)] if tokens else None,
        }
    per_call = wall["baseline"] + extra_decodes * wall["decode_floor"]
    return {
        "workload": workload.describe(),
        "modes": modes,
        "speedup_vs_baseline": round(wall["baseline"] / wall["op"], 3),
        "speedup_per_round": {k: round(v, 3) for k, v in spread(ratios).items()},
        "cpu_time_ratio_vs_baseline": round(cpu["baseline"] / cpu["op"], 3),
        "speedup_if_baseline_decoded_per_call": round(per_call / wall["op"], 3),
        "op_time_over_decode_floor": round(wall["op"] / wall["decode_floor"], 3),
        "same_frames": seen["op"]["frames"] == seen["baseline"]["frames"],
    }


def print_summary(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['workload']['requests']} videos")
    for mode, row in result["modes"].items():
        print(f"  {mode:13s} {row['videos_per_s']:8.3f} videos/s  {row['seconds']:8.1f} s "
              f"(cpu {row['cpu_seconds']:.1f} s)  frames/video {row['frames_per_video']}  "
              f"tokens/caption {row['tokens_per_caption']}")
    print(f"  op vs baseline: {result['speedup_vs_baseline']}x "
          f"(per round {result['speedup_per_round']}; cpu time "
          f"{result['cpu_time_ratio_vs_baseline']}x; with a decode per generate call "
          f"{result['speedup_if_baseline_decoded_per_call']}x); "
          f"op time / decode floor: {result['op_time_over_decode_floor']}; "
          f"same frames: {result['same_frames']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, help="videos per scenario (default: its own)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds the requests are split into")
    parser.add_argument("--scenario", nargs="*", choices=sorted(SCENARIOS),
                        default=list(SCENARIOS))
    parser.add_argument("--generation-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--save", default="throughput", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Workload(requests=1, generation_batch_size=args.generation_batch_size)
    results = {}
    for name in args.scenario:
        caption_num, tokens, requests = SCENARIOS[name]
        workload = replace(base, caption_num=caption_num, new_tokens=tokens,
                           requests=args.requests or requests)
        results[name] = measure(workload, args.rounds)
        print_summary(name, results[name])
    payload = {"scenarios": results, "torch_threads": torch.get_num_threads(),
               "data_juicer_builtin": try_builtin_op(base.model_path(), request_paths(1)[0])}
    if args.save:
        print(f"saved {save(args.save, payload)}")
    return payload


if __name__ == "__main__":
    main()
