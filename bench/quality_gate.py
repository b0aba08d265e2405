"""What the quality gate costs the op when nothing is retried: ``caption_num`` 1, 16 tokens,
greedy, the tiny Qwen3-VL.

Two modes in one process, rounds interleaved (order alternating) so that the machine's load hits
both alike, each round on videos under new paths:

- ``off``: the op with no gate at all (the captioner's gate removed: the code path as it was);
- ``gate``: the op with its default gate (every candidate checked, its flags recorded; retries
  0, so nothing is generated again: the cost of the gate when nothing fails).

Measured: the ratio of their wall times and of the op process's CPU seconds, and the gate's own
seconds (its checks and bookkeeping, and the provenance fields it adds, timed around their
calls) as a share of the ``gate`` mode's wall time: the figure least disturbed by load. The
target: at most 3% of the op's time.

``python -m bench.quality_gate [--requests N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.measure import save, spread, stopwatch, time_calls
from bench.workload import Workload, batches, request_paths, samples_for
from dj_ops.captioning import records
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.ops.quality_gate import QualityGate

MODES = ("off", "gate")
TARGET_SHARE = 0.03


def run(op, paths: list[str]) -> None:
    for batch in batches(paths, op.batch_size):
        op.process(samples_for(batch))


def measure(requests: int, rounds: int, folder: Path) -> dict:
    workload = Workload(requests=requests, caption_num=1, new_tokens=16)
    ops = {mode: VLMVideoCaptioningMapper(**workload.op_params()) for mode in MODES}
    warm = request_paths(4, folder / "warm")
    for op in ops.values():
        run(op, warm)  # builds each op's captioner
    ops["off"]._captioner.gate = None
    spent = [0.0]
    # the gate's own work: checks, merging, the final decision (not the backend calls that
    # QualityGate.generate makes), and the provenance fields it adds to each record
    time_calls(QualityGate, ("checked", "final"), spent)
    time_calls(records, ("quality_fields",), spent)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ratios, cpu_ratios, loads = [], [], []
    for index in range(rounds):
        paths = request_paths(requests, folder / f"round{index}")
        round_wall: dict[str, float] = {}
        round_cpu: dict[str, float] = {}
        for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
            with stopwatch(round_wall, round_cpu, mode), stopwatch(wall, cpu, mode):
                run(ops[mode], paths[:])
        ratios.append(round_wall["gate"] / round_wall["off"])
        cpu_ratios.append(round_cpu["gate"] / round_cpu["off"])
        loads.append(os.getloadavg()[0])
    share = spent[0] / wall["gate"]
    return {
        "workload": workload.describe() | {"rounds": rounds, "max_retries": 0},
        "seconds": {k: round(v, 3) for k, v in wall.items()},
        "op_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "gate_over_off_wall": round(wall["gate"] / wall["off"], 4),
        "gate_over_off_wall_per_round": {k: round(v, 4) for k, v in spread(ratios).items()},
        "gate_over_off_op_cpu": round(cpu["gate"] / cpu["off"], 4),
        "gate_over_off_op_cpu_per_round": {k: round(v, 4) for k, v in
                                           spread(cpu_ratios).items()},
        "gate_own_seconds": round(spent[0], 4),
        "gate_own_share_of_op": round(share, 5),
        "target_share": TARGET_SHARE,
        "within_target": share <= TARGET_SHARE,
        "load_avg_1m_during": round(statistics.mean(loads), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="videos per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--save", default="quality_gate", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dj_ops_gate_bench_") as folder:
        result = measure(args.requests, args.rounds, Path(folder))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.save:
        save(args.save, result)
    return result


if __name__ == "__main__":
    main()
