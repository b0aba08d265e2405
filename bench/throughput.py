"""Op throughput against the sequential baseline, measured side by side in one process.

For each scenario the same requests (the sample clips repeated, each under its own path) go
through three modes, interleaved round by round so that the machine's load hits all alike:

- ``op``: ``vlm_video_captioning_mapper`` on Data-Juicer batches (``op.process``);
- ``baseline``: Data-Juicer's loop (:mod:`bench.baseline`) on the same checkpoint, loaded with
  stock transformers parts;
- ``decode_floor``: decoding the needed frames alone (the op's decoder, one video at a time).

Every mode sees the same frames per video and generates exactly ``new_tokens`` per caption.
Each side runs with its best torch thread count, tried on a few videos first (the op through its
public ``torch_threads``; ``--threads T`` gives both sides T instead). The load average is
recorded beside each ratio; one measured on a busy machine is marked not publishable
(:func:`bench.measure.load_check`).

``python -m bench.throughput [--requests N] [--scenario NAME ...] [--threads T]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from dataclasses import replace

import torch

from bench.baseline import SequentialBaseline
from bench.dj_builtin import try_builtin_op
from bench.measure import load_check, load_now, publish_note, rate, save, spread, stopwatch
from bench.workload import Workload, batches, caption_all, request_paths, samples_for
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


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to ``count`` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_candidates() -> list[int]:
    """The thread counts each side is tried with: one, and every core."""
    return sorted({1, len(os.sched_getaffinity(0))})


def fastest(run, candidates: list[int], paths: list[str]) -> int:
    """The candidate under which ``run(candidate, paths)`` took the least wall time."""
    seconds = {}
    for candidate in candidates:
        start = time.perf_counter()
        run(candidate, paths)
        seconds[candidate] = time.perf_counter() - start
    return min(seconds, key=seconds.get)


class Runner:
    """The three modes over one workload, sharing one loaded model.

    :param threads: torch threads of both sides (None: each side's best, see :meth:`tune`).
    """

    def __init__(self, workload: Workload, threads: int | None = None):
        self.workload = replace(workload, torch_threads=threads or workload.torch_threads)
        self.op = VLMVideoCaptioningMapper(**self.workload.op_params())
        self.baseline = SequentialBaseline(self.op, self.workload)
        self.baseline_threads = threads
        self.frame_settings = self.baseline.frame_settings
        self.seen = {mode: {"frames": [], "tokens": []} for mode in MODES}

    def tune(self, paths: list[str]) -> dict:
        """Give each side its best thread count, tried on ``paths`` (after a warm-up); the op
        through its public ``torch_threads`` (one op per candidate, the loser closed)."""
        candidates = thread_candidates()

        def op_with(threads: int, paths: list[str]):
            op = VLMVideoCaptioningMapper(**replace(self.workload, torch_threads=threads)
                                          .op_params())
            op.process(samples_for(paths[:1]))  # loads, starts its decoders
            start = time.perf_counter()
            caption_all(op, paths)
            return op, time.perf_counter() - start

        timed_ops = {t: op_with(t, paths) for t in candidates}
        best_op = min(timed_ops, key=lambda t: timed_ops[t][1])
        self.op.close()
        for threads, (op, _) in timed_ops.items():
            if threads != best_op:
                op.close()
        self.op = timed_ops[best_op][0]
        self.workload = replace(self.workload, torch_threads=best_op)

        def baseline_with(threads: int, paths: list[str]) -> None:
            with torch_threads(threads):
                self.baseline.process(paths)

        self.baseline_threads = fastest(baseline_with, candidates, paths)
        return {"op": best_op, "baseline": self.baseline_threads, "tried": candidates}

    def run_op(self, paths: list[str]) -> None:
        for video in caption_all(self.op, paths):
            self.seen["op"]["frames"].append(len(video["timestamps"]))
            self.seen["op"]["tokens"].append(video["generated_tokens"])

    def run_baseline(self, paths: list[str]) -> None:
        with torch_threads(self.baseline_threads):
            for caption in self.baseline.process(paths):
                self.seen["baseline"]["frames"].append(caption.frames)
                self.seen["baseline"]["tokens"].extend(caption.tokens)

    def run_decode_floor(self, paths: list[str]) -> None:
        for path in paths:
            video = decode_video(path, self.frame_settings)
            self.seen["decode_floor"]["frames"].append(len(video.frames))

    def run(self, mode: str, paths: list[str]) -> None:
        getattr(self, f"run_{mode}")(paths)


def measure(workload: Workload, rounds: int, threads: int | None = None) -> dict:
    """Run the three modes over ``workload`` in ``rounds`` interleaved rounds (each side on its
    best thread count unless ``threads`` is given)."""
    runner = Runner(workload, threads)
    paths = request_paths(workload.requests)
    for mode in MODES:  # warm-up: load the model, fill the page cache, first-call costs
        runner.run(mode, paths[:2])
    tuned = runner.tune(paths[:2]) if threads is None else {"op": threads, "baseline": threads}
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
        loads.append(load_now())
    result = summarize(runner.workload, runner.seen, wall, cpu, ratios)
    result["load_avg_1m_during"] = round(statistics.mean(loads), 2)
    result["load"] = load_check(loads)
    result["torch_threads"] = tuned
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
          f"same frames: {result['same_frames']}; threads {result['torch_threads']}; "
          f"{publish_note(result['load'])}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, help="videos per scenario (default: its own)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds the requests are split into")
    parser.add_argument("--scenario", nargs="*", choices=sorted(SCENARIOS),
                        default=list(SCENARIOS))
    parser.add_argument("--generation-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int,
                        help="torch threads of both sides (default: each side's best)")
    parser.add_argument("--save", default="throughput", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    base = Workload(requests=1, generation_batch_size=args.generation_batch_size)
    results = {}
    for name in args.scenario:
        caption_num, tokens, requests = SCENARIOS[name]
        workload = replace(base, caption_num=caption_num, new_tokens=tokens,
                           requests=args.requests or requests)
        results[name] = measure(workload, args.rounds, args.threads)
        print_summary(name, results[name])
    payload = {"scenarios": results, "torch_threads": args.threads or "each side's best",
               "data_juicer_builtin": try_builtin_op(base.model_path(), request_paths(1)[0])}
    if args.save:
        print(f"saved {save(args.save, payload)}")
    return payload


if __name__ == "__main__":
    main()
