"""Does grouping by frame count keep the batching gain of a family whose processor stacks videos?

For each family the same requests are generated three ways in one process, rounds interleaved:

- ``one_per_call``: a ``generate`` call per video (the safe path of a family not in the table);
- ``grouped``: ``generation_batch_size`` videos per call, as the op runs it: requests reach the
  backend in groups of ``generation_batch_size`` (as the op hands them over), and for
  LLaVA-OneVision each group is cut into one call per frame count; Qwen2-VL takes any videos in
  one call;
- ``common_count``: the other choice the family table could make, every video of a group
  sampled to the group's mean frame count (rounded to even: about the same frames in all), one
  call per group: the whole batching gain.

The gain of a way is one_per_call's time over its time; the share of the batching gain that
grouping keeps is ``(grouped gain - 1) / (common_count gain - 1)``. Frames are random 56 x 56
pixels and every caption exactly ``new_tokens`` tokens, so that all ways do the same work.
Workloads: the op's default sampling (2 fps, 4 to 32 frames) over clip lengths drawn from
``long_clips`` 5 to 60 s (most reach the 32-frame cap) and ``short_clips`` 2 to 16 s (counts
spread over 4 to 32).

``python -m bench.family_batching [--requests N] [--rounds R] [--new-tokens T]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.measure import save, spread, stopwatch
from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.testing.tiny_families import build_tiny_family
from dj_ops.testing.tiny_models import build_tiny_model
from dj_ops.video.settings import FPS, MAX_FRAMES, MIN_FRAMES, TEMPORAL_FACTOR

FAMILIES = ("llava_onevision", "qwen2_vl")  # stacks videos; flattens them
SIDE = 56
WORKLOADS = {"long_clips": (5.0, 60.0), "short_clips": (2.0, 16.0)}
MODES = ("one_per_call", "grouped", "common_count")


def frame_count(seconds: float) -> int:
    """The op's default ``fps`` sampling of a clip of ``seconds``: 2 fps, 4 to 32 frames, even."""
    count = min(max(round(seconds * FPS), MIN_FRAMES), MAX_FRAMES)
    return max(TEMPORAL_FACTOR, count // TEMPORAL_FACTOR * TEMPORAL_FACTOR)


def frame_counts(workload: str, requests: int, seed: int = 0) -> list[int]:
    """Frame counts of ``requests`` videos of ``workload`` (seeded)."""
    rng = random.Random(seed)
    return [frame_count(rng.uniform(*WORKLOADS[workload])) for _ in range(requests)]


def common_counts(counts: list[int], group: int) -> list[int]:
    """``counts`` with each group of ``group`` at its mean count, rounded to even.

    >>> common_counts([4, 8, 6, 32], 2)
    [6, 6, 20, 20]
    """
    out = []
    for start in range(0, len(counts), group):
        part = counts[start:start + group]
        mean = round(sum(part) / len(part) / TEMPORAL_FACTOR) * TEMPORAL_FACTOR
        out += [max(TEMPORAL_FACTOR, mean)] * len(part)
    return out


def make_requests(counts: list[int], seed: int = 0) -> list[CaptionRequest]:
    rng = np.random.default_rng(seed)
    requests = []
    for count in counts:
        frames = rng.integers(0, 256, (count, SIDE, SIDE, 3), dtype=np.uint8)
        metadata = {"fps": 24.0, "frames_indices": list(range(0, 12 * count, 12)),
                    "total_num_frames": 12 * count, "duration": count / 2.0,
                    "width": SIDE, "height": SIDE}
        requests.append(CaptionRequest(frames, metadata, "Describe the video."))
    return requests


def backend(model: str, batch_size: int, new_tokens: int) -> TransformersBackend:
    settings = parse_sampling_params({"max_new_tokens": new_tokens,
                                      "min_new_tokens": new_tokens}, 1)
    return TransformersBackend(BackendConfig(model, settings, batch_size=batch_size, seed=0))


def generate_in_groups(model: TransformersBackend, requests: list, group: int) -> int:
    """Generate ``requests`` in the op's groups of ``group``; the number of generate calls."""
    calls = [0]
    original = model.run_micro_batch

    def counted(batch):
        calls[0] += 1
        return original(batch)

    model.run_micro_batch = counted
    try:
        for start in range(0, len(requests), group):
            results = model.generate(requests[start:start + group])
            assert all(r.ok for r in results), [r.error_message for r in results]
    finally:
        del model.run_micro_batch
    return calls[0]


def measure_family(model_path: str, requests: int, rounds: int, new_tokens: int,
                   group: int) -> dict:
    one, batched = backend(model_path, 1, new_tokens), backend(model_path, group, new_tokens)
    generate_in_groups(batched, make_requests([8, 8]), group)  # warm up
    out = {}
    for workload in WORKLOADS:
        counts = frame_counts(workload, requests)
        runs = {"one_per_call": (one, make_requests(counts)),
                "grouped": (batched, make_requests(counts)),
                "common_count": (batched, make_requests(common_counts(counts, group)))}
        wall: dict[str, float] = {}
        gains, loads, calls = {m: [] for m in MODES[1:]}, [], {}
        for index in range(rounds):
            round_wall: dict[str, float] = {}
            for mode in MODES if index % 2 == 0 else MODES[::-1]:
                model, work = runs[mode]
                with stopwatch(round_wall, {}, mode), stopwatch(wall, {}, mode):
                    calls[mode] = generate_in_groups(model, work, group)
            for mode in MODES[1:]:
                gains[mode].append(round_wall["one_per_call"] / round_wall[mode])
            loads.append(os.getloadavg()[0])
        gain = {mode: wall["one_per_call"] / wall[mode] for mode in MODES[1:]}
        kept = (gain["grouped"] - 1) / (gain["common_count"] - 1)
        out[workload] = {
            "distinct_frame_counts": len(set(counts)), "generate_calls": calls,
            "seconds": {k: round(v, 3) for k, v in wall.items()},
            "gain": {k: round(v, 3) for k, v in gain.items()},
            "gain_per_round": {m: {k: round(v, 3) for k, v in spread(g).items()}
                               for m, g in gains.items()},
            "share_of_gain_kept": round(kept, 3),
            "load_avg_1m": round(statistics.mean(loads), 2)}
    return out


def measure(requests: int, rounds: int, new_tokens: int, group: int, folder: Path) -> dict:
    paths = {family: (build_tiny_model(family, folder / family) if family == "qwen2_vl"
                      else build_tiny_family(family, folder / family)) for family in FAMILIES}
    return {"workload": {"requests": requests, "rounds": rounds, "new_tokens": new_tokens,
                         "generation_batch_size": group, "frame_side": SIDE},
            "families": {family: measure_family(path, requests, rounds, new_tokens, group)
                         for family, path in paths.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.requests, args.rounds, args.new_tokens, args.batch_size,
                         Path(folder))
    for family, workloads in result["families"].items():
        for workload, numbers in workloads.items():
            print(f"{family:16s} {workload:12s} gain grouped {numbers['gain']['grouped']:.2f}x "
                  f"common {numbers['gain']['common_count']:.2f}x kept "
                  f"{numbers['share_of_gain_kept']:.2f} calls {numbers['generate_calls']} "
                  f"load {numbers['load_avg_1m']}")
    if not args.no_save:
        print(save("family_batching", result))


if __name__ == "__main__":
    main()
