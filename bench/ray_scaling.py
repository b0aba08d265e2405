"""Videos per second of ``dj-process`` on a Ray cluster of 1 and of 2 worker nodes (1 CPU each,
on this machine), as a ratio measured in one run, and the model loads per replica.

Each round starts a loopback cluster (:mod:`dj_ops.testing.ray_cluster`: a head with no CPUs
and N worker nodes), runs ``recipes/caption_ray.yaml`` on it over the same videos with the tiny
Qwen3-VL and stops the cluster. On CPU the op runs as Ray tasks of 1 CPU (one replica per
node), here with one torch thread and one decoding process each (about one core per
replica). Rounds alternate 1, 2, 1, 2, ... nodes, so that the machine's load hits both alike.
(Actors of 1 CPU on nodes of 1 CPU deadlock: the actor holds the node's CPU and Data-Juicer's
reading step waits for it, ``Active & requested resources: 2/1 CPU``.)

- **Rate of the op's stage**: videos over the op's stage time as Data-Juicer reports it (its
  ``dag_node_complete`` event: from planning to the materialized result, so worker start,
  model load and captioning; not Ray's start, the dataset's load nor the export). The
  ``dj-process`` wall time is kept too.
- **Steady rate**: while captioning, from the run's result store (a folder): each replica's
  videos after its first micro-batch over the time between that micro-batch's write and its
  last write (the files' times), summed over the replicas. Start-up and model load excluded.
- **Loads**: the op logs one "model loaded" line per load (Ray forwards the workers' logs to
  the driver; ``RAY_DEDUP_LOGS=0`` keeps every line); one per replica (worker process) is
  expected, however many blocks (tasks) it runs.

``python -m bench.ray_scaling [--videos N] [--rounds R]`` saves ``bench/results/ray_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from data_juicer.utils.mm_utils import SpecialTokens

from bench.measure import markdown_table, rate, save, spread
from bench.workload import request_paths
from dj_ops.export.dj_output import read_rows
from dj_ops.testing.ray_cluster import LoopbackCluster
from dj_ops.testing.recipes import load_recipe, offline_variant, write_recipe
from dj_ops.testing.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[1]
DJ_PROCESS = str(Path(sys.executable).with_name("dj-process"))
LAYOUTS = (1, 2)  # worker nodes of 1 CPU
OP = {"torch_threads": 1, "decode_workers": 1, "max_frames": 8, "min_frames": 2,
      "max_pixels": 224 * 224, "min_pixels": 28 * 28, "generation_batch_size": 4,
      "sampling_params": {"max_new_tokens": 64, "min_new_tokens": 64}}
STAGE = re.compile(r"\(vlm_video_captioning_mapper\) completed in ([0-9.]+)s")
LOADED = re.compile(r"model loaded: .* \(pid (\d+)\)")


def recipe(folder: Path, videos: list[str]) -> Path:
    """The Ray recipe over ``videos``, its export and result store in ``folder``."""
    dataset = folder / "videos.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"{SpecialTokens.video} "
                                                   f"{SpecialTokens.eoc}", "videos": [v]}) + "\n"
                               for v in videos))
    variant = offline_variant(load_recipe(ROOT / "recipes/caption_ray.yaml"),
                              model=tiny_model_path("qwen3_vl"), dataset=str(dataset),
                              export=str(folder / "out" / "result.jsonl"),
                              work_dir=str(folder / "work"),
                              op_overrides={**OP, "result_store": f"file://{folder / 'store'}"})
    return write_recipe(variant, folder / "recipe.yaml")


def run_once(nodes: int, config: Path, videos: int) -> dict:
    """One dj-process run on a fresh cluster of ``nodes`` worker nodes."""
    export, store = config.parent / "out" / "result.jsonl", config.parent / "store"
    for previous in (export, store):  # this run's shards only; nothing to reuse
        shutil.rmtree(previous, ignore_errors=True)
    with LoopbackCluster(workers=nodes, cpus=1) as cluster:
        env = {**cluster.driver_env(), "PYTHONPATH": str(ROOT)}
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run([DJ_PROCESS, "--config", str(config)], env=env, cwd=config.parent,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"dj-process failed on {nodes} node(s):\n{log[-4000:]}")
    rows = list(read_rows(export))
    meta = [row["__dj__meta__"]["vlm_video_captioning"] for row in rows]
    actors = Counter((m["worker"]["node"], m["worker"]["pid"]) for m in meta)
    loads = Counter(LOADED.findall(log))
    stage = float(STAGE.search(log).group(1))
    return {"nodes": nodes, "videos": len(rows), "videos_expected": videos,
            "videos_per_s": round(rate(len(rows), stage), 4), "op_stage_seconds": stage,
            "steady_videos_per_s": round(steady_rate(store, OP["generation_batch_size"]), 4),
            "dj_process_seconds": round(wall, 1),
            "replicas": len(actors), "rows_per_replica": sorted(actors.values()),
            "model_loads": sum(loads.values()),
            "loads_per_replica": sorted(loads[str(pid)] for _, pid in actors),
            "load_avg_1m": round((load_before + load_after) / 2, 2)}


def steady_rate(store: Path, first_flush: int) -> float:
    """Videos per second while every replica captions: each replica's results after its first
    micro-batch (``first_flush`` videos, written together) over the time from that write to
    its last (the result files' times), summed over the replicas."""
    times: dict[int, list[float]] = {}
    for path in store.glob("results/*/*/*.json"):
        pid = json.loads(path.read_text())["worker"]["pid"]
        times.setdefault(pid, []).append(path.stat().st_mtime)
    total = 0.0
    for written in times.values():
        written.sort()
        if len(written) > first_flush:
            total += rate(len(written) - first_flush, written[-1] - written[first_flush - 1])
    return total


def measure(videos: int, rounds: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="dj_ops_ray_scaling_"))
    try:
        config = recipe(folder, request_paths(videos, folder / "videos"))
        runs: dict[int, list[dict]] = {n: [] for n in LAYOUTS}
        for index in range(rounds):
            for nodes in LAYOUTS if index % 2 == 0 else LAYOUTS[::-1]:
                runs[nodes].append(run_once(nodes, config, videos))
                print(json.dumps(runs[nodes][-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"workload": {"videos": videos, "rounds": rounds, "op": OP},
            **ratios(runs, "videos_per_s", ""), **ratios(runs, "steady_videos_per_s", "steady_"),
            "load_avg_1m_during": round(sum(r["load_avg_1m"] for rs in runs.values()
                                            for r in rs) / (2 * rounds), 2),
            "runs": runs}


def ratios(runs: dict[int, list[dict]], field: str, prefix: str) -> dict:
    """2 nodes over 1 for ``field``: of the best runs, and per round (median, range)."""
    best = {n: max(r[field] for r in runs[n]) for n in LAYOUTS}
    pairs = [two[field] / one[field] for one, two in zip(runs[1], runs[2]) if one[field]]
    return {f"{prefix}two_nodes_over_one": round(best[2] / best[1], 3) if best[1] else None,
            # none when no round measured it (a run too short for a steady rate: the smoke run)
            f"{prefix}per_round": {k: round(v, 3) for k, v in spread(pairs).items()} if pairs
            else None}


def report_section(result: dict) -> str:
    """The section of ``docs/performance.md`` (written by ``bench.report``)."""
    rows = [run for runs in result["runs"].values() for run in runs]
    loads = {tuple(r["loads_per_replica"]) for r in rows}
    return "\n".join([
        "## Ray: one and two worker nodes", "",
        f"`python -m bench.ray_scaling` (results in `bench/results/ray_scaling.json`): "
        f"{result['workload']['videos']} videos, the tiny Qwen3-VL as Ray tasks of 1 CPU, one "
        f"torch thread and one decoding process each, on a loopback cluster of 1 or 2 worker "
        f"nodes of 1 CPU (this 2-core machine), {result['workload']['rounds']} interleaved "
        f"rounds. The op's stage counts worker start, model load and captioning; the steady "
        f"rate only captioning (each replica's videos after its first micro-batch over the time "
        f"they took, from the result store's file times, summed). A replica is one worker "
        f"process (its loads counted from the log).", "",
        f"**2 nodes over 1: {result['two_nodes_over_one']}x for the op's stage, "
        f"{result['steady_two_nodes_over_one']}x steady** (per round: median "
        f"{result['per_round']['median']} and {result['steady_per_round']['median']}); mean "
        f"1-minute load average {result['load_avg_1m_during']} on 2 cores (the machine is "
        f"shared: at such a load the ratio says more about the other work than about the op). "
        f"Model loads per replica in every run: {sorted(loads)}.", "",
        markdown_table(rows, [("nodes", "nodes"), ("videos_per_s", "videos/s (op stage)"),
                              ("steady_videos_per_s", "steady videos/s"),
                              ("op_stage_seconds", "op stage s"),
                              ("dj_process_seconds", "dj-process s"),
                              ("replicas", "replicas"), ("rows_per_replica", "rows per replica"),
                              ("model_loads", "model loads"), ("load_avg_1m", "load avg")]),
        ""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--save", default="ray_scaling", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    result = measure(args.videos, args.rounds)
    print(f"2 nodes over 1: {result['two_nodes_over_one']}x (op stage), "
          f"{result['steady_two_nodes_over_one']}x (steady); load {result['load_avg_1m_during']}")
    if args.save:
        print(f"saved {save(args.save, result)}")
    return result


if __name__ == "__main__":
    main()
