"""What the result store costs the op, and what reusing it saves: ``caption_num`` 1, 16 tokens.

Three measures, in one process, rounds interleaved so that the machine's load hits all alike:

- ``plain`` vs ``store``: the op without and with a result store on videos it has not seen (every
  caption generated and written; each round uses new paths, so nothing is reused). The ratio of
  their wall times per round, and of the op process's CPU seconds (the store works in that
  process; decoding runs in child processes).
- ``store_own``: the seconds spent inside the store itself (keys, lookups, writes), timed around
  its calls, as a share of the ``store`` mode's wall time: the figure least disturbed by load.
- ``reuse``: the op with the store over videos already in it (nothing decoded nor generated).

``python -m bench.store_overhead [--requests N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.measure import save, spread, stopwatch, time_calls
from bench.workload import Workload, batches, request_paths, samples_for
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.store.session import StoreSession

MODES = ("plain", "store")


def run(op, paths: list[str]) -> None:
    for batch in batches(paths, op.batch_size):
        op.process(samples_for(batch))


def measure(requests: int, rounds: int, folder: Path) -> dict:
    workload = Workload(requests=requests, caption_num=1, new_tokens=16)
    store_path = folder / "store.sqlite"
    ops = {"plain": VLMVideoCaptioningMapper(**workload.op_params()),
           "store": VLMVideoCaptioningMapper(**workload.op_params(),
                                             result_store=str(store_path))}
    spent = [0.0]
    time_calls(StoreSession, ("reuse", "add", "flush"), spent)
    warm = request_paths(4, folder / "warm")
    for op in ops.values():
        run(op, warm)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ratios, cpu_ratios, loads = [], [], []
    spent[0] = 0.0
    for index in range(rounds):
        paths = request_paths(requests, folder / f"round{index}")  # unseen by the store
        round_wall: dict[str, float] = {}
        round_cpu: dict[str, float] = {}
        for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
            with stopwatch(round_wall, round_cpu, mode), stopwatch(wall, cpu, mode):
                run(ops[mode], paths[:])
        ratios.append(round_wall["store"] / round_wall["plain"])
        cpu_ratios.append(round_cpu["store"] / round_cpu["plain"])
        loads.append(os.getloadavg()[0])
    store_own = spent[0]
    reuse_wall: dict[str, float] = {}
    with stopwatch(reuse_wall, {}, "reuse"):
        run(ops["store"], request_paths(requests, folder / "round0"))  # all stored
    return {
        "workload": workload.describe() | {"rounds": rounds},
        "seconds": {k: round(v, 3) for k, v in wall.items()},
        "op_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "store_over_plain_wall": round(wall["store"] / wall["plain"], 4),
        "store_over_plain_wall_per_round": {k: round(v, 4) for k, v in spread(ratios).items()},
        "store_over_plain_op_cpu": round(cpu["store"] / cpu["plain"], 4),
        "store_over_plain_op_cpu_per_round": {k: round(v, 4) for k, v in
                                              spread(cpu_ratios).items()},
        "store_own_seconds": round(store_own, 3),
        "store_own_share_of_store_mode": round(store_own / wall["store"], 4),
        "reuse_seconds": round(reuse_wall["reuse"], 3),
        "reuse_speedup_over_plain_round": round(wall["plain"] / rounds / reuse_wall["reuse"], 2),
        "load_avg_1m_during": round(statistics.mean(loads), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="videos per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--save", default="store_overhead", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dj_ops_store_bench_") as folder:
        result = measure(args.requests, args.rounds, Path(folder))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.save:
        save(args.save, result)
    return result


if __name__ == "__main__":
    main()
