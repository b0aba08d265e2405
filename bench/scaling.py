"""How the op's throughput and peak memory change with the generation batch size, the number
of videos, and torch's intra-op threads.

Each point runs in a fresh process (so that its peak resident memory is its own):
``python -m bench.scaling --point '{"generation_batch_size": 4}'`` prints one JSON line.
``python -m bench.scaling`` runs every point ``--repeats`` times, round-robin over the points of
a sweep (so that a change of the machine's load spreads over all of them), keeps each point's
best rate and highest peak memory, and saves ``bench/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.measure import load_now, peak_rss_mib, rate, save, timed
from bench.workload import Workload, batches, request_paths, samples_for

BASE = Workload(requests=24, caption_num=1, new_tokens=32, generation_batch_size=8)
# sweep name -> (field varied, values, fixed overrides). The first two sweeps use one torch
# thread: then CPU time (videos per CPU-second) hardly depends on the other processes' load,
# while wall time on this shared machine does.
SWEEPS = {
    "generation_batch_size": ("generation_batch_size", [1, 2, 4, 8, 16], {"threads": 1}),
    "videos": ("requests", [8, 16, 32, 48], {"threads": 1}),
    "torch_threads": ("threads", [1, 2], {}),
}
ROOT = Path(__file__).resolve().parents[1]


def run_point(workload: Workload, threads: int | None) -> dict:
    """Time the op over ``workload`` in this process (after a warm-up batch)."""
    import torch

    from dj_ops.ops import VLMVideoCaptioningMapper

    if threads:  # for the op's generation and everything else
        torch.set_num_threads(threads)
        workload = replace(workload, torch_threads=threads)
    op = VLMVideoCaptioningMapper(**workload.op_params())
    paths = request_paths(workload.requests)
    op.process(samples_for(paths[:2]))  # load the model, first-call costs
    rss_loaded = peak_rss_mib()

    def caption_all():
        for batch in batches(paths, op.batch_size):
            op.process(samples_for(batch))

    cpu_start = time.process_time()
    _, seconds = timed(caption_all)
    cpu = time.process_time() - cpu_start
    return {"videos_per_s": round(rate(workload.requests, seconds), 4),
            "videos_per_cpu_s": round(rate(workload.requests, cpu), 4),
            "seconds": round(seconds, 3), "peak_rss_mib": round(peak_rss_mib(), 1),
            "rss_after_load_mib": round(rss_loaded, 1), "load_avg_1m": round(load_now(), 2),
            "torch_threads": op.torch_threads or torch.get_num_threads()}


def point_in_subprocess(overrides: dict) -> dict:
    """``run_point`` in a fresh interpreter, with ``overrides`` applied to ``BASE``."""
    command = [sys.executable, "-m", "bench.scaling", "--point", json.dumps(overrides)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """The fastest run of a point (by wall time), with the highest peak memory seen over all
    its runs.

    >>> best_of([{"videos_per_s": 1.0, "peak_rss_mib": 5.0},
    ...          {"videos_per_s": 2.0, "peak_rss_mib": 4.0}])
    {'videos_per_s': 2.0, 'peak_rss_mib': 5.0, 'runs_videos_per_s': [1.0, 2.0]}
    """
    best = dict(max(runs, key=lambda run: run["videos_per_s"]))
    best["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    best["runs_videos_per_s"] = [run["videos_per_s"] for run in runs]
    return best


def sweep(repeats: int, names=tuple(SWEEPS), base: dict | None = None) -> dict:
    """Every point of the sweeps ``names``, ``repeats`` times; ``base`` overrides the base
    workload (e.g. fewer videos for a smoke run)."""
    base = base or {}
    results = {"workload": replace(BASE, **base).describe(), "repeats": repeats, "sweeps": {}}
    for name in names:
        field, values, fixed = SWEEPS[name]
        runs: dict = {value: [] for value in values}
        for _ in range(repeats):
            for value in values:
                runs[value].append(point_in_subprocess({**base, **fixed, field: value}))
                print(name, field, value, json.dumps(runs[value][-1]), flush=True)
        results["sweeps"][name] = [{field: value, **best_of(runs[value])} for value in values]
    return results


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", help="JSON overrides of the base workload: run one point")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each point")
    parser.add_argument("--save", default="scaling", help="results name ('' to not save)")
    parser.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    parser.add_argument("--requests", type=int, help="videos per point (default: the base's)")
    args = parser.parse_args(argv)
    if args.point:
        overrides = json.loads(args.point)
        threads = overrides.pop("threads", None)
        print(json.dumps(run_point(replace(BASE, **overrides), threads)))
        return None
    results = sweep(args.repeats, args.sweeps,
                    {"requests": args.requests} if args.requests else None)
    if args.save:
        print(f"saved {save(args.save, results)}")
    return results


if __name__ == "__main__":
    main()
