"""The shape shared by the benchmarks of what one part of the op costs (the result store, the
quality gate): two ops over the same unseen videos, rounds interleaved with the order
alternating so that the machine's load hits both alike, and the ratio of their times."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.measure import load_check, load_now, publish_note, save, spread, stopwatch
from bench.workload import batches, request_paths, samples_for


def run(op, paths: list[str]) -> None:
    """``op.process`` over ``paths`` in Data-Juicer batches of the op's ``batch_size``."""
    for batch in batches(paths, op.batch_size):
        op.process(samples_for(batch))


def compare(ops: dict, requests: int, rounds: int, folder: Path) -> dict:
    """Time the two ``ops`` (``{base: op, other: op}``) over ``rounds`` rounds of ``requests``
    videos under new paths. Returns wall and process CPU seconds per mode, the per-round ratios
    ``other / base`` (wall and CPU) and the mean load during the rounds."""
    base, other = ops
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ratios, cpu_ratios, loads = [], [], []
    for index in range(rounds):
        paths = request_paths(requests, folder / f"round{index}")
        round_wall: dict[str, float] = {}
        round_cpu: dict[str, float] = {}
        for mode in (base, other) if index % 2 == 0 else (other, base):
            with stopwatch(round_wall, round_cpu, mode), stopwatch(wall, cpu, mode):
                run(ops[mode], paths[:])
        ratios.append(round_wall[other] / round_wall[base])
        cpu_ratios.append(round_cpu[other] / round_cpu[base])
        loads.append(load_now())
    return {"wall": wall, "cpu": cpu, "wall_ratio": wall[other] / wall[base],
            "wall_per_round": {k: round(v, 4) for k, v in spread(ratios).items()},
            "cpu_ratio": cpu[other] / cpu[base],
            "cpu_per_round": {k: round(v, 4) for k, v in spread(cpu_ratios).items()},
            "load": round(statistics.mean(loads), 2), "load_check": load_check(loads)}


def ratio_fields(timed: dict, name: str) -> dict:
    """The result fields of :func:`compare`'s timings: seconds and CPU seconds per mode, and
    the ratios named ``name`` (``store_over_plain``, ...), overall and per round."""
    return {
        "load": timed["load_check"],
        "seconds": {k: round(v, 3) for k, v in timed["wall"].items()},
        "op_cpu_seconds": {k: round(v, 3) for k, v in timed["cpu"].items()},
        f"{name}_wall": round(timed["wall_ratio"], 4),
        f"{name}_wall_per_round": timed["wall_per_round"],
        f"{name}_op_cpu": round(timed["cpu_ratio"], 4),
        f"{name}_op_cpu_per_round": timed["cpu_per_round"],
    }


def main(doc: str, measure: Callable[[int, int, Path], dict], *, requests: int, rounds: int,
         save_as: str, argv: list[str] | None = None) -> dict:
    """A benchmark's command line: ``--requests``, ``--rounds``, ``--save``; prints and saves
    what ``measure(requests, rounds, folder)`` returns."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--requests", type=int, default=requests, help="videos per round")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--save", default=save_as, help="results name ('' to not save)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"dj_ops_{save_as}_") as folder:
        result = measure(args.requests, args.rounds, Path(folder))
    for key, value in result.items():
        print(f"{key}: {value}")
    print(publish_note(result["load"]))
    if args.save:
        save(args.save, result)
    return result
