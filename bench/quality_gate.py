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

from pathlib import Path

from bench.measure import time_calls
from bench.overhead import compare, ratio_fields, run
from bench.overhead import main as bench_main
from bench.workload import Workload, request_paths
from dj_ops.captioning import records
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.ops.quality_gate import QualityGate

TARGET_SHARE = 0.03


def measure(requests: int, rounds: int, folder: Path) -> dict:
    workload = Workload(requests=requests, caption_num=1, new_tokens=16)
    ops = {mode: VLMVideoCaptioningMapper(**workload.op_params()) for mode in ("off", "gate")}
    warm = request_paths(4, folder / "warm")
    for op in ops.values():
        run(op, warm)  # builds each op's captioner
    ops["off"]._captioner.gate = None
    spent = [0.0]
    # the gate's own work: checks, merging, the final decision (not the backend calls that
    # QualityGate.generate makes), and the provenance fields it adds to each record
    time_calls(QualityGate, ("checked", "final"), spent)
    time_calls(records, ("quality_fields",), spent)
    timed = compare(ops, requests, rounds, folder)
    share = spent[0] / timed["wall"]["gate"]
    return {
        "workload": workload.describe() | {"rounds": rounds, "max_retries": 0},
        **ratio_fields(timed, "gate_over_off"),
        "gate_own_seconds": round(spent[0], 4),
        "gate_own_share_of_op": round(share, 5),
        "target_share": TARGET_SHARE,
        "within_target": share <= TARGET_SHARE,
        "load_avg_1m_during": timed["load"],
    }


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, measure, requests=32, rounds=4, save_as="quality_gate",
                      argv=argv)


if __name__ == "__main__":
    main()
